//! A pool without a size gets one worker per CPU this process may use ([`cpu_count`], which
//! honours the affinity mask: under `taskset -c 0` it is 1).
//!
//! Python:
//!
//! ```python
//! import os
//! from multiprocessing import Pool, cpu_count
//!
//! def whoami(_):
//!     return os.getpid()
//!
//! if __name__ == "__main__":
//!     with Pool() as pool:
//!         print("cpu_count():", cpu_count())
//!         print("workers:", pool._processes)
//!         pids = set(pool.map(whoami, range(100)))
//!         workers = {p.pid for p in pool._pool}
//!         print("100 tasks ran in the pool's workers only:", pids <= workers)
//!         print("none ran in this process:", os.getpid() not in pids)
//! ```

use multiproc::prelude::*;
use std::collections::HashSet;

fn whoami(_: u32) -> u32 {
    std::process::id()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let pool = Pool::builder().build()?; // no `processes(n)`: one worker per CPU
    println!("cpu_count(): {}", cpu_count());
    println!("workers: {}", pool.processes());
    println!(
        "workers == cpu_count(): {}",
        pool.processes() == cpu_count()
    );

    let pids: HashSet<u32> = pool.map(whoami, 0..100)?.into_iter().collect();
    let workers: HashSet<u32> = pool.worker_pids().into_iter().collect();
    println!(
        "100 tasks ran in the pool's workers only: {}",
        pids.is_subset(&workers)
    );
    println!(
        "none ran in this process: {}",
        !pids.contains(&std::process::id())
    );
    Ok(())
}
