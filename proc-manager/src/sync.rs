//! The synchronization objects a manager hosts (Python's `SyncManager` types):
//! [`QueueProxy`], [`LockProxy`], [`RLockProxy`], [`SemaphoreProxy`], [`EventProxy`],
//! [`ConditionProxy`], [`BarrierProxy`].
//!
//! A blocking call (acquire, get, wait) waits *in the server*, in the thread that serves the
//! caller's connection; each thread of each process has its own connection, so one blocked
//! caller never blocks another. The caller waits for the answer; a server that dies meanwhile
//! gives [`Error::ManagerGone`], not a hang.
//!
//! # Who owns a lock, and what happens when the owner dies
//!
//! A lock is owned by the connection that acquired it, that is by one thread of one process:
//! only it may release it ([`Error::NotOwner`] otherwise; Python's manager `Lock` lets anyone
//! release, PP19), which is why guards are not `Send`. When that connection ends while holding
//! the lock — its process died or was killed, or its thread ended — the server releases the
//! lock and the next acquirer's guard reports [`LockGuard::owner_died`] `== true`, as the
//! futex locks of `ipc-sync` do. (Under `fork`, a child inherits its parent's open
//! connections; the server sees the end of a connection only when every copy is closed.)

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{dec, enc, unexpected, Handle};
use crate::error::{Error, Result};
use crate::proxies::proxy_common;
use crate::wire::{Op, Reply, Wait};

// ---------------------------------------------------------------------------------------------
// queue

/// A FIFO queue in a manager (Python's `Manager().Queue(maxsize)`, a `queue.Queue`), with
/// `task_done`/`join`. Items are serde values. Made by [`Manager::queue`](crate::Manager::queue)
/// and [`Manager::queue_bounded`](crate::Manager::queue_bounded).
///
/// # Examples
///
/// ```
/// use proc_manager::{Error, Manager};
/// use std::time::Duration;
///
/// let manager = Manager::start()?;
/// let q = manager.queue_bounded::<String>(1)?;
/// q.put("a".into())?;
/// assert!(matches!(q.try_put("b".into()), Err(Error::Full)));
/// assert_eq!(q.get()?, "a");
/// assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(Error::Empty)));
/// # Ok::<(), Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct QueueProxy<T> {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

proxy_common!(QueueProxy<T>);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_wait(&self, item: T, w: Wait) -> Result<()> {
        self.h.unit(Op::QueuePut(enc(&item)?, w))
    }

    fn get_wait(&self, w: Wait) -> Result<T> {
        dec(&self.h.bytes(Op::QueueGet(w))?)
    }

    /// Puts `item`, waiting for room in a bounded queue.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable (so every method).
    pub fn put(&self, item: T) -> Result<()> {
        self.put_wait(item, Wait::Forever)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when there was no room in time.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        self.put_wait(item, Wait::For(timeout))
    }

    /// Puts `item` if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when there is none.
    pub fn try_put(&self, item: T) -> Result<()> {
        self.put_wait(item, Wait::No)
    }

    /// Takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable or dies during the wait.
    pub fn get(&self) -> Result<T> {
        self.get_wait(Wait::Forever)
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] when none came in time.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_wait(Wait::For(timeout))
    }

    /// Takes the oldest item if there is one.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] when there is none.
    pub fn try_get(&self) -> Result<T> {
        self.get_wait(Wait::No)
    }

    /// The number of items.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn qsize(&self) -> Result<usize> {
        Ok(self.h.count(Op::QueueSize)? as usize)
    }

    /// Is it empty?
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Is a bounded queue full? (Never for an unbounded one.)
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn full(&self) -> Result<bool> {
        let max = self.h.count(Op::QueueMaxsize)?;
        Ok(max > 0 && self.qsize()? as u64 >= max)
    }

    /// Marks one item taken with `get` as processed.
    ///
    /// # Errors
    ///
    /// [`Error::TaskDoneTooManyTimes`] when every item put was already marked.
    pub fn task_done(&self) -> Result<()> {
        self.h.unit(Op::QueueTaskDone)
    }

    /// Waits until every item put has been marked with [`task_done`](Self::task_done).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn join(&self) -> Result<()> {
        self.h.unit(Op::QueueJoin)
    }
}

// ---------------------------------------------------------------------------------------------
// locks

/// Holds a manager lock ([`LockProxy`], [`RLockProxy`] or a [`ConditionProxy`]'s lock) and
/// releases it when dropped (one round trip; a failure then is ignored, use
/// [`release`](LockGuard::release) to see it). Not `Send`: the lock belongs to this thread's
/// connection.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    h: Handle,
    owner_died: bool,
    released: bool,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("id", &self.h.id)
            .field("owner_died", &self.owner_died)
            .finish()
    }
}

