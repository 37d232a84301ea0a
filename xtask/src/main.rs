//! `cargo xtask`: the project's own commands, with nothing to install.
//!
//! - `cargo xtask test [--only <crate>]` — the whole check, as CI runs it.
//! - `cargo xtask bench [--quick] [--filter <groups>] [--no-python] [--write-benchmarks-md]` —
//!   the comparison benchmark (report, charts, goals); `--only <crate>`: one crate's benchmarks.
//! - `cargo xtask matrix [--only <crate>]` — crates × start methods × feature sets × targets.
//! - `cargo xtask soak [--minutes N] [--only <filter>]` — the fault, soak and load suite (issue #9).
//! - `cargo xtask tidy` — the source policy checks alone.

mod bench;
mod examples;
mod matrix;
mod soak;
mod test;
mod tidy;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test   [--only <crate>]            fmt, tidy, clippy, tests, loom models, examples, benches
                                     build, docs; a summary table; non-zero exit on failure
  bench  [--quick] [--filter <groups>] [--no-python] [--write-benchmarks-md]
                                     the comparison benchmark: multiproc beside Python, Rust
                                     peers and the OS limits; target/bench-report/report.md,
                                     charts, goals met or missed; a full run rewrites
                                     BENCHMARKS.md
  bench  --only <crate> [--quick] [--filter <re>]
                                     one crate's own criterion benchmarks
  matrix [--only <crate>]            crates x start methods x feature sets x targets
  soak   [--minutes N] [--only <f>]  the fault, soak and load suite at full size (issue #9)
  tidy                               source policy checks (//! headers, SAFETY comments, stubs)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "test" => test::run(rest),
        "bench" => bench::run(rest),
        "matrix" => matrix::run(rest),
        "soak" => soak::run(rest),
        "tidy" => tidy::run_cli(),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(true)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}
