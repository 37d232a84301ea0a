//! A child that would sleep for a minute is terminated: `terminate()` sends `SIGTERM`, and the
//! exit code of a process killed by signal N is -N, so -15.
//!
//! Python:
//!
//! ```python
//! import time
//! from multiprocessing import Process
//!
//! def sleeper():
//!     time.sleep(60)
//!
//! if __name__ == "__main__":
//!     p = Process(target=sleeper); p.start()
//!     print("before:", p.is_alive(), p.exitcode)
//!     p.terminate()
//!     p.join()
//!     print("after:", p.is_alive(), p.exitcode)
//! ```

use multiproc::prelude::*;
use std::time::Duration;

fn sleeper(_: ()) {
    std::thread::sleep(Duration::from_secs(60));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let mut p = Process::new(sleeper, ());
    p.start()?;
    println!("before: {} {:?}", p.is_alive(), p.exitcode());
    p.terminate()?;
    p.join()?;
    println!("after: {} {:?}", p.is_alive(), p.exitcode());
    Ok(())
}
