//! Managers for multiproc: a server process that owns shared objects, and typed proxies that
//! any process — a child under any start method, or an unrelated program over TCP — uses to
//! reach them (Python's `multiprocessing.Manager()`, `SyncManager`, `BaseManager`).
//!
//! - [`Manager::start`] starts the server (a daemon child, started with the program's start
//!   method or the [`Context`](proc_spawn::Context) given to [`ManagerBuilder::context`]);
//!   [`Manager::connect`] reaches one elsewhere by address and authkey;
//!   [`Manager::shutdown`], or dropping the last clone, stops it.
//! - Containers of serde values: [`DictProxy`], [`ListProxy`], [`NamespaceProxy`],
//!   [`ValueProxy`]; synchronization objects hosted in the server: [`QueueProxy`],
//!   [`LockProxy`], [`RLockProxy`], [`SemaphoreProxy`], [`EventProxy`], [`ConditionProxy`],
//!   [`BarrierProxy`]; your own types: [`Shared`] + [`ManagerBuilder::register`] +
//!   [`Manager::create`] → [`Proxy`].
//! - Every proxy is `Clone`, `Send + Sync` and serde: it carries the server's address and
//!   authkey and an object id, so it travels inside a `Process`'s arguments, a queue or a
//!   connection, and the receiving process connects lazily on its first call. Each call is
//!   one request and one answer over that thread's connection to the server.
//!
//! # Python and Rust, side by side
//!
//! ```text
//! from multiprocessing import Manager, Process    | use proc_manager::{DictProxy, ListProxy, Manager};
//!                                                 | use proc_spawn::Process;
//! def f(d, l):                                    | fn f((d, l): (DictProxy<u32, f64>, ListProxy<u32>)) {
//!     d[1] = 0.25                                 |     d.insert(1, 0.25).unwrap();
//!     l.append(7)                                 |     l.push(7).unwrap();
//!                                                 | }
//! with Manager() as manager:                      | let manager = Manager::start()?;
//!     d = manager.dict()                          | let d = manager.dict::<u32, f64>()?;
//!     l = manager.list(range(10))                 | let l = manager.list::<u32>()?; l.extend(0..10)?;
//!     p = Process(target=f, args=(d, l))          | let mut p = Process::new(f, (d.clone(), l.clone()));
//!     p.start(); p.join()                         | p.start()?; p.join()?;
//!     d[2]                                        | d.get_item(&2)            // Err(KeyNotFound)
//!     d.get(2)                                    | d.get(&2)?                // None
//!     d['k'].append(1)   # silently lost (PP17)   | d.update_with(&k, |v| ..) // atomic, on the server
//! m = BaseManager(("", 50000), authkey=b"abc")    | Manager::builder().address("0.0.0.0:50000")
//! m.register("Counter", Counter); m.start()       |     .authkey(b"abc").register::<Counter>().start()?
//! BaseManager(addr, authkey=b"abc").connect()     | Manager::connect(addr, b"abc")?
//! ```
//!
//! # Example
//!
//! ```
//! use proc_manager::{DictProxy, ListProxy, Manager};
//! use proc_spawn::Process;
//!
//! fn f((d, l): (DictProxy<u32, f64>, ListProxy<u32>)) {
//!     d.insert(1, 0.25).unwrap();
//!     d.insert(2, 0.5).unwrap();
//!     let mut items = l.to_vec().unwrap();
//!     items.reverse();
//!     l.clear().unwrap();
//!     l.extend(items).unwrap();
//! }
//!
//! proc_spawn::init(); // first line of main
//! let manager = Manager::start()?;
//! let d = manager.dict::<u32, f64>()?;
//! let l = manager.list::<u32>()?;
//! l.extend(0..10)?;
//! let mut p = Process::new(f, (d.clone(), l.clone()));
//! p.start()?;
//! p.join()?;
//! assert_eq!(d.items()?, vec![(1, 0.25), (2, 0.5)]);
//! assert_eq!(l.to_vec()?, (0..10).rev().collect::<Vec<u32>>());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics worth knowing
//!
//! - **Values are copies** (PP17). `get` decodes a fresh value; changing it changes nothing
//!   in the server. Store it back, or use `update_with` (dict, list, namespace, value): an
//!   atomic read-modify-write done as a compare-and-set on the server, retried on conflict, so
//!   concurrent updates are never lost. To share a mutable structure inside a container, store
//!   a proxy in it (a `DictProxy<String, ListProxy<u32>>`).
//! - **Object lifetime.** Objects live until [`destroy`](DictProxy::destroy) or until the
//!   server stops; nothing is reference-counted (Python's refcounting leaks nested proxies,
//!   gh-103136, and races a proxy in transit). Objects made with a name
//!   ([`Manager::named`]) are found by name from any process.
//! - **Errors.** A server-side failure is its own variant ([`Error::KeyNotFound`],
//!   [`Error::IndexOutOfRange`], [`Error::WrongType`], [`Error::Empty`], ...); a server that is
//!   gone — shut down, killed, even in the middle of a call — is [`Error::ManagerGone`],
//!   never a hang. A user type's panicking handler is [`Error::Remote`].
//! - **Blocking calls** (lock acquire, queue get, event and barrier wait) wait in the server,
//!   in the thread serving the caller's connection; each thread of each process has its own
//!   connection per server, so one blocked caller never blocks another.
//! - **Locks are owned by a connection**, that is by one thread of one process: only it may
//!   release (else [`Error::NotOwner`]; Python lets anyone release a manager `Lock`), which is
//!   why [`LockGuard`] is not `Send`. When the holder's connection ends while holding — its
//!   process died or was killed, or its thread ended — the server releases the lock and the
//!   next acquirer's guard reports [`LockGuard::owner_died`]` == true`, as ipc-sync's robust
//!   futex locks do. (Under `fork`, a child inherits its parent's open connections; the server
//!   sees the end of a connection only when every copy is closed.) A barrier party that dies
//!   while waiting breaks the barrier.
//! - **Security.** The server authenticates every connection with an HMAC-SHA256 challenge
//!   (both ways) before reading a request; a wrong key is refused before any call. Serialized
//!   proxies contain the key: send them only to processes you trust. The server decodes only
//!   the requests and the registered user types; stored values are opaque bytes to it.
//!
//! # Platform support
//!
//! Linux, as `proc-spawn` and `ipc-channel-core` (Unix sockets, TCP, `SCM_RIGHTS`, pidfds).
//!
//! # Cargo features
//!
//! None.
//!
//! # Safety model
//!
//! No unsafe code (`#![forbid(unsafe_code)]`). Bytes from a client are untrusted: a request
//! that does not decode is answered with an error and the connection goes on; a value that does
//! not decode as the proxy's type is [`Error::WrongType`] in the caller.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod error;
mod manager;
mod proxies;
mod server;
mod shared;
mod sync;
mod wire;

pub use error::{Error, Result};
pub use manager::{AsLock, Manager, ManagerBuilder, Named};
pub use proxies::{DictProxy, ListProxy, NamespaceProxy, ValueProxy};
pub use shared::{Proxy, Registered, Registry, Shared, Types};
pub use sync::{
    BarrierProxy, ConditionProxy, EventProxy, LockGuard, LockProxy, QueueProxy, RLockProxy,
    SemaphoreProxy,
};

/// Rust's `if __name__ == "__main__"` ([`proc_spawn::init`]): call it first in `main` of a
/// program that starts a manager.
pub fn init() {
    proc_spawn::init();
}
