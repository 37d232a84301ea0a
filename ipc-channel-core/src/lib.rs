//! Messaging for multiproc: Python's `Pipe`/`Connection`, `Queue`, `SimpleQueue`,
//! `JoinableQueue` and `Listener`/`Client`.

#![deny(missing_docs)]

mod codec;
mod connection;
mod err;
mod flavors;
mod joinable_queue;
mod listener;
mod queue;
mod simple_queue;

pub use connection::{Connection, Pipe, DEFAULT_MAX_MESSAGE_SIZE};
pub use err::Error;
pub use flavors::shm_ring::DEFAULT_RESERVE;
pub use flavors::Backend;
pub use joinable_queue::JoinableQueue;
pub use listener::{Address, Client, Listener, DEFAULT_HANDSHAKE_TIMEOUT};
pub use queue::{Queue, QueueBuilder};
pub use simple_queue::SimpleQueue;
