//! Process-shared synchronization for multiproc: Python's `Lock`, `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Event`, `Condition`, `Barrier`, and the synchronized `Value` and `Array`,
//! built on futexes in shared memory.
//!
//! Every primitive is a `#[repr(C)]` struct of atomics ([`raw`]) placed in the ipc-shm shared
//! heap; the handles ([`Lock`], [`Value`], ...) are `Clone + Send + Sync` and travel to other
//! processes through ipc-shm's handle transfer (as arguments of a spawned process, or through a
//! connection). The uncontended paths are a compare-and-swap with no system call; contended
//! waiters spin briefly, then sleep on the word with `FUTEX_WAIT` (never the private flavour).
//! Locks record their holder: when a process dies holding one, the next acquirer gets it, with
//! `owner_died()` set on its guard, instead of the deadlock CPython gives.
//!
//! # Example
//!
//! A counter shared by threads (processes work the same way, with the handle sent to the child;
//! the cross-process examples live in `proc-spawn` and `multiproc`, one layer up):
//!
//! ```
//! use ipc_sync::{Barrier, Value};
//!
//! let counter = Value::new(0u64)?;
//! let barrier = Barrier::new(4)?;
//! std::thread::scope(|s| {
//!     for _ in 0..4 {
//!         s.spawn(|| {
//!             barrier.wait().unwrap(); // start together
//!             for _ in 0..10_000 {
//!                 *counter.lock() += 1;
//!             }
//!         });
//!     }
//! });
//! assert_eq!(counter.get(), 40_000);
//! # Ok::<(), ipc_sync::Error>(())
//! ```
//!
//! # Platform support
//!
//! Linux (2.6.25 or later for `FUTEX_WAIT_BITSET`; `/proc` for owner liveness, with a `kill(tid, 0)`
//! fallback). Owner ids are kernel thread ids, so all processes sharing a primitive must be in
//! one PID namespace. Other platforms fail to compile with a message naming the missing backend.
//!
//! # Cargo features
//!
//! None. `--cfg ipc_loom` (not a feature) swaps the atomics and the futex for loom's models; only
//! the [`raw`] algorithms and [`futex`] exist then (the shared-heap handles are compiled out).
//!
//! # Safety model
//!
//! Shared memory only ever holds atomics and `UnsafeCell`s of plain numbers: no pointers, no
//! loom types, and the all-zero pattern is valid for each type. Data behind a lock (in [`Value`],
//! [`Array`]) is reached only through a guard, which exists only while the lock is held and is
//! not `Send` (the lock records the holding thread). The OS is called only in [`futex`] and the
//! private `sys` module. Another process that writes garbage into the shared heap can break the
//! primitives' logic (wrong counts, a lock that looks held) but not memory safety in this process:
//! every state word is interpreted with masks, never as a pointer or index.

#![deny(missing_docs)]

use std::time::Duration;

mod error;
pub mod futex;
pub mod primitive;
pub mod raw;
#[cfg(not(ipc_loom))]
mod sys;

#[cfg(not(ipc_loom))]
mod array;
#[cfg(not(ipc_loom))]
mod barrier;
#[cfg(not(ipc_loom))]
mod condition;
#[cfg(not(ipc_loom))]
mod event;
#[cfg(not(ipc_loom))]
mod lock;
#[cfg(not(ipc_loom))]
mod rlock;
#[cfg(not(ipc_loom))]
mod semaphore;
#[cfg(not(ipc_loom))]
mod value;

pub use error::Error;

#[cfg(not(ipc_loom))]
pub use array::{Array, ArrayGuard};
#[cfg(not(ipc_loom))]
pub use barrier::Barrier;
#[cfg(not(ipc_loom))]
pub use condition::{Condition, ConditionGuard};
#[cfg(not(ipc_loom))]
pub use event::Event;
#[cfg(not(ipc_loom))]
pub use lock::{Lock, LockGuard};
#[cfg(not(ipc_loom))]
pub use rlock::{RLock, RLockGuard};
#[cfg(not(ipc_loom))]
pub use semaphore::{BoundedSemaphore, Semaphore};
#[cfg(not(ipc_loom))]
pub use value::{Value, ValueGuard};

/// Sets how long a waiter of this process spins (re-checking its word) before it sleeps; the
/// default is 50 µs. `Duration::ZERO` sleeps at once; budgets above about 4 s are capped there.
///
/// Spinning helps when the other side runs on another core and is about to answer: the hand-over
/// then takes well under a microsecond instead of a futex wake-up's tens of microseconds. It is
/// bounded in time (not in iterations, whose cost varies tenfold between processors), so an idle
/// waiter soon sleeps and burns no CPU. Wakers never make a system call unless someone sleeps. The
/// setting is per process; a forked child inherits it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// ipc_sync::set_spin_time(Duration::from_micros(50));
/// assert_eq!(ipc_sync::spin_time(), Duration::from_micros(50));
/// ipc_sync::set_spin_time(Duration::from_micros(20)); // the default
/// ```
pub fn set_spin_time(budget: Duration) {
    primitive::set_spin_nanos(budget.as_nanos().min(u128::from(u32::MAX)) as u32);
}

/// The current spin budget (see [`set_spin_time`]).
pub fn spin_time() -> Duration {
    Duration::from_nanos(u64::from(primitive::spin_nanos()))
}

/// Caps the number of re-checks a waiter of this process makes in one spin, on top of the time
/// budget of [`set_spin_time`]; the default is no cap (`u32::MAX`). `0` sleeps at once.
pub fn set_spin_limit(spins: u32) {
    primitive::set_spin_limit(spins);
}

/// The current cap on re-checks (see [`set_spin_limit`]).
pub fn spin_limit() -> u32 {
    primitive::spin_limit()
}
