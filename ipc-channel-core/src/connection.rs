//! [`Connection`] and [`Pipe`]: framed, typed messages over a stream socket, with OS handles
//! travelling inside them.
//!
//! # Wire format
//!
//! Every message is one frame (see the `codec` module): a 16-byte header with a 64-bit
//! length and the number of attached descriptors, then the payload. A typed message
//! ([`Connection::send`]) is postcard-encoded through [`ipc_shm::transfer`], so a `Queue`, a
//! `Lock` or another `Connection` inside it travels as a descriptor (`SCM_RIGHTS`, attached to
//! the frame's first byte) plus an index in the payload.
//!
//! # Why `SOCK_SEQPACKET` for `Pipe`
//!
//! `Pipe` uses a `SOCK_SEQPACKET` Unix socketpair. Measured on Linux (the `connection`
//! benchmark prints both), an 8-byte ping-pong between two processes is about 18% faster on a
//! seqpacket pair than on a stream pair, and the frame codec does not care: it treats what it
//! receives as a byte stream. The sender cuts frames into records of at most
//! [`MAX_RECORD`] bytes (a seqpacket record must fit the socket buffer, about 200 KiB by default,
//! so a 16 MiB message is 256 records), and the receiver always offers a whole record's room,
//! so no record is ever truncated (a foreign peer's oversized record is a framing error). A
//! small message is one record: one `send` and one `recvmsg`, as on a raw socket. Connections
//! from [`Listener`](crate::Listener) are streams (Unix or TCP); [`Connection::from_fd`] takes
//! either kind.

use std::collections::VecDeque;
use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_shm::transfer;
use parking_lot::{Mutex, MutexGuard};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Header, Kind, HEADER_LEN};
use crate::err::{from_decode, from_encode, Error, Result};

/// The default maximum size of one message's payload: 1 GiB. Change it per connection with
/// [`Connection::set_max_message_size`].
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 30;

/// The largest record a connection writes on a seqpacket socket (and the room it offers for
/// each record it reads).
pub const MAX_RECORD: usize = 64 * 1024;
/// Initial size of a receive buffer (allocated on the first receive).
const INITIAL_RECV_BUF: usize = 64 * 1024;
/// Receive and send buffers larger than this are released once empty.
const KEEP_BUF: usize = 1 << 20;
/// Payloads up to this size are copied behind their header and sent with `send(2)`; larger ones
/// are gathered with `sendmsg(2)`.
const SMALL_FRAME: usize = 4096;
/// Control-message space for the most descriptors one message can carry.
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmRights(transfer::MAX_FDS_PER_MESSAGE));

/// Which directions a handle may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Duplex,
    ReadOnly,
    WriteOnly,
}

impl Mode {
    fn to_u8(self) -> u8 {
        match self {
            Mode::Duplex => 0,
            Mode::ReadOnly => 1,
            Mode::WriteOnly => 2,
        }
    }
    fn from_u8(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::Duplex),
            1 => Some(Mode::ReadOnly),
            2 => Some(Mode::WriteOnly),
            _ => None,
        }
    }
}

/// One end of a message channel: Python's `multiprocessing.connection.Connection`.
///
/// Made by [`Pipe::new`], [`Pipe::simplex`], [`Listener::accept`](crate::Listener::accept) and
/// [`Client::connect`](crate::Client::connect). Messages keep their boundaries; typed messages
/// ([`send`](Connection::send)/[`recv`](Connection::recv)) are any serde type, and OS-backed
/// handles inside them (queues, locks, shared memory, connections) arrive usable.
///
/// A `Connection` is `Send + Sync`: threads may share one; concurrent senders never interleave
/// their frames and concurrent receivers each get whole messages. `Clone` gives another handle
/// on the same socket and buffers (like `Arc`); the socket closes when the last handle is
/// closed or dropped.
///
/// # Examples
///
/// ```
/// use ipc_channel_core::Pipe;
///
/// let (a, b) = Pipe::new()?;
/// a.send(&vec![1.0f64, 2.25])?;
/// assert_eq!(b.recv::<Vec<f64>>()?, vec![1.0, 2.25]);
/// b.send_bytes(b"raw")?;
/// assert_eq!(a.recv_bytes()?, b"raw");
/// # Ok::<(), ipc_channel_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Option<Arc<Inner>>,
    mode: Mode,
}

struct Inner {
    fd: OwnedFd,
    send: Mutex<SendState>,
    recv: Mutex<RecvState>,
    /// Set after a framing error (reading) or a partly written frame (writing).
    broken: AtomicBool,
    max: AtomicU64,
    /// The most bytes one send may carry: [`MAX_RECORD`] on a seqpacket socket.
    write_limit: usize,
}

struct SendState {
    /// Reused encoding buffer: header space followed by the payload.
    buf: Vec<u8>,
}

