//! Process-shared futex wait and wake, with absolute `CLOCK_MONOTONIC` deadlines.
//!
//! The words live in shared memory, so the calls never use `FUTEX_PRIVATE_FLAG` (a private futex is
//! keyed by the address space and would never see a waker in another process). Waits with a
//! deadline use `FUTEX_WAIT_BITSET`, whose timeout is absolute on `CLOCK_MONOTONIC`: a wait that is
//! interrupted (`EINTR`) is retried with the same deadline, so signals neither shorten nor stretch it.
//!
//! This module and the private `sys` module are the only places of the crate that call the OS. Under
//! `cfg(ipc_loom)` the same functions are served by a model: a timed wait may be woken or may time
//! out, and the wait never sleeps past the model's other threads.
//!
//! # Examples
//!
//! ```
//! use ipc_sync::futex::{self, Deadline, Wait};
//! use ipc_sync::primitive::atomic::AtomicU32;
//! use std::time::Duration;
//!
//! let word = AtomicU32::new(0);
//! // Nobody changes the word: the wait times out.
//! let outcome = futex::wait(&word, 0, Some(Deadline::after(Duration::from_millis(10))));
//! assert_eq!(outcome, Wait::TimedOut);
//! // The word does not hold the expected value: the wait returns at once.
//! assert_eq!(futex::wait(&word, 7, None), Wait::Changed);
//! assert_eq!(futex::wake(&word, 1), 0);
//! ```

use crate::primitive::atomic::AtomicU32;
use std::time::Duration;

/// How a [`wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Woken by a [`wake`] (or spuriously): re-check the condition.
    Woken,
    /// The word did not hold the expected value when the wait began.
    Changed,
    /// The deadline passed.
    TimedOut,
}

/// An absolute point in time on `CLOCK_MONOTONIC`, as `FUTEX_WAIT_BITSET` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    #[cfg(not(ipc_loom))]
    at: rustix::time::Timespec,
}

#[cfg(not(ipc_loom))]
fn monotonic_now() -> rustix::time::Timespec {
    rustix::time::clock_gettime(rustix::time::ClockId::Monotonic)
}

#[cfg(not(ipc_loom))]
fn as_nanos(t: &rustix::time::Timespec) -> i128 {
    t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
}

impl Deadline {
    /// The deadline `timeout` from now (saturating far in the future for huge timeouts).
    #[cfg(not(ipc_loom))]
    pub fn after(timeout: Duration) -> Deadline {
        let now = monotonic_now();
        // Cap at about 68 years: far enough to mean "never", small enough for every kernel.
        let timeout = timeout.min(Duration::from_secs(1 << 31));
        let nanos = as_nanos(&now) + timeout.as_nanos() as i128;
        Deadline {
            at: rustix::time::Timespec {
                tv_sec: (nanos / 1_000_000_000) as i64,
                tv_nsec: (nanos % 1_000_000_000) as _,
            },
        }
    }

    /// The deadline `timeout` from now (under loom: a token; time is not modelled).
    #[cfg(ipc_loom)]
    pub fn after(_timeout: Duration) -> Deadline {
        Deadline {}
    }

    /// Whether the deadline has passed (under loom: never; the futex model times out instead).
    pub fn has_passed(&self) -> bool {
        self.remaining().is_zero() && cfg!(not(ipc_loom))
    }

    /// The time left until the deadline, zero once it has passed.
    pub fn remaining(&self) -> Duration {
        #[cfg(not(ipc_loom))]
        {
            let left = as_nanos(&self.at) - as_nanos(&monotonic_now());
            if left <= 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos(left.min(u64::MAX as i128) as u64)
            }
        }
        #[cfg(ipc_loom)]
        {
            Duration::from_secs(1)
        }
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        #[cfg(not(ipc_loom))]
        {
            if as_nanos(&other.at) < as_nanos(&self.at) {
                return other;
            }
        }
        let _ = other;
        self
    }

    /// Whether this deadline is strictly earlier than `other`.
    pub fn is_before(&self, other: &Deadline) -> bool {
        #[cfg(not(ipc_loom))]
        {
            as_nanos(&self.at) < as_nanos(&other.at)
        }
        #[cfg(ipc_loom)]
        {
            let _ = other;
            false
        }
    }
}

