//! The three start methods, chosen per context with [`get_context`]: each context starts a child
//! that answers through a queue of its own.
//!
//! Python:
//!
//! ```python
//! import multiprocessing as mp
//!
//! def answer(q, method):
//!     q.put(f"hello from a child started by {method}")
//!
//! if __name__ == "__main__":
//!     print("available:", mp.get_all_start_methods())
//!     for method in ("fork", "spawn", "forkserver"):
//!         ctx = mp.get_context(method)
//!         q = ctx.Queue()
//!         p = ctx.Process(target=answer, args=(q, method))
//!         p.start()
//!         print(f"{method}: {q.get()}")
//!         p.join()
//! ```
//!
//! - `fork`: the child is a copy of this process (fastest; runs closures too; unsafe when other
//!   threads hold locks at the moment of the fork).
//! - `spawn`: the child runs this executable afresh (slowest, most isolated).
//! - `forkserver` (the default on Linux): a single-threaded server forks each child.
//!
//! A multiproc queue does not depend on the start method (Python's `ctx.Queue()`): any handle
//! reaches a child started by any method.

use multiproc::prelude::*;

fn answer((q, method): (Queue<String>, String)) {
    let me = current_process();
    q.put(format!("{} says hello (started by {method})", me.name()))
        .unwrap();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let all: Vec<String> = get_all_start_methods()
        .iter()
        .map(|m| m.to_string())
        .collect();
    println!("available: {all:?}");
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        let ctx = get_context(method);
        let q = Queue::new()?;
        let mut p = ctx
            .process(answer, (q.clone(), method.to_string()))
            .name(format!("{method}-child"));
        p.start()?;
        println!("{method}: {}", q.get()?);
        p.join()?;
        println!("{method}: exitcode {:?}", p.exitcode());
    }
    Ok(())
}
