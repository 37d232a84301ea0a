//! [`RawRLock`]: a re-entrant [`RawLock`] whose owner may acquire it again.

use super::{current_owner, Acquired, RawLock};
use crate::futex::Deadline;
use crate::primitive::atomic::{AtomicU64, Ordering};
use crate::primitive::const_fn_unless_loom;
use crate::Error;

/// A process-shared, robust, re-entrant lock (Python's `RLock`).
///
/// # State
///
/// ```text
/// lock   RawLock  its owner tid is the RLock's owner
/// count  u64      recursion depth; read and written only by the owner thread
///                 (0 when unlocked; reset to 1 when a dead owner's lock is taken over)
/// ```
///
/// Releasing from a thread that does not hold it is [`Error::NotOwner`].
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawRLock {
    lock: RawLock,
    count: AtomicU64,
}

impl RawRLock {
    const_fn_unless_loom! {
        /// An unlocked re-entrant lock (the same as all-zero memory).
        pub fn new() -> RawRLock {
            RawRLock { lock: RawLock::new(), count: AtomicU64::new(0) }
        }
    }

    /// Acquires the lock, or one more level of it if the calling thread holds it already.
    pub fn lock(&self) -> Acquired {
        if let Some(acquired) = self.reenter() {
            return acquired;
        }
        let acquired = self.lock.lock();
        self.count.store(1, Ordering::Relaxed);
        acquired
    }

    /// Like [`RawRLock::lock`] without waiting.
    pub fn try_lock(&self) -> Option<Acquired> {
        if let Some(acquired) = self.reenter() {
            return Some(acquired);
        }
        let acquired = self.lock.try_lock()?;
        self.count.store(1, Ordering::Relaxed);
        Some(acquired)
    }

    /// Like [`RawRLock::lock`], giving up when `deadline` passes.
    pub fn lock_until(&self, deadline: Option<Deadline>) -> Option<Acquired> {
        if let Some(acquired) = self.reenter() {
            return Some(acquired);
        }
        let acquired = self.lock.lock_until(deadline)?;
        self.count.store(1, Ordering::Relaxed);
        Some(acquired)
    }

    fn reenter(&self) -> Option<Acquired> {
        if self.lock.is_owned_by_current_thread() {
            let depth = self.count.load(Ordering::Relaxed);
            self.count.store(depth.saturating_add(1), Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        None
    }

    /// Releases one level; the lock is free once every level is released.
    ///
    /// # Errors
    ///
    /// [`Error::NotOwner`] if the calling thread does not hold the lock.
    pub fn unlock(&self) -> Result<(), Error> {
        if !self.lock.is_owned_by_current_thread() {
            return Err(Error::NotOwner);
        }
        let depth = self.count.load(Ordering::Relaxed);
        if depth > 1 {
            self.count.store(depth - 1, Ordering::Relaxed);
        } else {
            self.count.store(0, Ordering::Relaxed);
            // SAFETY: the calling thread holds the lock (checked above) and this ends its last level.
            unsafe { self.lock.unlock() };
        }
        Ok(())
    }

    /// Releases every level at once (for a condition wait); returns the depth to restore.
    ///
    /// # Errors
    ///
    /// [`Error::NotOwner`] if the calling thread does not hold the lock.
    pub fn unlock_all(&self) -> Result<u64, Error> {
        if !self.lock.is_owned_by_current_thread() {
            return Err(Error::NotOwner);
        }
        let depth = self.count.swap(0, Ordering::Relaxed);
        // SAFETY: the calling thread holds the lock (checked above); every level ends here.
        unsafe { self.lock.unlock() };
        Ok(depth.max(1))
    }

    /// Re-acquires the lock with a depth saved by [`RawRLock::unlock_all`].
    pub fn relock_all(&self, depth: u64) -> Acquired {
        let acquired = self.lock.lock();
        self.count.store(depth.max(1), Ordering::Relaxed);
        acquired
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned_by_current_thread(&self) -> bool {
        self.lock.is_owned_by_current_thread()
    }

    /// Whether anyone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// The recursion depth if the calling thread holds the lock, else 0.
    pub fn depth(&self) -> u64 {
        if self.is_owned_by_current_thread() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// The thread id of the holder, if any.
    pub fn owner_tid(&self) -> Option<u32> {
        self.lock.owner_tid()
    }

    /// The owner id of the calling thread (its kernel thread id).
    pub fn current_thread_id() -> u32 {
        current_owner().tid
    }
}
