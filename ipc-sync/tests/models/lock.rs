//! Models of `RawLock` and `RawRLock`: mutual exclusion, no lost wake-up, timeouts return.

use crate::support::{model, thread, Arc};
use ipc_sync::futex::Deadline;
use ipc_sync::primitive::UnsafeCell;
use ipc_sync::raw::{Acquired, RawLock, RawRLock};
use std::time::Duration;

struct Guarded {
    lock: RawLock,
    value: UnsafeCell<u32>,
}

// SAFETY: `value` is only touched while `lock` is held (the very property under test).
unsafe impl Sync for Guarded {}

struct Cell(UnsafeCell<u32>);

// SAFETY: the cell is only touched while the model's lock is held.
unsafe impl Sync for Cell {}

fn increment(shared: &Guarded) {
    assert_eq!(shared.lock.lock(), Acquired::Clean);
    // Non-atomic read-modify-write: loom reports any concurrent access to the cell.
    shared.value.with_mut(|p| {
        // SAFETY: the lock is held; no other thread touches the cell.
        unsafe { *p += 1 }
    });
    // SAFETY: acquired just above by this thread.
    unsafe { shared.lock.unlock() };
}

#[test]
fn lock_excludes_and_wakes() {
    model(|| {
        let shared = Arc::new(Guarded {
            lock: RawLock::new(),
            value: UnsafeCell::new(0),
        });
        let others: Vec<_> = (0..2)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || increment(&shared))
            })
            .collect();
        increment(&shared);
        for t in others {
            t.join().unwrap();
        }
        // A lost wake-up would have deadlocked (loom fails on that); a race, corrupted the count.
        let total = shared.value.with(|p| {
            // SAFETY: every other thread has been joined.
            unsafe { *p }
        });
        assert_eq!(total, 3);
        assert!(!shared.lock.is_locked());
    });
}

#[test]
fn try_lock_fails_while_held_and_timed_lock_returns() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        assert_eq!(lock.lock(), Acquired::Clean);
        let contender = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || {
                let tried = lock.try_lock();
                let timed = lock.lock_until(Some(Deadline::after(Duration::from_millis(20))));
                // Either attempt may succeed only after the holder released.
                let got = usize::from(tried.is_some()) + usize::from(timed.is_some());
                if tried.is_some() {
                    // SAFETY: held by this thread through `tried`.
                    unsafe { lock.unlock() };
                }
                if timed.is_some() {
                    // SAFETY: held by this thread through `timed`.
                    unsafe { lock.unlock() };
                }
                got
            })
        };
        // SAFETY: acquired above by this thread.
        unsafe { lock.unlock() };
        let got = contender.join().unwrap();
        assert!(got <= 2);
        assert!(!lock.is_locked());
    });
}

#[test]
fn rlock_reenters_for_its_owner_only() {
    model(|| {
        let lock = Arc::new(RawRLock::new());
        let value = Arc::new(Cell(UnsafeCell::new(0u32)));
        let other = {
            let (lock, value) = (Arc::clone(&lock), Arc::clone(&value));
            thread::spawn(move || {
                // Not the owner (yet): releasing is an error.
                assert!(lock.unlock().is_err() || lock.is_owned_by_current_thread());
                let _ = lock.lock();
                value.0.with_mut(|p| {
                    // SAFETY: the lock is held.
                    unsafe { *p += 1 }
                });
                lock.unlock().unwrap();
            })
        };
        let _ = lock.lock();
        let _ = lock.lock();
        assert_eq!(lock.depth(), 2);
        value.0.with_mut(|p| {
            // SAFETY: the lock is held.
            unsafe { *p += 1 }
        });
        lock.unlock().unwrap();
        assert!(lock.is_owned_by_current_thread());
        lock.unlock().unwrap();
        assert!(lock.unlock().is_err());
        other.join().unwrap();
        // SAFETY: the other thread has been joined.
        assert_eq!(value.0.with(|p| unsafe { *p }), 2);
    });
}
