//! The crate's error type: one enum for connections, listeners and queues.

use std::fmt;
use std::io;

use ipc_shm::transfer::TransferError;

/// Everything that can go wrong in ipc-channel-core.
///
/// The variants follow Python's exception kinds where there is one (`EOFError` → [`Eof`],
/// `BufferTooShort` → [`BufferTooShort`], `AuthenticationError` → [`Authentication`],
/// `queue.Empty`/`queue.Full` → [`Empty`]/[`Full`]), and add distinct variants for the ways
/// bytes from another process can be malformed, so a caller can tell a dead peer from a
/// hostile or buggy one.
///
/// [`Eof`]: Error::Eof
/// [`BufferTooShort`]: Error::BufferTooShort
/// [`Authentication`]: Error::Authentication
/// [`Empty`]: Error::Empty
/// [`Full`]: Error::Full
#[non_exhaustive]
pub enum Error {
    /// The peer closed its end (and everything it sent has been read), or vanished while
    /// we were writing to it (`EPIPE`, `ECONNRESET`).
    Eof,
    /// This end was closed with `close()`.
    Closed,
    /// The connection is read-only (the reader of `Pipe::simplex`) and cannot send.
    ReadOnly,
    /// The connection is write-only (the writer of `Pipe::simplex`) and cannot receive.
    WriteOnly,
    /// The buffer given to `recv_bytes_into` was too small. The message was consumed; here it
    /// is, whole.
    BufferTooShort(Vec<u8>),
    /// No message (or no queue item) arrived before the deadline, or none was ready for a
    /// `try_` call.
    Timeout,
    /// The stream ended in the middle of a frame: `got` of `expected` bytes arrived.
    TruncatedFrame {
        /// Bytes the frame (header and payload) should have had.
        expected: u64,
        /// Bytes that arrived before the end of the stream.
        got: u64,
    },
    /// A frame announced a payload longer than this connection's maximum message size.
    /// Nothing was allocated for it.
    TooLarge {
        /// The announced (or attempted) length.
        len: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A frame header that no multiproc peer writes (bad magic, unknown kind, reserved bits).
    BadFrame(String),
    /// A frame announced more file descriptors than arrived with it.
    MissingFds {
        /// Descriptors the header announced.
        expected: u32,
        /// Descriptors that arrived with the frame.
        received: u32,
    },
    /// File descriptors arrived that no frame announced.
    UnexpectedFds {
        /// How many arrived unannounced.
        count: u32,
    },
    /// An earlier framing error left the stream at an unknown position, so this connection
    /// refuses to read further instead of misreading later frames.
    Broken,
    /// The payload of a well-formed frame does not decode as the requested type (or refers to
    /// handles that did not come with it). The connection stays usable.
    Decode(String),
    /// The value could not be serialized (a handle that cannot travel, a serde error).
    /// Nothing was sent.
    Encode(String),
    /// A handle inside a message could not be moved (see [`TransferError`]).
    Transfer(TransferError),
    /// The HMAC handshake of a `Listener`/`Client` failed: wrong key, or one side has a key
    /// and the other has none. The message says which.
    Authentication(String),
    /// The peer does not speak this crate's handshake (or took longer than the handshake
    /// timeout).
    Handshake(String),
    /// `try_get`/`get_timeout` found the queue empty (Python's `queue.Empty`).
    Empty,
    /// `try_put`/`put_timeout` found the bounded queue full (Python's `queue.Full`).
    Full,
    /// `task_done()` was called more times than items were put (Python's `ValueError`).
    TaskDoneTooManyTimes,
    /// An argument is invalid (a zero capacity, an offset beyond a buffer, ...).
    InvalidArgument(String),
    /// An operating-system error.
    Io(io::Error),
    /// A failure of the shared-memory layer (creating or mapping a segment), or a
    /// shared-memory queue whose storage is exhausted or was corrupted by another process.
    Shm(String),
}

impl Error {
    /// Is this a framing error, after which a connection is unusable?
    pub(crate) fn is_framing(&self) -> bool {
        matches!(
            self,
            Error::TruncatedFrame { .. }
                | Error::TooLarge { .. }
                | Error::BadFrame(_)
                | Error::MissingFds { .. }
                | Error::UnexpectedFds { .. }
        )
    }
}

impl fmt::Debug for Error {
    // Written by hand so a 16 MiB `BufferTooShort` payload does not flood a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferTooShort(m) => write!(f, "BufferTooShort(<{} bytes>)", m.len()),
            Error::Io(e) => f.debug_tuple("Io").field(e).finish(),
            Error::Transfer(e) => f.debug_tuple("Transfer").field(e).finish(),
            other => write!(f, "{}({other})", other.kind_name()),
        }
    }
}

