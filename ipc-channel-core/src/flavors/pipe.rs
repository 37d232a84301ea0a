//! The pipe backend: records on a `SOCK_SEQPACKET` Unix socketpair.
//!
//! Every handle holds both ends; producers write to one, consumers read from the other. A
//! message is one or more *records* of at most [`CHUNK`] payload bytes, each with a 16-byte
//! header (`b'q'`, flags `FIRST`/`LAST`, descriptor count, total length); the descriptors ride
//! on the first record. Producers hold the shared write lock for a whole message and consumers
//! the read lock, both robust ipc-sync locks in the shared heap.
//!
//! Seqpacket records are delivered whole or not at all, which is what makes the queue survive a
//! process killed in the middle: a consumer that dies between two records of a message leaves
//! continuation records with no `FIRST`, which the next consumer discards (the dead consumer
//! had taken that message); a producer that dies mid-message leaves a message without `LAST`,
//! which a consumer discards as soon as the next `FIRST` arrives. Neither wedges the queue.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipc_shm::{transfer, ShmBox, ShmSafe};
use ipc_sync::futex::Deadline;
use ipc_sync::raw::{RawLock, RawSemaphore};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ring_core::CrashPoint;
use super::{lock_raw, try_lock_raw, Held, RecvBuf};
use crate::connection::poll_fd;
use crate::err::{Error, Result};

/// Payload bytes per record: well under the default socket buffer (about 200 KiB), which
/// bounds a seqpacket record.
pub(crate) const CHUNK: usize = 64 * 1024;
const HDR: usize = 16;
const MAGIC: u8 = b'q';
const FIRST: u8 = 1;
const LAST: u8 = 2;
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmRights(transfer::MAX_FDS_PER_MESSAGE));
/// How long a consumer in the middle of a message waits for the next record before checking
/// whether its producer is still alive.
const RECHECK: Duration = Duration::from_millis(100);

/// The shared state: locks, counters and the capacity semaphore.
#[repr(C)]
pub(crate) struct PipeCtrl {
    read_lock: RawLock,
    write_lock: RawLock,
    put_count: AtomicU64,
    get_count: AtomicU64,
    maxsize: AtomicU64,
    max_msg: AtomicU64,
    /// Free places of a bounded queue (unused when `maxsize` is 0).
    slots: RawSemaphore,
    /// 1 while the holder of `write_lock` holds a place of a bounded queue and has not sent
    /// the first record of its message yet (after that, the consumer that reads the first
    /// record frees the place). A producer that takes the lock over from a dead holder frees
    /// the dead one's place when this is 1, so a killed producer never shrinks the queue.
    put_pending: AtomicU64,
}

// SAFETY: repr(C) of ipc-sync raw primitives (themselves ShmSafe) and atomics: no pointers, the
// all-zero pattern is valid, everything mutates through `&self`, no Drop.
unsafe impl ShmSafe for PipeCtrl {}

/// A descriptor shared by the clones of a handle in this process.
#[derive(Clone)]
struct SharedFd(Arc<OwnedFd>);

impl Serialize for SharedFd {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        transfer::serialize_fd(self.0.as_fd(), "Queue", s)
    }
}

impl<'de> Deserialize<'de> for SharedFd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let fd = transfer::deserialize_fd(d)?;
        match rustix::net::sockopt::socket_type(&fd) {
            Ok(SocketType::SEQPACKET) => Ok(SharedFd(Arc::new(fd))),
            _ => Err(D::Error::custom(
                "received queue descriptor is not a seqpacket socket",
            )),
        }
    }
}

