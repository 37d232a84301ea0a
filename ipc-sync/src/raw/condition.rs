//! [`RawCondition`]: a condition variable whose notifications are counted tokens.

use crate::futex::{self, Deadline, Wait};
use crate::primitive::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::primitive::const_fn_unless_loom;

/// A process-shared condition variable (the waiting half of Python's `Condition`).
///
/// It does not own a lock: [`RawCondition::wait_until`] is called with the associated lock held
/// and is told how to release it and how to re-acquire it.
///
/// # State
///
/// ```text
/// seq      (futex word, u32)  bumped by every notify; waiters sleep on the value they read
/// counts   u64                waiters << 32 | tokens, changed together by one compare-and-swap:
///   waiters                   registered waiters (registered while the lock is held)
///   tokens                    notifications handed out and not yet taken (tokens <= waiters);
///                             taking one also deregisters the waiter, so a notified waiter is
///                             never counted as one still to notify
///
/// all zero: no waiters, nothing pending (the initial state)
/// ```
///
/// `notify(n)` hands out `min(n, waiters - tokens)` tokens, bumps `seq` and wakes that many
/// sleepers; a waiter returns `true` only by taking a token, and only a waiter registered before
/// the latest bump may take one (one that registered later, such as a notifier going back to wait,
/// cannot steal a notification meant for the waiters before it). So `notify(n)` ends exactly as
/// many waits as it says (Python's counting semantics), even when a waiter is between releasing the
/// lock and falling asleep: the bump of `seq` makes its `FUTEX_WAIT` fail and it takes the token. A
/// waiter that times out re-acquires the lock first, then takes a token if one is there for it (it
/// was notified as it timed out) or deregisters: with the lock held no notify can interleave. A waiter
/// whose process dies stays registered: a later notify may give it a token that another waiter then
/// takes as a spurious wake-up, which is why `wait_for` loops exist.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawCondition {
    seq: AtomicU32,
    _reserved: AtomicU32,
    counts: AtomicU64,
}

const ONE_WAITER: u64 = 1 << 32;
const TOKENS: u64 = u32::MAX as u64;

fn waiters(counts: u64) -> u32 {
    (counts >> 32) as u32
}

fn tokens(counts: u64) -> u32 {
    (counts & TOKENS) as u32
}

impl RawCondition {
    const_fn_unless_loom! {
        /// A condition with no waiters (the same as all-zero memory).
        pub fn new() -> RawCondition {
            RawCondition { seq: AtomicU32::new(0), _reserved: AtomicU32::new(0), counts: AtomicU64::new(0) }
        }
    }

    /// Registers the caller as a waiter, releases the lock with `unlock`, sleeps until notified or
    /// until `deadline` passes, and re-acquires the lock with `relock`. Returns whether it was
    /// notified, and what `relock` returned.
    ///
    /// Call it with the associated lock held (the typed [`crate::Condition`] checks this).
    ///
    /// A waiter that times out decides whether it was notified after `relock`, with the lock held:
    /// notifications are handed out under the lock, so no notify can then be halfway through, and
    /// the waiter either takes a notification meant for it (and returns `true`) or leaves without
    /// one. Deciding before re-locking would let a notify count the waiter in the instant between
    /// its last look and its leaving: the notification would stay behind for nobody, and every
    /// later notify would find it still pending and hand out nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_sync::futex::Deadline;
    /// use ipc_sync::raw::{RawCondition, RawLock};
    /// use std::time::Duration;
    ///
    /// let (lock, cond) = (RawLock::new(), RawCondition::new());
    /// let _ = lock.lock();
    /// let deadline = Some(Deadline::after(Duration::from_millis(10)));
    /// // SAFETY: this thread holds the lock; `relock` takes it again before wait_until returns.
    /// let (notified, _) = cond.wait_until(deadline, || unsafe { lock.unlock() }, || lock.lock());
    /// assert!(!notified); // nobody notified: timed out, and the lock is held again
    /// assert!(lock.is_owned_by_current_thread());
    /// // SAFETY: held by this thread.
    /// unsafe { lock.unlock() };
    /// ```
    pub fn wait_until<R>(
        &self,
        deadline: Option<Deadline>,
        unlock: impl FnOnce(),
        relock: impl FnOnce() -> R,
    ) -> (bool, R) {
        self.counts.fetch_add(ONE_WAITER, Ordering::SeqCst);
        // Tokens are only for waiters registered before they were granted: a notify bumps `seq`
        // under the lock, so a waiter may take one once `seq` has moved past its registration.
        let registered = self.seq.load(Ordering::SeqCst);
        unlock();
        let mut seq = registered;
        loop {
            if seq != registered && self.take_token() {
                return (true, relock());
            }
            if deadline.is_some_and(|d| d.has_passed())
                || futex::wait(&self.seq, seq, deadline) == Wait::TimedOut
            {
                break;
            }
            seq = self.seq.load(Ordering::SeqCst);
        }
        // Timed out. Decide with the lock held: no notify is under way, so `seq` and the tokens
        // agree, and a token taken now was granted while this waiter was registered.
        let relocked = relock();
        let notified = self.seq.load(Ordering::SeqCst) != registered && self.take_token();
        if !notified {
            // No token left (or none meant for this waiter), and none can be granted while the
            // lock is held: leaving keeps tokens <= waiters.
            self.counts.fetch_sub(ONE_WAITER, Ordering::SeqCst);
        }
        (notified, relocked)
    }

    /// Takes a token and deregisters in one step.
    fn take_token(&self) -> bool {
        let mut counts = self.counts.load(Ordering::SeqCst);
        while tokens(counts) > 0 {
            match self.counts.compare_exchange_weak(
                counts,
                // Wrapping: a peer that scribbled on the counts must not make this panic.
                counts.wrapping_sub(ONE_WAITER + 1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(seen) => counts = seen,
            }
        }
        false
    }

    /// Wakes up to `n` waiters; returns how many notifications were handed out.
    ///
    /// Call it with the associated lock held (waiters register under that lock, so the count it
    /// sees is exact).
    pub fn notify(&self, n: u32) -> u32 {
        let mut counts = self.counts.load(Ordering::SeqCst);
        let granted = loop {
            let grant = n.min(waiters(counts).saturating_sub(tokens(counts)));
            if grant == 0 {
                return 0;
            }
            match self.counts.compare_exchange(
                counts,
                counts.wrapping_add(grant as u64),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break grant,
                Err(seen) => counts = seen,
            }
        };
        self.seq.fetch_add(1, Ordering::SeqCst);
        futex::wake(&self.seq, granted);
        granted
    }

    /// Wakes every registered waiter; returns how many notifications were handed out.
    pub fn notify_all(&self) -> u32 {
        self.notify(u32::MAX)
    }

    /// How many waiters are registered and not yet notified.
    pub fn n_waiting(&self) -> u32 {
        let counts = self.counts.load(Ordering::SeqCst);
        waiters(counts).saturating_sub(tokens(counts))
    }
}
