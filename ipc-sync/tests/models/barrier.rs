//! Models of `RawBarrier`: generations do not mix, indices are a permutation, a timeout breaks
//! the barrier for everyone.

use crate::support::{model, thread, Arc};
use ipc_sync::futex::Deadline;
use ipc_sync::primitive::atomic::{AtomicU32, Ordering};
use ipc_sync::raw::RawBarrier;
use ipc_sync::Error;
use std::time::Duration;

#[test]
fn generations_do_not_mix() {
    model(|| {
        let barrier = Arc::new(RawBarrier::new(2));
        let rounds = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        let party = |me: usize, barrier: Arc<RawBarrier>, rounds: Arc<[AtomicU32; 2]>| {
            let mut indices = Vec::new();
            for round in 1..=2 {
                rounds[me].store(round, Ordering::SeqCst);
                indices.push(barrier.wait_until(None).unwrap());
                // Past the barrier of round r, the other party has reached round r too, and not
                // gone beyond r + 1 (it cannot pass the next barrier without us).
                let other = rounds[1 - me].load(Ordering::SeqCst);
                assert!(
                    other == round || other == round + 1,
                    "round {round}, other at {other}"
                );
            }
            indices
        };
        let t = {
            let (barrier, rounds) = (Arc::clone(&barrier), Arc::clone(&rounds));
            thread::spawn(move || party(1, barrier, rounds))
        };
        let mine = party(0, Arc::clone(&barrier), Arc::clone(&rounds));
        let theirs = t.join().unwrap();
        for (a, b) in mine.iter().zip(&theirs) {
            assert_eq!(a + b, 1, "indices of one generation are 0 and 1");
        }
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
    });
}

#[test]
fn a_timeout_breaks_the_barrier_for_all() {
    model(|| {
        let barrier = Arc::new(RawBarrier::new(2));
        let t = {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait_until(Some(Deadline::after(Duration::from_millis(5))))
            })
        };
        let mine = barrier.wait_until(None);
        let theirs = t.join().unwrap();
        match (&mine, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a + b, 1),
            (Err(Error::BrokenBarrier), Err(Error::BrokenBarrier)) => assert!(barrier.broken()),
            other => panic!("parties disagree: {other:?}"),
        }
    });
}

#[test]
fn abort_fails_the_waiter_and_reset_restores() {
    model(|| {
        let barrier = Arc::new(RawBarrier::new(2));
        let t = {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || barrier.wait_until(None))
        };
        barrier.abort();
        assert!(matches!(t.join().unwrap(), Err(Error::BrokenBarrier)));
        assert!(barrier.broken());
        barrier.reset();
        assert!(!barrier.broken());
        assert_eq!(barrier.n_waiting(), 0);
    });
}

#[test]
fn an_abort_during_a_reset_is_not_lost() {
    // Python: reset() while a party waits makes it fail; an abort() before that party has left
    // still leaves the barrier broken once it has (the drain ends the reset, not the abort).
    model(|| {
        let barrier = Arc::new(RawBarrier::new(2));
        let t = {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || barrier.wait_until(None))
        };
        while barrier.n_waiting() == 0 {
            thread::yield_now();
        }
        barrier.reset();
        barrier.abort();
        assert!(matches!(t.join().unwrap(), Err(Error::BrokenBarrier)));
        assert!(barrier.broken(), "the abort was forgotten");
        assert_eq!(barrier.n_waiting(), 0);
        barrier.reset();
        assert!(!barrier.broken());
    });
}

#[test]
fn a_timeout_during_a_reset_does_not_break_the_barrier() {
    // A waiter that times out while a reset drains it just leaves: the reset's outcome (a usable
    // barrier) stands, as in Python, where a resetting barrier ends the wait, not the timeout.
    model(|| {
        let barrier = Arc::new(RawBarrier::new(2));
        let t = {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait_until(Some(Deadline::after(Duration::from_millis(5))))
            })
        };
        while barrier.n_waiting() == 0 && !barrier.broken() {
            thread::yield_now();
        }
        barrier.reset();
        assert!(matches!(t.join().unwrap(), Err(Error::BrokenBarrier)));
        assert!(!barrier.broken(), "a timeout broke a barrier being reset");
        assert_eq!(barrier.n_waiting(), 0);
    });
}
