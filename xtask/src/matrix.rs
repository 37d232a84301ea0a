//! `cargo xtask matrix`: the test matrix users run before a release.
//!
//! Cells are crates × start methods × feature sets × targets. The start method reaches the
//! tests through `IPC_START_METHOD` (the cross-process tests of every layer honour it); feature
//! sets come from each crate's `[features]` table (default, and when the crate has features,
//! `--no-default-features` and `--all-features`). Every cell this machine can run is run; the
//! others are listed as skipped with the reason: a target whose standard library is not
//! installed, a target this machine cannot execute (built only), or a platform that has no
//! backend yet. The hosted CI workflow (`.github/workflows/ci.yml`) calls this same command on
//! Linux and macOS runners.

use crate::util::{self, cargo, Opts, Outcome, Row};
use std::process::Command;

/// Operating systems with a backend in every crate.
const SUPPORTED_OS: &[&str] = &["linux"];
const METHODS: &[&str] = &["fork", "spawn", "forkserver"];
/// Targets a release is checked on.
const TARGETS: &[&str] = &[
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-unknown-freebsd",
];

pub(crate) fn run(args: &[String]) -> Result<bool, String> {
    let opts = Opts::parse(args, &["--only", "--methods"], &[])?;
    let crates: Vec<String> = util::crates()
        .into_iter()
        .filter(|c| opts.value("--only").is_none_or(|o| o == c))
        .collect();
    if crates.is_empty() {
        return Err("no crate matches --only".into());
    }
    let methods: Vec<&str> = match opts.value("--methods") {
        Some(m) => m.split(',').collect(),
        None => METHODS.to_vec(),
    };
    let host = host_target();
    let installed = installed_targets();
    let mut rows = Vec::new();

    for target in TARGETS {
        let os = target_os(target);
        let runnable = *target == host;
        let skip_reason = if !SUPPORTED_OS.contains(&os) {
            Some(format!(
                "no {os} backend yet: the crates refuse to compile there by design"
            ))
        } else if !runnable && !installed.iter().any(|t| t == target) {
            Some(format!(
                "standard library for {target} not installed (rustup target add {target})"
            ))
        } else {
            None
        };
        for krate in &crates {
            for features in feature_sets(krate) {
                if let Some(why) = &skip_reason {
                    rows.push(Row {
                        step: format!("{target} {krate} {features}"),
                        result: Outcome::Skip(why.clone()),
                        seconds: 0.0,
                    });
                    continue;
                }
                if !runnable {
                    // Cross target: build the tests, cannot execute them here.
                    let mut cmd = cargo();
                    cmd.args(["test", "--no-run", "-p", krate, "--target", target]);
                    add_features(&mut cmd, &features);
                    rows.push(util::step(
                        &format!("{target} {krate} {features} (build only: cannot execute here)"),
                        cmd,
                    ));
                    continue;
                }
                for method in &methods {
                    let mut cmd = cargo();
                    cmd.env("IPC_START_METHOD", method)
                        .args(["test", "-p", krate]);
                    add_features(&mut cmd, &features);
                    rows.push(util::step(
                        &format!("{target} {krate} {features} {method}"),
                        cmd,
                    ));
                }
            }
        }
    }
    Ok(util::summary("cargo xtask matrix — summary", &rows))
}

fn add_features(cmd: &mut Command, set: &str) {
    match set {
        "no-default-features" => {
            cmd.arg("--no-default-features");
        }
        "all-features" => {
            cmd.arg("--all-features");
        }
        _ => {}
    }
}

/// `default`, plus `no-default-features` and `all-features` when the crate declares features.
fn feature_sets(krate: &str) -> Vec<String> {
    let manifest =
        std::fs::read_to_string(util::root().join(krate).join("Cargo.toml")).unwrap_or_default();
    let mut in_features = false;
    let mut any = false;
    for line in manifest.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_features = l == "[features]";
            continue;
        }
        if in_features && !l.is_empty() && !l.starts_with('#') {
            any = true;
        }
    }
    let mut sets = vec!["default".to_string()];
    if any {
        sets.push("no-default-features".into());
        sets.push("all-features".into());
    }
    sets
}

fn target_os(target: &str) -> &'static str {
    if target.contains("linux") {
        "linux"
    } else if target.contains("apple-darwin") {
        "macos"
    } else if target.contains("freebsd") {
        "freebsd"
    } else {
        "other"
    }
}

fn host_target() -> String {
    let out = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-vV")
        .output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .unwrap_or_default()
}

fn installed_targets() -> Vec<String> {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}
