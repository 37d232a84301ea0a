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

/// Default number of spin iterations before sleeping (0 under loom: spinning only multiplies states).
pub(crate) const DEFAULT_SPIN: u32 = if cfg!(ipc_loom) { 0 } else { 100 };

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

/// The process-local spin limit (see [`crate::set_spin_limit`]); always 0 under loom.
#[cfg(not(ipc_loom))]
static SPIN_LIMIT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(DEFAULT_SPIN);

/// How many times a waiter re-checks its word before it sleeps.
#[inline]
pub(crate) fn spin_limit() -> u32 {
    #[cfg(not(ipc_loom))]
    {
        SPIN_LIMIT.load(core::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(ipc_loom)]
    {
        DEFAULT_SPIN
    }
}

/// Sets the process-local spin limit (ignored under loom).
pub(crate) fn set_spin_limit(spins: u32) {
    #[cfg(not(ipc_loom))]
    SPIN_LIMIT.store(spins, core::sync::atomic::Ordering::Relaxed);
    #[cfg(ipc_loom)]
    let _ = spins;
}
