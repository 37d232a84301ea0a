//! Process pools for multiproc: Python's `multiprocessing.Pool` (and its thread twin,
//! `ThreadPool`), better where Python is known to fail — a worker that dies fails its task
//! instead of hanging the pool, errors are plain data, `imap` is lazy, dropping a pool resolves
//! every pending result.
//!
//! - [`Pool`]: `new(n)`, [`Pool::builder`] (`processes`, `initializer`,
//!   `max_tasks_per_child`, `context`); `map`, `map_async`, `imap`, `imap_unordered`,
//!   `starmap` (functions of 2 arguments; `starmap3`, `starmap4`), `starmap_async`, `apply`,
//!   `apply_async`, their `_chunked` forms and `_with` forms taking [`Callbacks`]; `close`,
//!   `terminate`, `join`.
//! - [`AsyncResult`]: `get`, `get_timeout`, `wait`, `wait_timeout`, `ready`, `successful`.
//! - [`IMap`]: the lazy iterator of `Result<R>` behind `imap`.
//! - [`ThreadPool`]: the same API on threads, for closures that capture.
//! - [`Error`] (alias [`TaskError`]): `Panicked`, `WorkerLost`, `InitializerFailed`,
//!   `Timeout`, `Interrupted`, `NotRunning`, `Terminated`, ...
//!
//! # Example
//!
//! ```
//! use proc_pool::{Error, Pool};
//!
//! fn square(x: i64) -> i64 {
//!     x * x
//! }
//!
//! fn checked_div((a, b): (i64, i64)) -> i64 {
//!     if b == 0 {
//!         panic!("division of {a} by zero");
//!     }
//!     a / b
//! }
//!
//! fn main() -> Result<(), Error> {
//!     proc_pool::init(); // first line of main: Rust's `if __name__ == "__main__"`
//!
//!     let pool = Pool::new(4)?;
//!     assert_eq!(pool.map(square, 0..10)?, vec![0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//!
//!     // Lazy, in order, over an endless input:
//!     let first: Vec<i64> = pool.imap(square, 0..).take(5).collect::<Result<_, _>>()?;
//!     assert_eq!(first, vec![0, 1, 4, 9, 16]);
//!
//!     // A panicking task is an error value; the pool goes on.
//!     match pool.apply(checked_div, (1, 0)) {
//!         Err(Error::Panicked { message, .. }) => assert_eq!(message, "division of 1 by zero"),
//!         other => panic!("unexpected {other:?}"),
//!     }
//!     assert_eq!(pool.apply(checked_div, (9, 3))?, 3);
//!
//!     let r = pool.apply_async(square, 7);
//!     assert_eq!(r.get()?, 49);
//!     pool.close();
//!     pool.join()
//! }
//! ```
//!
//! # How tasks reach the workers
//!
//! Workers are daemon processes started by proc-spawn with the pool's start method
//! (`ForkServer` by default on Linux, or the [`Context`](proc_spawn::Context) given to the
//! builder); they die with the parent. A task is a function pointer `fn(A) -> R` — a `fn` item,
//! or a closure that captures nothing — with serde arguments: the function travels as its
//! offset in the executable, together with a trampoline monomorphised for its exact types, and
//! the worker refuses any address outside its own code ([`proc_spawn::RemoteFn`]; the worker
//! runs the very executable of the parent, which proc-spawn checks when it starts it). Arguments and
//! results are postcard-encoded and may contain multiproc handles (queues, locks, shared
//! memory, connections), which travel with their descriptors.
//!
//! Each worker has its own duplex connection and the pool records which chunks each worker
//! holds, in order; a result thread watches every connection and every worker's pidfd. When a
//! worker dies, only the chunk it was running fails, with [`Error::WorkerLost`]; the chunks
//! queued behind it are sent to other workers, and a replacement is started (Python hangs, PP1).
//!
//! `map` splits its input into chunks of `ceil(n / (4 × workers))` items (Python's rule) unless
//! given a chunksize; `imap` sends one item per task by default and pulls its input lazily, at
//! most `4 × workers` chunks ahead (Python's `imap` reads its whole input first, PP10).
//!
//! # Ctrl-C
//!
//! Workers ignore `SIGINT`. A thread of the parent blocked in a pool call (`get`, `map`, an
//! `imap` step, `join`) returns [`Error::Interrupted`] when `SIGINT` arrives, if `SIGINT` has
//! its default action: a handler is installed only while such a call waits, so Ctrl-C anywhere
//! else still ends the program. The work goes on; `terminate` (or dropping the pool) stops it.
//!
//! # Platform support
//!
//! Linux (what proc-spawn and ipc-channel-core support): pidfds (Linux 5.4), `poll`,
//! `/proc/self/maps` and `/proc/self/exe` to check function addresses.
//!
//! # Cargo features
//!
//! None.
//!
//! # Safety model
//!
//! The crate forbids `unsafe` code. Naming a function across processes — the address
//! arithmetic, the check that both addresses lie in the worker's own code, the trampoline
//! monomorphised for the function's exact type — is [`proc_spawn::RemoteFn`]'s; installing the
//! `SIGINT` dispositions is [`proc_spawn::InterruptScope`]'s and [`proc_spawn::ignore_sigint`]'s.
//! Bytes from a worker are untrusted: a malformed result is an [`Error::Decode`] for its task.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod async_result;
mod error;
mod fnref;
mod imap;
mod pool;
mod thread_pool;
mod waiting;
mod wire;
mod worker;

pub use async_result::{AsyncResult, Callbacks};
pub use error::{Error, Result, TaskError};
pub use imap::IMap;
pub use pool::{Pool, PoolBuilder};
pub use thread_pool::{StarFn, ThreadPool, ThreadPoolBuilder};

/// Rust's `if __name__ == "__main__"`: call it on the first line of `main` (the same as
/// [`proc_spawn::init`]). In the parent it returns at once; in a worker process started with
/// the `Spawn` or `ForkServer` method it runs the worker and exits (normally this already
/// happened before `main`, through proc-spawn's life-before-main hook).
pub fn init() {
    proc_spawn::init();
}

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        send_sync::<crate::Pool>();
        send_sync::<crate::ThreadPool>();
        send_sync::<crate::AsyncResult<Vec<String>>>();
        send_sync::<crate::Error>();
    }
}