/// Descriptors that arrived with the stream bytes `[from, to)`.
struct Batch {
    from: u64,
    to: u64,
    fds: Vec<OwnedFd>,
}

struct RecvState {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    consumed: u64,
    batches: VecDeque<Batch>,
    /// A frame whose header (and descriptors) were taken but whose payload is still arriving
    /// (a timeout interrupted it).
    pending: Option<(Header, Vec<OwnedFd>)>,
    /// Room every read must offer: a whole record on a seqpacket socket, a byte on a stream.
    min_free: usize,
}

impl RecvState {
    fn new(seqpacket: bool) -> RecvState {
        RecvState {
            buf: Vec::new(),
            start: 0,
            end: 0,
            consumed: 0,
            batches: VecDeque::new(),
            pending: None,
            min_free: if seqpacket { MAX_RECORD } else { 1 },
        }
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    fn has_data(&self) -> bool {
        self.available() > 0 || self.pending.is_some()
    }

    /// Reads more bytes from `fd` into the buffer (at least one, or 0 at end of stream),
    /// waiting until `deadline`. `want` is how many bytes from `start` the caller needs, to
    /// size the buffer: it grows by doubling as bytes arrive, never to an announced length
    /// ahead of the data.
    fn read_more(
        &mut self,
        fd: BorrowedFd<'_>,
        deadline: Option<Instant>,
        want: usize,
    ) -> Result<usize> {
        if self.buf.len() - self.end < self.min_free {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < self.min_free {
                let doubled = (self.buf.len() * 2).max(INITIAL_RECV_BUF);
                let new_len = if want > self.buf.len() {
                    doubled.min(want.max(INITIAL_RECV_BUF))
                } else {
                    doubled
                };
                self.buf.resize(new_len.max(self.end + self.min_free), 0);
            }
        }
        let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
        let mut flags = RecvFlags::CMSG_CLOEXEC;
        if deadline.is_some() {
            flags |= RecvFlags::DONTWAIT;
        }
        loop {
            let from = self.consumed + (self.end - self.start) as u64;
            let mut iov = [IoSliceMut::new(&mut self.buf[self.end..])];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            match rustix::net::recvmsg(fd, &mut iov, &mut control, flags) {
                Ok(msg) => {
                    let n = msg.bytes;
                    let mut fds = Vec::new();
                    for m in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(received) = m {
                            fds.extend(received);
                        }
                    }
                    self.end += n;
                    if msg.flags.contains(ReturnFlags::TRUNC) {
                        return Err(Error::BadFrame(format!(
                            "the peer sent a record longer than {} bytes; its end was lost",
                            self.min_free
                        )));
                    }
                    // MSG_CTRUNC: the kernel could not install every descriptor (this process
                    // is at its descriptor limit; the room above fits the most one message can
                    // carry). Keep what arrived: the frame they belong to reports the rest as
                    // missing when it is parsed.
                    if !fds.is_empty() {
                        self.batches.push_back(Batch {
                            from,
                            to: from + n as u64,
                            fds,
                        });
                    }
                    return Ok(n);
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => match deadline {
                    Some(d) => wait_readable(fd, d)?,
                    // A non-blocking socket (from `from_fd`): wait in poll, not in a busy loop.
                    None => {
                        poll_fd(fd, None)?;
                    }
                },
                Err(Errno::CONNRESET) => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Takes the descriptors of the frame starting at stream offset `at`, which announced
    /// `count` of them.
    fn claim(&mut self, at: u64, count: u32) -> Result<Vec<OwnedFd>> {
        if let Some(b) = self.batches.front() {
            if b.to <= at {
                // Every frame that could have announced them has been parsed.
                return Err(Error::UnexpectedFds {
                    count: b.fds.len() as u32,
                });
            }
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        match self.batches.front() {
            Some(b) if b.from <= at && at < b.to => {}
            _ => {
                return Err(Error::MissingFds {
                    expected: count,
                    received: 0,
                })
            }
        }
        let batch = match self.batches.pop_front() {
            Some(b) => b,
            None => {
                return Err(Error::MissingFds {
                    expected: count,
                    received: 0,
                })
            }
        };
        let got = batch.fds.len() as u32;
        if got < count {
            return Err(Error::MissingFds {
                expected: count,
                received: got,
            });
        }
        if got > count {
            return Err(Error::UnexpectedFds { count: got - count });
        }
        Ok(batch.fds)
    }

    /// Reads one whole frame. On success the payload is `self.payload(len)` and the caller
    /// must call [`consume`](Self::consume) with the frame's total length.
    fn frame(
        &mut self,
        fd: BorrowedFd<'_>,
        deadline: Option<Instant>,
        max: u64,
    ) -> Result<(Header, Vec<OwnedFd>)> {
        let (header, fds) = match self.pending.take() {
            Some(p) => p,
            None => {
                while self.available() < HEADER_LEN {
                    if self.read_more(fd, deadline, HEADER_LEN)? == 0 {
                        if self.available() == 0 {
                            return Err(Error::Eof);
                        }
                        return Err(Error::TruncatedFrame {
                            expected: HEADER_LEN as u64,
                            got: self.available() as u64,
                        });
                    }
                }
                let mut h = [0u8; HEADER_LEN];
                h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
                let header = Header::parse(&h, max)?;
                let fds = self.claim(self.consumed, header.fds)?;
                (header, fds)
            }
        };
        let total = match usize::try_from(header.len)
            .ok()
            .and_then(|l| l.checked_add(HEADER_LEN))
        {
            Some(t) => t,
            None => {
                return Err(Error::TooLarge {
                    len: header.len,
                    max: usize::MAX as u64,
                })
            }
        };
        while self.available() < total {
            match self.read_more(fd, deadline, total) {
                Ok(0) => {
                    return Err(Error::TruncatedFrame {
                        expected: total as u64,
                        got: self.available() as u64,
                    })
                }
                Ok(_) => {
                    // Descriptors come with a frame's first byte, and the kernel ends a read
                    // with the bytes that carried them: a batch ending inside this frame's body
                    // was attached to a byte in its middle. Refuse it now instead of holding
                    // its descriptors (a peer could fill this process's table) until the end.
                    let end = self.consumed + total as u64;
                    if let Some(b) = self.batches.back() {
                        if b.to <= end {
                            return Err(Error::UnexpectedFds {
                                count: b.fds.len() as u32,
                            });
                        }
                    }
                }
                Err(e) => {
                    self.pending = Some((header, fds));
                    return Err(e);
                }
            }
        }
        Ok((header, fds))
    }

    fn payload(&self, len: u64) -> &[u8] {
        let s = self.start + HEADER_LEN;
        &self.buf[s..s + len as usize]
    }

    fn consume(&mut self, len: u64) {
        let n = HEADER_LEN + len as usize;
        self.start += n;
        self.consumed += n as u64;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BUF {
                self.buf = Vec::new();
            }
        }
    }
}

/// Waits until `fd` is readable (or at end of stream), or fails with `Timeout` at `deadline`.
fn wait_readable(fd: BorrowedFd<'_>, deadline: Instant) -> Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if poll_fd(fd, Some(left))? {
            return Ok(());
        }
        if left.is_zero() || Instant::now() >= deadline {
            return Err(Error::Timeout);
        }
    }
}

/// Waits until `fd` can be written (or has failed: the next write reports it).
fn wait_writable(fd: BorrowedFd<'_>) -> Result<()> {
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::OUT)];
    match rustix::event::poll(&mut fds, None) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `poll` on one descriptor for input; `None` waits forever.
pub(crate) fn poll_fd(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<bool> {
    let ts = timeout.map(|d| rustix::event::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    loop {
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(!fds[0].revents().is_empty()),
            Err(Errno::INTR) => {
                // Retrying with the full timeout again could overrun a deadline slightly; the
                // callers loop on their own deadline, so report "not yet" for a bounded wait.
                if timeout.is_some() {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes `a` then `b` completely, with `fds` attached to the first byte, in pieces of at most
/// `limit` bytes (each piece is one record on a seqpacket socket). One system call when it
/// fits.
fn write_all(
    fd: BorrowedFd<'_>,
    a: &[u8],
    b: &[u8],
    fds: &[BorrowedFd<'_>],
    limit: usize,
) -> Result<()> {
    let total = a.len() + b.len();
    let mut done = 0usize;
    while done < total {
        let rest_a: &[u8] = if done < a.len() { &a[done..] } else { &[] };
        let rest_b = &b[done.saturating_sub(a.len())..];
        let s1 = &rest_a[..rest_a.len().min(limit)];
        let s2 = &rest_b[..rest_b.len().min(limit - s1.len())];
        let iov = [IoSlice::new(s1), IoSlice::new(s2)];
        let r = if done == 0 && !fds.is_empty() {
            let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(Error::Transfer(transfer::TransferError::TooManyFds {
                    count: fds.len(),
                }));
            }
            rustix::net::sendmsg(fd, &iov, &mut control, SendFlags::NOSIGNAL)
        } else if s2.is_empty() {
            // One contiguous buffer and no descriptors: plain send(2), cheaper than sendmsg.
            rustix::net::send(fd, s1, SendFlags::NOSIGNAL)
        } else if s1.is_empty() {
            rustix::net::send(fd, s2, SendFlags::NOSIGNAL)
        } else {
            rustix::net::sendmsg(
                fd,
                &iov,
                &mut SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            )
        };
        match r {
            Ok(n) => done += n,
            Err(Errno::INTR) => continue,
            // A non-blocking socket (from `from_fd`) that is full: wait for room in poll.
            Err(Errno::AGAIN) => wait_writable(fd)?,
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => {
                return Err(if done == 0 { Error::Eof } else { Error::Broken })
            }
            Err(e) => {
                return Err(if done == 0 { e.into() } else { Error::Broken });
            }
        }
    }
    Ok(())
}

fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

impl Connection {
    fn from_parts(fd: OwnedFd, mode: Mode, max: u64, seqpacket: bool) -> Connection {
        Connection {
            inner: Some(Arc::new(Inner {
                fd,
                send: Mutex::new(SendState { buf: Vec::new() }),
                recv: Mutex::new(RecvState::new(seqpacket)),
                broken: AtomicBool::new(false),
                max: AtomicU64::new(max),
                write_limit: if seqpacket { MAX_RECORD } else { usize::MAX },
            })),
            mode,
        }
    }

    /// Wraps a connected socket (a Unix stream or seqpacket socket, or a TCP stream) as a
    /// duplex connection.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `fd` is not such a socket (Python's
    /// `ValueError('invalid handle')`).
    pub fn from_fd(fd: OwnedFd) -> Result<Connection> {
        match rustix::net::sockopt::socket_type(&fd) {
            Ok(t) if t == SocketType::STREAM || t == SocketType::SEQPACKET => {
                Ok(Connection::from_parts(
                    fd,
                    Mode::Duplex,
                    DEFAULT_MAX_MESSAGE_SIZE,
                    t == SocketType::SEQPACKET,
                ))
            }
            Ok(_) => Err(Error::InvalidArgument(
                "invalid handle: not a stream or seqpacket socket".into(),
            )),
            Err(e) => Err(Error::InvalidArgument(format!("invalid handle: {e}"))),
        }
    }

    fn inner(&self) -> Result<&Inner> {
        self.inner.as_deref().ok_or(Error::Closed)
    }

    fn reading(&self) -> Result<&Inner> {
        let inner = self.inner()?;
        if self.mode == Mode::WriteOnly {
            return Err(Error::WriteOnly);
        }
        Ok(inner)
    }

    fn writing(&self) -> Result<&Inner> {
        let inner = self.inner()?;
        if self.mode == Mode::ReadOnly {
            return Err(Error::ReadOnly);
        }
        if inner.broken.load(Ordering::Relaxed) {
            return Err(Error::Broken);
        }
        Ok(inner)
    }

    /// The socket, for `poll`/`epoll` integration.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`close`](Connection::close).
    pub fn fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.inner()?.fd.as_fd())
    }

    /// Can this end receive? (`false` for the writer of [`Pipe::simplex`] and after `close`.)
    pub fn readable(&self) -> bool {
        self.inner.is_some() && self.mode != Mode::WriteOnly
    }

    /// Can this end send? (`false` for the reader of [`Pipe::simplex`] and after `close`.)
    pub fn writable(&self) -> bool {
        self.inner.is_some() && self.mode != Mode::ReadOnly
    }

    /// Has this handle been closed?
    pub fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// The largest payload this connection sends or accepts, in bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`close`](Connection::close).
    pub fn max_message_size(&self) -> Result<u64> {
        Ok(self.inner()?.max.load(Ordering::Relaxed))
    }

    /// Sets the largest payload this connection sends or accepts (shared by its clones).
    /// A received frame announcing more is refused before anything is allocated for it.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`close`](Connection::close).
    pub fn set_max_message_size(&self, max: u64) -> Result<()> {
        self.inner()?.max.store(max, Ordering::Relaxed);
        Ok(())
    }

    fn lock_send(inner: &Inner) -> MutexGuard<'_, SendState> {
        inner.send.lock()
    }

    fn lock_recv(inner: &Inner, deadline: Option<Instant>) -> Result<MutexGuard<'_, RecvState>> {
        match deadline {
            None => Ok(inner.recv.lock()),
            Some(d) => inner.recv.try_lock_until(d).ok_or(Error::Timeout),
        }
    }

    /// Sends one typed message: postcard-encoded, with the descriptors of any handles inside
    /// it attached.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`]/[`Error::Transfer`] if the value cannot be serialized (nothing is
    /// sent), [`Error::TooLarge`] over the maximum message size, [`Error::Eof`] when the peer
    /// is gone, [`Error::Closed`]/[`Error::ReadOnly`] on a handle that cannot send.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let inner = self.writing()?;
        let mut st = Self::lock_send(inner);
        st.buf.clear();
        st.buf.extend_from_slice(&[0u8; HEADER_LEN]);
        let fds = match transfer::encode_into(value, &mut st.buf) {
            Ok(fds) => fds,
            Err(e) => {
                st.buf.clear();
                return Err(from_encode(e));
            }
        };
        let len = (st.buf.len() - HEADER_LEN) as u64;
        let max = inner.max.load(Ordering::Relaxed);
        if len > max {
            return Err(Error::TooLarge { len, max });
        }
        let header = Header {
            kind: Kind::Data,
            fds: fds.len() as u32,
            len,
        };
        st.buf[..HEADER_LEN].copy_from_slice(&header.encode());
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        let r = write_all(inner.fd.as_fd(), &st.buf, &[], &borrowed, inner.write_limit);
        if st.buf.capacity() > KEEP_BUF {
            st.buf = Vec::new();
        }
        self.note_send(inner, r)
    }

    fn note_send(&self, inner: &Inner, r: Result<()>) -> Result<()> {
        if let Err(Error::Broken) = r {
            inner.broken.store(true, Ordering::Relaxed);
        }
        r
    }

    /// Sends raw bytes as one message (Python's `send_bytes`). Send a sub-range with
    /// `send_bytes(&buf[offset..offset + size])`.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send), except for encoding.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_frame(Kind::Data, bytes)
    }

    pub(crate) fn send_frame(&self, kind: Kind, bytes: &[u8]) -> Result<()> {
        let inner = self.writing()?;
        let len = bytes.len() as u64;
        let max = inner.max.load(Ordering::Relaxed);
        if len > max {
            return Err(Error::TooLarge { len, max });
        }
        let header = Header { kind, fds: 0, len }.encode();
        let mut st = Self::lock_send(inner);
        let r = if bytes.len() <= SMALL_FRAME {
            // Small: copy behind the header and send one contiguous buffer.
            st.buf.clear();
            st.buf.extend_from_slice(&header);
            st.buf.extend_from_slice(bytes);
            write_all(inner.fd.as_fd(), &st.buf, &[], &[], inner.write_limit)
        } else {
            // Large: gather header and payload without copying.
            write_all(inner.fd.as_fd(), &header, bytes, &[], inner.write_limit)
        };
        self.note_send(inner, r)
    }

    /// Receives one frame and hands its payload and descriptors to `f`, under the receive
    /// lock. Framing errors mark the connection broken.
    fn with_frame<R>(
        &self,
        deadline: Option<Instant>,
        kind: Kind,
        max_override: Option<u64>,
        f: impl FnOnce(&[u8], Vec<OwnedFd>) -> R,
    ) -> Result<R> {
        let inner = self.reading()?;
        let mut st = Self::lock_recv(inner, deadline)?;
        if inner.broken.load(Ordering::Relaxed) {
            return Err(Error::Broken);
        }
        let max = max_override.unwrap_or_else(|| inner.max.load(Ordering::Relaxed));
        let (header, fds) = match st.frame(inner.fd.as_fd(), deadline, max) {
            Ok(x) => x,
            Err(e) => {
                if e.is_framing() {
                    inner.broken.store(true, Ordering::Relaxed);
                }
                return Err(e);
            }
        };
        if header.kind != kind {
            inner.broken.store(true, Ordering::Relaxed);
            return Err(Error::BadFrame(format!(
                "expected a {kind:?} frame, got a {:?} frame",
                header.kind
            )));
        }
        let r = f(st.payload(header.len), fds);
        st.consume(header.len);
        Ok(r)
    }

    /// Receives one typed message, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::Eof`] when the peer closed and everything was read; [`Error::Decode`] when the
    /// message does not decode as `T` (the connection stays usable); the framing errors
    /// [`Error::TruncatedFrame`], [`Error::TooLarge`], [`Error::BadFrame`],
    /// [`Error::MissingFds`], [`Error::UnexpectedFds`], after which every receive returns
    /// [`Error::Broken`]; [`Error::Closed`]/[`Error::WriteOnly`] on a handle that cannot receive.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.recv_deadline(None)
    }

