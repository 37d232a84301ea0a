//! [`RLock`]: Python's `multiprocessing.RLock`, re-entrant for its owner thread.

use crate::futex::Deadline;
use crate::raw::{Acquired, RawRLock};
use crate::Error;
use ipc_shm::ShmBox;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

// SAFETY: RawRLock is #[repr(C)], made only of atomics (a RawLock and a counter), and all-zero is
// its unlocked state.
unsafe impl ipc_shm::ShmSafe for RawRLock {}

/// A process-shared re-entrant lock (Python's `RLock`): the thread that holds it may acquire it
/// again; it is free once every acquisition is released. Robust like [`crate::Lock`].
///
/// # Examples
///
/// ```
/// use ipc_sync::{Error, RLock};
///
/// let lock = RLock::new()?;
/// let outer = lock.acquire();
/// let inner = lock.acquire(); // the same thread: no deadlock
/// assert_eq!(lock.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!lock.is_locked());
/// // Releasing a lock the thread does not hold is an error, as in Python.
/// assert!(matches!(lock.release(), Err(Error::NotOwner)));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    raw: ShmBox<RawRLock>,
}

impl RLock {
    /// Creates an unlocked re-entrant lock in the shared heap.
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] if the shared heap cannot allocate it.
    pub fn new() -> Result<RLock, Error> {
        Ok(RLock {
            raw: ShmBox::new(RawRLock::new())?,
        })
    }

    /// Acquires the lock (one more level if this thread holds it already).
    pub fn acquire(&self) -> RLockGuard<'_> {
        RLockGuard::new(&self.raw, self.raw.lock())
    }

    /// Acquires the lock without waiting.
    pub fn try_acquire(&self) -> Option<RLockGuard<'_>> {
        self.raw
            .try_lock()
            .map(|acquired| RLockGuard::new(&self.raw, acquired))
    }

    /// Acquires the lock, giving up after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<RLockGuard<'_>> {
        self.raw
            .lock_until(Some(Deadline::after(timeout)))
            .map(|acquired| RLockGuard::new(&self.raw, acquired))
    }

    /// Releases one level held by the calling thread whose guard was given up with
    /// [`RLockGuard::leak`] (Python's explicit `acquire()`/`release()` pairs).
    ///
    /// # Errors
    ///
    /// [`Error::NotOwner`] if the calling thread does not hold the lock (Python raises
    /// `AssertionError` there).
    pub fn release(&self) -> Result<(), Error> {
        self.raw.unlock()
    }

    /// Whether anyone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned_by_current_thread(&self) -> bool {
        self.raw.is_owned_by_current_thread()
    }

    /// How many levels the calling thread holds (0 if it does not hold the lock).
    pub fn depth(&self) -> u64 {
        self.raw.depth()
    }

    /// The raw lock in shared memory.
    pub fn raw(&self) -> &RawRLock {
        &self.raw
    }

    /// Whether two handles refer to the same lock.
    pub fn ptr_eq(a: &RLock, b: &RLock) -> bool {
        ShmBox::ptr_eq(&a.raw, &b.raw)
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("owner_tid", &self.raw.owner_tid())
            .field("depth_held_here", &self.raw.depth())
            .finish()
    }
}

/// One level of an [`RLock`]; dropping it releases that level. Not `Send`.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    raw: &'a RawRLock,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a> RLockGuard<'a> {
    fn new(raw: &'a RawRLock, acquired: Acquired) -> Self {
        RLockGuard {
            raw,
            owner_died: acquired.owner_died(),
            _not_send: PhantomData,
        }
    }

    /// Whether the previous holder died while holding the lock.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Keeps the level held and forgets the guard, for a later [`RLock::release`] by this thread.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // The guard is not Send, so this thread still holds the level it stands for; the only way
        // to get NotOwner is an explicit RLock::release() of this level, which already released it.
        let _ = self.raw.unlock();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("owner_died", &self.owner_died)
            .finish()
    }
}
