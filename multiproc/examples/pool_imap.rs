//! `imap` yields the results one at a time, in input order, as soon as each is ready: the slow
//! first item (0.5 s) holds the others back, which then all come at once. `imap_unordered`
//! yields them as they complete.
//!
//! Python:
//!
//! ```python
//! import time
//! from multiprocessing import Pool
//!
//! def slow_square(x):
//!     time.sleep(0.5 if x == 0 else 0.1)
//!     return x * x
//!
//! if __name__ == "__main__":
//!     t0 = time.monotonic()
//!     with Pool(4) as pool:
//!         for r in pool.imap(slow_square, range(8)):
//!             print(r, f"{time.monotonic() - t0:.1f}s", flush=True)
//!         print("unordered:", list(pool.imap_unordered(slow_square, range(8))))
//! ```
//!
//! `imap` pulls its input lazily (a few tasks per worker ahead), so it also works on an
//! endless iterator: `pool.imap(square, 0..).take(5)`. Each item is a `Result`: a task that
//! fails yields its error in its place.

use multiproc::prelude::*;
use std::time::{Duration, Instant};

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(if x == 0 { 500 } else { 100 }));
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let pool = Pool::new(4)?;
    let t0 = Instant::now();
    for r in pool.imap(slow_square, 0..8) {
        println!("{} {:.1}s", r?, t0.elapsed().as_secs_f64());
    }

    // Completion order varies from run to run (0 is normally last: it is the slowest).
    let unordered = pool
        .imap_unordered(slow_square, 0..8)
        .collect::<Result<Vec<u64>, _>>()?;
    let mut sorted = unordered.clone();
    sorted.sort();
    println!("unordered: {} results, sorted: {sorted:?}", unordered.len());
    Ok(())
}
