//! Handle transfer: OS handles (file descriptors) carried inside serde values.
//!
//! Every OS-backed object of multiproc (a segment, a lock, a queue, a connection) is
//! `Serialize + Deserialize`. Serializing one does not write its file descriptor number — that
//! number means nothing in another process — but records the descriptor in a thread-local
//! *transfer table* and writes only its index. The carrier (a [`Connection`], the spawn
//! bootstrap socket) then sends the bytes together with the table's descriptors using
//! `SCM_RIGHTS` ([`send_with_fds`]); the receiver installs the descriptors it got
//! ([`install_fds`] / [`decode`]) before deserializing, and each handle picks its descriptor up by
//! index.
//!
//! Outside a transfer, serializing a handle is a clear error: there is no way to make a file
//! descriptor meaningful in a byte string alone.
//!
//! The same descriptor serialized twice in one message (10,000 values that live in the same
//! shared arena, say) travels once: the table deduplicates by descriptor.
//!
//! [`Connection`]: https://docs.rs/ipc-channel-core
//!
//! # Example
//!
//! ```
//! use ipc_shm::transfer;
//! use std::os::fd::{AsFd, OwnedFd};
//!
//! // A tiny handle type: a file descriptor that travels by index.
//! struct Handle(OwnedFd);
//! impl serde::Serialize for Handle {
//!     fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
//!         transfer::serialize_fd(self.0.as_fd(), "Handle", s)
//!     }
//! }
//! impl<'de> serde::Deserialize<'de> for Handle {
//!     fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
//!         transfer::deserialize_fd(d).map(Handle)
//!     }
//! }
//!
//! let file = std::fs::File::open("/dev/null").unwrap();
//! let handle = Handle(OwnedFd::from(file));
//! // Outside a transfer this is an error...
//! assert!(postcard::to_allocvec(&handle).is_err());
//! // ...inside one, the descriptor is collected beside the bytes.
//! let (bytes, fds) = transfer::encode(&handle).unwrap();
//! assert_eq!(fds.len(), 1);
//! let back: Handle = transfer::decode(&bytes, fds).unwrap();
//! drop(back);
//! ```

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most descriptors one `SCM_RIGHTS` message may carry on Linux (`SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// What can go wrong while moving handles between processes.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransferError {
    /// A handle was serialized or deserialized outside a handle transfer.
    NotInTransfer {
        /// The kind of handle (`"Segment"`, `"Lock"`, ...).
        what: &'static str,
    },
    /// A message names descriptor `index`, but only `received` descriptors arrived with it.
    MissingFd {
        /// The index written in the message.
        index: u32,
        /// How many descriptors the message carried.
        received: usize,
    },
    /// A message carried descriptors that no handle in it referred to.
    UnusedFds {
        /// How many of the received descriptors were never referenced.
        unused: usize,
        /// How many descriptors the message carried.
        received: usize,
    },
    /// More descriptors than one message can carry.
    TooManyFds {
        /// How many were collected.
        count: usize,
    },
    /// A received descriptor is not of the kind the handle expects (a socket where a
    /// memory segment was expected, a segment smaller than announced, ...).
    WrongKind {
        /// The kind of handle being rebuilt.
        what: &'static str,
        /// What was wrong with the descriptor.
        detail: String,
    },
    /// The bytes do not encode or decode as the expected type.
    Codec(String),
    /// Duplicating a descriptor failed (usually: out of descriptors).
    Io(io::Error),
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NotInTransfer { what } => write!(
                f,
                "a {what} can only be serialized inside a handle transfer (send it through a \
                 multiproc Connection, Queue or Process argument, or use ipc_shm::transfer::encode)"
            ),
            TransferError::MissingFd { index, received } => write!(
                f,
                "message refers to file descriptor #{index} but carried only {received}"
            ),
            TransferError::UnusedFds { unused, received } => write!(
                f,
                "message carried {received} file descriptors, {unused} of them referenced by nothing"
            ),
            TransferError::TooManyFds { count } => write!(
                f,
                "a message can carry at most {MAX_FDS_PER_MESSAGE} file descriptors, not {count}"
            ),
            TransferError::WrongKind { what, detail } => {
                write!(f, "received descriptor is not a valid {what}: {detail}")
            }
            TransferError::Codec(msg) => write!(f, "malformed message: {msg}"),
            TransferError::Io(e) => write!(f, "handle transfer failed: {e}"),
        }
    }
}

impl std::error::Error for TransferError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransferError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for TransferError {
    fn from(e: io::Error) -> Self {
        TransferError::Io(e)
    }
}

/// The per-thread table. `Outgoing` collects while serializing, `Incoming` hands descriptors
/// out while deserializing.
enum Table {
    Outgoing {
        /// Owned duplicates of the collected descriptors, in index order.
        fds: Vec<OwnedFd>,
        /// The raw number each entry was collected from and the file it designated, to
        /// deduplicate (the number alone is not enough: a descriptor closed inside the scope
        /// may have its number reused for another file).
        sources: Vec<(RawFd, FileId)>,
    },
    Incoming {
        fds: Vec<OwnedFd>,
        used: Vec<bool>,
    },
}

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
    /// The last error a handle reported through [`ser_error`]/[`de_error`], so that
    /// [`encode`]/[`decode`] can return it instead of serde's bare "custom error".
    static LAST_ERROR: RefCell<Option<TransferError>> = const { RefCell::new(None) };
}

fn record(e: &TransferError) {
    let copy = match e {
        TransferError::NotInTransfer { what } => TransferError::NotInTransfer { what },
        TransferError::MissingFd { index, received } => TransferError::MissingFd {
            index: *index,
            received: *received,
        },
        TransferError::UnusedFds { unused, received } => TransferError::UnusedFds {
            unused: *unused,
            received: *received,
        },
        TransferError::TooManyFds { count } => TransferError::TooManyFds { count: *count },
        TransferError::WrongKind { what, detail } => TransferError::WrongKind {
            what,
            detail: detail.clone(),
        },
        TransferError::Codec(m) => TransferError::Codec(m.clone()),
        TransferError::Io(e) => TransferError::Io(io::Error::new(e.kind(), e.to_string())),
    };
    let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = Some(copy));
}

fn take_last_error() -> Option<TransferError> {
    LAST_ERROR
        .try_with(|l| l.borrow_mut().take())
        .ok()
        .flatten()
}

/// Turns a handle's [`TransferError`] into a serializer error, remembering it so that
/// [`encode`] returns the precise error rather than serde's generic one.
pub fn ser_error<E: serde::ser::Error>(e: TransferError) -> E {
    record(&e);
    E::custom(e)
}

/// Turns a handle's [`TransferError`] into a deserializer error, remembering it so that
/// [`decode`] returns the precise error (a [`TransferError::WrongKind`] descriptor, say)
/// rather than serde's generic one.
pub fn de_error<E: serde::de::Error>(e: TransferError) -> E {
    record(&e);
    E::custom(e)
}

/// Restores the previous table (none, for an outermost scope) when a scope ends, also on
/// unwind.
struct Scope {
    previous: Option<Table>,
    finished: bool,
}

impl Scope {
    fn enter(table: Table) -> Scope {
        let previous = TABLE.with(|t| t.borrow_mut().replace(table));
        Scope {
            previous,
            finished: false,
        }
    }

    fn finish(mut self) -> Option<Table> {
        self.finished = true;
        let prev = self.previous.take();
        TABLE.with(|t| std::mem::replace(&mut *t.borrow_mut(), prev))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Unwinding out of the scope: put the previous table back — `None` too, or this thread
        // would stay "inside a transfer" for good and later serialize handles into a table no
        // one sends.
        let prev = self.previous.take();
        let _ = TABLE.try_with(|t| {
            if let Ok(mut slot) = t.try_borrow_mut() {
                *slot = prev;
            }
        });
    }
}

/// Is this thread inside [`collect_fds`] or [`install_fds`]?
pub fn in_transfer() -> bool {
    TABLE
        .try_with(|t| t.try_borrow().map(|t| t.is_some()).unwrap_or(true))
        .unwrap_or(false)
}

/// Runs `f` (which serializes something) with a fresh outgoing table and returns what it
/// returned together with the descriptors its handles recorded, in index order.
///
/// Scopes nest: an inner `collect_fds` has a table of its own.
pub fn collect_fds<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let scope = Scope::enter(Table::Outgoing {
        fds: Vec::new(),
        sources: Vec::new(),
    });
    let r = f();
    let fds = match scope.finish() {
        Some(Table::Outgoing { fds, .. }) => fds,
        _ => Vec::new(),
    };
    (r, fds)
}

/// Runs `f` (which deserializes something) with `fds` installed as the incoming table.
///
/// Returns what `f` returned, and an error if some descriptor was referenced by no handle
/// (the message and its descriptors do not match). Descriptors left in the table are closed
/// when the scope ends; handles that keep one hold their own duplicate.
pub fn install_fds<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> (R, Result<(), TransferError>) {
    let received = fds.len();
    let used = vec![false; received];
    let scope = Scope::enter(Table::Incoming { fds, used });
    let r = f();
    let check = match scope.finish() {
        Some(Table::Incoming { used, .. }) => {
            let unused = used.iter().filter(|u| !**u).count();
            if unused == 0 {
                Ok(())
            } else {
                Err(TransferError::UnusedFds { unused, received })
            }
        }
        _ => Ok(()),
    };
    (r, check)
}

/// What a descriptor designates: the file (device, inode) and its access mode, enough to tell a
/// reused descriptor number from the one recorded (the two ends of a pipe share an inode but
/// not an access mode).
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    mode: u32,
}

#[allow(clippy::unnecessary_cast)] // `st_dev`/`st_ino` are not `u64` on every target
fn file_id(fd: BorrowedFd<'_>) -> io::Result<FileId> {
    let st = rustix::fs::fstat(fd)?;
    let flags = rustix::fs::fcntl_getfl(fd)?;
    Ok(FileId {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        mode: (flags & rustix::fs::OFlags::RWMODE).bits(),
    })
}

/// Records `fd` in the current outgoing table and returns its index.
///
/// The table keeps its own duplicate, so the caller's descriptor may close before the message
/// is sent. The same descriptor recorded twice in one scope gets the same index (a number
/// closed and reused for another file inside the scope is recorded anew).
pub fn push_fd(fd: BorrowedFd<'_>, what: &'static str) -> Result<u32, TransferError> {
    let raw = fd.as_raw_fd();
    let seen = TABLE.with(|t| match t.borrow().as_ref() {
        Some(Table::Outgoing { sources, .. }) => Ok(sources.iter().any(|s| s.0 == raw)),
        _ => Err(TransferError::NotInTransfer { what }),
    })?;
    // One fstat per handle; a message of many handles in one arena pays it per handle.
    let id = file_id(fd)?;
    if seen {
        let hit = TABLE.with(|t| match t.borrow().as_ref() {
            Some(Table::Outgoing { sources, .. }) => sources.iter().position(|s| *s == (raw, id)),
            _ => None,
        });
        if let Some(i) = hit {
            return Ok(i as u32);
        }
    }
    let dup = fd.try_clone_to_owned()?;
    TABLE.with(|t| match t.borrow_mut().as_mut() {
        Some(Table::Outgoing { fds, sources }) => {
            if fds.len() >= MAX_FDS_PER_MESSAGE {
                return Err(TransferError::TooManyFds {
                    count: fds.len() + 1,
                });
            }
            fds.push(dup);
            sources.push((raw, id));
            Ok((fds.len() - 1) as u32)
        }
        _ => Err(TransferError::NotInTransfer { what }),
    })
}

/// Calls `f` with descriptor `index` of the current incoming table, without taking it out.
///
/// Use it when the descriptor may not be needed (the receiver already maps the object it
/// names); use [`take_fd`] to keep one.
///
/// `f` runs outside the table's borrow, so it may itself use this module (nested transfers).
pub fn with_fd<R>(
    index: u32,
    what: &'static str,
    f: impl FnOnce(BorrowedFd<'_>) -> R,
) -> Result<R, TransferError> {
    // A duplicate keeps the descriptor open for `f` whatever `f` does to the table.
    let fd = take_fd(index, what)?;
    Ok(f(fd.as_fd()))
}

/// Returns an owned duplicate of descriptor `index` of the current incoming table.
///
/// An index may be referenced several times in one message (deduplication); each call returns
/// a descriptor of its own.
pub fn take_fd(index: u32, what: &'static str) -> Result<OwnedFd, TransferError> {
    TABLE.with(|t| match t.borrow_mut().as_mut() {
        Some(Table::Incoming { fds, used }) => {
            let i = index as usize;
            match fds.get(i) {
                Some(fd) => {
                    used[i] = true;
                    fd.try_clone().map_err(TransferError::Io)
                }
                None => Err(TransferError::MissingFd {
                    index,
                    received: fds.len(),
                }),
            }
        }
        _ => Err(TransferError::NotInTransfer { what }),
    })
}

/// Serializes `fd` as an index into the current transfer table: the `Serialize` half of a
/// handle that wraps one descriptor.
pub fn serialize_fd<S: Serializer>(
    fd: BorrowedFd<'_>,
    what: &'static str,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let index = push_fd(fd, what).map_err(ser_error)?;
    index.serialize(serializer)
}

/// Deserializes a descriptor index written by [`serialize_fd`] and returns an owned duplicate
/// of that descriptor: the `Deserialize` half of a handle that wraps one descriptor.
pub fn deserialize_fd<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OwnedFd, D::Error> {
    let index = u32::deserialize(deserializer)?;
    take_fd(index, "handle").map_err(de_error)
}

/// Serializes `value` with postcard inside a transfer scope: the bytes and the descriptors to
/// send with them.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>), TransferError> {
    take_last_error();
    let (bytes, fds) = collect_fds(|| postcard::to_allocvec(value));
    let bytes = bytes.map_err(|e| codec_error(e, "encode"))?;
    Ok((bytes, fds))
}

/// Like [`encode`], appending the bytes to `out`; on error `out` keeps only what it had.
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, TransferError> {
    struct Appender<'a>(&'a mut Vec<u8>);
    impl Extend<u8> for Appender<'_> {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
            self.0.extend(iter);
        }
    }
    let start = out.len();
    take_last_error();
    let (res, fds) = collect_fds(|| postcard::to_extend(value, Appender(out)).map(|_| ()));
    match res {
        Ok(()) => Ok(fds),
        Err(e) => {
            out.truncate(start);
            Err(codec_error(e, "encode"))
        }
    }
}

/// Deserializes a postcard `value` with `fds` installed. Trailing bytes, missing descriptors and
/// descriptors referenced by nothing are errors: the message does not match what was expected.
///
/// Decode each encoded message **exactly once**. Encoding a shared-heap handle (a `RawValue`, a
/// lock, a `Value`...) takes one reference for the message in flight, and decoding adopts it;
/// decoding the same bytes a second time adopts a reference nobody took, so the block can be
/// released while other handles still use it, and a later allocation can then share its
/// memory. The carriers of multiproc (`Connection`, `Queue`, process arguments) decode every
/// message once; code that keeps encoded bytes around must do the same (encode again to send
/// a value twice).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, TransferError> {
    take_last_error();
    let (res, check) = install_fds(fds, || postcard::take_from_bytes::<T>(bytes));
    let (value, rest) = res.map_err(|e| codec_error(e, "decode"))?;
    if !rest.is_empty() {
        return Err(TransferError::Codec(format!(
            "{} trailing bytes after the value",
            rest.len()
        )));
    }
    check?;
    Ok(value)
}

fn codec_error(e: postcard::Error, op: &str) -> TransferError {
    // A handle that refused (NotInTransfer, MissingFd, ...) reports through serde's custom
    // error, which postcard keeps only as a category; say what we can.
    match e {
        postcard::Error::SerdeSerCustom | postcard::Error::SerdeDeCustom => take_last_error().unwrap_or_else(|| TransferError::Codec(
            format!("{op}: a handle inside the value could not be transferred (outside a transfer scope, or its descriptor is missing or of the wrong kind)"),
        )),
        other => TransferError::Codec(format!("{op}: {other}")),
    }
}

/// Sends `bytes` on the socket `sock`, with `fds` attached as `SCM_RIGHTS` when not empty.
///
/// Returns how many bytes were written (a stream socket may write fewer than `bytes.len()`;
/// the descriptors go with the first byte). Retries on `EINTR`.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            TransferError::TooManyFds { count: fds.len() },
        ));
    }
    let iov = [io::IoSlice::new(bytes)];
    let mut space: Vec<MaybeUninit<u8>> =
        vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    loop {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other(
                "control buffer too small for the descriptors",
            ));
        }
        match rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives into `buf` from the socket `sock`, appending any descriptors that came with the
/// bytes to `fds` (installed close-on-exec).
///
/// Returns how many bytes were read (0 at end of stream). If the sender attached more
/// descriptors than `max_fds`, the kernel drops the rest and this returns an error
/// (`MSG_CTRUNC`) rather than a message with descriptors silently missing. Retries on `EINTR`.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    max_fds: usize,
) -> io::Result<usize> {
    let max_fds = max_fds.clamp(1, MAX_FDS_PER_MESSAGE);
    let mut space: Vec<MaybeUninit<u8>> =
        vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(max_fds))];
    loop {
        let mut iov = [io::IoSliceMut::new(buf)];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        match rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => {
                let before = fds.len();
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = m {
                        fds.extend(received);
                    }
                }
                // The control buffer is rounded up to alignment, so it may hold a few more than
                // asked: enforce the limit exactly (the extra descriptors are closed).
                if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() - before > max_fds {
                    fds.truncate(before);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a message carried more file descriptors than allowed; the extra ones were dropped",
                    ));
                }
                return Ok(msg.bytes);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[derive(Debug)]
    struct H(OwnedFd);
    impl Serialize for H {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize_fd(self.0.as_fd(), "H", s)
        }
    }
    impl<'de> Deserialize<'de> for H {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize_fd(d).map(H)
        }
    }

    fn devnull() -> OwnedFd {
        OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
    }

    #[test]
    fn outside_a_transfer_is_an_error() {
        let err = postcard::to_allocvec(&H(devnull())).unwrap_err();
        assert!(matches!(err, postcard::Error::SerdeSerCustom));
        let err = push_fd(devnull().as_fd(), "H").unwrap_err();
        assert!(
            err.to_string().contains("inside a handle transfer"),
            "{err}"
        );
    }

    #[test]
    fn dedup_within_one_message() {
        let fd = devnull();
        let a = H(fd.try_clone().unwrap());
        let (bytes, fds) = collect_fds(|| {
            let i = push_fd(a.0.as_fd(), "H").unwrap();
            let j = push_fd(a.0.as_fd(), "H").unwrap();
            let k = push_fd(fd.as_fd(), "H").unwrap();
            (i, j, k)
        });
        assert_eq!(bytes, (0, 0, 1));
        assert_eq!(fds.len(), 2);
        assert!(!in_transfer());
    }

    #[test]
    fn missing_and_unused_fds_are_errors() {
        let (bytes, fds) = encode(&(H(devnull()), H(devnull()))).unwrap();
        assert_eq!(fds.len(), 2);
        // one descriptor short
        let mut short = fds;
        short.pop();
        let err = decode::<(H, H)>(&bytes, short).unwrap_err();
        assert!(
            matches!(
                err,
                TransferError::MissingFd {
                    index: 1,
                    received: 1
                }
            ),
            "{err}"
        );
        // one too many
        let (bytes, mut fds) = encode(&H(devnull())).unwrap();
        fds.push(devnull());
        let err = decode::<H>(&bytes, fds).unwrap_err();
        assert!(
            matches!(
                err,
                TransferError::UnusedFds {
                    unused: 1,
                    received: 2
                }
            ),
            "{err}"
        );
        // trailing bytes
        let (mut bytes, fds) = encode(&H(devnull())).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<H>(&bytes, fds),
            Err(TransferError::Codec(_))
        ));
    }

    #[test]
    fn scm_rights_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, mut w) = UnixStream::pair().unwrap();
        let n = send_with_fds(a.as_fd(), b"hi", &[r.as_fd()]).unwrap();
        assert_eq!(n, 2);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds, 4).unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(fds.len(), 1);
        // the received descriptor is the same socket
        w.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        UnixStream::from(fds.pop().unwrap())
            .read_exact(&mut got)
            .unwrap();
        assert_eq!(&got, b"x");
    }

    #[test]
    fn too_many_fds_is_reported_not_dropped() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = [devnull(), devnull(), devnull()];
        let borrowed: Vec<_> = f.iter().map(|f| f.as_fd()).collect();
        send_with_fds(a.as_fd(), b"x", &borrowed).unwrap();
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        let err = recv_with_fds(b.as_fd(), &mut buf, &mut fds, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(fds.is_empty());
        // two descriptors against a limit of one: the control buffer would fit them, the limit
        // is still enforced
        send_with_fds(a.as_fd(), b"y", &borrowed[..2]).unwrap();
        let err = recv_with_fds(b.as_fd(), &mut buf, &mut fds, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(fds.is_empty());
    }

    #[test]
    fn a_panic_inside_a_scope_leaves_no_table_behind() {
        for outgoing in [true, false] {
            let r = std::panic::catch_unwind(|| {
                if outgoing {
                    collect_fds(|| panic!("in a serializer"));
                } else {
                    let _ = install_fds(vec![devnull()], || panic!("in a deserializer"));
                }
            });
            assert!(r.is_err());
            assert!(!in_transfer(), "the thread is still inside a transfer");
            let err = push_fd(devnull().as_fd(), "H").unwrap_err();
            assert!(matches!(err, TransferError::NotInTransfer { .. }), "{err}");
        }
        // A nested scope unwinding restores its outer one.
        let ((), fds) = collect_fds(|| {
            let r = std::panic::catch_unwind(|| collect_fds(|| panic!("inner")));
            assert!(r.is_err());
            push_fd(devnull().as_fd(), "H").unwrap();
        });
        assert_eq!(fds.len(), 1);
    }

    #[test]
    fn with_fd_may_use_the_transfer_module() {
        let (bytes, fds) = encode(&H(devnull())).unwrap();
        let ((), check) = install_fds(fds, || {
            let inner = with_fd(0, "H", |fd| {
                assert!(in_transfer());
                // A nested transfer of the very descriptor being looked at.
                let (b, f) = encode(&H(fd.try_clone_to_owned().unwrap())).unwrap();
                decode::<H>(&b, f).unwrap()
            })
            .unwrap();
            drop(inner);
        });
        check.unwrap();
        assert!(!bytes.is_empty());
    }

    #[test]
    fn a_reused_descriptor_number_is_not_deduplicated() {
        // A handle's descriptor is closed inside the scope and its number reused for another
        // file: the second must travel as itself, not as the first.
        let (read_end, write_end) = rustix::pipe::pipe().unwrap();
        let (indices, fds) = collect_fds(|| {
            let mut handle = devnull();
            let raw = handle.as_raw_fd();
            let i = push_fd(handle.as_fd(), "H").unwrap();
            // The number now designates the pipe (dup2 closes /dev/null and reuses it at once).
            rustix::io::dup2(&read_end, &mut handle).unwrap();
            assert_eq!(handle.as_raw_fd(), raw);
            let j = push_fd(handle.as_fd(), "H").unwrap();
            (i, j)
        });
        assert_eq!(indices, (0, 1));
        assert_eq!(fds.len(), 2);
        rustix::io::write(&write_end, b"z").unwrap();
        let mut got = [0u8; 1];
        assert_eq!(rustix::io::read(&fds[1], &mut got).unwrap(), 1);
        assert_eq!(&got, b"z");
    }
}
