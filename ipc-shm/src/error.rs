//! The crate's error type.

use std::fmt;
use std::io;

use crate::transfer::TransferError;

/// Everything that can go wrong in `ipc-shm`.
///
/// Each failure a caller may want to tell apart has a variant of its own (Python raises
/// `FileExistsError`, `FileNotFoundError`, `ValueError`, `PermissionError` for the same cases).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A size of zero was asked for (a segment, a shared memory object).
    ZeroSize,
    /// The requested size does not fit the address space or the allocator's limits.
    TooLarge {
        /// The size asked for, in bytes.
        size: usize,
    },
    /// The requested alignment is above what the shared heap honours (4096).
    Alignment {
        /// The alignment asked for.
        align: usize,
    },
    /// `SharedMemory::create` with a name that already exists (Python: `FileExistsError`).
    NameExists {
        /// The name, without a leading slash.
        name: String,
    },
    /// `SharedMemory::open` or `unlink` of a name that does not exist (Python: `FileNotFoundError`).
    NotFound {
        /// The name, without a leading slash.
        name: String,
    },
    /// A shared memory name longer than the system allows (255 bytes with the leading slash).
    NameTooLong {
        /// The name as given.
        name: String,
        /// The longest name accepted, without the leading slash.
        max: usize,
    },
    /// A shared memory name that is empty, `.`/`..`, or contains `/` (after an optional leading
    /// one) or a NUL byte.
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The system refused access to a named shared memory object (Python: `PermissionError`).
    PermissionDenied {
        /// The name, without a leading slash.
        name: String,
    },
    /// This process already tracks as many named shared memory objects as its resource
    /// tracker holds: unlink some, or [`keep`](crate::SharedMemory::keep) them, first.
    TooManyTracked {
        /// The most names one process may have tracked at once.
        max: usize,
    },
    /// A byte access outside the segment.
    OutOfBounds {
        /// Where the access started.
        offset: usize,
        /// How many bytes it covered.
        len: usize,
        /// The size of the segment.
        size: usize,
    },
    /// An element index outside an array.
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// A bulk copy between slices of different lengths.
    LengthMismatch {
        /// The length of the shared array.
        expected: usize,
        /// The length of the other slice.
        got: usize,
    },
    /// A handle could not be serialized or rebuilt (see [`TransferError`]).
    Transfer(TransferError),
    /// An operating-system call failed.
    Io {
        /// What was being done (`"memfd_create"`, `"mmap"`, ...).
        op: &'static str,
        /// The system's error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Error {
        Error::Io {
            op,
            source: source.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ZeroSize => write!(f, "size must be a positive number different from zero"),
            Error::TooLarge { size } => write!(f, "size {size} is too large"),
            Error::Alignment { align } => {
                write!(f, "alignment {align} is above the supported maximum of 4096")
            }
            Error::NameExists { name } => {
                write!(f, "shared memory object {name:?} already exists")
            }
            Error::NotFound { name } => write!(f, "shared memory object {name:?} does not exist"),
            Error::NameTooLong { name, max } => write!(
                f,
                "shared memory name of {} bytes is too long (at most {max})",
                name.len()
            ),
            Error::InvalidName { name } => write!(
                f,
                "invalid shared memory name {name:?}: it must be non-empty, not `.` or `..`, and contain no `/` (after an optional leading one) or NUL"
            ),
            Error::PermissionDenied { name } => {
                write!(f, "permission denied for shared memory object {name:?}")
            }
            Error::TooManyTracked { max } => write!(
                f,
                "this process already tracks {max} shared memory names; unlink or keep some first"
            ),
            Error::OutOfBounds { offset, len, size } => write!(
                f,
                "access of {len} bytes at offset {offset} is outside the segment of {size} bytes"
            ),
            Error::IndexOutOfRange { index, len } => {
                write!(f, "index {index} is out of range for length {len}")
            }
            Error::LengthMismatch { expected, got } => write!(
                f,
                "slice of length {got} does not match the array's length {expected}"
            ),
            Error::Transfer(e) => write!(f, "{e}"),
            Error::Io { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transfer(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<TransferError> for Error {
    fn from(e: TransferError) -> Self {
        Error::Transfer(e)
    }
}
