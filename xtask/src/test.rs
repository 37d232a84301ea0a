//! `cargo xtask test`: every check CI runs, in order, with a summary table.
//!
//! Steps: `fmt --check`, tidy, clippy (`-D warnings`, all targets), the tests of every crate
//! (unit, integration including the cross-process `xproc_*` binaries, doc tests), the loom
//! models of the crates that have them (`--cfg ipc_loom`, release, bounded preemptions, a
//! target directory of their own), the examples that have an expected output (built in release
//! and run, output compared), `cargo bench --no-run`, and `cargo doc` with warnings denied.
//! Every step runs even when an earlier one failed, so one run shows everything that is wrong.

use crate::util::{self, cargo, Opts, Outcome, Row};
use std::path::Path;
use std::time::Instant;

pub(crate) fn run(args: &[String]) -> Result<bool, String> {
    let opts = Opts::parse(args, &["--only"], &[])?;
    let only = opts.value("--only").map(str::to_string);
    let crates = util::crates();
    if let Some(c) = &only {
        if !crates.contains(c) && c != "testkit" && c != "xtask" {
            return Err(format!(
                "--only {c}: no such crate (crates: {})",
                crates.join(", ")
            ));
        }
    }
    // `-p <crate>` or the whole workspace.
    let scope = |cmd: &mut std::process::Command| match &only {
        Some(c) => {
            cmd.args(["-p", c]);
        }
        None => {
            cmd.arg("--workspace");
        }
    };

    let mut rows: Vec<Row> = Vec::new();

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    rows.push(util::step("fmt", fmt));

    let t = Instant::now();
    println!("\n==> tidy");
    let problems = crate::tidy::check(&util::root());
    for p in &problems {
        println!("    {p}");
    }
    rows.push(Row {
        step: "tidy".into(),
        result: if problems.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("{} problems", problems.len()))
        },
        seconds: t.elapsed().as_secs_f64(),
    });

    let mut clippy = cargo();
    clippy.arg("clippy");
    scope(&mut clippy);
    clippy.args(["--all-targets", "--", "-D", "warnings"]);
    rows.push(util::step("clippy", clippy));

    let mut test = cargo();
    test.arg("test");
    scope(&mut test);
    rows.push(util::step("test (unit, integration, doc)", test));

    for krate in loom_crates(&only) {
        let mut loom = cargo();
        loom.env("RUSTFLAGS", "--cfg ipc_loom")
            .env("CARGO_TARGET_DIR", util::root().join("target/loom"))
            .env("LOOM_MAX_PREEMPTIONS", "2")
            .args(["test", "--release", "-p", &krate]);
        for t in loom_tests(&krate) {
            loom.args(["--test", &t]);
        }
        rows.push(util::step(&format!("loom {krate}"), loom));
    }

    rows.extend(crate::examples::run_all(&only));

    let mut bench = cargo();
    bench.arg("bench");
    scope(&mut bench);
    bench.arg("--no-run");
    rows.push(util::step("bench --no-run", bench));

    let mut doc = cargo();
    doc.env("RUSTDOCFLAGS", "-D warnings").arg("doc");
    scope(&mut doc);
    doc.arg("--no-deps");
    rows.push(util::step("doc", doc));

    Ok(util::summary("cargo xtask test — summary", &rows))
}

/// Crates with loom models: those with a `tests/loom_*.rs`.
fn loom_crates(only: &Option<String>) -> Vec<String> {
    util::crates()
        .into_iter()
        .filter(|c| only.as_ref().is_none_or(|o| o == c))
        .filter(|c| !loom_tests(c).is_empty())
        .collect()
}

fn loom_tests(krate: &str) -> Vec<String> {
    let dir = util::root().join(krate).join("tests");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| is_loom_test(p))
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn is_loom_test(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "rs")
        && p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("loom_"))
}
