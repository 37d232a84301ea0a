//! The same CPU-bound job three ways: serially, split over 2 processes, and in a pool of 2
//! workers; the wall time of each is printed (the speed-up depends on the free cores: about 2x
//! on an idle machine with 2 or more).
//!
//! The job counts the primes below 3,000,000 by trial division, in 12 ranges of equal width
//! (the later ranges cost a little more, so each process takes every other range).
//!
//! Python:
//!
//! ```python
//! import time
//! from multiprocessing import Pool, Process, Queue
//!
//! def count_primes(lo_hi):
//!     lo, hi = lo_hi
//!     return sum(1 for n in range(lo, hi) if is_prime(n))
//!
//! def count_ranges(ranges, q):
//!     q.put(sum(count_primes(r) for r in ranges))
//!
//! if __name__ == "__main__":
//!     ranges = [(i * 250_000, (i + 1) * 250_000) for i in range(12)]
//!     t = time.perf_counter(); serial = sum(map(count_primes, ranges)); ...
//!     q = Queue()
//!     procs = [Process(target=count_ranges, args=(ranges[k::2], q)) for k in range(2)]
//!     ...
//!     with Pool(2) as pool:
//!         pooled = sum(pool.map(count_primes, ranges, chunksize=1))
//! ```

use multiproc::prelude::*;
use std::time::Instant;

const LIMIT: u64 = 3_000_000;
const RANGES: u64 = 12;

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

fn count_primes((lo, hi): (u64, u64)) -> u64 {
    (lo..hi).filter(|&n| is_prime(n)).count() as u64
}

fn count_ranges(ranges: Vec<(u64, u64)>) -> u64 {
    ranges.into_iter().map(count_primes).sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let width = LIMIT / RANGES;
    let ranges: Vec<(u64, u64)> = (0..RANGES).map(|i| (i * width, (i + 1) * width)).collect();

    let t = Instant::now();
    let serial: u64 = ranges.iter().copied().map(count_primes).sum();
    let serial_time = t.elapsed();

    let t = Instant::now();
    let halves: Vec<Vec<(u64, u64)>> = (0..2)
        .map(|k| ranges.iter().copied().skip(k).step_by(2).collect())
        .collect();
    // `spawn` starts a process that returns a value; `join` gives it back.
    let handles: Vec<JoinHandle<u64>> = halves
        .into_iter()
        .map(|half| multiproc::spawn(count_ranges, half))
        .collect();
    let mut in_processes = 0;
    for h in handles {
        in_processes += h.join()?;
    }
    let processes_time = t.elapsed();

    let pool = Pool::new(2)?; // started before the clock: workers are reused across calls
    let t = Instant::now();
    let pooled: u64 = pool.map_chunked(count_primes, ranges, 1)?.into_iter().sum();
    let pool_time = t.elapsed();

    println!("primes below {LIMIT}:");
    println!(
        "  serially:           {serial} in {:.2} s",
        serial_time.as_secs_f64()
    );
    println!(
        "  in 2 processes:     {in_processes} in {:.2} s",
        processes_time.as_secs_f64()
    );
    println!(
        "  in a 2-worker pool: {pooled} in {:.2} s",
        pool_time.as_secs_f64()
    );
    println!(
        "speed-up: {:.1}x with processes, {:.1}x with the pool ({} CPUs available)",
        serial_time.as_secs_f64() / processes_time.as_secs_f64(),
        serial_time.as_secs_f64() / pool_time.as_secs_f64(),
        cpu_count()
    );
    Ok(())
}
