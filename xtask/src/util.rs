//! Shared helpers: the project root, running cargo, option parsing, the summary table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The workspace root (the parent of this crate's directory).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// `cargo` as cargo itself was invoked (honours `$CARGO`).
pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Parses `--name value` options; unknown options are an error.
pub(crate) struct Opts {
    pub(crate) values: Vec<(String, Option<String>)>,
}

impl Opts {
    pub(crate) fn parse(
        args: &[String],
        with_value: &[&str],
        flags: &[&str],
    ) -> Result<Opts, String> {
        let mut values = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if with_value.contains(&a.as_str()) {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                values.push((a.clone(), Some(v.clone())));
            } else if flags.contains(&a.as_str()) {
                values.push((a.clone(), None));
            } else {
                return Err(format!("unknown option {a:?}"));
            }
        }
        Ok(Opts { values })
    }

    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        self.values.iter().any(|(n, _)| n == name)
    }
}

/// The library crates of the workspace, bottom layer first (the members that have a `src/lib.rs`
/// and are published).
pub(crate) fn crates() -> Vec<String> {
    const ORDER: &[&str] = &[
        "ipc-shm",
        "ipc-sync",
        "ipc-channel-core",
        "proc-spawn",
        "proc-pool",
        "proc-manager",
        "multiproc",
    ];
    let root = root();
    let mut out: Vec<String> = ORDER
        .iter()
        .filter(|c| root.join(c).join("Cargo.toml").exists())
        .map(|c| c.to_string())
        .collect();
    // Any other published library member, after the known ones.
    if let Ok(dir) = std::fs::read_dir(&root) {
        let mut extra: Vec<String> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("src/lib.rs").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                !out.contains(n) && n != "testkit" && n != "benches" && n != "soak" && n != "xtask"
            })
            .collect();
        extra.sort();
        out.extend(extra);
    }
    out
}

/// One line of a summary table.
pub(crate) struct Row {
    pub(crate) step: String,
    pub(crate) result: Outcome,
    pub(crate) seconds: f64,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Pass => "pass".into(),
            Outcome::Fail(why) if why.is_empty() => "FAIL".into(),
            Outcome::Fail(why) => format!("FAIL ({why})"),
            Outcome::Skip(why) => format!("skipped ({why})"),
        }
    }
}

/// Runs `cmd` with inherited output, timing it.
pub(crate) fn step(name: &str, mut cmd: Command) -> Row {
    println!("\n==> {name}");
    println!("    $ {}", describe(&cmd));
    let t = Instant::now();
    let result = match cmd.status() {
        Ok(s) if s.success() => Outcome::Pass,
        Ok(s) => Outcome::Fail(format!("exit {}", s.code().unwrap_or(-1))),
        Err(e) => Outcome::Fail(format!("could not run: {e}")),
    };
    Row {
        step: name.to_string(),
        result,
        seconds: t.elapsed().as_secs_f64(),
    }
}

/// A command line as a human would type it (environment overrides first).
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Prints the summary table and returns whether every row passed or was skipped.
pub(crate) fn summary(title: &str, rows: &[Row]) -> bool {
    let w = rows.iter().map(|r| r.step.len()).max().unwrap_or(4).max(4);
    println!("\n{title}");
    println!("{:<w$}  {:>8}  result", "step", "seconds");
    println!("{:-<w$}  {:->8}  {:-<6}", "", "", "");
    let mut total = 0.0;
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for r in rows {
        total += r.seconds;
        match r.result {
            Outcome::Pass => passed += 1,
            Outcome::Fail(_) => failed += 1,
            Outcome::Skip(_) => skipped += 1,
        }
        println!("{:<w$}  {:>8.1}  {}", r.step, r.seconds, r.result.label());
    }
    println!("{:<w$}  {:>8.1}", "total", total);
    println!("\nxtask: {passed} passed, {failed} failed, {skipped} skipped");
    failed == 0
}
