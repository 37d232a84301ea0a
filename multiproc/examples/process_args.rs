//! Arguments for a child: one value, or several as a tuple destructured in the signature.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process
//!
//! def greet(name):
//!     print("hello", name)
//!
//! def greet_times(name, times):
//!     for i in range(times):
//!         print(f"hello {name} ({i + 1} of {times})")
//!
//! if __name__ == "__main__":
//!     p = Process(target=greet, args=("bob",))
//!     p.start(); p.join()
//!     p = Process(target=greet_times, args=("alice", 2))
//!     p.start(); p.join()
//! ```
//!
//! Arguments are serde values: they are encoded in the parent and decoded in the child, so a
//! child gets its own copy (and handles such as a `Queue` or a `Value` reach the same object).

use multiproc::prelude::*;

fn greet(name: String) {
    println!("hello {name}");
}

// Several arguments travel as one tuple.
fn greet_times((name, times): (String, u32)) {
    for i in 0..times {
        println!("hello {name} ({} of {times})", i + 1);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let mut p = Process::new(greet, "bob".to_string());
    p.start()?;
    p.join()?;

    let mut p = Process::new(greet_times, ("alice".to_string(), 2));
    p.start()?;
    p.join()?;
    Ok(())
}
