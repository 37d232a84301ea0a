//! Messaging between processes for multiproc: Python's `Pipe`/`Connection`, `Queue`,
//! `SimpleQueue`, `JoinableQueue` and `multiprocessing.connection.Listener`/`Client`, with typed
//! serde messages and OS handles (queues, locks, shared memory, connections) travelling inside
//! them.
//!
//! - [`Pipe::new`] gives two connected duplex [`Connection`]s, [`Pipe::simplex`] a
//!   `(reader, writer)` pair. A connection sends any serde value ([`Connection::send`],
//!   [`Connection::recv`]) or raw bytes, as length-prefixed frames with 64-bit lengths, a
//!   configurable maximum size and strict checking of what arrives: a peer that closes is
//!   [`Error::Eof`], a malformed stream a distinct error, never a panic.
//! - [`Queue`] is a multi-producer, multi-consumer FIFO with Python's semantics (`put`/`get`
//!   with `_timeout` and `try_` forms, [`Error::Full`]/[`Error::Empty`], `qsize`, `empty`,
//!   `full`, `close`) and two [`Backend`]s: a shared-memory chunk ring (default; an unbounded
//!   `put` never blocks) and a seqpacket socketpair (items may carry OS handles). `put` returns
//!   only once the item is in the queue. [`Queue::get_with`] is the zero-copy receive: a
//!   closure reads the item where it lies (as `&[u8]`, `&str`, or a borrowing struct; see
//!   [`Record`] and [`Bytes`]). [`SimpleQueue`] and [`JoinableQueue`] build on it.
//! - [`Listener`] and [`Client`] connect unrelated processes over a Unix socket or TCP, with a
//!   mutual HMAC-SHA256 challenge when an authkey is given.
//!
//! # Example
//!
//! ```
//! use ipc_channel_core::{Error, Pipe, Queue};
//! use std::time::Duration;
//!
//! let (a, b) = Pipe::new()?;
//! a.send(&"hello".to_string())?;
//! assert_eq!(b.recv::<String>()?, "hello");
//!
//! // A connection travels inside a message; so does a queue.
//! let (x, y) = Pipe::new()?;
//! a.send(&y)?;
//! let y: ipc_channel_core::Connection = b.recv()?;
//! y.send(&42u8)?;
//! assert_eq!(x.recv::<u8>()?, 42);
//!
//! let q: Queue<Option<u32>> = Queue::new()?;
//! for i in 0..5 {
//!     q.put(Some(i))?;
//! }
//! q.put(None)?;
//! while let Some(i) = q.get()? {
//!     println!("consumed {i}");
//! }
//! assert!(matches!(q.get_timeout(Duration::from_millis(1)), Err(Error::Empty)));
//! # Ok::<(), Error>(())
//! ```
//!
//! Cross-process use (a child started with a queue or a connection as its argument) is shown
//! one layer up, in `proc-spawn` and `multiproc`; the tests `xproc_connection.rs` and
//! `xproc_queue.rs` run every feature here between real processes.
//!
//! # Platform support
//!
//! Linux. Relied on: Unix `SOCK_STREAM` and `SOCK_SEQPACKET` socketpairs with `SCM_RIGHTS`
//! (descriptor passing), `MSG_CMSG_CLOEXEC`, `poll`, `getrandom(2)` (handshake challenges),
//! memfd segments from ipc-shm with `fallocate(PUNCH_HOLE)` (the shm queue returns pages),
//! and ipc-sync's futexes (`FUTEX_WAIT_BITSET`, Linux 2.6.25+) and robust locks. TCP listeners
//! work on any address; the tests use 127.0.0.1 only.
//!
//! # Cargo features
//!
//! None for users. `testing-hooks` exists for this crate's own tests (its dev-dependency on
//! itself turns it on): it exposes hidden hooks that hold a queue's locks or make a process
//! die at chosen points inside `put`/`get`; it is not part of the API and nothing else should
//! enable it. `--cfg ipc_loom` (not a feature) builds only what the loom model of the shared-memory
//! queue algorithm needs (`tests/loom_shm_ring.rs`, run by `cargo xtask test`).
//!
//! # Safety model
//!
//! Unsafe code lives only in the shared-memory queue backend (`flavors/shm_ring.rs`): raw
//! copies into the queue's mapping, and a byte slice over a committed record that the consumer
//! decodes in place ([`Queue::get`]) or hands to the closure of [`Queue::get_with`]. Every
//! chunk index, offset and length read from shared memory is range-checked before a pointer is
//! formed from it, so another process that corrupts the queue's control block can make it
//! return errors ([`Error::Shm`]) or wrong bytes (which then fail to decode), never an access
//! outside the mapping.
//!
//! **Trust boundary.** The byte slice over a record is sound because of the queue's protocol:
//! the producer's writes to a record happen before its commit (a release store that the
//! consumer reads with acquire), and no process writes into a committed record until the
//! consumer that holds it moves the head past it, which happens only after the decode (or
//! the closure of `get_with`) returns. So while the slice exists the bytes are immutable, as a
//! `&[u8]` requires. Every process holding a handle to the queue can map its memory read-write,
//! though, and the crate cannot stop one that does not run this protocol (a foreign or
//! compromised program, or memory corruption in a peer) from writing into a record while a
//! consumer borrows it. That is a data race on memory Rust assumes immutable: undefined
//! behaviour in the consumer, not merely wrong bytes (for example a `&str` that was valid
//! UTF-8 when checked could stop being so, also in a `String` decoded from it). Treat every
//! process that holds a shm-backed queue as inside the trust boundary of every other: the
//! same rule as for any memory mapped shared with another process. Across a trust boundary,
//! use [`Backend::Pipe`], whose records are copied out of the kernel into private memory and
//! then parsed as untrusted input. Everything received from a socket is parsed so: lengths
//! are checked against the maximum before any allocation, buffers grow only as bytes
//! actually arrive, and descriptor counts are checked against what arrived.

