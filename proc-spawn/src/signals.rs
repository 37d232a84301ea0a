//! `SIGINT` for process families: make a worker ignore it ([`ignore_sigint`]), and turn it into
//! a value for a thread blocked on its workers ([`InterruptScope`]) — Python's
//! `KeyboardInterrupt` for one blocking call, without stealing Ctrl-C from the rest of the
//! program.
//!
//! Safe wrappers over `sigaction(2)`, which std does not offer. The handler installed by
//! [`InterruptScope`] only increments an atomic counter (async-signal-safe).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::Error;

/// `SIGINT`s counted by the handler.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

struct Scopes {
    /// Live [`InterruptScope`]s.
    count: usize,
    /// The disposition to restore when the last scope ends, when the handler was installed.
    saved: Option<libc::sigaction>,
}

// SAFETY: `libc::sigaction` is plain data (a handler address, flags, a signal mask), only read
// and written under the mutex.
unsafe impl Send for Scopes {}

static SCOPES: Mutex<Scopes> = Mutex::new(Scopes {
    count: 0,
    saved: None,
});

extern "C" fn on_sigint(_sig: libc::c_int) {
    // Async-signal-safe: one atomic add.
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
}

/// Makes this process ignore `SIGINT` (Python's pool workers do the same: a Ctrl-C in the
/// terminal reaches the whole process group, and the parent decides what to do). Children
/// started afterwards inherit the ignored disposition.
///
/// # Errors
///
/// [`Error::Io`] if `sigaction` fails (it does not for `SIGINT` on Linux).
///
/// # Examples
///
/// ```
/// proc_spawn::ignore_sigint()?;
/// # Ok::<(), proc_spawn::Error>(())
/// ```
pub fn ignore_sigint() -> Result<(), Error> {
    // SAFETY: an all-zero `sigaction` is a valid value (no flags, empty mask); its handler is
    // set to `SIG_IGN` before use.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = libc::SIG_IGN;
    // SAFETY: `act` points to a valid `sigaction`; `SIG_IGN` installs no code.
    let r = unsafe { libc::sigaction(libc::SIGINT, &act, std::ptr::null_mut()) };
    if r != 0 {
        return Err(Error::Io {
            op: "sigaction(SIGINT, SIG_IGN)",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// While alive, `SIGINT` is counted instead of ending the process — if `SIGINT` had its
/// default action when the first live scope was entered; a program that ignores or handles
/// `SIGINT` itself is left alone. The last scope to end restores the default action, so Ctrl-C
/// outside every scope still ends the program.
///
/// A thread about to block on other processes enters a scope and looks at
/// [`interrupted`](InterruptScope::interrupted) between bounded waits (a handler cannot wake
/// a condition variable): that is how a blocking pool call returns "interrupted" on Ctrl-C.
///
/// # Examples
///
/// ```
/// use proc_spawn::InterruptScope;
///
/// let scope = InterruptScope::enter();
/// // ... wait for a worker in slices, checking:
/// assert!(!scope.interrupted());
/// drop(scope); // the previous SIGINT action is back
/// ```
#[derive(Debug)]
pub struct InterruptScope {
    start: u64,
}

impl InterruptScope {
    /// Enters a scope (installing the counting handler if this is the first live scope and
    /// `SIGINT` has its default action).
    pub fn enter() -> InterruptScope {
        let mut s = SCOPES.lock().unwrap_or_else(|e| e.into_inner());
        if s.count == 0 {
            s.saved = install_counting_handler();
        }
        s.count += 1;
        InterruptScope {
            start: INTERRUPTS.load(Ordering::SeqCst),
        }
    }

    /// Whether a `SIGINT` was caught since this scope was entered.
    pub fn interrupted(&self) -> bool {
        INTERRUPTS.load(Ordering::SeqCst) != self.start
    }
}

/// Installs [`on_sigint`] if `SIGINT` has its default action; the disposition to restore.
fn install_counting_handler() -> Option<libc::sigaction> {
    // SAFETY: an all-zero `sigaction` is a valid value (no handler, no flags, empty mask);
    // it is filled in below before use.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
    new.sa_flags = libc::SA_RESTART;
    // SAFETY: `new.sa_mask` is a valid, owned signal set.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    // SAFETY: as above, a valid out-value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; the handler only does an atomic add, which
    // is async-signal-safe.
    let r = unsafe { libc::sigaction(libc::SIGINT, &new, &mut old) };
    if r != 0 {
        return None;
    }
    if old.sa_sigaction == libc::SIG_DFL {
        Some(old)
    } else {
        // Ignored or handled by the program: put its disposition back at once.
        // SAFETY: `old` is the disposition the kernel just returned.
        unsafe { libc::sigaction(libc::SIGINT, &old, std::ptr::null_mut()) };
        None
    }
}

impl Drop for InterruptScope {
    fn drop(&mut self) {
        let mut s = SCOPES.lock().unwrap_or_else(|e| e.into_inner());
        s.count -= 1;
        if s.count == 0 {
            if let Some(old) = s.saved.take() {
                // SAFETY: restores the disposition saved when the first scope was entered.
                unsafe { libc::sigaction(libc::SIGINT, &old, std::ptr::null_mut()) };
            }
        }
    }
}
