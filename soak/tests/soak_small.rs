//! Every soak case at its reduced size (part of `cargo test --workspace`, so of
//! `cargo xtask test`): `cargo test -p multiproc-soak --test soak_small -- <filter>` runs the
//! cases whose name contains the filter.

use multiproc_soak::{all_ok, run, table, Size, CASES};

fn main() {
    multiproc::init();
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let rows = run(CASES, Size::Small, &filter, None);
    println!("\n{}", table(&rows));
    let failed = rows.iter().filter(|r| !r.tally.ok()).count();
    println!("{} passed, {failed} failed", rows.len() - failed);
    if !all_ok(&rows) {
        std::process::exit(1);
    }
}
