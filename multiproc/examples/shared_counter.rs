//! Four processes each add 1 to a shared counter a million times, each time under the
//! counter's lock: the total is exactly 4000000.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process, Value
//!
//! def increment(counter, n):
//!     for _ in range(n):
//!         with counter.get_lock():
//!             counter.value += 1
//!
//! if __name__ == "__main__":
//!     counter = Value("i", 0)
//!     procs = [Process(target=increment, args=(counter, 1_000_000)) for _ in range(4)]
//!     for p in procs: p.start()
//!     for p in procs: p.join()
//!     print(counter.value)
//! ```
//!
//! `counter.lock()` returns a guard that holds the lock and derefs to the value; the lock is
//! released when the guard goes away, at the end of the statement here. (Without the lock,
//! `counter.set(counter.get() + 1)` loses updates, as `counter.value += 1` does in Python.)

use multiproc::prelude::*;

fn increment((counter, n): (Value<i32>, u32)) {
    for _ in 0..n {
        *counter.lock() += 1;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let counter = Value::new(0i32)?;
    let mut procs: Vec<Process> = (0..4)
        .map(|_| Process::new(increment, (counter.clone(), 1_000_000)))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    for p in &mut procs {
        p.join()?;
    }
    println!("{}", counter.get());
    Ok(())
}
