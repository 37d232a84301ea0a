//! The handles' Python behaviours (catalogue sections H-L, E-F), in one process with threads.

use ipc_sync::{
    Array, Barrier, BoundedSemaphore, Condition, Error, Event, Lock, RLock, Semaphore, Value,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_millis(100);
const MARGIN: Duration = Duration::from_secs(2);

fn assert_took(started: Instant, at_least: Duration) {
    let took = started.elapsed();
    assert!(took >= at_least, "returned early: {took:?}");
    assert!(took < at_least + MARGIN, "returned late: {took:?}");
}

#[test]
fn lock_acquire_try_release_and_timeout() {
    // 112, 113, 114, 115
    let lock = Lock::new().unwrap();
    let g = lock.acquire();
    assert!(lock.try_acquire().is_none());
    let started = Instant::now();
    assert!(lock.acquire_timeout(SHORT).is_none());
    assert_took(started, SHORT);
    drop(g);
    assert!(matches!(lock.release(), Err(Error::OverRelease)));
    // Not owner-checked: another thread may release a leaked acquisition.
    lock.acquire().leak();
    std::thread::scope(|s| s.spawn(|| lock.release().unwrap()).join().unwrap());
    assert!(!lock.is_locked());
    assert!(lock.try_acquire().is_some());
}

#[test]
fn rlock_reenters_and_rejects_foreign_release() {
    // 119, 120
    let lock = RLock::new().unwrap();
    for _ in 0..3 {
        lock.acquire().leak();
    }
    assert_eq!(lock.depth(), 3);
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(lock.release(), Err(Error::NotOwner)));
            assert!(lock.try_acquire().is_none());
        })
        .join()
        .unwrap()
    });
    for _ in 0..3 {
        lock.release().unwrap();
    }
    assert!(matches!(lock.release(), Err(Error::NotOwner)));
    assert!(!lock.is_locked());
}

#[test]
fn semaphore_values_and_timeouts() {
    // 123, 124, 126
    let sem = Semaphore::new(2).unwrap();
    sem.acquire();
    assert_eq!(sem.value(), 1);
    sem.acquire();
    assert_eq!(sem.value(), 0);
    assert!(!sem.try_acquire());
    let started = Instant::now();
    assert!(!sem.acquire_timeout(SHORT));
    assert_took(started, SHORT);
    for expected in 1..=4 {
        sem.release().unwrap();
        assert_eq!(sem.value(), expected);
    }
    assert!(matches!(
        Semaphore::new(u32::MAX),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn bounded_semaphore_over_release_is_an_error() {
    // 125
    let sem = BoundedSemaphore::new(2).unwrap();
    sem.acquire();
    sem.release().unwrap();
    assert!(matches!(sem.release(), Err(Error::OverRelease)));
    assert_eq!(sem.value(), 2);
    assert_eq!(sem.max_value(), 2);
}

#[test]
fn semaphore_release_wakes_a_sleeper() {
    let sem = Semaphore::new(0).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| sem.acquire_timeout(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        sem.release().unwrap();
        assert!(t.join().unwrap());
    });
    assert_eq!(sem.value(), 0);
}

#[test]
fn event_set_clear_wait() {
    // 142, 143, 144, 146
    let event = Event::new().unwrap();
    assert!(!event.is_set());
    assert!(!event.wait_timeout(Duration::ZERO));
    let started = Instant::now();
    assert!(!event.wait_timeout(SHORT));
    assert_took(started, SHORT);
    event.set();
    assert!(event.is_set() && event.try_wait());
    event.wait();
    assert!(event.wait_timeout(SHORT));
    event.clear();
    assert!(!event.is_set());
    let woken = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                assert!(event.wait_timeout(Duration::from_secs(30)));
                woken.fetch_add(1, Ordering::SeqCst);
            });
        }
        std::thread::sleep(Duration::from_millis(20));
        event.set();
    });
    assert_eq!(woken.load(Ordering::SeqCst), 3);
}

