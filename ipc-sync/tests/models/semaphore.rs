//! Models of `RawSemaphore`: never more holders than units, never negative, never above the bound.

use crate::support::{model, thread, Arc};
use ipc_sync::futex::Deadline;
use ipc_sync::primitive::atomic::{AtomicU32, Ordering};
use ipc_sync::raw::RawSemaphore;
use ipc_sync::Error;
use std::time::Duration;

#[test]
fn semaphore_admits_at_most_its_value() {
    model(|| {
        let sem = Arc::new(RawSemaphore::new(1));
        let inside = Arc::new(AtomicU32::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (sem, inside) = (Arc::clone(&sem), Arc::clone(&inside));
                thread::spawn(move || {
                    sem.acquire();
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders of one unit"
                    );
                    inside.fetch_sub(1, Ordering::SeqCst);
                    sem.release().unwrap();
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(sem.value(), 1);
    });
}

#[test]
fn bounded_semaphore_never_exceeds_its_bound() {
    model(|| {
        let sem = Arc::new(RawSemaphore::new_bounded(1));
        sem.acquire();
        let releasers: Vec<_> = (0..2)
            .map(|_| {
                let sem = Arc::clone(&sem);
                thread::spawn(move || sem.release())
            })
            .collect();
        let results: Vec<Result<(), Error>> =
            releasers.into_iter().map(|r| r.join().unwrap()).collect();
        // Exactly one release fits under the bound; the other is an over-release.
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results.iter().any(|r| matches!(r, Err(Error::OverRelease))));
        assert_eq!(sem.value(), 1);
    });
}

#[test]
fn timed_acquire_returns_and_a_release_is_not_lost() {
    model(|| {
        let sem = Arc::new(RawSemaphore::new(0));
        let waiter = {
            let sem = Arc::clone(&sem);
            thread::spawn(move || {
                sem.acquire_until(Some(Deadline::after(Duration::from_millis(20))))
            })
        };
        sem.release().unwrap();
        let took = waiter.join().unwrap();
        // Whatever the interleaving, the unit is either taken by the waiter or still there.
        assert_eq!(sem.value() + u32::from(took), 1);
    });
}

#[test]
fn each_release_lets_one_sleeper_through() {
    // Two sleepers, two releases: both acquisitions end (a lost wake-up deadlocks the model), and
    // the units end up taken, not left behind.
    model(|| {
        let sem = Arc::new(RawSemaphore::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let sem = Arc::clone(&sem);
                thread::spawn(move || sem.acquire())
            })
            .collect();
        sem.release().unwrap();
        sem.release().unwrap();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(sem.value(), 0);
    });
}
