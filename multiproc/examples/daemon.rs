//! Daemon and non-daemon children, the three cases:
//!
//! 1. a daemon child that finishes before its parent: it just runs to the end;
//! 2. a daemon child still running when the parent exits: it is terminated (`SIGTERM`, as
//!    Python does) — here `d2`, which never prints `d2 done`;
//! 3. a non-daemon child still running when `main` returns: the program waits for it, and it
//!    completes — here `d3`.
//!
//! Python:
//!
//! ```python
//! import time
//! from multiprocessing import Process
//!
//! def work(tag, secs):
//!     print(f"{tag} start", flush=True)
//!     time.sleep(secs)
//!     print(f"{tag} done", flush=True)
//!
//! if __name__ == "__main__":
//!     d1 = Process(target=work, args=("d1", 0.1), daemon=True)
//!     d1.start(); d1.join()
//!     d2 = Process(name="d2", target=work, args=("d2", 60), daemon=True)
//!     d3 = Process(name="d3", target=work, args=("d3", 1), daemon=False)
//!     d2.start(); d3.start()
//!     time.sleep(0.2)
//!     print("main exiting", flush=True)
//! ```
//!
//! Sleeps alone would make the output depend on timing, so here the children report that they
//! started through an [`Event`], and `d3` learns of `d2`'s end through a [`Lock`]: `d2` holds it
//! until it dies; `d3` waits for it, and gets it, with `owner_died()` set, only once `d2` has
//! been terminated by the exit of `main`.

use multiproc::prelude::*;
use std::time::Duration;

const START_LIMIT: Duration = Duration::from_secs(10);

fn d1(_: ()) {
    println!("  d1 start");
    std::thread::sleep(Duration::from_millis(100));
    println!("  d1 done");
}

fn d2((lock, started): (Lock, Event)) {
    let _held = lock.acquire();
    println!("  d2 start: holds the lock, then sleeps for a minute");
    started.set();
    std::thread::sleep(Duration::from_secs(60));
    println!("  d2 done (never printed: main exits first and terminates d2)");
}

fn d3((lock, started): (Lock, Event)) {
    println!("  d3 start: waits for the lock");
    started.set();
    let guard = lock.acquire();
    println!(
        "  d3: got the lock, its holder died: {}",
        guard.owner_died()
    );
    drop(guard);
    std::thread::sleep(Duration::from_millis(300));
    println!("  d3 done");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    println!("case 1: a daemon child that ends before its parent");
    let mut p1 = Process::new(d1, ()).name("d1").daemon(true);
    p1.start()?;
    p1.join()?;
    println!("  d1 exitcode {:?}", p1.exitcode());

    println!("cases 2 and 3: main returns while d2 (daemon) and d3 (not a daemon) still run");
    let lock = Lock::new()?;
    let (started2, started3) = (Event::new()?, Event::new()?);
    let mut p2 = Process::new(d2, (lock.clone(), started2.clone()))
        .name("d2")
        .daemon(true);
    p2.start()?;
    if !started2.wait_timeout(START_LIMIT) {
        return Err("d2 did not start".into());
    }
    let mut p3 = Process::new(d3, (lock.clone(), started3.clone()))
        .name("d3")
        .daemon(false);
    p3.start()?;
    if !started3.wait_timeout(START_LIMIT) {
        return Err("d3 did not start".into());
    }
    println!("main exiting");
    // Returning from main: d2 is terminated, then d3 is joined (and prints its last lines).
    Ok(())
}
