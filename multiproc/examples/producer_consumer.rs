//! A producer process puts 0 to 4 on a queue, then `None` to say it is done; a consumer process
//! prints each item until it sees `None`. One producer and one consumer: the order is FIFO.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process, Queue
//!
//! def producer(q):
//!     for i in range(5):
//!         q.put(i)
//!     q.put(None)
//!
//! def consumer(q):
//!     while True:
//!         item = q.get()
//!         if item is None:
//!             break
//!         print(f"consumed {item}", flush=True)
//!
//! if __name__ == "__main__":
//!     q = Queue()
//!     p = Process(target=producer, args=(q,)); c = Process(target=consumer, args=(q,))
//!     p.start(); c.start(); p.join(); c.join()
//!     print("done", p.exitcode, c.exitcode)
//! ```
//!
//! The sentinel is `Option::None`: the queue carries `Option<u32>`.

use multiproc::prelude::*;

fn producer(q: Queue<Option<u32>>) {
    for i in 0..5 {
        q.put(Some(i)).unwrap();
    }
    q.put(None).unwrap();
}

fn consumer(q: Queue<Option<u32>>) {
    while let Some(item) = q.get().unwrap() {
        println!("consumed {item}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let q = Queue::new()?;
    let mut p = Process::new(producer, q.clone());
    let mut c = Process::new(consumer, q.clone());
    p.start()?;
    c.start()?;
    p.join()?;
    c.join()?;
    // After `join`, `exitcode()` is `Some(code)`.
    let (pe, ce) = (p.exitcode().expect("joined"), c.exitcode().expect("joined"));
    println!("done {pe} {ce}");
    Ok(())
}
