//! The raw algorithms: `#[repr(C)]` structs of atomics that work wherever they are placed.
//!
//! Each type here is a plain value: put it in shared memory (the typed handles of this crate put
//! them in the ipc-shm heap) and every process that maps it can use it; put it on the heap and the
//! loom models check it with threads standing in for processes. They wait on their own words with
//! [`crate::futex`], never with process-local tables, and their all-zero bit pattern is a valid
//! state (for [`RawLock`], [`RawRLock`], [`RawEvent`], [`RawCondition`]: the initial one).
//!
//! Owner ids are kernel thread ids (`gettid()`), unique across the processes of one PID namespace;
//! never `std::thread::ThreadId`, which is per process.

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;

pub use barrier::{RawBarrier, MAX_PARTIES};
pub use condition::RawCondition;
pub use event::RawEvent;
pub use lock::RawLock;
pub use rlock::RawRLock;
pub use semaphore::{RawSemaphore, SEM_VALUE_MAX};

/// How a lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Acquired {
    /// The lock was free (or released by a living holder).
    Clean,
    /// The previous holder died while holding the lock; the data it protects may be inconsistent.
    OwnerDied,
}

impl Acquired {
    /// Whether the previous holder died while holding the lock.
    pub fn owner_died(self) -> bool {
        self == Acquired::OwnerDied
    }
}

/// A thread's identity as recorded by a lock: kernel thread id and start time (for pid reuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) tid: u32,
    pub(crate) start: u32,
}

/// The calling thread's owner id.
#[inline]
pub(crate) fn current_owner() -> Owner {
    #[cfg(not(ipc_loom))]
    {
        crate::sys::current_owner()
    }
    #[cfg(ipc_loom)]
    {
        Owner {
            tid: crate::primitive::loom_owner_id(),
            start: 0,
        }
    }
}

/// Whether the thread recorded as an owner is alive (always, under loom: threads never die there).
pub(crate) fn owner_alive(tid: u32, start: Option<u32>) -> bool {
    #[cfg(not(ipc_loom))]
    {
        crate::sys::owner_alive(tid, start)
    }
    #[cfg(ipc_loom)]
    {
        let _ = (tid, start);
        true
    }
}