#![deny(missing_docs)]
// Under `--cfg ipc_loom` only the shm ring algorithm is checked, by `tests/loom_shm_ring.rs`
// (which includes `flavors/ring_core.rs` by path); the rest needs real sockets and shared
// memory, and loom atomics must never be placed in a mapping, so it is compiled out.
#![cfg_attr(ipc_loom, allow(unused))]

#[cfg(not(ipc_loom))]
mod codec;
#[cfg(not(ipc_loom))]
mod connection;
#[cfg(not(ipc_loom))]
mod err;
#[cfg(not(ipc_loom))]
mod flavors;
#[cfg(not(ipc_loom))]
mod joinable_queue;
#[cfg(not(ipc_loom))]
mod listener;
#[cfg(not(ipc_loom))]
mod queue;
#[cfg(not(ipc_loom))]
mod simple_queue;

#[cfg(not(ipc_loom))]
pub use connection::{Connection, Pipe, DEFAULT_MAX_MESSAGE_SIZE, MAX_RECORD};
#[cfg(not(ipc_loom))]
pub use err::Error;
/// Crash points for the cross-process tests' hooks. Not part of the API.
#[cfg(all(not(ipc_loom), feature = "testing-hooks"))]
#[doc(hidden)]
pub use flavors::ring_core::CrashPoint as __CrashPoint;
#[cfg(not(ipc_loom))]
pub use flavors::shm_ring::DEFAULT_RESERVE;
#[cfg(not(ipc_loom))]
pub use flavors::Backend;
#[cfg(not(ipc_loom))]
pub use joinable_queue::JoinableQueue;
#[cfg(not(ipc_loom))]
pub use listener::{Address, Client, Listener, DEFAULT_HANDSHAKE_TIMEOUT};
#[cfg(not(ipc_loom))]
pub use queue::{Bytes, Queue, QueueBuilder, Record};
#[cfg(not(ipc_loom))]
pub use simple_queue::SimpleQueue;
