//! The crate's error type.

use std::fmt;

use crate::wire::WireError;

/// Everything that can go wrong talking to a manager.
///
/// Errors raised by the server on behalf of a call ([`KeyNotFound`](Error::KeyNotFound),
/// [`IndexOutOfRange`](Error::IndexOutOfRange), [`WrongType`](Error::WrongType), ...) come
/// back as their own variants; a server that cannot be reached or died during a call is
/// [`ManagerGone`](Error::ManagerGone), never a hang or a raw broken pipe (Python's PP17).
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The manager's server is not running (shut down, killed, never started at that address)
    /// or went away during the call. The string says what was seen.
    ManagerGone(String),
    /// The server refused the authkey (or the handshake failed): nothing was called.
    Authentication(String),
    /// A dict has no such key (Python's `KeyError`), a namespace no such field
    /// (`AttributeError`).
    KeyNotFound,
    /// A list index past its end (Python's `IndexError`).
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The list's length at the time.
        len: u64,
    },
    /// The object (or the namespace field) holds another type than the proxy asks for, or a
    /// stored value does not decode as the asked type.
    WrongType {
        /// What the caller asked for.
        expected: String,
        /// What the server holds.
        found: String,
    },
    /// The object was destroyed, or no object has that name.
    NoSuchObject(String),
    /// A manager queue was empty (`try_get`, `get_timeout`; Python's `queue.Empty`).
    Empty,
    /// A bounded manager queue was full (`try_put`, `put_timeout`; Python's `queue.Full`).
    Full,
    /// A barrier is broken (aborted, reset while waited on, or a wait timed out; Python's
    /// `BrokenBarrierError`).
    BrokenBarrier,
    /// Releasing a lock this thread does not hold, or waiting on/notifying a condition
    /// without holding its lock (Python's `RuntimeError`).
    NotOwner(String),
    /// A bounded semaphore was released more times than acquired (Python's `ValueError`).
    OverReleased,
    /// `task_done` was called more times than items were put (Python's `ValueError`).
    TaskDoneTooManyTimes,
    /// No user type of that name is registered with the server.
    Unregistered(String),
    /// A registered user type's handler panicked in the server; the message.
    Remote(String),
    /// A value could not be encoded or decoded on this side.
    Codec(String),
    /// The peer broke the protocol (a reply of the wrong shape, a malformed request).
    Protocol(String),
    /// The operation needs the manager that started the server, in the process that started
    /// it (`shutdown` on a manager reached with `connect`, or on a copy in a forked child).
    NotServerOwner,
    /// A bad argument (an empty authkey, zero barrier parties, ...).
    InvalidArgument(String),
    /// Starting the server process failed.
    Start(proc_spawn::Error),
    /// The server process started but could not listen; its message.
    Bind(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ManagerGone(why) => write!(f, "the manager is gone: {why}"),
            Error::Authentication(why) => {
                write!(f, "authentication with the manager failed: {why}")
            }
            Error::KeyNotFound => f.write_str("key not found"),
            Error::IndexOutOfRange { index, len } => {
                write!(f, "index {index} out of range for a list of length {len}")
            }
            Error::WrongType { expected, found } => {
                write!(
                    f,
                    "wrong type: asked for {expected}, the manager holds {found}"
                )
            }
            Error::NoSuchObject(what) => write!(f, "no such object: {what}"),
            Error::Empty => f.write_str("queue is empty"),
            Error::Full => f.write_str("queue is full"),
            Error::BrokenBarrier => f.write_str("barrier is broken"),
            Error::NotOwner(why) => write!(f, "not the owner: {why}"),
            Error::OverReleased => f.write_str("semaphore released too many times"),
            Error::TaskDoneTooManyTimes => f.write_str("task_done() called too many times"),
            Error::Unregistered(name) => {
                write!(f, "no type named {name:?} is registered with the manager")
            }
            Error::Remote(msg) => write!(f, "the shared object's handler panicked: {msg}"),
            Error::Codec(why) => write!(f, "value cannot be encoded or decoded: {why}"),
            Error::Protocol(why) => write!(f, "manager protocol error: {why}"),
            Error::NotServerOwner => {
                f.write_str("only the manager that started the server can shut it down")
            }
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::Start(e) => write!(f, "cannot start the manager's server: {e}"),
            Error::Bind(why) => write!(f, "the manager's server cannot listen: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Start(e) => Some(e),
            _ => None,
        }
    }
}

impl From<proc_spawn::Error> for Error {
    fn from(e: proc_spawn::Error) -> Self {
        Error::Start(e)
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        match e {
            WireError::KeyNotFound => Error::KeyNotFound,
            WireError::IndexOutOfRange { index, len } => Error::IndexOutOfRange { index, len },
            WireError::WrongType { expected, found } => Error::WrongType { expected, found },
            WireError::NoSuchObject(w) => Error::NoSuchObject(w),
            WireError::Empty => Error::Empty,
            WireError::Full => Error::Full,
            WireError::Timeout => Error::Protocol("unexpected timeout".into()),
            WireError::BrokenBarrier => Error::BrokenBarrier,
            WireError::NotOwner(w) => Error::NotOwner(w),
            WireError::OverReleased => Error::OverReleased,
            WireError::TaskDoneTooManyTimes => Error::TaskDoneTooManyTimes,
            WireError::Unregistered(n) => Error::Unregistered(n),
            WireError::Remote(m) => Error::Remote(m),
            WireError::BadRequest(m) => {
                Error::Protocol(format!("the server refused the request: {m}"))
            }
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
