//! `cargo xtask bench`: run the criterion benchmarks of every crate.
//!
//! `--quick` shortens warm-up and measurement (a pass of a few minutes, for a look, not for the
//! record); `--filter <re>` passes a criterion filter. Benchmarks compare each primitive with
//! its peers in the same run; quote their ratios, not absolute times.

use crate::util::{self, cargo, Opts};

pub(crate) fn run(args: &[String]) -> Result<bool, String> {
    let opts = Opts::parse(args, &["--filter", "--only"], &["--quick"])?;
    let mut cmd = cargo();
    cmd.arg("bench");
    match opts.value("--only") {
        Some(c) => {
            cmd.args(["-p", c]);
        }
        None => {
            cmd.arg("--workspace");
        }
    }
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
