//! A child process says hello; the parent prints before starting it and after joining it.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process
//!
//! def hello(name):
//!     print("hello", name, "from the child")
//!
//! if __name__ == "__main__":
//!     p = Process(target=hello, args=("world",))
//!     print("parent: starting the child")
//!     p.start()
//!     p.join()
//!     print("parent: the child is done, exitcode", p.exitcode)
//! ```
//!
//! Run it with `cargo run --example process_hello`.

use multiproc::prelude::*;

fn hello(name: String) {
    println!("hello {name} from the child");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first line: in a child, this runs `hello` and exits

    let mut p = Process::new(hello, "world".to_string());
    println!("parent: starting the child");
    p.start()?;
    p.join()?;
    println!("parent: the child is done, exitcode {:?}", p.exitcode());
    Ok(())
}
