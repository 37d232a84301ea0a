//! Python's `Process` subclass with a `run()` method: here a type that implements [`Run`],
//! started with [`Process::from_run`]. Five objects print their squares; each process is named
//! after its type, `MyProcess-1` to `MyProcess-5`, as Python names a subclass's processes.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process
//!
//! class MyProcess(Process):
//!     def __init__(self, n):
//!         super().__init__()
//!         self.n = n
//!     def run(self):
//!         print(f"{self.name}: {self.n} squared is {self.n * self.n}")
//!
//! if __name__ == "__main__":
//!     procs = [MyProcess(n) for n in range(1, 6)]
//!     for p in procs: p.start()
//!     for p in procs: p.join()
//! ```
//!
//! The object travels to the child as a serde value, so its type derives `Serialize` and
//! `Deserialize`.

use multiproc::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct MyProcess {
    n: u64,
}

impl Run for MyProcess {
    fn run(self) {
        let name = current_process().name().to_string();
        println!("{name}: {} squared is {}", self.n, self.n * self.n);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let mut procs: Vec<Process> = (1..=5)
        .map(|n| Process::from_run(MyProcess { n }))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    for p in &mut procs {
        p.join()?;
    }
    for p in &procs {
        println!("{} exitcode {:?}", p.get_name(), p.exitcode());
    }
    Ok(())
}
