//! A shared array doubled in place by a child: the parent sees `[2, 4, 6, 8, 10]`.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process, Array
//!
//! def double(arr):
//!     for i in range(len(arr)):
//!         arr[i] *= 2
//!
//! if __name__ == "__main__":
//!     arr = Array("i", [1, 2, 3, 4, 5])
//!     p = Process(target=double, args=(arr,)); p.start(); p.join()
//!     print(arr[:])
//! ```
//!
//! `arr.lock()` holds the array's lock and derefs to a `[i32]` slice for the whole loop.

use multiproc::prelude::*;

fn double(arr: Array<i32>) {
    let mut items = arr.lock();
    for x in items.iter_mut() {
        *x *= 2;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let arr = Array::from_slice(&[1i32, 2, 3, 4, 5])?;
    let mut p = Process::new(double, arr.clone());
    p.start()?;
    p.join()?;
    println!("{:?}", arr.to_vec());
    Ok(())
}
