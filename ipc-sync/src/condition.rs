//! [`Condition`]: Python's `multiprocessing.Condition`, over its own [`RLock`] or a given lock.

use crate::futex::Deadline;
use crate::raw::{Acquired, RawCondition};
use crate::{Error, Lock, RLock};
use ipc_shm::ShmBox;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

// SAFETY: RawCondition is #[repr(C)], three atomic u32s (no pointers); all-zero is its initial
// state (no waiters, no pending notification).
unsafe impl ipc_shm::ShmSafe for RawCondition {}

#[derive(Clone, Serialize, Deserialize)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

impl CondLock {
    fn owned_here(&self) -> bool {
        match self {
            CondLock::Lock(l) => l.is_owned_by_current_thread(),
            CondLock::RLock(l) => l.is_owned_by_current_thread(),
        }
    }

    fn same(&self, other: &CondLock) -> bool {
        match (self, other) {
            (CondLock::Lock(a), CondLock::Lock(b)) => Lock::ptr_eq(a, b),
            (CondLock::RLock(a), CondLock::RLock(b)) => RLock::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A process-shared condition variable with its lock (Python's `Condition`).
///
/// [`Condition::acquire`] takes the lock and returns a [`ConditionGuard`]; [`Condition::wait`]
/// releases the lock (every level of an `RLock`), sleeps until notified, and takes it back.
/// Waiting without the lock, which Python rejects at run time, cannot be written: `wait` needs the
/// guard. A guard of another condition whose lock is a different lock is [`Error::WrongLock`]; two
/// conditions built on the same lock accept each other's guards. `notify` without holding the lock
/// is [`Error::NotOwner`], as Python raises.
///
/// `notify(n)` ends exactly `n` waits (or as many as there are): notifications are counted, not
/// broadcast. A wait may still return `true` without a matching notify if a waiting process died
/// (its notification goes to another waiter), so loop on a predicate ([`Condition::wait_for`]).
///
/// # Examples
///
/// ```
/// use ipc_sync::{Condition, Value};
///
/// let cond = Condition::new()?;
/// let ready = Value::new(0u32)?;
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let _g = cond.acquire();
///         ready.set(1);
///         cond.notify_all().unwrap();
///     });
///     let mut g = cond.acquire();
///     assert!(cond.wait_for(&mut g, || ready.get() == 1).unwrap());
/// });
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    lock: CondLock,
    raw: ShmBox<RawCondition>,
}

impl Condition {
    /// Creates a condition with its own [`RLock`] (Python's default).
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] if the shared heap cannot allocate it.
    pub fn new() -> Result<Condition, Error> {
        Self::with_rlock(RLock::new()?)
    }

    /// Creates a condition over `lock` (Python's `Condition(lock)`).
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] if the shared heap cannot allocate it.
    pub fn with_lock(lock: Lock) -> Result<Condition, Error> {
        Ok(Condition {
            lock: CondLock::Lock(lock),
            raw: ShmBox::new(RawCondition::new())?,
        })
    }

    /// Creates a condition over the re-entrant `lock`.
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] if the shared heap cannot allocate it.
    pub fn with_rlock(lock: RLock) -> Result<Condition, Error> {
        Ok(Condition {
            lock: CondLock::RLock(lock),
            raw: ShmBox::new(RawCondition::new())?,
        })
    }

    fn lock_until(&self, deadline: Option<Deadline>) -> Option<Acquired> {
        match &self.lock {
            CondLock::Lock(l) => l.raw().lock_until(deadline),
            CondLock::RLock(l) => l.raw().lock_until(deadline),
        }
    }

