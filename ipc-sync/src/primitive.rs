//! The loom shim: the only file that names `loom` or `core::sync::atomic`.
//!
//! Under `cfg(ipc_loom)` the atomics, the cell, the futex and the owner ids are loom's (threads stand
//! in for processes and the primitives live on the heap); otherwise they are the real ones. Other
//! crates of the workspace that build waits on [`crate::futex`] (the shm queue) import their atomics
//! from here, so that one `RUSTFLAGS="--cfg ipc_loom"` build checks them with the same futex model.

/// Atomic types: `core::sync::atomic`, or loom's under `cfg(ipc_loom)`.
pub mod atomic {
    #[cfg(not(ipc_loom))]
    pub use core::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
    #[cfg(ipc_loom)]
    pub use loom::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
}

/// A hint inside a spin loop (loom: a yield, so the model can make progress).
#[inline]
pub fn spin_loop() {
    #[cfg(not(ipc_loom))]
    core::hint::spin_loop();
    #[cfg(ipc_loom)]
    loom::hint::spin_loop();
}

/// Whether waiters poll the liveness of a lock's owner while sleeping. Loom threads never die, and
/// a timed wait under loom is modelled as "may time out", so the poll is off there.
pub(crate) const POLL_OWNER_LIVENESS: bool = cfg!(not(ipc_loom));

/// Default spin budget before sleeping, in nanoseconds (0 under loom: spinning only multiplies
/// states there, and a model must not depend on time).
pub(crate) const DEFAULT_SPIN_NANOS: u32 = if cfg!(ipc_loom) { 0 } else { 50_000 };

/// Default cap on the number of re-checks in one spin: none (the time budget decides).
#[cfg(not(ipc_loom))]
pub(crate) const DEFAULT_SPIN_LIMIT: u32 = u32::MAX;

/// An `UnsafeCell` with loom's `with`/`with_mut` interface.
#[cfg(ipc_loom)]
pub use loom::cell::UnsafeCell;

/// An `UnsafeCell` with loom's `with`/`with_mut` interface.
#[cfg(not(ipc_loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(ipc_loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a shared raw pointer to the contents.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }

    /// A raw pointer to the contents.
    #[inline]
    pub fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// The owner id of the calling thread under loom: a small number per loom thread (loom runs every
/// modelled thread on one OS thread, so `gettid` cannot tell them apart).
#[cfg(ipc_loom)]
pub(crate) fn loom_owner_id() -> u32 {
    use std::sync::atomic::{AtomicU32 as StdAtomicU32, Ordering as StdOrdering};
    static NEXT: StdAtomicU32 = StdAtomicU32::new(1);
    loom::thread_local! {
        static ID: u32 = {
            let id = NEXT.fetch_add(1, StdOrdering::Relaxed);
            // Stay inside the owner field of the lock word (30 bits).
            (id % ((1 << 30) - 1)) + 1
        };
    }
    ID.with(|id| *id)
}

/// The futex emulation used under loom: one mutex-protected table of queued waiters per address and
/// one condition variable. As with the kernel's futex, a wake only reaches waiters already queued.
#[cfg(ipc_loom)]
pub(crate) mod loom_futex {
    use super::atomic::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};
    use std::collections::HashMap;

    #[derive(Default)]
    struct Table {
        next_id: u64,
        /// Per address: the queued waiters, in order, with whether each has been woken.
        queues: HashMap<usize, Vec<(u64, bool)>>,
    }

    struct Futexes {
        table: Mutex<Table>,
        cv: Condvar,
    }

    loom::lazy_static! {
        static ref FUTEXES: Futexes = Futexes { table: Mutex::new(Table::default()), cv: Condvar::new() };
    }

    /// What the emulated wait returned.
    pub(crate) enum Outcome {
        Woken,
        Changed,
        TimedOut,
    }

    /// Removes waiter `id` from the queue of `addr`; returns whether it had been woken.
    fn dequeue(table: &mut Table, addr: usize, id: u64) -> bool {
        let queue = table.queues.get_mut(&addr).expect("queued");
        let at = queue.iter().position(|(i, _)| *i == id).expect("queued");
        queue.remove(at).1
    }

    fn is_woken(table: &Table, addr: usize, id: u64) -> bool {
        table
            .queues
            .get(&addr)
            .is_some_and(|q| q.iter().any(|(i, woken)| *i == id && *woken))
    }

    pub(crate) fn wait(word: &AtomicU32, expected: u32, timed: bool) -> Outcome {
        let addr = word as *const AtomicU32 as usize;
        let mut table = FUTEXES.table.lock().unwrap();
        // The kernel reads the word afresh, after queueing the waiter; an RMW is loom's way to
        // read the latest value in modification order (a plain load may legally read a stale one).
        if word.fetch_add(0, Ordering::SeqCst) != expected {
            return Outcome::Changed;
        }
        let id = table.next_id;
        table.next_id += 1;
        table.queues.entry(addr).or_default().push((id, false));
        if timed {
            // A timed wait may be woken or may time out: let the others run, then look.
            drop(table);
            loom::thread::yield_now();
            table = FUTEXES.table.lock().unwrap();
            return if dequeue(&mut table, addr, id) {
                Outcome::Woken
            } else {
                Outcome::TimedOut
            };
        }
        while !is_woken(&table, addr, id) {
            table = FUTEXES.cv.wait(table).unwrap();
        }
        dequeue(&mut table, addr, id);
        Outcome::Woken
    }

    pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
        let addr = word as *const AtomicU32 as usize;
        let mut table = FUTEXES.table.lock().unwrap();
        let Some(queue) = table.queues.get_mut(&addr) else {
            return 0;
        };
        let mut woken = 0;
        for entry in queue.iter_mut().filter(|(_, w)| !*w).take(n as usize) {
            entry.1 = true;
            woken += 1;
        }
        drop(table);
        if woken > 0 {
            FUTEXES.cv.notify_all();
        }
        woken
    }
}

