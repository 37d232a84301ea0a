//! How `chunksize` changes the number of tasks: `map` sends the workers chunks of `chunksize`
//! items, one chunk per task. With `max_tasks_per_child(1)` each task gets a fresh worker
//! process, so the number of distinct worker pids counts the tasks: 24 items make 24 tasks
//! with chunksize 1, 12 with 2, 8 with 3. Without a chunksize `map` uses Python's rule,
//! `ceil(n / (4 * workers))`: 2 here, so 12 tasks.
//!
//! Python:
//!
//! ```python
//! import os
//! from multiprocessing import Pool
//!
//! def whoami(_):
//!     return os.getpid()
//!
//! if __name__ == "__main__":
//!     for cs in (None, 1, 2, 3):
//!         with Pool(4, maxtasksperchild=1) as pool:
//!             pids = pool.map(whoami, range(24), chunksize=cs)
//!         print(f"chunksize={cs}: tasks={len(set(pids))}")
//! ```
//!
//! Larger chunks mean fewer messages (cheaper for many small items); smaller chunks balance
//! the load better when items take uneven time.

use multiproc::prelude::*;
use std::collections::HashSet;

fn whoami(_: u32) -> u32 {
    std::process::id()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    for chunksize in [None, Some(1), Some(2), Some(3)] {
        let pool = Pool::builder()
            .processes(4)
            .max_tasks_per_child(1)
            .build()?;
        let pids = match chunksize {
            None => pool.map(whoami, 0..24)?,
            Some(cs) => pool.map_chunked(whoami, 0..24, cs)?,
        };
        let tasks = pids.iter().collect::<HashSet<_>>().len();
        match chunksize {
            None => println!("chunksize=default: tasks={tasks}"),
            Some(cs) => println!("chunksize={cs}: tasks={tasks}"),
        }
    }
    Ok(())
}