    /// Acquires the condition's lock.
    pub fn acquire(&self) -> ConditionGuard<'_> {
        let acquired = match &self.lock {
            CondLock::Lock(l) => l.raw().lock(),
            CondLock::RLock(l) => l.raw().lock(),
        };
        ConditionGuard::new(self, acquired)
    }

    /// Acquires the condition's lock without waiting.
    pub fn try_acquire(&self) -> Option<ConditionGuard<'_>> {
        let acquired = match &self.lock {
            CondLock::Lock(l) => l.raw().try_lock(),
            CondLock::RLock(l) => l.raw().try_lock(),
        };
        acquired.map(|a| ConditionGuard::new(self, a))
    }

    /// Acquires the condition's lock, giving up after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<ConditionGuard<'_>> {
        self.lock_until(Some(Deadline::after(timeout)))
            .map(|a| ConditionGuard::new(self, a))
    }

    fn check_guard(&self, guard: &ConditionGuard<'_>) -> Result<(), Error> {
        if !self.lock.same(&guard.cond.lock) {
            return Err(Error::WrongLock);
        }
        if !self.lock.owned_here() {
            return Err(Error::NotOwner);
        }
        Ok(())
    }

    /// Releases the lock, sleeps until notified (or `deadline`), re-acquires the lock.
    fn wait_until(
        &self,
        guard: &mut ConditionGuard<'_>,
        deadline: Option<Deadline>,
    ) -> Result<bool, Error> {
        self.check_guard(guard)?;
        let (notified, acquired) = match &self.lock {
            CondLock::Lock(l) => {
                let raw = l.raw();
                // SAFETY: the calling thread holds the lock (checked above, and the guard proves
                // the acquisition); `wait_until` re-acquires it before returning.
                self.raw
                    .wait_until(deadline, || unsafe { raw.unlock() }, || raw.lock())
            }
            CondLock::RLock(l) => {
                let raw = l.raw();
                let depth = std::cell::Cell::new(1);
                self.raw.wait_until(
                    deadline,
                    // Ownership was checked above, so unlock_all cannot fail here.
                    || depth.set(raw.unlock_all().unwrap_or(1)),
                    || raw.relock_all(depth.get()),
                )
            }
        };
        if acquired.owner_died() {
            guard.owner_died = true;
        }
        Ok(notified)
    }

    /// Waits until notified. The guard's lock is released while waiting and held again on return.
    ///
    /// # Errors
    ///
    /// [`Error::WrongLock`] if `guard` holds another lock; [`Error::NotOwner`] if the lock was
    /// released behind the guard's back (`RLock::release`).
    pub fn wait(&self, guard: &mut ConditionGuard<'_>) -> Result<(), Error> {
        self.wait_until(guard, None).map(|_| ())
    }

    /// Waits until notified or `timeout` passes; returns `false` on timeout.
    ///
    /// # Errors
    ///
    /// As [`Condition::wait`].
    pub fn wait_timeout(
        &self,
        guard: &mut ConditionGuard<'_>,
        timeout: Duration,
    ) -> Result<bool, Error> {
        self.wait_until(guard, Some(Deadline::after(timeout)))
    }

    /// Waits until `predicate` holds (checked with the lock held, first before waiting);
    /// returns `true`.
    ///
    /// # Errors
    ///
    /// As [`Condition::wait`].
    pub fn wait_for(
        &self,
        guard: &mut ConditionGuard<'_>,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<bool, Error> {
        self.check_guard(guard)?;
        while !predicate() {
            self.wait_until(guard, None)?;
        }
        Ok(true)
    }

    /// Waits until `predicate` holds or `timeout` passes; returns the predicate's last value.
    ///
    /// # Errors
    ///
    /// As [`Condition::wait`].
    pub fn wait_for_timeout(
        &self,
        guard: &mut ConditionGuard<'_>,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, Error> {
        self.check_guard(guard)?;
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.has_passed() {
                return Ok(false);
            }
            self.wait_until(guard, Some(deadline))?;
        }
    }

    /// Wakes up to `n` waiters.
    ///
    /// # Errors
    ///
    /// [`Error::NotOwner`] if the calling thread does not hold the condition's lock (Python's
    /// `AssertionError('lock is not owned')`).
    pub fn notify(&self, n: u32) -> Result<(), Error> {
        if !self.lock.owned_here() {
            return Err(Error::NotOwner);
        }
        self.raw.notify(n);
        Ok(())
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`Condition::notify`].
    pub fn notify_all(&self) -> Result<(), Error> {
        self.notify(u32::MAX)
    }

    /// How many waiters have not been notified yet.
    pub fn n_waiting(&self) -> usize {
        self.raw.n_waiting() as usize
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lock: &dyn fmt::Debug = match &self.lock {
            CondLock::Lock(l) => l,
            CondLock::RLock(l) => l,
        };
        f.debug_struct("Condition")
            .field("lock", lock)
            .field("n_waiting", &self.n_waiting())
            .finish()
    }
}

/// Holds a [`Condition`]'s lock (one level of it, for an `RLock`); dropping it releases that.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a> ConditionGuard<'a> {
    fn new(cond: &'a Condition, acquired: Acquired) -> Self {
        ConditionGuard {
            cond,
            owner_died: acquired.owner_died(),
            _not_send: PhantomData,
        }
    }

    /// Whether a previous holder of the lock died while holding it (on acquiring, or on
    /// re-acquiring after a wait).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        match &self.cond.lock {
            // SAFETY: the guard stands for this thread's acquisition, which ends here, once.
            CondLock::Lock(l) => unsafe { l.raw().unlock() },
            CondLock::RLock(l) => {
                let _ = l.raw().unlock();
            }
        }
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard")
            .field("owner_died", &self.owner_died)
            .finish()
    }
}