#[test]
fn condition_wait_timeout_and_notify_rules() {
    // 130-132, 138, 140
    let cond = Condition::new().unwrap();
    assert!(matches!(cond.notify(1), Err(Error::NotOwner)));
    let mut g = cond.acquire();
    let started = Instant::now();
    assert!(!cond.wait_timeout(&mut g, SHORT).unwrap());
    assert_took(started, SHORT);
    assert!(!cond.wait_timeout(&mut g, Duration::ZERO).unwrap());
    let started = Instant::now();
    assert!(!cond.wait_for_timeout(&mut g, || false, SHORT).unwrap());
    assert_took(started, SHORT);
    assert!(cond.wait_for_timeout(&mut g, || true, SHORT).unwrap());
    cond.notify(1).unwrap();
    // A guard of a condition over another lock is rejected.
    let other = Condition::new().unwrap();
    let mut og = other.acquire();
    assert!(matches!(cond.wait(&mut og), Err(Error::WrongLock)));
    drop(og);
    drop(g);
    // Two conditions over one lock accept each other's guards.
    let lock = Lock::new().unwrap();
    let a = Condition::with_lock(lock.clone()).unwrap();
    let b = Condition::with_lock(lock.clone()).unwrap();
    let mut ga = a.acquire();
    assert!(lock.is_locked());
    assert!(!b.wait_timeout(&mut ga, Duration::from_millis(10)).unwrap());
    assert!(lock.is_owned_by_current_thread());
    drop(ga);
    assert!(!lock.is_locked());
}

#[test]
fn condition_notify_n_counts_exactly() {
    // 134, 135, 136
    let cond = Condition::new().unwrap();
    let woken = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                let mut g = cond.acquire();
                cond.wait(&mut g).unwrap();
                woken.fetch_add(1, Ordering::SeqCst);
            });
        }
        let settle = |expected: usize| {
            let give_up = Instant::now() + Duration::from_secs(30);
            while woken.load(Ordering::SeqCst) < expected && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // Wait until all six are registered (they register under the lock).
        let give_up = Instant::now() + Duration::from_secs(30);
        while cond.n_waiting() < 6 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(cond.n_waiting(), 6);
        {
            let _g = cond.acquire();
            cond.notify(2).unwrap();
        }
        settle(2);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        {
            let _g = cond.acquire();
            cond.notify(4).unwrap();
        }
        settle(6);
        assert_eq!(woken.load(Ordering::SeqCst), 6);
        let _g = cond.acquire();
        cond.notify(3).unwrap(); // nobody left: nothing happens
        assert_eq!(cond.n_waiting(), 0);
    });
}

#[test]
fn condition_over_rlock_releases_every_level_while_waiting() {
    let cond = Condition::new().unwrap();
    let flag = Value::new(0u8).unwrap();
    std::thread::scope(|s| {
        let mut g = cond.acquire();
        let _inner = cond.acquire(); // depth 2
        s.spawn(|| {
            let _g = cond.acquire(); // only possible if the waiter released both levels
            flag.set(1);
            cond.notify_all().unwrap();
        });
        assert!(cond.wait_for(&mut g, || flag.get() == 1).unwrap());
    });
}

#[test]
fn barrier_basics_abort_reset_timeout() {
    // 147, 149, 151-154, 156
    let single = Barrier::new(1).unwrap();
    assert_eq!(single.wait().unwrap(), 0);
    assert_eq!(single.wait().unwrap(), 0);
    assert!(matches!(Barrier::new(0), Err(Error::InvalidArgument(_))));

    let b = Barrier::new(3).unwrap();
    assert_eq!((b.parties(), b.n_waiting(), b.broken()), (3, 0, false));
    let mut indices: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| b.wait().unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);

    // abort breaks the waiters; reset restores.
    std::thread::scope(|s| {
        let t = s.spawn(|| b.wait());
        while b.n_waiting() < 1 {
            std::thread::yield_now();
        }
        b.abort();
        assert!(matches!(t.join().unwrap(), Err(Error::BrokenBarrier)));
    });
    assert!(b.broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset();
    assert!(!b.broken());

    // reset while two wait: both fail, then all three pass.
    std::thread::scope(|s| {
        let ts: Vec<_> = (0..2).map(|_| s.spawn(|| b.wait())).collect();
        while b.n_waiting() < 2 {
            std::thread::yield_now();
        }
        b.reset();
        for t in ts {
            assert!(matches!(t.join().unwrap(), Err(Error::BrokenBarrier)));
        }
    });
    let ok: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| b.wait())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ok.iter().all(|r| r.is_ok()));

    // A timeout breaks the barrier for everyone.
    let two = Barrier::new(2).unwrap();
    let started = Instant::now();
    assert!(matches!(two.wait_timeout(SHORT), Err(Error::BrokenBarrier)));
    assert_took(started, SHORT);
    assert!(two.broken());
    assert!(matches!(two.wait(), Err(Error::BrokenBarrier)));
}