impl Error {
    fn kind_name(&self) -> &'static str {
        match self {
            Error::Eof => "Eof",
            Error::Closed => "Closed",
            Error::ReadOnly => "ReadOnly",
            Error::WriteOnly => "WriteOnly",
            Error::BufferTooShort(_) => "BufferTooShort",
            Error::Timeout => "Timeout",
            Error::TruncatedFrame { .. } => "TruncatedFrame",
            Error::TooLarge { .. } => "TooLarge",
            Error::BadFrame(_) => "BadFrame",
            Error::MissingFds { .. } => "MissingFds",
            Error::UnexpectedFds { .. } => "UnexpectedFds",
            Error::Broken => "Broken",
            Error::Decode(_) => "Decode",
            Error::Encode(_) => "Encode",
            Error::Transfer(_) => "Transfer",
            Error::Authentication(_) => "Authentication",
            Error::Handshake(_) => "Handshake",
            Error::Empty => "Empty",
            Error::Full => "Full",
            Error::TaskDoneTooManyTimes => "TaskDoneTooManyTimes",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::Io(_) => "Io",
            Error::Shm(_) => "Shm",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Eof => f.write_str("end of file: the peer closed the connection"),
            Error::Closed => f.write_str("handle is closed"),
            Error::ReadOnly => f.write_str("connection is read-only"),
            Error::WriteOnly => f.write_str("connection is write-only"),
            Error::BufferTooShort(m) => write!(
                f,
                "buffer too short for a {}-byte message (the message is in the error)",
                m.len()
            ),
            Error::Timeout => f.write_str("timed out"),
            Error::TruncatedFrame { expected, got } => write!(
                f,
                "truncated frame: the stream ended after {got} of {expected} bytes"
            ),
            Error::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes exceeds the maximum message size of {max} bytes"
            ),
            Error::BadFrame(why) => write!(f, "bad frame header: {why}"),
            Error::MissingFds { expected, received } => write!(
                f,
                "frame announced {expected} file descriptors but {received} arrived with it"
            ),
            Error::UnexpectedFds { count } => write!(
                f,
                "{count} file descriptors arrived that no frame announced"
            ),
            Error::Broken => f.write_str(
                "connection is unusable after an earlier framing error (stream position unknown)",
            ),
            Error::Decode(why) => write!(f, "message does not decode: {why}"),
            Error::Encode(why) => write!(f, "message cannot be encoded: {why}"),
            Error::Transfer(e) => write!(f, "{e}"),
            Error::Authentication(why) => write!(f, "authentication failed: {why}"),
            Error::Handshake(why) => write!(f, "handshake failed: {why}"),
            Error::Empty => f.write_str("queue is empty"),
            Error::Full => f.write_str("queue is full"),
            Error::TaskDoneTooManyTimes => f.write_str("task_done() called too many times"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Shm(why) => write!(f, "shared memory: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Transfer(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(e.into())
    }
}

/// Maps a transfer failure met while decoding a received payload.
pub(crate) fn from_decode(e: TransferError) -> Error {
    match e {
        TransferError::Codec(m) => Error::Decode(m),
        other => Error::Transfer(other),
    }
}

/// Maps a transfer failure met while encoding a value to send.
pub(crate) fn from_encode(e: TransferError) -> Error {
    match e {
        TransferError::Codec(m) => Error::Encode(m),
        other => Error::Transfer(other),
    }
}

/// Result alias used inside the crate.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