/// Waits up to `timeout` for room to write on `fd` (an interrupted wait just returns early).
fn wait_writable(fd: BorrowedFd<'_>, timeout: Duration) -> Result<()> {
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    let mut fds = [rustix::event::PollFd::from_borrowed_fd(
        fd,
        rustix::event::PollFlags::OUT,
    )];
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One pipe-backed queue handle.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PipeQueue {
    ctrl: ShmBox<PipeCtrl>,
    tx: SharedFd,
    rx: SharedFd,
}

impl PipeQueue {
    pub(crate) fn new(maxsize: usize, max_msg: u64) -> Result<PipeQueue> {
        let (rx, tx) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let slots = u32::try_from(maxsize)
            .ok()
            .filter(|n| *n <= ipc_sync::raw::SEM_VALUE_MAX)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "maxsize {maxsize} exceeds {}",
                    ipc_sync::raw::SEM_VALUE_MAX
                ))
            })?;
        let ctrl = ShmBox::new(PipeCtrl {
            read_lock: RawLock::new(),
            write_lock: RawLock::new(),
            put_count: AtomicU64::new(0),
            get_count: AtomicU64::new(0),
            maxsize: AtomicU64::new(maxsize as u64),
            max_msg: AtomicU64::new(max_msg),
            slots: RawSemaphore::new(slots),
            put_pending: AtomicU64::new(0),
        })
        .map_err(|e| Error::Shm(e.to_string()))?;
        Ok(PipeQueue {
            ctrl,
            tx: SharedFd(Arc::new(tx)),
            rx: SharedFd(Arc::new(rx)),
        })
    }

    #[cfg(feature = "testing-hooks")]
    pub(crate) fn read_lock(&self) -> &RawLock {
        &self.ctrl.read_lock
    }

    #[cfg(feature = "testing-hooks")]
    pub(crate) fn write_lock(&self) -> &RawLock {
        &self.ctrl.write_lock
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.ctrl.maxsize.load(Ordering::Relaxed) as usize
    }

    pub(crate) fn max_message_size(&self) -> u64 {
        self.ctrl.max_msg.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        let put = self.ctrl.put_count.load(Ordering::Acquire);
        let got = self.ctrl.get_count.load(Ordering::Acquire);
        put.saturating_sub(got) as usize
    }

    pub(crate) fn put(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Option<Deadline>,
        hook: &dyn Fn(CrashPoint),
    ) -> Result<()> {
        let max = self.max_message_size();
        if bytes.len() as u64 > max {
            return Err(Error::TooLarge {
                len: bytes.len() as u64,
                max,
            });
        }
        let bounded = self.maxsize() > 0;
        // The write lock first, then a place: a producer killed while it waits for either
        // holds nothing the others need back (see `put_pending`).
        let Some(acquired) = self.ctrl.write_lock.lock_until(deadline) else {
            return Err(Error::Timeout);
        };
        let held = Held {
            lock: &self.ctrl.write_lock,
        };
        if acquired.owner_died() && self.ctrl.put_pending.swap(0, Ordering::AcqRel) == 1 {
            // The dead holder had taken a place and sent nothing: give the place back. (A
            // message it left without LAST is dropped by consumers when our FIRST arrives.)
            let _ = self.ctrl.slots.release();
        }
        if bounded {
            if !self.ctrl.slots.acquire_until(deadline) {
                return Err(Error::Timeout);
            }
            self.ctrl.put_pending.store(1, Ordering::Release);
        }
        let r = self.send_message(bytes, fds, deadline, hook);
        if r.is_ok() {
            hook(CrashPoint::PutBeforeFlip);
            self.ctrl.put_count.fetch_add(1, Ordering::AcqRel);
        }
        // Still pending: the first record never went out, so the place is ours to return.
        if self.ctrl.put_pending.swap(0, Ordering::AcqRel) == 1 {
            let _ = self.ctrl.slots.release();
        }
        drop(held);
        r
    }

    /// Sends `bytes` as one message. With a deadline, the first record waits for room in the
    /// socket buffer only until then (`Timeout`, nothing sent); once it is out, the rest of the
    /// message is sent whatever the deadline (a message is never left half-sent by a timeout).
    fn send_message(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Option<Deadline>,
        hook: &dyn Fn(CrashPoint),
    ) -> Result<()> {
        let total = bytes.len();
        let mut sent = 0usize;
        loop {
            let n = (total - sent).min(CHUNK);
            let mut flags = 0u8;
            if sent == 0 {
                flags |= FIRST;
            }
            if sent + n == total {
                flags |= LAST;
            }
            let mut h = [0u8; HDR];
            h[0] = MAGIC;
            h[1] = flags;
            if sent == 0 {
                h[4..8].copy_from_slice(&(fds.len() as u32).to_le_bytes());
            }
            h[8..16].copy_from_slice(&(total as u64).to_le_bytes());
            if flags == FIRST | LAST {
                // A one-record message: nothing of it is out yet.
                hook(CrashPoint::PutBeforeCommit);
            }
            let iov = [IoSlice::new(&h), IoSlice::new(&bytes[sent..sent + n])];
            let send_flags = match deadline {
                Some(_) if sent == 0 => SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
                _ => SendFlags::NOSIGNAL,
            };
            let mut waited = false;
            loop {
                let r = if sent == 0 && !fds.is_empty() {
                    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
                    let mut control = SendAncillaryBuffer::new(&mut space);
                    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                        return Err(Error::Transfer(transfer::TransferError::TooManyFds {
                            count: fds.len(),
                        }));
                    }
                    rustix::net::sendmsg(&*self.tx.0, &iov, &mut control, send_flags)
                } else {
                    rustix::net::sendmsg(
                        &*self.tx.0,
                        &iov,
                        &mut SendAncillaryBuffer::default(),
                        send_flags,
                    )
                };
                match (r, deadline) {
                    (Ok(_), _) => {
                        if sent == 0 {
                            // The first record is out: the consumer that reads it frees the
                            // place of a bounded queue.
                            self.ctrl.put_pending.store(0, Ordering::Release);
                        }
                        break;
                    }
                    (Err(Errno::INTR), _) => continue,
                    (Err(Errno::AGAIN), Some(d)) if sent == 0 => {
                        // The socket buffer is full: wait for room until the deadline.
                        if d.has_passed() {
                            return Err(Error::Timeout);
                        }
                        if waited {
                            // Writable by poll's measure but not for a record this big: let
                            // the reader make more room instead of spinning.
                            std::thread::sleep(d.remaining().min(Duration::from_millis(1)));
                        }
                        wait_writable(self.tx.0.as_fd(), d.remaining())?;
                        waited = true;
                    }
                    (Err(e), _) => return Err(e.into()),
                }
            }
            if flags == FIRST {
                // Part of the message is out, the rest is not.
                hook(CrashPoint::PutBeforeCommit);
            }
            sent += n;
            if sent == total {
                return Ok(());
            }
        }
    }

    pub(crate) fn get(
        &self,
        buf: &mut RecvBuf,
        fds: &mut Vec<OwnedFd>,
        deadline: Option<Deadline>,
        hook: &dyn Fn(CrashPoint),
    ) -> Result<()> {
        let held = lock_raw(&self.ctrl.read_lock, deadline).ok_or(Error::Timeout)?;
        let mut taken = false;
        let r = self.recv_message(buf, fds, deadline, hook, &mut taken);
        if r.is_ok() {
            hook(CrashPoint::GetBeforeFree);
        }
        drop(held);
        r
    }

    /// Counts a message as taken (and frees its place in a bounded queue) the moment its
    /// first record is read, not when the whole message is: a consumer killed while it
    /// assembles the rest would otherwise leave `qsize` one too high and a bounded queue one
    /// place short for good. A message refused after its first record (descriptors that could
    /// not be installed, a length over the maximum, a wrong length) is gone from the socket
    /// too, so it stays counted.
    fn take_first(&self, taken: &mut bool) {
        if !*taken {
            *taken = true;
            self.ctrl.get_count.fetch_add(1, Ordering::AcqRel);
        }
        // Each first record frees one place, also that of a message abandoned by a dead
        // producer (which never got its place back itself).
        if self.maxsize() > 0 {
            let _ = self.ctrl.slots.release();
        }
    }

    /// Uncounts a partial message whose producer died: its `put` never counted it.
    fn untake(&self, taken: &mut bool) {
        if *taken {
            *taken = false;
            self.ctrl.get_count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Reads records until one whole message is assembled in `buf`. Sets `taken` once the first
    /// record of a message that is not abandoned has been read (also when it is then refused).
    fn recv_message(
        &self,
        buf: &mut RecvBuf,
        fds: &mut Vec<OwnedFd>,
        deadline: Option<Deadline>,
        hook: &dyn Fn(CrashPoint),
        taken: &mut bool,
    ) -> Result<()> {
        let max = self.max_message_size();
        // (total length, announced descriptors) of the message being assembled.
        let mut assembling: Option<(u64, u32)> = None;
        buf.used = 0;
        fds.clear();
        loop {
            // Wait for a record. Once a message has started, its producer holds the write lock
            // and is sending the rest: wait for it without the deadline, so a timeout never
            // strands half a message.
            let wait = if assembling.is_none() { deadline } else { None };
            if let Some(d) = wait {
                if !poll_fd(self.rx.0.as_fd(), Some(d.remaining()))? {
                    if d.has_passed() {
                        return Err(Error::Timeout);
                    }
                    continue;
                }
            } else if assembling.is_some() && !poll_fd(self.rx.0.as_fd(), Some(RECHECK))? {
                // Nothing for a while in the middle of a message: is its producer still at it?
                // If we can take the write lock, no producer is (it died, or gave up on an
                // error); once we hold it no record can arrive, so an empty socket means the
                // rest will never come. Drop the partial message (its `put` never returned).
                if let Some(_w) = try_lock_raw(&self.ctrl.write_lock) {
                    if !poll_fd(self.rx.0.as_fd(), Some(Duration::ZERO))? {
                        assembling = None;
                        self.untake(taken);
                        buf.used = 0;
                        fds.clear();
                    }
                }
                continue;
            }
            buf.reserve(CHUNK);
            let mut h = [0u8; HDR];
            let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
            let start = buf.used;
            let (n, got_fds, truncated, fds_lost) = {
                let mut iov = [
                    IoSliceMut::new(&mut h),
                    IoSliceMut::new(&mut buf.data[start..start + CHUNK]),
                ];
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let flags = if wait.is_some() {
                    RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT
                } else {
                    RecvFlags::CMSG_CLOEXEC
                };
                match rustix::net::recvmsg(&*self.rx.0, &mut iov, &mut control, flags) {
                    Ok(msg) => {
                        let mut got = Vec::new();
                        for m in control.drain() {
                            if let RecvAncillaryMessage::ScmRights(r) = m {
                                got.extend(r);
                            }
                        }
                        (
                            msg.bytes,
                            got,
                            msg.flags.contains(ReturnFlags::TRUNC),
                            msg.flags.contains(ReturnFlags::CTRUNC),
                        )
                    }
                    Err(Errno::INTR) | Err(Errno::AGAIN) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            if n < HDR || h[0] != MAGIC || truncated {
                // Not a record this crate writes (someone else holds the socket): skip it.
                continue;
            }
            let flags = h[1];
            let mut b4 = [0u8; 4];
            b4.copy_from_slice(&h[4..8]);
            let nfds = u32::from_le_bytes(b4);
            let mut b8 = [0u8; 8];
            b8.copy_from_slice(&h[8..16]);
            let total = u64::from_le_bytes(b8);
            let data = n - HDR;
            if flags & FIRST != 0 {
                // A new message; a half-assembled one was abandoned by a dead producer (it
                // stays counted in place of this one).
                buf.used = 0;
                fds.clear();
                self.take_first(taken);
                if fds_lost {
                    // The kernel could not install every descriptor (this process is at its
                    // descriptor limit): the message cannot be delivered whole. Its other
                    // records are discarded as orphans.
                    return Err(Error::MissingFds {
                        expected: nfds,
                        received: got_fds.len() as u32,
                    });
                }
                if total > max {
                    // Skip this message: its continuation records are discarded as orphans.
                    return Err(Error::TooLarge { len: total, max });
                }
                if got_fds.len() as u32 != nfds {
                    return Err(Error::MissingFds {
                        expected: nfds,
                        received: got_fds.len() as u32,
                    });
                }
                *fds = got_fds;
                assembling = Some((total, nfds));
                if start != 0 {
                    buf.data.copy_within(start..start + data, 0);
                }
            } else if assembling.is_none() || fds_lost {
                // The tail of a message whose consumer died: it was taken; drop it. (Only a
                // first record carries descriptors.)
                continue;
            }
            buf.used += data;
            if flags & FIRST != 0 {
                // The first record is taken from the socket: the message is this consumer's.
                hook(CrashPoint::GetBeforeFlip);
            }
            if flags & LAST != 0 {
                let expected = assembling.map(|a| a.0).unwrap_or(0);
                if buf.used as u64 != expected {
                    return Err(Error::TruncatedFrame {
                        expected,
                        got: buf.used as u64,
                    });
                }
                return Ok(());
            }
        }
    }
}