#[test]
fn value_and_array_access() {
    // 66, 72, 81, 83, 85, 89
    let v = Value::new(4343i32).unwrap();
    assert_eq!(v.get(), 4343);
    assert_eq!(v.typecode(), 'i');
    v.set(-5);
    *v.lock() += 10;
    assert_eq!(v.get(), 5);
    let d = Value::new(0.0f64).unwrap();
    assert_eq!(d.get(), 0.0);
    assert!(v.lock_timeout(SHORT).is_some());

    let a = Array::<i32>::new(10).unwrap();
    assert_eq!(a.to_vec(), vec![0; 10]);
    a.set_all(&(0..10).collect::<Vec<_>>()).unwrap();
    assert_eq!(a.to_vec(), (0..10).collect::<Vec<_>>());
    assert!(matches!(
        a.set_all(&[1, 2]),
        Err(Error::LengthMismatch {
            expected: 10,
            found: 2
        })
    ));
    assert!(matches!(
        a.set(10, 1),
        Err(Error::IndexOutOfRange { index: 10, len: 10 })
    ));
    assert_eq!(a.get(10), None);
    assert_eq!(a.len(), 10);
    let b = Array::from_slice(&[1i32, 2, 3, 4, 5]).unwrap();
    for x in b.lock().iter_mut() {
        *x *= 2;
    }
    assert_eq!(b.to_vec(), [2, 4, 6, 8, 10]);
    let empty = Array::<u8>::new(0).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.to_vec(), Vec::<u8>::new());
}

#[test]
fn a_held_guard_blocks_other_threads_until_dropped() {
    let v = Value::new(0u64).unwrap();
    std::thread::scope(|s| {
        let mut g = v.lock();
        let t = s.spawn(|| v.try_lock().is_none());
        assert!(t.join().unwrap());
        *g = 9;
    });
    assert_eq!(v.get(), 9);
}

#[test]
fn a_thread_that_exits_holding_a_lock_counts_as_dead() {
    let lock = Lock::new().unwrap();
    std::thread::scope(|s| s.spawn(|| lock.acquire().leak()).join().unwrap());
    let g = lock
        .acquire_timeout(Duration::from_secs(5))
        .expect("taken over");
    assert!(g.owner_died());
}

#[test]
fn huge_timeouts_mean_no_limit_and_do_not_panic() {
    let max = Duration::MAX;
    let lock = Lock::new().unwrap();
    assert!(lock.acquire_timeout(max).is_some());
    let rlock = RLock::new().unwrap();
    assert!(rlock.acquire_timeout(max).is_some());
    let sem = Semaphore::new(1).unwrap();
    assert!(sem.acquire_timeout(max));
    let event = Event::new().unwrap();
    event.set();
    assert!(event.wait_timeout(max));
    let value = Value::new(1u8).unwrap();
    assert_eq!(value.lock_timeout(max).map(|g| *g), Some(1));
    let barrier = Barrier::new(1).unwrap();
    assert_eq!(barrier.wait_timeout(max).unwrap(), 0);
    let cond = Condition::new().unwrap();
    let mut g = cond.acquire_timeout(max).unwrap();
    assert!(cond.wait_for_timeout(&mut g, || true, max).unwrap());
    // A sleeper with an endless timeout is woken normally.
    let sem = Semaphore::new(0).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| sem.acquire_timeout(max));
        sem.release().unwrap();
        assert!(t.join().unwrap());
    });
}
