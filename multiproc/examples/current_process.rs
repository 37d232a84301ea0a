//! Who am I, who started me: [`current_process`] and [`parent_process`] in the main process and
//! in children, with a default name (`Process-1`) and a chosen one (`worker-A`).
//!
//! Python:
//!
//! ```python
//! import os
//! from multiprocessing import Process, current_process, parent_process
//!
//! def show(main_pid):
//!     me, parent = current_process(), parent_process()
//!     print("child:", me.name, "pid matches:", me.pid == os.getpid(),
//!           "parent:", parent.name, "parent pid matches:", parent.pid == main_pid)
//!
//! if __name__ == "__main__":
//!     print("main:", current_process().name, "parent_process():", parent_process())
//!     p = Process(target=show, args=(os.getpid(),)); p.start(); p.join()
//!     p = Process(target=show, args=(os.getpid(),), name="worker-A"); p.start(); p.join()
//! ```
//!
//! Under the fork server the OS parent of a child is the server, not this program; the
//! `parent_process()` of a child is always the process that started it.

use multiproc::prelude::*;

fn show(main_pid: u32) {
    let me = current_process();
    let parent = parent_process().expect("a child has a parent");
    println!(
        "child: {} pid {} (matches the OS: {}), parent: {} pid {} (matches main: {})",
        me.name(),
        me.pid(),
        me.pid() == std::process::id(),
        parent.name(),
        parent.pid(),
        parent.pid() == main_pid,
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let me = current_process();
    println!(
        "main: {} pid {} (matches the OS: {}), parent_process(): {:?}",
        me.name(),
        me.pid(),
        me.pid() == std::process::id(),
        parent_process()
    );

    let mut p = Process::new(show, std::process::id());
    p.start()?;
    p.join()?;

    let mut p = Process::new(show, std::process::id()).name("worker-A");
    p.start()?;
    p.join()?;
    Ok(())
}
