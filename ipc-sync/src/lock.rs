//! [`Lock`]: Python's `multiprocessing.Lock`, robust against a holder's death.

use crate::futex::Deadline;
use crate::raw::{Acquired, RawLock};
use crate::Error;
use ipc_shm::ShmBox;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

// SAFETY: RawLock is #[repr(C)], made only of atomics (no pointers), and all-zero is its
// unlocked state; its methods work through shared references wherever it is mapped.
unsafe impl ipc_shm::ShmSafe for RawLock {}

/// A process-shared lock (Python's `Lock`): one holder at a time, across processes.
///
/// A `Lock` is a handle: clones (and copies sent to other processes through handle transfer) refer
/// to the same lock in the shared heap. [`Lock::acquire`] returns a [`LockGuard`] that releases the
/// lock when dropped. If the holder dies (its thread or process ends while holding the lock), the
/// next acquirer gets the lock within about 100 ms of the death and its guard says so
/// ([`LockGuard::owner_died`]), instead of waiting forever as CPython does.
///
/// # Examples
///
/// ```
/// use ipc_sync::Lock;
/// use std::time::Duration;
///
/// let lock = Lock::new()?;
/// let guard = lock.acquire();
/// assert!(!guard.owner_died());
/// assert!(lock.try_acquire().is_none()); // not re-entrant: see RLock
/// drop(guard);
/// assert!(lock.acquire_timeout(Duration::from_millis(10)).is_some());
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    raw: ShmBox<RawLock>,
}

impl Lock {
    /// Creates an unlocked lock in the shared heap.
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] if the shared heap cannot allocate it.
    pub fn new() -> Result<Lock, Error> {
        Ok(Lock {
            raw: ShmBox::new(RawLock::new())?,
        })
    }

    /// Acquires the lock, waiting as long as it takes (a dead holder's lock is taken over).
    pub fn acquire(&self) -> LockGuard<'_> {
        LockGuard::new(&self.raw, self.raw.lock())
    }

    /// Acquires the lock if it is free (or its holder is dead), without waiting.
    pub fn try_acquire(&self) -> Option<LockGuard<'_>> {
        self.raw
            .try_lock()
            .map(|acquired| LockGuard::new(&self.raw, acquired))
    }

    /// Acquires the lock, giving up after `timeout` (`None` then).
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<LockGuard<'_>> {
        self.raw
            .lock_until(Some(Deadline::after(timeout)))
            .map(|acquired| LockGuard::new(&self.raw, acquired))
    }

    /// Releases the lock whoever holds it, as Python's `Lock.release()` may (a `Lock` is not
    /// owner-checked). Pair it with a guard given up with [`LockGuard::leak`], for instance to
    /// acquire in one process and release in another.
    ///
    /// # Errors
    ///
    /// [`Error::OverRelease`] if the lock is not locked.
    pub fn release(&self) -> Result<(), Error> {
        // SAFETY: a `Lock` protects no data of its own, so ending somebody else's acquisition
        // cannot create aliasing; it is the documented Python behaviour.
        if unsafe { self.raw.unlock_if_locked() } {
            Ok(())
        } else {
            Err(Error::OverRelease)
        }
    }

    /// Whether the lock is held (by anyone).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned_by_current_thread(&self) -> bool {
        self.raw.is_owned_by_current_thread()
    }

    /// The raw lock in shared memory.
    pub fn raw(&self) -> &RawLock {
        &self.raw
    }

    /// Whether two handles refer to the same lock.
    pub fn ptr_eq(a: &Lock, b: &Lock) -> bool {
        ShmBox::ptr_eq(&a.raw, &b.raw)
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("owner_tid", &self.raw.owner_tid())
            .finish()
    }
}

/// Proof that a [`Lock`] is held; dropping it releases the lock.
///
/// Not `Send`: the lock records the thread that holds it, and a holder that seems to have exited
/// would have its lock taken over.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    raw: &'a RawLock,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a> LockGuard<'a> {
    fn new(raw: &'a RawLock, acquired: Acquired) -> Self {
        LockGuard {
            raw,
            owner_died: acquired.owner_died(),
            _not_send: PhantomData,
        }
    }

    /// Whether the previous holder died while holding the lock (whatever it protected may be
    /// half-updated). The lock itself works normally from now on.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Keeps the lock held and forgets the guard, for a later [`Lock::release`] (possibly by
    /// another thread or process).
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: RawLock::unlock asks that nothing the lock protects is used through the ended
        // acquisition; a `Lock` protects no data, so ending it is always memory-safe. Normally the
        // guard stands for this thread's acquisition (dropped once); if `Lock::release` ended it
        // early, this releases whoever holds the lock now, as Python's owner-less `Lock` would.
        unsafe { self.raw.unlock() };
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("owner_died", &self.owner_died)
            .finish()
    }
}
