//! Signals: workers ignore `SIGINT`; a parent blocked on the pool turns `SIGINT` into
//! [`Error::Interrupted`](crate::Error::Interrupted) (PP12), and the waits built on it.
//!
//! While at least one thread is blocked in a pool wait (`get`, `wait`, `map`, an `imap` step,
//! `join`), and only if `SIGINT` has its default action, a handler that just counts the signal
//! is installed; the last waiter to leave restores the default action. So Ctrl-C during a
//! blocking pool call returns `Interrupted` from it, and Ctrl-C anywhere else still ends the
//! program as usual. A program that ignores `SIGINT` or handles it itself is left alone.
//!
//! The `unsafe` here is `sigaction`/`signal` through libc, whose safe wrappers std lacks.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `SIGINT`s counted by the handler.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

struct Waiters {
    count: usize,
    /// The disposition to restore, when the handler was installed.
    saved: Option<libc::sigaction>,
}

// SAFETY: `libc::sigaction` is plain data (a handler address, flags, a signal mask); it is only
// read and written under the mutex.
unsafe impl Send for Waiters {}

static WAITERS: Mutex<Waiters> = Mutex::new(Waiters {
    count: 0,
    saved: None,
});

extern "C" fn on_sigint(_sig: libc::c_int) {
    // Async-signal-safe: one atomic add.
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
}

/// Makes this process ignore `SIGINT` (workers: the parent decides).
pub(crate) fn ignore_sigint() {
    // SAFETY: `signal` with `SIG_IGN` installs no code; it only changes the disposition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// While alive, `SIGINT` is counted instead of ending the process (if it had its default
/// action when the first scope was entered).
pub(crate) struct InterruptScope {
    start: u64,
}

impl InterruptScope {
    pub(crate) fn enter() -> InterruptScope {
        let mut w = WAITERS.lock().unwrap_or_else(|e| e.into_inner());
        if w.count == 0 {
            // SAFETY: an all-zero `sigaction` is a valid value (no handler, no flags, empty
            // mask); it is filled in below before use.
            let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
            new.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
            new.sa_flags = libc::SA_RESTART;
            // SAFETY: `new.sa_mask` is a valid, owned signal set.
            unsafe { libc::sigemptyset(&mut new.sa_mask) };
            // SAFETY: as above, a valid out-value.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both pointers are valid for the call; the handler only does an atomic
            // add, which is async-signal-safe.
            let r = unsafe { libc::sigaction(libc::SIGINT, &new, &mut old) };
            if r == 0 {
                if old.sa_sigaction == libc::SIG_DFL {
                    w.saved = Some(old);
                } else {
                    // Ignored or handled by the program: put its disposition back at once.
                    // SAFETY: `old` is the disposition the kernel just returned.
                    unsafe { libc::sigaction(libc::SIGINT, &old, std::ptr::null_mut()) };
                    w.saved = None;
                }
            }
        }
        w.count += 1;
        InterruptScope {
            start: INTERRUPTS.load(Ordering::SeqCst),
        }
    }

    /// Has a `SIGINT` arrived since this scope was entered (and was it ours to catch)?
    pub(crate) fn interrupted(&self) -> bool {
        INTERRUPTS.load(Ordering::SeqCst) != self.start
    }
}

impl Drop for InterruptScope {
    fn drop(&mut self) {
        let mut w = WAITERS.lock().unwrap_or_else(|e| e.into_inner());
        w.count -= 1;
        if w.count == 0 {
            if let Some(old) = w.saved.take() {
                // SAFETY: restores the disposition saved when the first scope was entered.
                unsafe { libc::sigaction(libc::SIGINT, &old, std::ptr::null_mut()) };
            }
        }
    }
}

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
