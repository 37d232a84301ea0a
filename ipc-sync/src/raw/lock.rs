//! [`RawLock`]: a robust futex mutex whose word records its owner's thread id.

use super::{current_owner, owner_alive, Acquired, Owner};
use crate::futex::{self, Deadline, Wait};
use crate::primitive::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::primitive::{const_fn_unless_loom, spin_backoff, SpinPoll, POLL_OWNER_LIVENESS};
use std::time::Duration;

/// Bits 0..=29 of the state word: the owner's thread id (0: unlocked).
const TID_MASK: u32 = (1 << 30) - 1;
/// Bit 31 of the state word: a thread may be asleep on the word; the unlocker must wake one.
const WAITERS: u32 = 1 << 31;

/// The most `spin_loop` pauses between two looks at a held lock while spinning.
const SPIN_MAX_PAUSES: u32 = 16;
/// The longest a contender spins on a held lock (less than the process's spin budget when that is
/// larger): critical sections are short, and a holder that keeps the lock longer is better left
/// to run alone while the contender sleeps.
const SPIN_MAX_NANOS: u32 = 4_000;

/// First interval after which a sleeping waiter checks whether the owner still lives.
const POLL_FIRST: Duration = Duration::from_millis(5);
/// Longest interval between two liveness checks: bounds the time to notice a dead owner.
const POLL_MAX: Duration = Duration::from_millis(100);

/// A process-shared, robust mutual-exclusion lock.
///
/// The lock itself protects no data (Python's `Lock`): the typed [`crate::Value`] and
/// [`crate::Array`] pair one with their data.
///
/// # State
///
/// ```text
/// state (futex word, u32)
///   bit 31      WAITERS   someone may sleep on the word: unlock must FUTEX_WAKE one
///   bit 30      (zero)
///   bits 0..=29 owner tid 0 = unlocked; else gettid() of the holder
///
///   0                  unlocked (the all-zero state)
///   tid                locked by tid, nobody asleep
///   tid | WAITERS      locked by tid, waiters may be asleep
///
/// record (u64)         (tid << 32) | start time of tid, written just after acquiring and cleared
///                      just before releasing; trusted only while its tid equals the word's
/// ```
///
/// Acquiring is one compare-and-swap `0 → tid` (plus the record store); releasing is one swap to
/// 0, and a `FUTEX_WAKE` only when `WAITERS` was set. A contended acquirer spins briefly, then sets
/// `WAITERS` and sleeps. Because the owner is in the word, it cannot be lost: a sleeper wakes at
/// least every 100 ms, and if the recorded owner thread is gone (or a zombie, or its id now
/// belongs to a thread with another start time) it takes the word over with a compare-and-swap
/// and reports [`Acquired::OwnerDied`].
#[repr(C)]
#[derive(Debug)]
pub struct RawLock {
    state: AtomicU32,
    _reserved: AtomicU32,
    record: AtomicU64,
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawLock {
    const_fn_unless_loom! {
        /// An unlocked lock (the same as all-zero memory).
        pub fn new() -> RawLock {
            RawLock { state: AtomicU32::new(0), _reserved: AtomicU32::new(0), record: AtomicU64::new(0) }
        }
    }

    /// Acquires the lock, sleeping as long as it takes.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_sync::raw::{Acquired, RawLock};
    /// let lock = RawLock::new();
    /// assert_eq!(lock.lock(), Acquired::Clean);
    /// assert!(lock.is_locked());
    /// // SAFETY: this thread acquired it just above.
    /// unsafe { lock.unlock() };
    /// ```
    #[inline]
    pub fn lock(&self) -> Acquired {
        let me = current_owner();
        if self
            .state
            .compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.set_record(me);
            return Acquired::Clean;
        }
        match self.lock_contended(me, None) {
            Some(acquired) => acquired,
            // Without a deadline the slow path only returns once it holds the lock.
            None => unreachable_without_deadline(),
        }
    }