    /// Like [`recv`](Connection::recv), failing with [`Error::Timeout`] if no whole message
    /// arrived within `timeout`. A message that was partly received stays buffered for the
    /// next call.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv), plus [`Error::Timeout`].
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        self.recv_deadline(deadline_after(timeout))
    }

    /// Like [`recv`](Connection::recv) without waiting: [`Error::Timeout`] if no whole message
    /// is ready.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Connection::recv_timeout).
    pub fn try_recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.recv_deadline(Some(Instant::now()))
    }

    fn recv_deadline<T: DeserializeOwned>(&self, deadline: Option<Instant>) -> Result<T> {
        self.with_frame(deadline, Kind::Data, None, |payload, fds| {
            transfer::decode::<T>(payload, fds).map_err(from_decode)
        })?
    }

    /// Receives one message as raw bytes (Python's `recv_bytes`). Descriptors that came with
    /// it are closed.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv), without [`Error::Decode`].
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.with_frame(None, Kind::Data, None, |p, _| p.to_vec())
    }

    /// [`recv_bytes`](Connection::recv_bytes) with a timeout.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes), plus [`Error::Timeout`].
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.with_frame(deadline_after(timeout), Kind::Data, None, |p, _| p.to_vec())
    }

    /// [`recv_bytes`](Connection::recv_bytes) without waiting.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes), plus [`Error::Timeout`] when no whole
    /// message is ready.
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>> {
        self.with_frame(Some(Instant::now()), Kind::Data, None, |p, _| p.to_vec())
    }

    /// Receives one message into `buf` from its start and returns its length (Python's
    /// `recv_bytes_into`; for Python's `offset`, pass `&mut buf[offset..]`).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooShort`] carrying the whole message when it does not fit (the
    /// message is consumed, as in Python), and the errors of
    /// [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_channel_core::{Error, Pipe};
    ///
    /// let (a, b) = Pipe::new()?;
    /// a.send_bytes(b"0123456789")?;
    /// let mut small = [0u8; 4];
    /// match b.recv_bytes_into(&mut small) {
    ///     Err(Error::BufferTooShort(msg)) => assert_eq!(msg, b"0123456789"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.with_frame(None, Kind::Data, None, |p, _| {
            if p.len() > buf.len() {
                Err(Error::BufferTooShort(p.to_vec()))
            } else {
                buf[..p.len()].copy_from_slice(p);
                Ok(p.len())
            }
        })?
    }

    pub(crate) fn recv_frame_bytes(
        &self,
        kind: Kind,
        deadline: Option<Instant>,
        max: u64,
    ) -> Result<Vec<u8>> {
        self.with_frame(deadline, kind, Some(max), |p, _| p.to_vec())
    }

    /// Is there something to receive? Waits up to `timeout` (`None`: as long as it takes;
    /// `Some(Duration::ZERO)`: just look). End of stream counts as readable, as in Python:
    /// the next receive then returns [`Error::Eof`].
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]/[`Error::WriteOnly`] on a handle that cannot receive.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let inner = self.reading()?;
        let deadline = timeout.and_then(deadline_after);
        let st = match Self::lock_recv(inner, deadline.or(timeout.map(|_| Instant::now()))) {
            Ok(st) => st,
            // Another thread is receiving; nothing is ours to take within the timeout.
            Err(Error::Timeout) => return Ok(false),
            Err(e) => return Err(e),
        };
        if st.has_data() || inner.broken.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        poll_fd(inner.fd.as_fd(), left.or(timeout))
    }

    /// Closes this handle (idempotent). The socket itself closes when every clone of this
    /// handle is closed or dropped, and only in this process: a copy inherited by or sent to
    /// another process stays open. Afterwards every operation on this handle returns
    /// [`Error::Closed`].
    pub fn close(&mut self) {
        self.inner = None;
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Connection");
        match &self.inner {
            Some(inner) => {
                use std::os::fd::AsRawFd;
                d.field("fd", &inner.fd.as_raw_fd());
            }
            None => {
                d.field("closed", &true);
            }
        }
        d.field("mode", &self.mode).finish()
    }
}