/// Defines a function that is `const` except under loom (whose atomics have no `const fn new`).
macro_rules! const_fn_unless_loom {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        #[cfg(not(ipc_loom))]
        $(#[$m])* $vis const fn $name($($arg: $ty),*) -> $ret $body
        #[cfg(ipc_loom)]
        $(#[$m])* $vis fn $name($($arg: $ty),*) -> $ret $body
    };
}
pub(crate) use const_fn_unless_loom;

/// The process-local spin settings (see [`crate::set_spin_time`], [`crate::set_spin_limit`]).
#[cfg(not(ipc_loom))]
static SPIN_NANOS: core::sync::atomic::AtomicU32 =
    core::sync::atomic::AtomicU32::new(DEFAULT_SPIN_NANOS);
#[cfg(not(ipc_loom))]
static SPIN_LIMIT: core::sync::atomic::AtomicU32 =
    core::sync::atomic::AtomicU32::new(DEFAULT_SPIN_LIMIT);

/// The most re-checks one spin makes (besides its time budget).
#[inline]
pub(crate) fn spin_limit() -> u32 {
    #[cfg(not(ipc_loom))]
    {
        SPIN_LIMIT.load(core::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(ipc_loom)]
    {
        0
    }
}

/// Sets the process-local cap on re-checks (ignored under loom, where waiters never spin).
pub(crate) fn set_spin_limit(spins: u32) {
    #[cfg(not(ipc_loom))]
    SPIN_LIMIT.store(spins, core::sync::atomic::Ordering::Relaxed);
    #[cfg(ipc_loom)]
    let _ = spins;
}

/// The time budget of one spin, in nanoseconds.
#[inline]
pub(crate) fn spin_nanos() -> u32 {
    #[cfg(not(ipc_loom))]
    {
        SPIN_NANOS.load(core::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(ipc_loom)]
    {
        DEFAULT_SPIN_NANOS
    }
}

/// Sets the process-local time budget of one spin (ignored under loom).
pub(crate) fn set_spin_nanos(nanos: u32) {
    #[cfg(not(ipc_loom))]
    SPIN_NANOS.store(nanos, core::sync::atomic::Ordering::Relaxed);
    #[cfg(ipc_loom)]
    let _ = nanos;
}

/// What one look at a word during a [`spin`] found.
pub(crate) enum SpinPoll<T> {
    /// The wait is over, with this result.
    Ready(T),
    /// Not yet: look again (after a pause) while the budget lasts.
    Pending,
    /// Spinning cannot help any more (for a lock: others already sleep): go to sleep now.
    Sleep,
}

/// How often (in re-checks) a spin reads the clock: a pause is tens of nanoseconds, a clock read
/// about a hundred on a virtual machine, so the clock is read every microsecond or so of spinning.
#[cfg(not(ipc_loom))]
const CLOCK_EVERY: u32 = 16;

/// Nanoseconds added to the learned budget after a spin that ended in success, besides doubling.
#[cfg(not(ipc_loom))]
const GROW_NANOS: u32 = 2_000;

#[cfg(not(ipc_loom))]
thread_local! {
    /// The budget this thread has learned is worth spinning (see [`spin`]); starts at the maximum.
    static LEARNED_NANOS: core::cell::Cell<u32> = const { core::cell::Cell::new(u32::MAX) };
}

/// Re-checks a word with `poll` until it is ready, it says to sleep, or the spin budget is spent;
/// returns the result if it became ready.
///
/// The budget is measured in time, not in iterations: a `spin_loop` pause costs from ~10 to ~140
/// cycles depending on the processor, so a count would mean anything from a microsecond to tens
/// of them. The first re-checks are made before the clock is ever read, so a partner that answers
/// at once costs no clock read.
///
/// The budget adapts, per thread, between a short probe (the re-checks made before the first
/// clock read, about a microsecond) and the configured maximum ([`crate::set_spin_time`]): a spin
/// that ends in success doubles it, one that runs out halves it. When the other side runs on
/// another core, spins succeed and waits cost well under a microsecond; when it does not (an
/// overloaded machine, a partner that computes for long), spinning soon costs only the probe
/// instead of burning the full budget, and the processor goes to the others.
///
/// A spin never outlasts the caller's `deadline` (by more than one clock check).
#[inline]
pub(crate) fn spin<T>(
    deadline: Option<&crate::futex::Deadline>,
    poll: impl FnMut() -> SpinPoll<T>,
) -> Option<T> {
    spin_backoff(deadline, 1, u32::MAX, poll)
}

/// [`spin`] with exponential backoff (the pause between two looks doubles, from one up to
/// `max_pauses` pauses) and a budget of at most `max_nanos`. A lock's contenders use it so that
/// their loads of the lock's cache line do not slow its holder down (each load takes the line
/// away from the holder's next write), and give up sooner than a waiter for an event would.
#[inline]
pub(crate) fn spin_backoff<T>(
    deadline: Option<&crate::futex::Deadline>,
    max_pauses: u32,
    max_nanos: u32,
    mut poll: impl FnMut() -> SpinPoll<T>,
) -> Option<T> {
    #[cfg(ipc_loom)]
    {
        // Waiters never spin under loom (see DEFAULT_SPIN_NANOS).
        let _ = (&mut poll, deadline, max_pauses, max_nanos);
        None
    }
    #[cfg(not(ipc_loom))]
    {
        let limit = spin_limit();
        let max = spin_nanos().min(max_nanos);
        if limit == 0 || max == 0 {
            return None;
        }
        let learned = LEARNED_NANOS.with(core::cell::Cell::get).min(max);
        let mut budget = u128::from(learned);
        let mut cut_by_deadline = false;
        if let Some(deadline) = deadline {
            let left = deadline.remaining().as_nanos();
            if left == 0 {
                return None;
            }
            if left < budget {
                budget = left;
                cut_by_deadline = true;
            }
        }
        let mut started: Option<std::time::Instant> = None;
        let mut looks: u32 = 0;
        let mut pauses: u32 = 1;
        loop {
            match poll() {
                SpinPoll::Ready(result) => {
                    if learned < max {
                        let grown = learned.saturating_mul(2).saturating_add(GROW_NANOS);
                        LEARNED_NANOS.with(|l| l.set(grown.min(max)));
                    }
                    return Some(result);
                }
                SpinPoll::Sleep => return None,
                SpinPoll::Pending => {}
            }
            looks += 1;
            if looks >= limit {
                return None;
            }
            if looks % CLOCK_EVERY == 0 {
                let start = *started.get_or_insert_with(std::time::Instant::now);
                if start.elapsed().as_nanos() >= budget {
                    if !cut_by_deadline {
                        LEARNED_NANOS.with(|l| l.set(learned / 2));
                    }
                    return None;
                }
            }
            for _ in 0..pauses {
                core::hint::spin_loop();
            }
            pauses = (pauses * 2).min(max_pauses.max(1));
        }
    }
}

#[cfg(all(test, not(ipc_loom)))]
mod tests {
    use super::*;
    use crate::futex::Deadline;
    use std::time::{Duration, Instant};

    #[test]
    fn a_spin_ends_when_ready_when_told_to_sleep_or_when_its_budget_is_spent() {
        // Ready before the first clock read (16 looks): no timing involved.
        let mut looks = 0;
        let got = spin(None, || {
            looks += 1;
            if looks == 5 {
                SpinPoll::Ready(7)
            } else {
                SpinPoll::Pending
            }
        });
        assert_eq!(got, Some(7));
        assert_eq!(looks, 5);
        let mut looks = 0;
        let got = spin::<()>(None, || {
            looks += 1;
            SpinPoll::Sleep
        });
        assert_eq!((got, looks), (None, 1));
        // Never ready: the budget (50 µs at most) ends it; the bound asserted is generous.
        let started = Instant::now();
        assert_eq!(spin::<()>(None, || SpinPoll::Pending), None);
        assert!(started.elapsed() < Duration::from_secs(2));
        // A deadline already past: not even one look.
        let past = Deadline::after(Duration::ZERO);
        let mut looked = false;
        let got = spin::<()>(Some(&past), || {
            looked = true;
            SpinPoll::Pending
        });
        assert_eq!((got, looked), (None, false));
    }
}
