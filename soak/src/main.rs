//! `multiproc-soak`: runs the soak suite and prints its table.
//!
//! `multiproc-soak [--full] [--minutes N] [--only <filter>]`: without `--full`, every case at
//! the reduced size of `cargo test`; with it, at the sizes of issue #9. `--minutes N` shares a
//! time budget among the cases (a case out of time stops starting iterations, and the table
//! shows how many ran). Exits non-zero if any row has a failure, a loss or a leak.

use std::process::ExitCode;
use std::time::Duration;

use multiproc_soak::{all_ok, run, table, Size, CASES};

fn main() -> ExitCode {
    multiproc::init();
    let mut size = Size::Small;
    let mut budget = None;
    let mut filter = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--full" => size = Size::Full,
            "--minutes" => match args.next().and_then(|m| m.parse::<f64>().ok()) {
                Some(m) if m > 0.0 => budget = Some(Duration::from_secs_f64(m * 60.0)),
                _ => {
                    eprintln!("multiproc-soak: --minutes needs a positive number");
                    return ExitCode::from(2);
                }
            },
            "--only" => filter = args.next().unwrap_or_default(),
            other => {
                eprintln!("multiproc-soak: unknown argument {other:?}\nusage: multiproc-soak [--full] [--minutes N] [--only <filter>]");
                return ExitCode::from(2);
            }
        }
    }
    let rows = run(CASES, size, &filter, budget);
    println!("\n{}", table(&rows));
    if all_ok(&rows) {
        ExitCode::SUCCESS
    } else {
        println!("soak: FAILED");
        ExitCode::FAILURE
    }
}
