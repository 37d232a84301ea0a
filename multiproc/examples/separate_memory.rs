//! Processes do not share memory: a global list appended to in a child stays empty in the
//! parent, whatever the start method. (Under `fork` the child starts with a copy of the
//! parent's memory; under `spawn` and `forkserver` it starts from scratch; either way its
//! changes are its own.) Share data with `Value`, `Array`, a `Queue` or a `Pipe` instead.
//!
//! Python:
//!
//! ```python
//! import multiprocessing as mp
//!
//! items = []
//!
//! def append(method):
//!     items.append(f"added by a {method} child")
//!     print("  child: items =", items)
//!
//! if __name__ == "__main__":
//!     for method in ("fork", "spawn", "forkserver"):
//!         print(method)
//!         p = mp.get_context(method).Process(target=append, args=(method,))
//!         p.start(); p.join()
//!         print("  parent: items =", items)
//! ```

use multiproc::prelude::*;
use std::sync::Mutex;

static ITEMS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn append(method: String) {
    let mut items = ITEMS.lock().unwrap();
    items.push(format!("added by a {method} child"));
    println!("  child: items = {items:?}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        println!("{method}");
        let mut p = get_context(method).process(append, method.to_string());
        p.start()?;
        p.join()?;
        println!("  parent: items = {:?}", ITEMS.lock().unwrap());
    }
    Ok(())
}
