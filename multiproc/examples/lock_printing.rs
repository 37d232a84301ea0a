//! One lock shared by four workers: each prints a block of three lines five times, holding the
//! lock for the whole block, so blocks never interleave (their order varies from run to run).
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process, Lock
//!
//! def worker(lock, n):
//!     for i in range(5):
//!         with lock:
//!             for line in (1, 2, 3):
//!                 print(f"worker {n} round {i}: line {line} of 3", flush=True)
//!
//! if __name__ == "__main__":
//!     lock = Lock()
//!     procs = [Process(target=worker, args=(lock, n)) for n in range(4)]
//!     for p in procs: p.start()
//!     for p in procs: p.join()
//! ```
//!
//! To show that the blocks really did not interleave, each worker also writes its number into
//! a shared log ([`RawArray`], [`RawValue`]: no lock of their own, this one protects them) for
//! every line it prints; the parent checks the log at the end.

use multiproc::prelude::*;

const WORKERS: u8 = 4;
const ROUNDS: u32 = 5;
const LINES: u32 = 3;

fn worker((lock, log, next, n): (Lock, RawArray<u8>, RawValue<u32>, u8)) {
    for i in 0..ROUNDS {
        let _guard = lock.acquire(); // released at the end of the loop body
        for line in 1..=LINES {
            println!("worker {n} round {i}: line {line} of {LINES}");
            let at = next.load();
            log.set(at as usize, n)
                .expect("the log has room for every line");
            next.store(at + 1);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let lock = Lock::new()?;
    let total = usize::from(WORKERS) * (ROUNDS * LINES) as usize;
    let log = RawArray::<u8>::zeroed(total)?;
    let next = RawValue::new(0u32)?;
    let mut procs: Vec<Process> = (0..WORKERS)
        .map(|n| Process::new(worker, (lock.clone(), log.clone(), next.clone(), n)))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    for p in &mut procs {
        p.join()?;
    }

    let log = log.to_vec();
    let blocks = log.chunks(LINES as usize);
    let whole = blocks
        .clone()
        .filter(|b| b.iter().all(|&w| w == b[0]))
        .count();
    println!(
        "{} lines in {} blocks of {LINES}, blocks printed by one worker alone: {whole}",
        next.load(),
        blocks.len(),
    );
    Ok(())
}
