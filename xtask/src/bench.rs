//! `cargo xtask bench`: the comparison benchmark (issue #8), or one crate's own benchmarks.
//!
//! Without `--only`, runs the groups of the `multiproc-benches` crate (`benches/benches/<group>.rs`,
//! criterion, our primitive beside its Rust and OS peers), each followed by its Python twin
//! (`benches/python/twin_<group>.py`, skipped with a message when `python3` is missing), then the
//! crate's `bench-report` binary, which writes `target/bench-report/report.md` (one table per
//! group, ratios to the best peer and to Python), `target/bench-report/charts/<group>.png`, and
//! prints every goal of the issue as met or missed. A full run of every group also rewrites
//! `BENCHMARKS.md` and its charts in `benches/report/`.
//!
//! - `--quick`: short runs (about two minutes in all), for a look, not for the record;
//! - `--filter <group>[,<group>…]`: only these groups (`start`, `lock`, `pipe`, `queue`, `pool`,
//!   `array`);
//! - `--no-python`: skip the Python twins;
//! - `--write-benchmarks-md`: rewrite `BENCHMARKS.md` even after a quick or filtered run;
//! - `--only <crate>`: instead, the criterion benchmarks of one crate (`--filter` is then
//!   criterion's regular expression).

use crate::util::{self, cargo, Opts, Outcome, Row};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const CRATE: &str = "multiproc-benches";

pub(crate) fn run(args: &[String]) -> Result<bool, String> {
    let opts = Opts::parse(
        args,
        &["--filter", "--only"],
        &["--quick", "--no-python", "--write-benchmarks-md"],
    )?;
    match opts.value("--only") {
        Some(c) if c != CRATE && c != "benches" => one_crate(&opts, c),
        _ => comparison(&opts),
    }
}

/// The criterion benchmarks of one crate (`--only <crate>`).
fn one_crate(opts: &Opts, krate: &str) -> Result<bool, String> {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", krate]);
    // Only the benchmark targets: the libraries' unit-test harnesses do not take criterion's
    // options.
    cmd.args(["--bench", "*", "--"]);
    if opts.flag("--quick") {
        cmd.args(["--warm-up-time", "1", "--measurement-time", "2"]);
    }
    if let Some(f) = opts.value("--filter") {
        cmd.arg(f);
    }
    let row = util::step("cargo bench", cmd);
    println!(
        "\ncriterion reports: {}",
        util::root()
            .join("target/criterion/report/index.html")
            .display()
    );
    Ok(util::summary("cargo xtask bench — summary", &[row]))
}

/// The groups: one criterion benchmark file each in `benches/benches/`.
fn groups() -> Vec<String> {
    const ORDER: &[&str] = &["start", "lock", "pipe", "queue", "pool", "array"];
    let dir = util::root().join("benches/benches");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_string))?
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|g| ORDER.iter().position(|o| o == g).unwrap_or(ORDER.len()));
    found
}

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn elapsed(t: Instant) -> String {
    let s = t.elapsed().as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

fn comparison(opts: &Opts) -> Result<bool, String> {
    let root = util::root();
    let all = groups();
    let chosen: Vec<String> = match opts.value("--filter") {
        None => all.clone(),
        Some(f) => {
            let want: Vec<&str> = f
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            for w in &want {
                if !all.iter().any(|g| g == w) {
                    return Err(format!("no group {w:?}; the groups are {}", all.join(", ")));
                }
            }
            all.iter()
                .filter(|g| want.contains(&g.as_str()))
                .cloned()
                .collect()
        }
    };
    let quick = opts.flag("--quick");
    let full = !quick && chosen.len() == all.len();
    let write_md = full || opts.flag("--write-benchmarks-md");
    let out = root.join("target/bench-report");
    let criterion_home = out.join("criterion");
    let python_file = out.join("python.jsonl");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&python_file);

    let python_skipped = if opts.flag("--no-python") {
        Some("--no-python was given".to_string())
    } else if !python3_available() {
        Some("python3 was not found on this machine".to_string())
    } else {
        None
    };
    if let Some(why) = &python_skipped {
        println!("\nxtask bench: Python twins skipped: {why}");
    }

    let mut rows = Vec::new();
    let mut build = cargo();
    build.args(["bench", "-p", CRATE, "--no-run"]);
    let built = util::step("build the benchmarks (bench profile)", build);
    let ok = built.result == Outcome::Pass;
    rows.push(built);
    let mut build = cargo();
    build.args(["build", "-p", CRATE, "--release", "--bin", "bench-report"]);
    let built = util::step("build bench-report (release)", build);
    let ok = ok && built.result == Outcome::Pass;
    rows.push(built);
    if !ok {
        return Ok(util::summary("cargo xtask bench — summary", &rows));
    }

    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t0 = Instant::now();
    let n = chosen.len();
    for (i, g) in chosen.iter().enumerate() {
        println!(
            "\n==> [{}/{n}] {g}: Rust (criterion){} — {} elapsed",
            i + 1,
            if quick { ", quick" } else { "" },
            elapsed(t0)
        );
        let mut cmd = cargo();
        cmd.args(["bench", "-q", "-p", CRATE, "--bench", g]);
        cmd.env("CRITERION_HOME", &criterion_home);
        if quick {
            cmd.env("MULTIPROC_BENCH_QUICK", "1");
        }
        rows.push(util::step(&format!("{g}: criterion"), cmd));

        if python_skipped.is_some() {
            continue;
        }
        println!(
            "\n==> [{}/{n}] {g}: Python twin — {} elapsed",
            i + 1,
            elapsed(t0)
        );
        rows.push(python_twin(&root, g, quick, &python_file));
    }

    println!("\n==> report — {} elapsed", elapsed(t0));
    let mut cmd = cargo();
    cmd.args([
        "run",
        "-q",
        "-p",
        CRATE,
        "--release",
        "--bin",
        "bench-report",
        "--",
    ]);
    cmd.arg("--criterion").arg(&criterion_home);
    cmd.arg("--out").arg(&out);
    cmd.arg("--python").arg(&python_file);
    cmd.args(["--since", &since.to_string(), "--groups", &chosen.join(",")]);
    if let Some(why) = &python_skipped {
        cmd.args(["--python-skipped", why]);
    }
    if quick {
        cmd.arg("--quick");
    }
    if write_md {
        cmd.arg("--benchmarks-md").arg(root.join("BENCHMARKS.md"));
        cmd.arg("--charts-dir").arg(root.join("benches/report"));
        cmd.args(["--charts-link", "benches/report"]);
    }
    rows.push(util::step("bench-report", cmd));
    println!("\nreport: {}", out.join("report.md").display());
    Ok(util::summary("cargo xtask bench — summary", &rows))
}

/// Runs `benches/python/twin_<group>.py`, appending its JSON lines to `results`.
fn python_twin(root: &Path, group: &str, quick: bool, results: &PathBuf) -> Row {
    let script = root.join(format!("benches/python/twin_{group}.py"));
    let step = format!("{group}: python");
    if !script.exists() {
        return Row {
            step,
            result: Outcome::Skip(format!("no {}", script.display())),
            seconds: 0.0,
        };
    }
    let file = match File::options().create(true).append(true).open(results) {
        Ok(f) => f,
        Err(e) => {
            return Row {
                step,
                result: Outcome::Fail(format!("cannot open {}: {e}", results.display())),
                seconds: 0.0,
            }
        }
    };
    let mut cmd = Command::new("python3");
    cmd.arg(&script).current_dir(root.join("benches/python"));
    if quick {
        cmd.arg("--quick");
    }
    cmd.stdout(file);
    util::step(&step, cmd)
}
