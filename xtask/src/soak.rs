//! `cargo xtask soak [--minutes N] [--only <filter>]`: the fault, soak and load suite of issue
//! #9 at full size (the `multiproc-soak` crate's binary, built with `--release`), which prints
//! the table (case, iterations, failures, lost, leaks) and exits non-zero on any failure, loss
//! or leak. `--minutes N` shares a time budget among the cases; `--only` runs the cases whose
//! name contains the filter. The reduced sizes run inside `cargo xtask test` (the crate's
//! `soak_small` test).

use crate::util::{self, cargo, Opts};

pub(crate) fn run(args: &[String]) -> Result<bool, String> {
    let opts = Opts::parse(args, &["--minutes", "--only"], &[])?;
    let mut cmd = cargo();
    cmd.args(["run", "-p", "multiproc-soak", "--release", "--", "--full"]);
    if let Some(m) = opts.value("--minutes") {
        match m.parse::<f64>() {
            Ok(v) if v > 0.0 => {
                cmd.args(["--minutes", m]);
            }
            _ => return Err(format!("--minutes needs a positive number, not {m:?}")),
        }
    }
    if let Some(f) = opts.value("--only") {
        cmd.args(["--only", f]);
    }
    let row = util::step("soak (multiproc-soak --full)", cmd);
    Ok(util::summary("cargo xtask soak — summary", &[row]))
}