impl LockGuard {
    /// Did the previous holder die (its connection end) while holding the lock? The data it
    /// protects may be half-updated.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Releases the lock now.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable (it then released the lock itself
    /// when the connection ended, if it still runs).
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.h.unit(Op::Release)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.h.unit(Op::Release);
        }
    }
}

fn acquire_wait(h: &Handle, w: Wait) -> Result<Option<LockGuard>> {
    match h.call(Op::Acquire(w))? {
        Reply::Acquired { owner_died } => Ok(Some(LockGuard {
            h: h.clone(),
            owner_died,
            released: false,
            _not_send: PhantomData,
        })),
        Reply::NotAcquired => Ok(None),
        r => Err(unexpected(r)),
    }
}

macro_rules! lock_methods {
    () => {
        /// Acquires the lock, waiting as long as it takes.
        ///
        /// # Errors
        ///
        /// [`Error::ManagerGone`] when the server is unreachable or dies during the wait.
        pub fn acquire(&self) -> Result<LockGuard> {
            acquire_wait(&self.h, Wait::Forever)?
                .ok_or_else(|| Error::Protocol("an endless acquire came back empty".into()))
        }

        /// Acquires the lock if it is free now.
        ///
        /// # Errors
        ///
        /// [`Error::ManagerGone`].
        pub fn try_acquire(&self) -> Result<Option<LockGuard>> {
            acquire_wait(&self.h, Wait::No)
        }

        /// Acquires the lock, waiting at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`Error::ManagerGone`].
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard>> {
            acquire_wait(&self.h, Wait::For(timeout))
        }

        /// Is the lock held by anyone?
        ///
        /// # Errors
        ///
        /// [`Error::ManagerGone`].
        pub fn locked(&self) -> Result<bool> {
            self.h.boolean(Op::Locked)
        }
    };
}

/// A lock in a manager (Python's `Manager().Lock()`). Acquiring it twice from the same thread
/// without releasing waits forever, as in Python; use [`RLockProxy`] for that. Made by
/// [`Manager::lock`](crate::Manager::lock).
///
/// # Examples
///
/// ```
/// use proc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let lock = manager.lock()?;
/// let guard = lock.acquire()?;
/// assert!(lock.locked()?);
/// assert!(!guard.owner_died());
/// drop(guard);
/// assert!(lock.try_acquire()?.is_some());
/// # Ok::<(), proc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
pub struct LockProxy {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn()>,
}

proxy_common!(LockProxy);

impl LockProxy {
    lock_methods!();

    pub(crate) fn id(&self) -> u64 {
        self.h.id
    }
}

/// A re-entrant lock in a manager (Python's `Manager().RLock()`): the thread that holds it may
/// acquire it again; it is free when every guard is gone. Made by
/// [`Manager::rlock`](crate::Manager::rlock).
#[derive(Serialize, Deserialize)]
pub struct RLockProxy {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn()>,
}

proxy_common!(RLockProxy);

impl RLockProxy {
    lock_methods!();

    pub(crate) fn id(&self) -> u64 {
        self.h.id
    }
}

// ---------------------------------------------------------------------------------------------
// semaphore

/// A semaphore in a manager (Python's `Manager().Semaphore(n)` and `BoundedSemaphore(n)`).
/// Made by [`Manager::semaphore`](crate::Manager::semaphore) and
/// [`Manager::bounded_semaphore`](crate::Manager::bounded_semaphore).
#[derive(Serialize, Deserialize)]
pub struct SemaphoreProxy {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn()>,
}

proxy_common!(SemaphoreProxy);

impl SemaphoreProxy {
    /// Takes one unit, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] (so every method).
    pub fn acquire(&self) -> Result<()> {
        self.h.boolean(Op::SemAcquire(Wait::Forever)).map(|_| ())
    }

    /// Takes one unit if there is one now.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn try_acquire(&self) -> Result<bool> {
        self.h.boolean(Op::SemAcquire(Wait::No))
    }

    /// Takes one unit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.h.boolean(Op::SemAcquire(Wait::For(timeout)))
    }

    /// Gives one unit back.
    ///
    /// # Errors
    ///
    /// [`Error::OverReleased`] for a bounded semaphore already at its bound.
    pub fn release(&self) -> Result<()> {
        self.h.unit(Op::SemRelease)
    }

    /// The units available now.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn value(&self) -> Result<u64> {
        self.h.count(Op::SemValue)
    }
}

// ---------------------------------------------------------------------------------------------
// event

/// An event in a manager (Python's `Manager().Event()`). Made by
/// [`Manager::event`](crate::Manager::event).
#[derive(Serialize, Deserialize)]
pub struct EventProxy {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn()>,
}

