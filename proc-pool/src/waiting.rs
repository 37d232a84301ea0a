//! Waits that `SIGINT` interrupts: a parent blocked on the pool turns `SIGINT` into
//! [`Error::Interrupted`](crate::Error::Interrupted) (PP12).
//!
//! While at least one thread is blocked in a pool wait (`get`, `wait`, `map`, an `imap` step,
//! `join`), and only if `SIGINT` has its default action, proc-spawn's
//! [`InterruptScope`] counts `SIGINT`s instead of letting them end the process; the last waiter
//! to leave restores the default action. So Ctrl-C during a blocking pool call returns
//! `Interrupted` from it, and Ctrl-C anywhere else still ends the program as usual. A program
//! that ignores `SIGINT` or handles it itself is left alone.

use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

use proc_spawn::InterruptScope;

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    Done,
    TimedOut,
    Interrupted,
}

/// How often a blocked waiter looks for a `SIGINT` (the handler cannot notify a condvar).
const SLICE: Duration = Duration::from_millis(50);

/// Waits on `cv` until `done` holds, the deadline passes, or `SIGINT` arrives.
pub(crate) fn wait_until<'a, T>(
    mut guard: MutexGuard<'a, T>,
    cv: &Condvar,
    deadline: Option<Instant>,
    mut done: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, Waited) {
    if done(&mut guard) {
        return (guard, Waited::Done);
    }
    let scope = InterruptScope::enter();
    loop {
        if done(&mut guard) {
            return (guard, Waited::Done);
        }
        if scope.interrupted() {
            return (guard, Waited::Interrupted);
        }
        let mut slice = SLICE;
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                return (guard, Waited::TimedOut);
            }
            slice = slice.min(d - now);
        }
        guard = cv
            .wait_timeout(guard, slice)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// `now + d`, or no deadline when that overflows.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}
