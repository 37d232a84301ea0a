//! The crate's error type.

use std::fmt;

/// Everything that can go wrong in ipc-sync.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Allocating the primitive in the shared heap failed.
    #[cfg(not(ipc_loom))]
    Shm(ipc_shm::Error),
    /// A bounded semaphore was released above its initial value, or an unlocked lock was released
    /// (Python's `ValueError('semaphore or lock released too many times')`).
    OverRelease,
    /// A semaphore's value would exceed `SEM_VALUE_MAX`.
    Overflow,
    /// A lock (an `RLock`, a condition's lock) was released or used by a thread that does not hold
    /// it (Python's `AssertionError`/`RuntimeError` for the same misuse).
    NotOwner,
    /// The barrier is broken (aborted, reset while waiting, or a wait timed out): Python's
    /// `BrokenBarrierError`.
    BrokenBarrier,
    /// A condition was given a guard of another condition's lock.
    WrongLock,
    /// An index past the end of an `Array`.
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// A slice of the wrong length was assigned to an `Array`.
    LengthMismatch {
        /// The array's length.
        expected: usize,
        /// The slice's length.
        found: usize,
    },
    /// An argument out of its documented range.
    InvalidArgument(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(not(ipc_loom))]
            Error::Shm(e) => write!(f, "shared memory: {e}"),
            Error::OverRelease => f.write_str("semaphore or lock released too many times"),
            Error::Overflow => f.write_str("semaphore value would exceed its maximum"),
            Error::NotOwner => f.write_str("lock not owned by the calling thread"),
            Error::BrokenBarrier => f.write_str("barrier is broken"),
            Error::WrongLock => f.write_str("guard belongs to another condition's lock"),
            Error::IndexOutOfRange { index, len } => {
                write!(f, "index {index} out of range for an array of length {len}")
            }
            Error::LengthMismatch { expected, found } => {
                write!(
                    f,
                    "slice of length {found} assigned to an array of length {expected}"
                )
            }
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(not(ipc_loom))]
            Error::Shm(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(not(ipc_loom))]
impl From<ipc_shm::Error> for Error {
    fn from(e: ipc_shm::Error) -> Self {
        Error::Shm(e)
    }
}
