//! Four children, each printing its number. They run at the same time, so their lines come in
//! any order.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process
//!
//! def work(n):
//!     print(f"process {n} running")
//!
//! if __name__ == "__main__":
//!     procs = [Process(target=work, args=(n,)) for n in range(4)]
//!     for p in procs: p.start()
//!     for p in procs: p.join()
//!     print("all", len(procs), "processes finished:", [p.exitcode for p in procs])
//! ```

use multiproc::prelude::*;

fn work(n: u32) {
    println!("process {n} running");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let mut procs: Vec<Process> = (0..4).map(|n| Process::new(work, n)).collect();
    for p in &mut procs {
        p.start()?;
    }
    for p in &mut procs {
        p.join()?;
    }
    let codes: Vec<Option<i32>> = procs.iter().map(Process::exitcode).collect();
    println!("all {} processes finished: {codes:?}", procs.len());
    Ok(())
}