    /// Acquires the lock unless it is held (by a living owner). A dead owner's lock is taken over.
    #[inline]
    pub fn try_lock(&self) -> Option<Acquired> {
        let me = current_owner();
        if self
            .state
            .compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.set_record(me);
            return Some(Acquired::Clean);
        }
        self.try_lock_contended(me)
    }

    /// Acquires the lock, giving up when `deadline` passes (`None`: never give up).
    #[inline]
    pub fn lock_until(&self, deadline: Option<Deadline>) -> Option<Acquired> {
        let me = current_owner();
        if self
            .state
            .compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.set_record(me);
            return Some(Acquired::Clean);
        }
        self.lock_contended(me, deadline)
    }

    /// Releases the lock and wakes one sleeper if there may be one.
    ///
    /// # Safety
    ///
    /// The lock must be held, and whatever it protects must no longer be accessed through the
    /// acquisition being ended (a lock guard calls this exactly once, on drop).
    #[inline]
    pub unsafe fn unlock(&self) {
        self.record.store(0, Ordering::Relaxed);
        let previous = self.state.swap(0, Ordering::Release);
        if previous & WAITERS != 0 {
            self.wake_one();
        }
    }

    /// Releases the lock whoever holds it (Python's `Lock.release()` from any process); returns
    /// `false` if it was not locked.
    ///
    /// # Safety
    ///
    /// Whatever the lock protects must not be in use by its holder any more: for a lock that guards
    /// data, releasing behind the holder's back breaks mutual exclusion.
    pub unsafe fn unlock_if_locked(&self) -> bool {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            if current & TID_MASK == 0 {
                return false;
            }
            self.record.store(0, Ordering::Relaxed);
            match self
                .state
                .compare_exchange(current, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(previous) => {
                    if previous & WAITERS != 0 {
                        self.wake_one();
                    }
                    return true;
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Whether the lock is held (by anyone).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & TID_MASK != 0
    }

    /// The thread id of the holder, if any.
    pub fn owner_tid(&self) -> Option<u32> {
        match self.state.load(Ordering::Relaxed) & TID_MASK {
            0 => None,
            tid => Some(tid),
        }
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub fn is_owned_by_current_thread(&self) -> bool {
        // Only this thread can have written its own id into the word, so a relaxed load suffices.
        self.state.load(Ordering::Relaxed) & TID_MASK == current_owner().tid
    }

    #[inline]
    fn set_record(&self, me: Owner) {
        self.record
            .store(((me.tid as u64) << 32) | me.start as u64, Ordering::Relaxed);
    }

    /// The start time recorded for `tid`, if the record belongs to it.
    fn recorded_start(&self, tid: u32) -> Option<u32> {
        let record = self.record.load(Ordering::Acquire);
        ((record >> 32) as u32 == tid).then_some(record as u32)
    }

    #[cold]
    fn wake_one(&self) {
        futex::wake(&self.state, 1);
    }

    /// Takes the word over from a dead owner. `seen` is the word as last observed.
    fn take_over(&self, seen: u32, me: Owner, keep_waiters: bool) -> bool {
        let tid = seen & TID_MASK;
        if tid == 0 || owner_alive(tid, self.recorded_start(tid)) {
            return false;
        }
        let new = me.tid | if keep_waiters { seen & WAITERS } else { 0 };
        if self
            .state
            .compare_exchange(seen, new, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.set_record(me);
            return true;
        }
        false
    }

    #[cold]
    fn try_lock_contended(&self, me: Owner) -> Option<Acquired> {
        let seen = self.state.load(Ordering::Relaxed);
        if seen == 0 {
            return self
                .state
                .compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
                .ok()
                .map(|_| {
                    self.set_record(me);
                    Acquired::Clean
                });
        }
        if POLL_OWNER_LIVENESS && self.take_over(seen, me, true) {
            return Some(Acquired::OwnerDied);
        }
        None
    }

    #[cold]
    fn lock_contended(&self, me: Owner, deadline: Option<Deadline>) -> Option<Acquired> {
        // Spin a little while the holder runs and nobody sleeps: a short critical section in
        // another process ends sooner than a futex round trip. Once someone sleeps, queue up.
        // Backing off between looks keeps the holder's line mostly its own.
        let spun = spin_backoff(deadline.as_ref(), SPIN_MAX_PAUSES, SPIN_MAX_NANOS, || {
            let seen = self.state.load(Ordering::Relaxed);
            if seen == 0 {
                if self
                    .state
                    .compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return SpinPoll::Ready(());
                }
            } else if seen & WAITERS != 0 {
                return SpinPoll::Sleep;
            }
            SpinPoll::Pending
        });
        if spun.is_some() {
            self.set_record(me);
            return Some(Acquired::Clean);
        }

        let mut poll = POLL_FIRST;
        loop {
            let seen = self.state.load(Ordering::Relaxed);
            if seen & TID_MASK == 0 {
                // Free. Others may be asleep (we cannot tell), so keep WAITERS set: our unlock
                // will then wake the next one.
                if self
                    .state
                    .compare_exchange(seen, me.tid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.set_record(me);
                    return Some(Acquired::Clean);
                }
                continue;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return None;
            }
            if seen & WAITERS == 0
                && self
                    .state
                    .compare_exchange(seen, seen | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let expected = seen | WAITERS;
            // Sleep until woken, until the caller's deadline, or until it is time to check that the
            // owner still lives, whichever comes first.
            let (wait_until, is_callers) = if POLL_OWNER_LIVENESS {
                let poll_at = Deadline::after(poll);
                match deadline {
                    Some(d) if !poll_at.is_before(&d) => (Some(d), true),
                    _ => (Some(poll_at), false),
                }
            } else {
                (deadline, true)
            };
            if futex::wait(&self.state, expected, wait_until) == Wait::TimedOut {
                if is_callers {
                    // One last look: the lock may have been released just now.
                    return self.try_lock_contended(me);
                }
                if self.take_over(expected, me, true) {
                    return Some(Acquired::OwnerDied);
                }
                poll = (poll * 2).min(POLL_MAX);
            }
        }
    }
}

#[cold]
fn unreachable_without_deadline() -> Acquired {
    // `lock_contended(_, None)` loops until it acquires; reaching here would be a bug in this
    // module. Returning `Clean` would break mutual exclusion, so stop loudly instead.
    panic!("ipc-sync: RawLock::lock gave up without a deadline (internal bug)")
}
