//! The comparison benchmarks of multiproc: each primitive next to its peers (Python, Rust crates,
//! the OS limits), measured in the same run.
//!
//! This library holds what the benchmark binaries (`benches/*.rs`, one criterion group each)
//! share: the naming convention the report reads, the run length (`--quick` or full), and the
//! OS-limit peers written here because no crate offers them bare: a minimal futex mutex and a
//! process-shared pthread mutex, both placed in shared memory.
//!
//! Naming convention (read by the `bench-report` binary): a criterion benchmark id is
//! `<group>/<entry>/<case>`. An entry whose name starts with [`OURS`] is multiproc's; one that
//! starts with [`PYTHON`] comes from the Python twins (`benches/python/`); any other is a peer.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc::{ShmBox, ShmSafe};

/// Prefix of multiproc's own entries.
pub const OURS: &str = "multiproc";
/// Prefix of the Python twins' entries.
pub const PYTHON: &str = "python";
/// Environment variable set by `cargo xtask bench --quick`: shorter runs.
pub const QUICK_ENV: &str = "MULTIPROC_BENCH_QUICK";

/// Whether this is a `--quick` pass (a look, not a record).
pub fn quick() -> bool {
    std::env::var_os(QUICK_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// How long one benchmark runs.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Criterion's warm-up time.
    pub warm_up: Duration,
    /// Criterion's measurement time (a target: heavy iterations overrun it).
    pub measurement: Duration,
    /// Criterion's sample count (at least 10).
    pub samples: usize,
}

/// The weight of one iteration, which decides the run length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weight {
    /// Nanoseconds to microseconds per iteration.
    Light,
    /// Milliseconds per iteration (a process start, a map over 100,000 items).
    Heavy,
    /// A tenth of a second or more per iteration (2 × 1,000,000 locked increments).
    VeryHeavy,
}

/// The run length of a benchmark of this `weight` in this pass (`--quick` or full).
pub fn timing(weight: Weight) -> Timing {
    let ms = Duration::from_millis;
    match (quick(), weight) {
        (true, Weight::Light) => Timing {
            warm_up: ms(300),
            measurement: ms(1000),
            samples: 20,
        },
        (true, _) => Timing {
            warm_up: ms(200),
            measurement: ms(1000),
            samples: 10,
        },
        (false, Weight::Light) => Timing {
            warm_up: ms(1000),
            measurement: ms(4000),
            samples: 60,
        },
        (false, Weight::Heavy) => Timing {
            warm_up: ms(1000),
            measurement: ms(6000),
            samples: 20,
        },
        (false, Weight::VeryHeavy) => Timing {
            warm_up: ms(500),
            measurement: ms(5000),
            samples: 10,
        },
    }
}

// ---- a bare futex mutex: the OS limit of an uncontended lock ------------------------------------

/// The smallest correct futex mutex (Drepper's three states: 0 free, 1 locked, 2 locked with
/// waiters), usable across processes when it lives in shared memory. It has none of the
/// features of multiproc's `Lock` (no owner, no crash recovery, no spin budget, no timeout): it is
/// the reference an uncontended lock is measured against.
#[repr(C)]
#[derive(Debug, Default)]
pub struct FutexMutex {
    state: AtomicU32,
}

