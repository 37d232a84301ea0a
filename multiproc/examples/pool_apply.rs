//! One call at a time: `apply` runs `f(arg)` in a worker and waits; `apply_async` returns an
//! [`AsyncResult`] at once, so several calls run side by side. A task that panics is an error
//! value (`PoolError::Panicked`), and the pool goes on.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Pool
//!
//! def square(x):
//!     return x * x
//!
//! def inverse(x):
//!     return 1 / x
//!
//! if __name__ == "__main__":
//!     with Pool(4) as pool:
//!         print("apply(square, 10) =", pool.apply(square, (10,)))
//!         r = pool.apply_async(square, (20,))
//!         print("apply_async(square, 20).get(timeout=5) =", r.get(timeout=5))
//!         results = [pool.apply_async(square, (x,)) for x in range(8)]
//!         print("eight apply_async:", [r.get() for r in results])
//!         try:
//!             pool.apply(inverse, (0,))
//!         except ZeroDivisionError as e:
//!             print("apply(inverse, 0) failed:", e)
//!         print("the pool goes on: apply(inverse, 4) =", pool.apply(inverse, (4,)))
//! ```

use multiproc::prelude::*;
use multiproc::PoolError;
use std::time::Duration;

fn square(x: i64) -> i64 {
    x * x
}

fn inverse(x: i64) -> f64 {
    if x == 0 {
        panic!("division by zero");
    }
    1.0 / x as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let pool = Pool::new(4)?;
    println!("apply(square, 10) = {}", pool.apply(square, 10)?);

    let r = pool.apply_async(square, 20);
    println!(
        "apply_async(square, 20).get_timeout(5 s) = {}",
        r.get_timeout(Duration::from_secs(5))?
    );

    let results: Vec<AsyncResult<i64>> = (0..8).map(|x| pool.apply_async(square, x)).collect();
    let values = results
        .iter()
        .map(AsyncResult::get)
        .collect::<Result<Vec<_>, _>>()?;
    println!("eight apply_async: {values:?}");

    match pool.apply(inverse, 0) {
        Err(PoolError::Panicked { message, .. }) => println!("apply(inverse, 0) failed: {message}"),
        other => println!("apply(inverse, 0) unexpectedly gave {other:?}"),
    }
    println!(
        "the pool goes on: apply(inverse, 4) = {}",
        pool.apply(inverse, 4)?
    );
    Ok(())
}
