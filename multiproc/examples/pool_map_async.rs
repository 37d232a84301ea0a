//! `map_async` returns at once with an [`AsyncResult`]: `ready()` is false while the tasks run,
//! `wait()` blocks until they are done, `get()` gives the results.
//!
//! Python:
//!
//! ```python
//! import time
//! from multiprocessing import Pool
//!
//! def square(x):
//!     time.sleep(0.2)
//!     return x * x
//!
//! if __name__ == "__main__":
//!     with Pool(2) as pool:
//!         r = pool.map_async(square, range(4))
//!         print("ready:", r.ready())
//!         r.wait()
//!         print("ready:", r.ready(), "successful:", r.successful())
//!         print(r.get())
//! ```
//!
//! Instead of a sleep (which makes the first `ready()` false only if the machine is fast
//! enough), the tasks here wait for an [`Event`] that the parent sets after its first look: a
//! handle travels inside task arguments like any other value.

use multiproc::prelude::*;

fn square((x, go): (i64, Event)) -> i64 {
    go.wait();
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let pool = Pool::new(2)?;
    let go = Event::new()?;
    let r = pool.map_async(square, (0..4).map(|x| (x, go.clone())));
    println!("ready: {}", r.ready());
    go.set();
    r.wait()?;
    println!("ready: {} successful: {:?}", r.ready(), r.successful());
    println!("{:?}", r.get()?);
    Ok(())
}