// SAFETY: repr(C), one atomic word: no pointer, all-zero is the free state, no Drop.
unsafe impl ShmSafe for FutexMutex {}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT (shared, not PRIVATE: the word may be in memory mapped by several
    // processes) on a valid, aligned u32 that outlives the call; a null timeout means no deadline.
    // The result is ignored: every caller re-checks the word in a loop.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

fn futex_wake_one(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE of at most one waiter on a valid, aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}

impl FutexMutex {
    /// A free mutex.
    pub const fn new() -> FutexMutex {
        FutexMutex {
            state: AtomicU32::new(0),
        }
    }

    /// Locks: one compare-and-swap when free, else sleeps in the kernel until woken.
    #[inline]
    pub fn lock(&self) {
        if self
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.lock_contended();
    }

    #[cold]
    fn lock_contended(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        if s != 2 {
            s = self.state.swap(2, Ordering::Acquire);
        }
        while s != 0 {
            futex_wait(&self.state, 2);
            s = self.state.swap(2, Ordering::Acquire);
        }
    }

    /// Unlocks: one swap, and a wake only when someone sleeps.
    #[inline]
    pub fn unlock(&self) {
        if self.state.swap(0, Ordering::Release) == 2 {
            futex_wake_one(&self.state);
        }
    }
}

/// A counter guarded by a [`FutexMutex`], for the contended increments.
#[repr(C)]
#[derive(Debug, Default)]
pub struct FutexCounter {
    mutex: FutexMutex,
    value: UnsafeCell<u64>,
}

// SAFETY: repr(C): an atomic word and a u64, no pointer, all-zero is a free mutex and 0, no Drop.
unsafe impl ShmSafe for FutexCounter {}
// SAFETY: the value is only read or written while the mutex is held.
unsafe impl Sync for FutexCounter {}

impl FutexCounter {
    /// Adds one under the mutex.
    #[inline]
    pub fn increment(&self) {
        self.mutex.lock();
        // SAFETY: the mutex is held, so no other thread or process touches the value.
        unsafe { *self.value.get() += 1 };
        self.mutex.unlock();
    }

    /// The value, read under the mutex.
    pub fn get(&self) -> u64 {
        self.mutex.lock();
        // SAFETY: the mutex is held.
        let v = unsafe { *self.value.get() };
        self.mutex.unlock();
        v
    }
}

// ---- a process-shared pthread mutex ---------------------------------------------------------

/// A `PTHREAD_PROCESS_SHARED` pthread mutex and the counter it guards, in shared memory: what a C
/// program would use across processes.
#[repr(C)]
pub struct PthreadCounter {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    value: UnsafeCell<u64>,
}

impl std::fmt::Debug for PthreadCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PthreadCounter")
    }
}

// SAFETY: repr(C) plain C data without pointers; all-zero is glibc's PTHREAD_MUTEX_INITIALIZER
// (and `PthreadCounter::new_shared` re-initialises the mutex process-shared before use); no Drop.
unsafe impl ShmSafe for PthreadCounter {}
// SAFETY: the mutex is made for concurrent use; the value is only touched under it.
unsafe impl Sync for PthreadCounter {}
// SAFETY: nothing in it is tied to a thread.
unsafe impl Send for PthreadCounter {}

impl PthreadCounter {
    /// A counter at 0 with a process-shared mutex, in the shared heap.
    pub fn new_shared() -> Result<ShmBox<PthreadCounter>, multiproc::ShmError> {
        // SAFETY: all-zero is a valid pthread_mutex_t (PTHREAD_MUTEX_INITIALIZER on glibc) and a
        // valid u64.
        let zero: PthreadCounter = unsafe { std::mem::zeroed() };
        let boxed = ShmBox::new(zero)?;
        // SAFETY: the attribute object is initialised before use and destroyed after; the mutex
        // lives in the shared heap as long as `boxed` and nobody uses it yet.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutex_init(boxed.mutex.get(), &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        Ok(boxed)
    }

    /// Locks and unlocks without touching the value.
    #[inline]
    pub fn lock_unlock(&self) {
        // SAFETY: the mutex was initialised by `new_shared`; lock and unlock are paired.
        unsafe {
            libc::pthread_mutex_lock(self.mutex.get());
            libc::pthread_mutex_unlock(self.mutex.get());
        }
    }

    /// Adds one under the mutex.
    #[inline]
    pub fn increment(&self) {
        // SAFETY: the mutex was initialised by `new_shared`; the value is only touched while it
        // is held.
        unsafe {
            libc::pthread_mutex_lock(self.mutex.get());
            *self.value.get() += 1;
            libc::pthread_mutex_unlock(self.mutex.get());
        }
    }

    /// The value, read under the mutex.
    pub fn get(&self) -> u64 {
        // SAFETY: as in `increment`.
        unsafe {
            libc::pthread_mutex_lock(self.mutex.get());
            let v = *self.value.get();
            libc::pthread_mutex_unlock(self.mutex.get());
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futex_counter_counts_across_threads() {
        let c = std::sync::Arc::new(FutexCounter::default());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.increment();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.get(), 40_000);
    }

    #[test]
    fn pthread_counter_counts_across_threads() {
        let c = PthreadCounter::new_shared().unwrap();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.increment();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.get(), 40_000);
    }
}
