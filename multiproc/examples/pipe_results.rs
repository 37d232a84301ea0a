//! A child does some work, times it, and sends the result and its timing back through a pipe.
//!
//! Python:
//!
//! ```python
//! import time
//! from multiprocessing import Process, Pipe
//!
//! def work(conn, n):
//!     t0 = time.perf_counter()
//!     total = sum(i * i for i in range(n))
//!     conn.send((total, time.perf_counter() - t0))
//!     conn.close()
//!
//! if __name__ == "__main__":
//!     parent_end, child_end = Pipe()
//!     p = Process(target=work, args=(child_end, 10_000_000)); p.start()
//!     total, seconds = parent_end.recv()
//!     p.join()
//!     print(f"sum of squares below 10000000: {total}")
//!     print(f"the child took {seconds * 1000:.1f} ms")
//! ```

use multiproc::prelude::*;
use std::time::{Duration, Instant};

fn work((conn, n): (Connection, u64)) {
    let t0 = Instant::now();
    // black_box: keep the optimiser from replacing the loop by a formula.
    let total: u128 = (0..n)
        .map(|i| u128::from(std::hint::black_box(i)).pow(2))
        .sum();
    conn.send(&(total, t0.elapsed())).unwrap();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let n = 10_000_000u64;
    let (parent_end, child_end) = Pipe::new()?;
    let mut p = Process::new(work, (child_end, n));
    p.start()?;
    let (total, took): (u128, Duration) = parent_end.recv()?;
    p.join()?;
    println!("sum of squares below {n}: {total}");
    println!("the child took {:.1} ms", took.as_secs_f64() * 1e3);
    Ok(())
}
