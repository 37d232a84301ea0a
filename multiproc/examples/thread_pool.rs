//! `multiprocessing.dummy`: the pool API on threads of this process. Nothing crosses a process
//! boundary, so the function may be any closure, capturing whatever it likes, and everything
//! runs under this process's pid.
//!
//! Python:
//!
//! ```python
//! import os
//! from multiprocessing.dummy import Pool as ThreadPool
//!
//! def square(x):
//!     return x * x
//!
//! if __name__ == "__main__":
//!     with ThreadPool(4) as pool:
//!         print(pool.map(square, range(10)))
//!         print(pool.map(lambda x: x + 1, [1, 2, 3]))
//!         print("same pid:", set(pool.map(lambda _: os.getpid(), range(8))) == {os.getpid()})
//! ```
//!
//! Use a `ThreadPool` for work that waits (I/O, sleeping, other processes) or that needs to
//! share plain Rust data; use a `Pool` for CPU-bound work in separate processes.

use multiproc::prelude::*;
use std::collections::HashSet;

fn square(x: i64) -> i64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let pool = ThreadPool::new(4)?;
    println!("{:?}", pool.map(square, 0..10)?);
    println!("{:?}", pool.map(|x: i64| x + 1, [1, 2, 3])?);

    let me = std::process::id();
    let pids: HashSet<u32> = pool
        .map(|_: u32| std::process::id(), 0..8)?
        .into_iter()
        .collect();
    println!("same pid: {}", pids == HashSet::from([me]));

    // A closure that captures: here a shared, plain Rust vector.
    let words = std::sync::Arc::new(vec!["zero", "one", "two", "three"]);
    let named = pool.map(move |i: usize| words[i].len(), 0..4)?;
    println!("lengths of captured words: {named:?}");
    Ok(())
}
