//! [`RawSemaphore`]: a counting semaphore on one futex word, optionally bounded.

use crate::futex::{self, Deadline, Wait};
use crate::primitive::atomic::{AtomicU32, Ordering};
use crate::primitive::{const_fn_unless_loom, spin, SpinPoll};
use crate::Error;

/// The largest value a semaphore may hold (POSIX `SEM_VALUE_MAX` on Linux).
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// A process-shared counting semaphore (Python's `Semaphore` and `BoundedSemaphore`).
///
/// # State
///
/// ```text
/// value    (futex word)  the count; acquirers sleep on it while it is 0
/// waiters  u32           acquirers that may be asleep: release wakes one only when non-zero
/// max      u32           the bound (SEM_VALUE_MAX for a plain semaphore)
/// bounded  u32           1: exceeding `max` is Error::OverRelease; 0: it is Error::Overflow
/// ```
///
/// `acquire` is a compare-and-swap `v → v - 1` for `v > 0`; `release` a compare-and-swap
/// `v → v + 1` and a `FUTEX_WAKE` only if someone registered as a waiter. Waiter registration and
/// the value are both `SeqCst`, so a release either sees the waiter or the waiter sees the value.
/// A waiter whose process dies stays counted: releases then make a needless wake call, nothing
/// worse.
#[repr(C)]
#[derive(Debug)]
pub struct RawSemaphore {
    value: AtomicU32,
    waiters: AtomicU32,
    max: AtomicU32,
    bounded: AtomicU32,
}

impl RawSemaphore {
    const_fn_unless_loom! {
        /// A semaphore holding `initial`, which may grow up to [`SEM_VALUE_MAX`].
        ///
        /// An `initial` above [`SEM_VALUE_MAX`] is clamped to it; the typed handles reject it.
        pub fn new(initial: u32) -> RawSemaphore {
            let initial = if initial > SEM_VALUE_MAX { SEM_VALUE_MAX } else { initial };
            RawSemaphore {
                value: AtomicU32::new(initial),
                waiters: AtomicU32::new(0),
                max: AtomicU32::new(SEM_VALUE_MAX),
                bounded: AtomicU32::new(0),
            }
        }
    }

    const_fn_unless_loom! {
        /// A bounded semaphore: it starts at `initial` and releasing above `initial` is an error.
        pub fn new_bounded(initial: u32) -> RawSemaphore {
            let initial = if initial > SEM_VALUE_MAX { SEM_VALUE_MAX } else { initial };
            RawSemaphore {
                value: AtomicU32::new(initial),
                waiters: AtomicU32::new(0),
                max: AtomicU32::new(initial),
                bounded: AtomicU32::new(1),
            }
        }
    }

    /// Takes one unit if the value is positive.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut value = self.value.load(Ordering::SeqCst);
        while value > 0 {
            match self.value.compare_exchange_weak(
                value,
                value - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(seen) => value = seen,
            }
        }
        false
    }

    /// Takes one unit, sleeping while the value is 0.
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire() {
            self.acquire_slow(None);
        }
    }

    /// Takes one unit, giving up when `deadline` passes; returns whether it took one.
    #[inline]
    pub fn acquire_until(&self, deadline: Option<Deadline>) -> bool {
        self.try_acquire() || self.acquire_slow(deadline)
    }

    #[cold]
    fn acquire_slow(&self, deadline: Option<Deadline>) -> bool {
        // Spin while the budget lasts: a release from a running partner is seen at once.
        let spun = spin(deadline.as_ref(), || {
            if self.value.load(Ordering::Relaxed) > 0 && self.try_acquire() {
                SpinPoll::Ready(())
            } else {
                SpinPoll::Pending
            }
        });
        if spun.is_some() {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let acquired = loop {
            if self.try_acquire() {
                break true;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                break false;
            }
            if futex::wait(&self.value, 0, deadline) == Wait::TimedOut {
                break self.try_acquire();
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        acquired
    }

    /// Adds one unit and wakes one sleeper if there may be one.
    ///
    /// # Errors
    ///
    /// [`Error::OverRelease`] if a bounded semaphore is already at its bound;
    /// [`Error::Overflow`] if a plain one is at [`SEM_VALUE_MAX`].
    pub fn release(&self) -> Result<(), Error> {
        let max = self.max.load(Ordering::Relaxed);
        let mut value = self.value.load(Ordering::SeqCst);
        loop {
            if value >= max {
                return Err(if self.bounded.load(Ordering::Relaxed) != 0 {
                    Error::OverRelease
                } else {
                    Error::Overflow
                });
            }
            match self.value.compare_exchange_weak(
                value,
                value + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(seen) => value = seen,
            }
        }
        if self.waiters.load(Ordering::SeqCst) != 0 {
            futex::wake(&self.value, 1);
        }
        Ok(())
    }

    /// The current value.
    pub fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }

    /// The bound: the initial value of a bounded semaphore, [`SEM_VALUE_MAX`] otherwise.
    pub fn max_value(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// Whether releasing above the bound is [`Error::OverRelease`].
    pub fn is_bounded(&self) -> bool {
        self.bounded.load(Ordering::Relaxed) != 0
    }
}