/// `futex(word, FUTEX_WAIT_BITSET, expected, deadline)`: sleeps while `*word == expected`, until
/// woken, or until `deadline` (absolute, `CLOCK_MONOTONIC`) passes. `None` waits without a limit.
///
/// `EINTR` is retried with the same deadline. Spurious returns ([`Wait::Woken`] without a wake) are
/// possible, as with every futex: callers re-check their condition in a loop.
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> Wait {
    #[cfg(not(ipc_loom))]
    {
        use rustix::io::Errno;
        use rustix::thread::futex;
        let bits = core::num::NonZeroU32::MAX; // FUTEX_BITSET_MATCH_ANY
        loop {
            let timeout = deadline.as_ref().map(|d| &d.at);
            // Flags::empty(): shared (not FUTEX_PRIVATE_FLAG), CLOCK_MONOTONIC deadline.
            match futex::wait_bitset(word, futex::Flags::empty(), expected, timeout, bits) {
                Ok(()) => return Wait::Woken,
                Err(Errno::AGAIN) => return Wait::Changed,
                Err(Errno::TIMEDOUT) => return Wait::TimedOut,
                Err(Errno::INTR) => continue,
                // EFAULT/EINVAL cannot happen for a valid aligned reference and a normalised
                // timespec; treat anything else as a spurious wake-up (the caller re-checks).
                Err(_) => return Wait::Woken,
            }
        }
    }
    #[cfg(ipc_loom)]
    {
        use crate::primitive::loom_futex::{self, Outcome};
        match loom_futex::wait(word, expected, deadline.is_some()) {
            Outcome::Woken => Wait::Woken,
            Outcome::Changed => Wait::Changed,
            Outcome::TimedOut => Wait::TimedOut,
        }
    }
}

/// `futex(word, FUTEX_WAKE, n)`: wakes up to `n` waiters of `word` (in any process); returns how many
/// were woken.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    #[cfg(not(ipc_loom))]
    {
        let n = n.min(i32::MAX as u32);
        rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), n).unwrap_or(0)
    }
    #[cfg(ipc_loom)]
    {
        crate::primitive::loom_futex::wake(word, n)
    }
}

/// Wakes every waiter of `word`; returns how many were woken.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

#[cfg(all(test, not(ipc_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_timed_wait_respects_its_deadline() {
        let word = AtomicU32::new(5);
        let start = Instant::now();
        let outcome = wait(&word, 5, Some(Deadline::after(Duration::from_millis(50))));
        assert_eq!(outcome, Wait::TimedOut);
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(49), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    }

    #[test]
    fn a_wake_reaches_a_sleeper() {
        let word = Arc::new(AtomicU32::new(0));
        let w2 = Arc::clone(&word);
        let sleeper = std::thread::spawn(move || {
            while w2.load(Ordering::SeqCst) == 0 {
                wait(&w2, 0, Some(Deadline::after(Duration::from_secs(30))));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        word.store(1, Ordering::SeqCst);
        wake_all(&word);
        sleeper.join().unwrap();
    }

    #[test]
    fn deadlines_order_and_saturate() {
        let near = Deadline::after(Duration::from_millis(1));
        let far = Deadline::after(Duration::from_secs(1000));
        assert!(near.is_before(&far));
        assert_eq!(far.min(near), near);
        let huge = Deadline::after(Duration::MAX);
        assert!(!huge.has_passed());
        assert!(far.is_before(&huge));
        std::thread::sleep(Duration::from_millis(2));
        assert!(near.has_passed());
        assert_eq!(near.remaining(), Duration::ZERO);
    }
}
