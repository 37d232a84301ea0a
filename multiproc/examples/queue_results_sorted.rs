//! Five processes each put one result `(x, x * x)` on a shared queue; they finish in any order,
//! so the parent collects the five results and sorts them.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process, Queue
//!
//! def square(x, q):
//!     q.put((x, x * x))
//!
//! if __name__ == "__main__":
//!     q = Queue()
//!     procs = [Process(target=square, args=(x, q)) for x in range(5)]
//!     for p in procs: p.start()
//!     results = sorted(q.get() for _ in procs)
//!     for p in procs: p.join()
//!     print(results)
//! ```

use multiproc::prelude::*;

fn square((x, q): (u64, Queue<(u64, u64)>)) {
    q.put((x, x * x)).unwrap();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let q = Queue::new()?;
    let mut procs: Vec<Process> = (0..5)
        .map(|x| Process::new(square, (x, q.clone())))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    let mut results = procs
        .iter()
        .map(|_| q.get())
        .collect::<Result<Vec<_>, _>>()?;
    for p in &mut procs {
        p.join()?;
    }
    results.sort();
    println!("{results:?}");
    Ok(())
}
