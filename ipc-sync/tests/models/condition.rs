//! Models of `RawCondition` with a `RawLock`: notify wakes a waiter, notify(n) is counted,
//! timed waits return.

use crate::support::{model, thread, Arc};
use ipc_sync::futex::Deadline;
use ipc_sync::primitive::atomic::{AtomicU32, Ordering};
use ipc_sync::raw::{RawCondition, RawLock};
use std::time::Duration;

struct Shared {
    lock: RawLock,
    cond: RawCondition,
    ready: AtomicU32,
}

fn new_shared() -> Arc<Shared> {
    Arc::new(Shared {
        lock: RawLock::new(),
        cond: RawCondition::new(),
        ready: AtomicU32::new(0),
    })
}

/// Waits (holding the lock around the predicate) until `ready` is non-zero.
fn wait_ready(s: &Shared, deadline: Option<Deadline>) -> bool {
    let _ = s.lock.lock();
    while s.ready.load(Ordering::Relaxed) == 0 {
        // SAFETY: held by this thread; wait_until re-acquires it.
        let (notified, _) =
            s.cond
                .wait_until(deadline, || unsafe { s.lock.unlock() }, || s.lock.lock());
        if !notified && deadline.is_some() {
            break;
        }
    }
    let ready = s.ready.load(Ordering::Relaxed) != 0;
    // SAFETY: held by this thread.
    unsafe { s.lock.unlock() };
    ready
}

#[test]
fn notify_wakes_a_waiter() {
    model(|| {
        let s = new_shared();
        let waiter = {
            let s = Arc::clone(&s);
            thread::spawn(move || assert!(wait_ready(&s, None)))
        };
        let _ = s.lock.lock();
        s.ready.store(1, Ordering::Relaxed);
        s.cond.notify(1);
        // SAFETY: held by this thread.
        unsafe { s.lock.unlock() };
        waiter.join().unwrap();
    });
}

#[test]
fn notify_one_ends_exactly_one_wait() {
    model(|| {
        let s = new_shared();
        let woken = Arc::new(AtomicU32::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (s, woken) = (Arc::clone(&s), Arc::clone(&woken));
                thread::spawn(move || {
                    let _ = s.lock.lock();
                    // SAFETY: held by this thread; wait_until re-acquires it.
                    let (notified, _) =
                        s.cond
                            .wait_until(None, || unsafe { s.lock.unlock() }, || s.lock.lock());
                    assert!(notified);
                    woken.fetch_add(1, Ordering::SeqCst);
                    // SAFETY: held by this thread.
                    unsafe { s.lock.unlock() };
                })
            })
            .collect();
        // Notify each waiter once it is registered; a notify with no waiter hands out nothing.
        let mut sent = 0;
        while sent < 2 {
            let _ = s.lock.lock();
            sent += s.cond.notify(1);
            assert!(sent <= 2);
            // SAFETY: held by this thread.
            unsafe { s.lock.unlock() };
            thread::yield_now();
        }
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        assert_eq!(s.cond.n_waiting(), 0);
    });
}

#[test]
fn timed_condition_wait_returns() {
    model(|| {
        let s = new_shared();
        let waiter = {
            let s = Arc::clone(&s);
            thread::spawn(move || wait_ready(&s, Some(Deadline::after(Duration::from_millis(5)))))
        };
        let _ = s.lock.lock();
        s.ready.store(1, Ordering::Relaxed);
        s.cond.notify_all();
        // SAFETY: held by this thread.
        unsafe { s.lock.unlock() };
        let _ = waiter.join().unwrap();
    });
}

#[test]
fn a_timed_out_waiter_cannot_swallow_a_notification() {
    // notify(n) says how many waits it ends. A timed waiter that gives up just as it is notified
    // must either count as notified (return true) or not be counted by the notify at all; if it
    // left with the notification, the token stays behind for nobody and every later notify of a
    // new waiter comes back 0: that waiter is never woken.
    model(|| {
        let s = new_shared();
        let waiter = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                let _ = s.lock.lock();
                let deadline = Some(Deadline::after(Duration::from_millis(5)));
                // SAFETY: held by this thread; it is re-acquired by wait_until before returning.
                let (notified, _) =
                    s.cond
                        .wait_until(deadline, || unsafe { s.lock.unlock() }, || s.lock.lock());
                // SAFETY: held again by this thread.
                unsafe { s.lock.unlock() };
                notified
            })
        };
        let _ = s.lock.lock();
        let granted = s.cond.notify(1);
        // SAFETY: held by this thread.
        unsafe { s.lock.unlock() };
        let notified = waiter.join().unwrap();
        assert_eq!(granted == 1, notified, "notify handed out {granted}");
        assert_eq!(s.cond.n_waiting(), 0);
    });
}
