//! The two queue backends behind [`Queue`](crate::Queue), dispatched by a private enum (the
//! crossbeam-channel pattern): [`pipe`] (records on a `SOCK_SEQPACKET` socketpair) and
//! [`shm_ring`] (records in a shared-memory chunk list). Both move opaque byte records; the
//! typed layer encodes and decodes.

pub(crate) mod pipe;
pub(crate) mod ring_core;
pub(crate) mod shm_ring;

use ipc_sync::futex::Deadline;
use ipc_sync::raw::RawLock;
use serde::{Deserialize, Serialize};

use self::ring_core::CrashPoint;

/// The hook of an ordinary operation: no crash point does anything.
pub(crate) fn no_hook(_: CrashPoint) {}

/// A held [`RawLock`], released on drop (also on unwind). The pipe backend needs no repair
/// when a holder died (see `pipe`), so whether one did is not kept.
pub(crate) struct Held<'a> {
    lock: &'a RawLock,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: a `Held` exists only after `lock_raw` acquired the lock on this thread, and it
        // is dropped exactly once, ending that acquisition.
        unsafe { self.lock.unlock() };
    }
}

/// Acquires `lock` (robustly: a dead holder's lock is taken over) or gives up at `deadline`.
pub(crate) fn lock_raw(lock: &RawLock, deadline: Option<Deadline>) -> Option<Held<'_>> {
    lock.lock_until(deadline).map(|_| Held { lock })
}

/// Takes `lock` if it is free or its holder is dead, without waiting.
pub(crate) fn try_lock_raw(lock: &RawLock) -> Option<Held<'_>> {
    lock.try_lock().map(|_| Held { lock })
}

/// A receive buffer that stays initialized as it grows, so receiving into it never pays for
/// zeroing: `data[..used]` is the current record.
#[derive(Default)]
pub(crate) struct RecvBuf {
    pub(crate) data: Vec<u8>,
    pub(crate) used: usize,
}

impl RecvBuf {
    /// Makes room for `more` bytes after `used`.
    pub(crate) fn reserve(&mut self, more: usize) {
        let need = self.used + more;
        if self.data.len() < need {
            let new_len = need.max(self.data.len() * 2).max(4096);
            self.data.resize(new_len, 0);
        }
    }

    /// The current record.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data[..self.used]
    }

    /// Releases a buffer grown by one huge record.
    pub(crate) fn trim(&mut self) {
        if self.data.len() > (1 << 20) {
            self.data = Vec::new();
        }
        self.used = 0;
    }
}

/// Which backend a queue uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Backend {
    /// Records on a `SOCK_SEQPACKET` Unix socketpair shared by every handle (portable, like
    /// Python's pipe-based queue). Messages may carry OS handles (a `Connection`, a `Queue`,
    /// a `Lock`). `put` writes synchronously and may block while the socket buffer is full
    /// (`try_put`/`put_timeout` then report `Full` instead).
    Pipe,
    /// Records in a shared-memory chunk list with futex waits (the default): no system call on
    /// the uncontended path, and an unbounded queue's `put` never blocks. Messages cannot carry
    /// OS handles (use [`Backend::Pipe`] for that).
    #[default]
    Shm,
}

/// The backend of one queue.
pub(crate) enum Flavor {
    Pipe(pipe::PipeQueue),
    Shm(shm_ring::ShmRing),
}

impl Flavor {
    pub(crate) fn len(&self) -> usize {
        match self {
            Flavor::Pipe(p) => p.len(),
            Flavor::Shm(s) => s.len(),
        }
    }

    pub(crate) fn maxsize(&self) -> usize {
        match self {
            Flavor::Pipe(p) => p.maxsize(),
            Flavor::Shm(s) => s.maxsize(),
        }
    }

    pub(crate) fn max_message_size(&self) -> u64 {
        match self {
            Flavor::Pipe(p) => p.max_message_size(),
            Flavor::Shm(s) => s.max_message_size(),
        }
    }

    /// Runs `f` holding the consumers' lock (see `Queue::__testing_hold_get_side`).
    #[cfg(feature = "testing-hooks")]
    pub(crate) fn hold_get_side(&self, f: impl FnOnce()) {
        let lock = match self {
            Flavor::Pipe(p) => p.read_lock(),
            Flavor::Shm(s) => s.get_lock(),
        };
        let _held = lock_raw(lock, None);
        f();
    }

    /// Runs `f` holding the producers' lock.
    #[cfg(feature = "testing-hooks")]
    pub(crate) fn hold_put_side(&self, f: impl FnOnce()) {
        let lock = match self {
            Flavor::Pipe(p) => p.write_lock(),
            Flavor::Shm(s) => s.put_lock(),
        };
        let _held = lock_raw(lock, None);
        f();
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Flavor::Pipe(_) => Backend::Pipe,
            Flavor::Shm(_) => Backend::Shm,
        }
    }
}
