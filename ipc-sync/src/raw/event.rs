//! [`RawEvent`]: a flag that waiters sleep on until it is set.

use crate::futex::{self, Deadline, Wait};
use crate::primitive::atomic::{AtomicU32, Ordering};
use crate::primitive::{const_fn_unless_loom, spin, SpinPoll};

/// Bit 0: the flag.
const SET: u32 = 1;
/// Bit 1: someone may be asleep on the word; `set` must wake them all.
const WAITERS: u32 = 2;
/// Bits 2..=31: how many times the flag went from clear to set (wrapping).
const GEN_ONE: u32 = 4;

/// A process-shared event (Python's `Event`).
///
/// # State
///
/// ```text
/// state (futex word, u32)
///   bit 0       SET       the flag
///   bit 1       WAITERS   someone may sleep on the word: set() must FUTEX_WAKE all
///   bits 2..=31 generation, bumped by every set() of a clear flag
///
///   0           clear, nobody waiting (the all-zero state)
/// ```
///
/// A waiter returns `true` once the flag is set *or* the generation it started with has changed:
/// an event that is set and cleared again while a waiter sleeps still wakes it with `true` (as
/// `threading.Event` does), instead of losing the set. `is_set`, and a wait on a set flag, are one
/// load; `set` on an already-set flag writes nothing.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawEvent {
    state: AtomicU32,
}

impl RawEvent {
    const_fn_unless_loom! {
        /// A clear event (the same as all-zero memory).
        pub fn new() -> RawEvent {
            RawEvent { state: AtomicU32::new(0) }
        }
    }

    /// Whether the flag is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & SET != 0 {
                // Already set: no waiter can be asleep on a set flag that it has seen clear
                // without the generation having changed since.
                self.state.fetch_add(0, Ordering::Release);
                return;
            }
            let next = (state & !(SET | WAITERS)).wrapping_add(GEN_ONE) | SET;
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(previous) => {
                    if previous & WAITERS != 0 {
                        futex::wake_all(&self.state);
                    }
                    return;
                }
                Err(seen) => state = seen,
            }
        }
    }

    /// Whether a waiter has announced that it sleeps (or is about to) on the event.
    pub fn has_waiters(&self) -> bool {
        self.state.load(Ordering::Acquire) & WAITERS != 0
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Waits until the flag is set, or `deadline` passes; returns whether it was set.
    #[inline]
    pub fn wait_until(&self, deadline: Option<Deadline>) -> bool {
        let start = self.state.load(Ordering::Acquire);
        if start & SET != 0 {
            return true;
        }
        self.wait_slow(start, deadline)
    }

    #[cold]
    fn wait_slow(&self, start: u32, deadline: Option<Deadline>) -> bool {
        let generation = start & !(SET | WAITERS);
        let signalled = |state: u32| state & SET != 0 || state & !(SET | WAITERS) != generation;
        let spun = spin(deadline.as_ref(), || {
            if signalled(self.state.load(Ordering::Acquire)) {
                SpinPoll::Ready(())
            } else {
                SpinPoll::Pending
            }
        });
        if spun.is_some() {
            return true;
        }
        loop {
            let state = self.state.load(Ordering::Acquire);
            if signalled(state) {
                return true;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return false;
            }
            if state & WAITERS == 0
                && self
                    .state
                    .compare_exchange(state, state | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if futex::wait(&self.state, state | WAITERS, deadline) == Wait::TimedOut {
                return signalled(self.state.load(Ordering::Acquire));
            }
        }
    }
}
