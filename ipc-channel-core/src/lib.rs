//! Messaging for multiproc: Python's `Pipe`/`Connection` and `Listener`/`Client`.

#![deny(missing_docs)]

mod codec;
mod connection;
mod err;
mod listener;

pub use connection::{Connection, Pipe, DEFAULT_MAX_MESSAGE_SIZE};
pub use err::Error;
pub use listener::{Address, Client, Listener, DEFAULT_HANDSHAKE_TIMEOUT};