proxy_common!(EventProxy);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] (so every method).
    pub fn set(&self) -> Result<()> {
        self.h.unit(Op::EventSet)
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn clear(&self) -> Result<()> {
        self.h.unit(Op::EventClear)
    }

    /// Is the flag set?
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn is_set(&self) -> Result<bool> {
        self.h.boolean(Op::EventIsSet)
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`], also when the server dies during the wait.
    pub fn wait(&self) -> Result<()> {
        self.h.boolean(Op::EventWait(Wait::Forever)).map(|_| ())
    }

    /// Waits at most `timeout`; whether the flag was set.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.h.boolean(Op::EventWait(Wait::For(timeout)))
    }
}

// ---------------------------------------------------------------------------------------------
// condition

/// A condition variable in a manager (Python's `Manager().Condition(lock)`), with its own
/// re-entrant lock or a [`LockProxy`]/[`RLockProxy`] given at creation. Made by
/// [`Manager::condition`](crate::Manager::condition) and
/// [`Manager::condition_with_lock`](crate::Manager::condition_with_lock).
///
/// # Examples
///
/// ```
/// use proc_manager::Manager;
/// use std::time::Duration;
///
/// let manager = Manager::start()?;
/// let cond = manager.condition()?;
/// let mut guard = cond.acquire()?;
/// // Nobody notifies: the wait times out, and the lock is held again afterwards.
/// assert!(!cond.wait_timeout(&mut guard, Duration::from_millis(10))?);
/// cond.notify_all()?;
/// drop(guard);
/// # Ok::<(), proc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
pub struct ConditionProxy {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn()>,
}

proxy_common!(ConditionProxy);

impl ConditionProxy {
    lock_methods!();

    /// Releases the lock `guard` holds, waits for a notification, and takes the lock back.
    ///
    /// # Errors
    ///
    /// [`Error::NotOwner`] when this thread does not hold the lock, [`Error::ManagerGone`].
    pub fn wait(&self, guard: &mut LockGuard) -> Result<()> {
        let _ = guard;
        self.h.boolean(Op::CondWait(Wait::Forever)).map(|_| ())
    }

    /// As [`wait`](Self::wait), for at most `timeout`; whether a notification came. The lock
    /// is held again either way.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, guard: &mut LockGuard, timeout: Duration) -> Result<bool> {
        let _ = guard;
        self.h.boolean(Op::CondWait(Wait::For(timeout)))
    }

    /// Waits until `pred()` holds (checked with the lock held, before each wait), Python's
    /// `wait_for`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), and whatever `pred` returns.
    pub fn wait_for(
        &self,
        guard: &mut LockGuard,
        mut pred: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        while !pred()? {
            self.wait(guard)?;
        }
        Ok(())
    }

    /// Wakes up to `n` waiters. The caller must hold the lock.
    ///
    /// # Errors
    ///
    /// [`Error::NotOwner`] when this thread does not hold the lock.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.h.unit(Op::CondNotify(n as u64))
    }

    /// Wakes every waiter. The caller must hold the lock.
    ///
    /// # Errors
    ///
    /// [`Error::NotOwner`] when this thread does not hold the lock.
    pub fn notify_all(&self) -> Result<()> {
        self.h.unit(Op::CondNotifyAll)
    }
}

// ---------------------------------------------------------------------------------------------
// barrier

/// A barrier in a manager (Python's `Manager().Barrier(parties)`). Made by
/// [`Manager::barrier`](crate::Manager::barrier).
///
/// A wait that times out breaks the barrier (Python's semantics), as does a party whose
/// process dies while waiting.
#[derive(Serialize, Deserialize)]
pub struct BarrierProxy {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn()>,
}

proxy_common!(BarrierProxy);

impl BarrierProxy {
    fn wait_with(&self, w: Wait) -> Result<usize> {
        Ok(self.h.count(Op::BarrierWait(w))? as usize)
    }

    /// Waits until `parties` callers wait; returns this caller's arrival index
    /// (`0..parties`).
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] when the barrier is or gets broken, [`Error::ManagerGone`].
    pub fn wait(&self) -> Result<usize> {
        self.wait_with(Wait::Forever)
    }

    /// As [`wait`](Self::wait), for at most `timeout` (after which the barrier is broken).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_with(Wait::For(timeout))
    }

    /// Breaks the barrier: every current and future waiter gets [`Error::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn abort(&self) -> Result<()> {
        self.h.unit(Op::BarrierAbort)
    }

    /// Returns the barrier to its initial state; current waiters get [`Error::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn reset(&self) -> Result<()> {
        self.h.unit(Op::BarrierReset)
    }

    fn state(&self) -> Result<(u64, u64, bool)> {
        match self.h.call(Op::BarrierState)? {
            Reply::Barrier(p, n, b) => Ok((p, n, b)),
            r => Err(unexpected(r)),
        }
    }

    /// The number of parties.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn parties(&self) -> Result<usize> {
        Ok(self.state()?.0 as usize)
    }

    /// How many wait now.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn n_waiting(&self) -> Result<usize> {
        Ok(self.state()?.1 as usize)
    }

    /// Is it broken?
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn broken(&self) -> Result<bool> {
        Ok(self.state()?.2)
    }
}