/// Python's `Pipe()`: makes connected pairs of [`Connection`]s.
///
/// # Examples
///
/// ```
/// use ipc_channel_core::Pipe;
///
/// let (reader, writer) = Pipe::simplex()?;
/// writer.send(&"hello")?;
/// assert_eq!(reader.recv::<String>()?, "hello");
/// assert!(reader.send(&1).is_err()); // read-only
/// # Ok::<(), ipc_channel_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Two duplex connections over a Unix `SOCK_SEQPACKET` socketpair (`Pipe(duplex=True)`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the socketpair cannot be made (out of descriptors).
    // `Pipe::new()` is the name users look for (Python's `Pipe()`); it returns the pair.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection, Connection)> {
        let (a, b) = socketpair()?;
        Ok((
            Connection::from_parts(a, Mode::Duplex, DEFAULT_MAX_MESSAGE_SIZE, true),
            Connection::from_parts(b, Mode::Duplex, DEFAULT_MAX_MESSAGE_SIZE, true),
        ))
    }

    /// `(reader, writer)`: a one-way channel (`Pipe(duplex=False)`). The reader cannot send
    /// ([`Error::ReadOnly`]), the writer cannot receive ([`Error::WriteOnly`]).
    ///
    /// It is a socketpair, not an OS pipe, so that handles inside messages can travel
    /// (`SCM_RIGHTS` needs a socket); the directions are enforced by the two handles.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the socketpair cannot be made.
    pub fn simplex() -> Result<(Connection, Connection)> {
        let (a, b) = socketpair()?;
        Ok((
            Connection::from_parts(a, Mode::ReadOnly, DEFAULT_MAX_MESSAGE_SIZE, true),
            Connection::from_parts(b, Mode::WriteOnly, DEFAULT_MAX_MESSAGE_SIZE, true),
        ))
    }
}

fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A descriptor serialized as a transfer-table index.
struct FdOut<'a>(BorrowedFd<'a>);

impl Serialize for FdOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        transfer::serialize_fd(self.0, "Connection", s)
    }
}

struct FdIn(OwnedFd);

impl<'de> Deserialize<'de> for FdIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        transfer::deserialize_fd(d).map(FdIn)
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    fd: FdOut<'a>,
    mode: u8,
    max: u64,
}

#[derive(Deserialize)]
struct WireIn {
    fd: FdIn,
    mode: u8,
    max: u64,
}

/// A `Connection` travels as its socket (through the transfer table) and its direction. It
/// must be at a message boundary: one with received bytes still buffered refuses to be
/// serialized, since those bytes would be lost.
impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let inner = self
            .inner
            .as_deref()
            .ok_or_else(|| S::Error::custom("cannot send a closed connection: handle is closed"))?;
        match inner.recv.try_lock() {
            Some(st) if st.has_data() => {
                return Err(S::Error::custom(
                    "cannot send a connection with received bytes still buffered",
                ))
            }
            Some(_) => {}
            None => {
                return Err(S::Error::custom(
                    "cannot send a connection while another thread receives on it",
                ))
            }
        }
        WireOut {
            fd: FdOut(inner.fd.as_fd()),
            mode: self.mode.to_u8(),
            max: inner.max.load(Ordering::Relaxed),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let w = WireIn::deserialize(d)?;
        let mode = Mode::from_u8(w.mode)
            .ok_or_else(|| D::Error::custom(format!("bad connection mode {}", w.mode)))?;
        let seqpacket = match rustix::net::sockopt::socket_type(&w.fd.0) {
            Ok(SocketType::STREAM) => false,
            Ok(SocketType::SEQPACKET) => true,
            _ => {
                return Err(D::Error::custom(
                    "received descriptor is not a stream or seqpacket socket",
                ))
            }
        };
        Ok(Connection::from_parts(w.fd.0, mode, w.max, seqpacket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn connection_is_send_sync() {
        assert_send_sync::<Connection>();
    }

    #[test]
    fn duplex_round_trip_and_boundaries() {
        let (a, b) = Pipe::new().unwrap();
        a.send_bytes(b"a").unwrap();
        a.send_bytes(b"b").unwrap();
        a.send_bytes(b"cd").unwrap();
        a.send_bytes(b"").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"a");
        assert_eq!(b.recv_bytes().unwrap(), b"b");
        assert_eq!(b.recv_bytes().unwrap(), b"cd");
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), b"");
        b.send(&(1u8, "x".to_string(), None::<u32>)).unwrap();
        assert_eq!(
            a.recv::<(u8, String, Option<u32>)>().unwrap(),
            (1, "x".to_string(), None)
        );
    }

    #[test]
    fn poll_and_timeouts() {
        let (a, b) = Pipe::new().unwrap();
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
        let t = Instant::now();
        assert!(!b.poll(Some(Duration::from_millis(50))).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(matches!(b.try_recv::<u32>(), Err(Error::Timeout)));
        assert!(matches!(
            b.recv_timeout::<u32>(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
        a.send(&7u32).unwrap();
        assert!(b.poll(None).unwrap());
        assert_eq!(b.try_recv::<u32>().unwrap(), 7);
    }

    #[test]
    fn eof_and_closed() {
        let (mut a, b) = Pipe::new().unwrap();
        a.send(&1u8).unwrap();
        a.close();
        a.close();
        assert!(a.closed());
        assert!(matches!(a.send(&1u8), Err(Error::Closed)));
        assert!(matches!(a.recv::<u8>(), Err(Error::Closed)));
        assert!(matches!(a.poll(None), Err(Error::Closed)));
        assert_eq!(b.recv::<u8>().unwrap(), 1);
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert!(matches!(b.recv::<u8>(), Err(Error::Eof)));
        assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
        assert!(matches!(b.send(&1u8), Err(Error::Eof)));
    }

    #[test]
    fn clone_keeps_socket_open() {
        let (a, b) = Pipe::new().unwrap();
        let mut a2 = a.clone();
        a2.close();
        a.send(&5u16).unwrap();
        assert_eq!(b.recv::<u16>().unwrap(), 5);
    }

    #[test]
    fn simplex_directions() {
        let (r, w) = Pipe::simplex().unwrap();
        assert!(r.readable() && !r.writable());
        assert!(w.writable() && !w.readable());
        assert!(matches!(r.send(&1u8), Err(Error::ReadOnly)));
        assert!(matches!(w.recv::<u8>(), Err(Error::WriteOnly)));
        assert!(matches!(w.poll(None), Err(Error::WriteOnly)));
        w.send(&1u8).unwrap();
        assert_eq!(r.recv::<u8>().unwrap(), 1);
    }

    #[test]
    fn buffer_too_short_hands_message_back() {
        let (a, b) = Pipe::new().unwrap();
        let data: Vec<u8> = (0..16).collect();
        a.send_bytes(&data).unwrap();
        a.send_bytes(&data).unwrap();
        let mut small = [0u8; 8];
        match b.recv_bytes_into(&mut small) {
            Err(Error::BufferTooShort(m)) => assert_eq!(m, data),
            other => panic!("{other:?}"),
        }
        let mut big = [0u8; 20];
        assert_eq!(b.recv_bytes_into(&mut big[3..]).unwrap(), 16);
        assert_eq!(&big[3..19], &data[..]);
        assert_eq!(big[0], 0);
    }

    #[test]
    fn sixteen_mib_round_trip() {
        let (a, b) = Pipe::new().unwrap();
        let data: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
        let t = std::thread::spawn(move || {
            a.send_bytes(&data).unwrap();
            a.send(&data).unwrap();
            data
        });
        let got = b.recv_bytes().unwrap();
        let got2: Vec<u8> = b.recv().unwrap();
        let data = t.join().unwrap();
        assert_eq!(got, data);
        assert_eq!(got2, data);
    }

    #[test]
    fn max_message_size_both_sides() {
        let (a, b) = Pipe::new().unwrap();
        a.set_max_message_size(10).unwrap();
        assert!(matches!(
            a.send_bytes(&[0; 11]),
            Err(Error::TooLarge { len: 11, max: 10 })
        ));
        a.send_bytes(&[0; 10]).unwrap();
        assert_eq!(b.recv_bytes().unwrap().len(), 10);
        b.set_max_message_size(4).unwrap();
        a.send_bytes(&[0; 5]).unwrap();
        assert!(matches!(
            b.recv_bytes(),
            Err(Error::TooLarge { len: 5, max: 4 })
        ));
        assert!(matches!(b.recv_bytes(), Err(Error::Broken)));
    }

    #[test]
    fn decode_error_keeps_connection_usable() {
        let (a, b) = Pipe::new().unwrap();
        a.send(&"not a number at all").unwrap();
        a.send(&3u64).unwrap();
        assert!(matches!(b.recv::<(u64, u64, u64)>(), Err(Error::Decode(_))));
        assert_eq!(b.recv::<u64>().unwrap(), 3);
    }

    #[test]
    fn connection_through_connection() {
        let (a, b) = Pipe::new().unwrap();
        let (x, y) = Pipe::new().unwrap();
        a.send(&(7u8, y)).unwrap();
        let (n, y2): (u8, Connection) = b.recv().unwrap();
        assert_eq!(n, 7);
        y2.send(&"through").unwrap();
        assert_eq!(x.recv::<String>().unwrap(), "through");
        // A closed handle refuses to travel, and nothing is sent.
        let (_p, mut q) = Pipe::new().unwrap();
        q.close();
        assert!(matches!(a.send(&q), Err(Error::Encode(_))));
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    }

    #[test]
    fn concurrent_receivers_each_get_whole_messages() {
        let (a, b) = Pipe::new().unwrap();
        let b = Arc::new(b);
        let receivers: Vec<_> = (0..3)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        match b.recv::<(u32, Vec<u8>)>() {
                            Ok((i, v)) => {
                                assert_eq!(v, vec![(i % 251) as u8; (i as usize * 131) % 70_000]);
                                got.push(i);
                            }
                            Err(Error::Eof) => return got,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        for i in 0..300u32 {
            a.send(&(i, vec![(i % 251) as u8; (i as usize * 131) % 70_000]))
                .unwrap();
        }
        drop(a);
        let mut all: Vec<u32> = receivers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        assert_eq!(all, (0..300).collect::<Vec<_>>());
    }

    #[test]
    fn concurrent_senders_never_interleave() {
        let (a, b) = Pipe::new().unwrap();
        let a = Arc::new(a);
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let a = Arc::clone(&a);
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        a.send(&(t, i, vec![t; (i as usize * 97) % 5000])).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0u32; 4];
        for _ in 0..800 {
            let (t, i, v): (u8, u32, Vec<u8>) = b.recv().unwrap();
            assert_eq!(next[t as usize], i);
            next[t as usize] += 1;
            assert!(v.iter().all(|x| *x == t));
        }
        for t in threads {
            t.join().unwrap();
        }
    }
}
