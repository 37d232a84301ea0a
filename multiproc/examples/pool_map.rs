//! The first program of Python's `multiprocessing` documentation: a pool of four worker
//! processes squares the numbers 0 to 9.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Pool
//!
//! def square(x):
//!     return x * x
//!
//! if __name__ == "__main__":
//!     with Pool(4) as pool:
//!         print(pool.map(square, range(10)))
//! ```
//!
//! `map` splits the input into chunks, sends them to the workers and returns the results in
//! input order. The pool stops its workers when it is dropped (the end of Python's `with`).

use multiproc::prelude::*;

fn square(x: i64) -> i64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let pool = Pool::new(4)?;
    println!("{:?}", pool.map(square, 0..10)?);
    Ok(())
}
