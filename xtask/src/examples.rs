//! Examples with an expected output: `<crate>/examples/<name>.rs` beside `<name>.expected`.
//!
//! The examples are built in release (as the README runs the tour) and each is run with a time
//! limit; its standard output must match the `.expected` file:
//!
//! - lines are compared one by one (trailing spaces ignored);
//! - `{..}` in an expected line matches any text (a pid, a time);
//! - a first line `#! unordered` compares the lines as a multiset (output of several processes);
//! - a line `#! exit N` expects exit status N instead of 0.

use crate::util::{self, cargo, Outcome, Row};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(180);

struct Example {
    krate: String,
    name: String,
    expected: PathBuf,
}

fn discover(only: &Option<String>) -> Vec<Example> {
    let mut out = Vec::new();
    for krate in util::crates() {
        if only.as_ref().is_some_and(|o| *o != krate) {
            continue;
        }
        let dir = util::root().join(&krate).join("examples");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "expected"))
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|n| dir.join(format!("{n}.rs")).exists())
            .collect();
        names.sort();
        for name in names {
            out.push(Example {
                expected: dir.join(format!("{name}.expected")),
                krate: krate.clone(),
                name,
            });
        }
    }
    out
}

pub(crate) fn run_all(only: &Option<String>) -> Vec<Row> {
    let examples = discover(only);
    if examples.is_empty() {
        return vec![Row {
            step: "examples".into(),
            result: Outcome::Skip("no example has an .expected file yet".into()),
            seconds: 0.0,
        }];
    }
    let mut rows = Vec::new();
    let mut krates: Vec<&str> = examples.iter().map(|e| e.krate.as_str()).collect();
    krates.dedup();
    let mut build = cargo();
    build.args(["build", "--release", "--examples"]);
    for k in &krates {
        build.args(["-p", k]);
    }
    let row = util::step("examples: build (release)", build);
    let built = row.result == Outcome::Pass;
    rows.push(row);
    for ex in &examples {
        let step = format!("example {}", ex.name);
        if !built {
            rows.push(Row {
                step,
                result: Outcome::Skip("build failed".into()),
                seconds: 0.0,
            });
            continue;
        }
        println!("\n==> {step}");
        let t = Instant::now();
        let result = run_one(ex);
        if let Outcome::Fail(why) = &result {
            println!("    {why}");
        }
        rows.push(Row {
            step,
            result: match result {
                Outcome::Fail(_) => Outcome::Fail("output differs".into()),
                other => other,
            },
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    rows
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::root().join("target"))
}

fn run_one(ex: &Example) -> Outcome {
    let exe = target_dir().join("release/examples").join(&ex.name);
    let expected = match std::fs::read_to_string(&ex.expected) {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(format!("cannot read {}: {e}", ex.expected.display())),
    };
    let mut child = match Command::new(&exe)
        .current_dir(util::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(format!("cannot run {}: {e}", exe.display())),
    };
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let t = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if t.elapsed() > LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let out = reader.join().unwrap_or_default();
    print!("{out}");
    let Some(status) = status else {
        return Outcome::Fail(format!("did not finish within {} s", LIMIT.as_secs()));
    };
    let mut want_exit = 0;
    let mut unordered = false;
    let mut lines: Vec<&str> = Vec::new();
    for l in expected.lines() {
        if let Some(d) = l.strip_prefix("#!") {
            let d = d.trim();
            if d == "unordered" {
                unordered = true;
            } else if let Some(n) = d.strip_prefix("exit") {
                want_exit = n.trim().parse().unwrap_or(0);
            }
            continue;
        }
        lines.push(l.trim_end());
    }
    if status.code() != Some(want_exit) {
        return Outcome::Fail(format!("exit status {status}, expected {want_exit}"));
    }
    let got: Vec<&str> = out.lines().map(str::trim_end).collect();
    match compare(&lines, &got, unordered) {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(why),
    }
}

fn compare(want: &[&str], got: &[&str], unordered: bool) -> Result<(), String> {
    if want.len() != got.len() {
        return Err(format!(
            "{} lines of output, expected {}",
            got.len(),
            want.len()
        ));
    }
    if !unordered {
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            if !line_matches(w, g) {
                return Err(format!("line {}: got {g:?}, expected {w:?}", i + 1));
            }
        }
        return Ok(());
    }
    let mut left: Vec<&str> = got.to_vec();
    for w in want {
        match left.iter().position(|g| line_matches(w, g)) {
            Some(i) => {
                left.remove(i);
            }
            None => return Err(format!("no output line matches {w:?}")),
        }
    }
    Ok(())
}

/// Does `got` match the pattern `want`, where `{..}` stands for any text?
fn line_matches(want: &str, got: &str) -> bool {
    let parts: Vec<&str> = want.split("{..}").collect();
    if parts.len() == 1 {
        return want == got;
    }
    let mut rest = got;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(line_matches("pid {..} done", "pid 42 done"));
        assert!(line_matches("{..}", "anything"));
        assert!(line_matches("a{..}b{..}c", "a1b2c"));
        assert!(!line_matches("a{..}b", "a1c"));
        assert!(!line_matches("exact", "exact!"));
    }

    #[test]
    fn ordered_and_unordered() {
        assert!(compare(&["a", "b"], &["a", "b"], false).is_ok());
        assert!(compare(&["a", "b"], &["b", "a"], false).is_err());
        assert!(compare(&["a", "b"], &["b", "a"], true).is_ok());
        assert!(compare(&["a", "a"], &["a", "b"], true).is_err());
        assert!(compare(&["a"], &["a", "b"], true).is_err());
    }
}
