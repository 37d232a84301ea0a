//! What a crashed or hostile peer can do by scribbling on a primitive's shared words: wrong
//! answers, errors, timeouts, but never a panic (debug overflow checks included) or a hang past a
//! deadline. Each raw type is built from arbitrary bit patterns and every operation is exercised.
#![cfg(not(ipc_loom))]

use ipc_sync::futex::Deadline;
use ipc_sync::raw::{RawBarrier, RawCondition, RawEvent, RawLock, RawRLock, RawSemaphore};
use std::time::Duration;

const PATTERNS: [u32; 9] = [
    0,
    1,
    2,
    0xFFFF,
    0x1_0000,
    1 << 30,
    1 << 31,
    0xC000_0000,
    u32::MAX,
];

fn soon() -> Option<Deadline> {
    Some(Deadline::after(Duration::from_millis(2)))
}

/// Builds a `T` whose words are `words` (T is a repr(C) struct of atomics of the same size).
fn scribbled<T, const N: usize>(words: [u32; N]) -> T {
    assert_eq!(std::mem::size_of::<T>(), 4 * N);
    // SAFETY: every raw type is #[repr(C)] made only of AtomicU32/AtomicU64 fields, for which any
    // bit pattern is a valid value; the size is checked above and [u32; N] is aligned enough for
    // the u32 words (read_unaligned copes with the 8-byte fields).
    unsafe { std::ptr::read_unaligned(words.as_ptr().cast::<T>()) }
}

#[test]
fn scribbled_semaphores_and_events_do_not_panic() {
    for &a in &PATTERNS {
        for &b in &PATTERNS {
            let sem: RawSemaphore = scribbled([a, b, b ^ a, a]);
            let _ = sem.try_acquire();
            let _ = sem.acquire_until(soon());
            let _ = sem.release();
            let _ = (sem.value(), sem.max_value(), sem.is_bounded());

            let event: RawEvent = scribbled([a]);
            let _ = event.wait_until(soon());
            event.set();
            event.clear();
            let _ = event.wait_until(soon());
        }
    }
}

#[test]
fn scribbled_conditions_do_not_panic() {
    for &a in &PATTERNS {
        for &b in &PATTERNS {
            for &c in &PATTERNS {
                let lock = RawLock::new();
                let cond: RawCondition = scribbled([a, 0, b, c]);
                let _ = cond.n_waiting();
                let _ = lock.lock();
                let _ = cond.notify(2);
                let (_, _) = cond.wait_until(
                    soon(),
                    // SAFETY: held by this thread; re-acquired by the relock closure.
                    || unsafe { lock.unlock() },
                    || lock.lock(),
                );
                let _ = cond.notify_all();
                // SAFETY: held by this thread.
                unsafe { lock.unlock() };
            }
        }
    }
}

#[test]
fn scribbled_barriers_do_not_panic() {
    for &a in &PATTERNS {
        for &parties in &PATTERNS {
            let barrier: RawBarrier = scribbled([a, parties]);
            let _ = (barrier.parties(), barrier.n_waiting(), barrier.broken());
            let _ = barrier.wait_until(soon());
            barrier.abort();
            let _ = barrier.wait_until(soon());
            barrier.reset();
            let _ = barrier.wait_until(soon());
        }
    }
}

#[test]
fn scribbled_locks_do_not_panic() {
    // Owner ids that cannot be live threads (above pid_max), so the lock is taken over, plus the
    // flag bits alone. (An id that names a living thread makes the lock look held: a timeout.)
    for &state in &[0u32, 1 << 30, 1 << 31, 0xC000_0000, (1 << 30) - 1, u32::MAX] {
        for &record in &[0u32, u32::MAX] {
            let lock: RawLock = scribbled([state, record, record, state]);
            let _ = (
                lock.is_locked(),
                lock.owner_tid(),
                lock.is_owned_by_current_thread(),
            );
            if let Some(_acquired) = lock.lock_until(Some(Deadline::after(Duration::from_secs(5))))
            {
                // SAFETY: acquired just above by this thread.
                unsafe { lock.unlock() };
            }
            // SAFETY: nothing is protected by this lock.
            let _ = unsafe { lock.unlock_if_locked() };

            let rlock: RawRLock = scribbled([state, record, record, state, u32::MAX, u32::MAX]);
            let _ = rlock.depth();
            if rlock
                .lock_until(Some(Deadline::after(Duration::from_secs(5))))
                .is_some()
            {
                let _ = rlock.lock_until(soon());
                let _ = rlock.unlock();
                let _ = rlock.unlock();
            }
            let _ = rlock.unlock();
        }
    }
}
