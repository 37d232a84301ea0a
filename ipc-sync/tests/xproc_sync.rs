//! Cross-process tests of the ipc-sync handles: real processes (fork and re-exec, through
//! testkit), real shared memory, real futexes.

use ipc_shm::transfer;
use ipc_shm::RawArray;
use ipc_sync::{Array, Barrier, Condition, Event, Lock, RLock, Semaphore, Value};
use serde::{de::DeserializeOwned, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};
use testkit::{Child, Exit, Method};

const SEED_INCREMENTS: u32 = 1_000_000;

fn start<T: Serialize>(method: Method, case: &str, value: &T) -> Child {
    let (bytes, fds) = transfer::encode(value).unwrap();
    let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
    testkit::start(method, case, &bytes, &borrowed).unwrap()
}

fn decode<T: DeserializeOwned>(payload: &[u8], fds: Vec<OwnedFd>) -> T {
    transfer::decode(payload, fds).unwrap()
}

fn expect_success(children: Vec<Child>) {
    for mut child in children {
        let exit = child.wait_timeout(Duration::from_secs(100)).unwrap();
        assert_eq!(exit, Some(Exit::Code(0)), "child {} failed", child.pid());
    }
}

// ----- the seed program: 4 processes x 1,000,000 increments under the lock -----

fn case_value_increment(payload: &[u8], fds: Vec<OwnedFd>) {
    let (counter, n): (Value<i32>, u32) = decode(payload, fds);
    for _ in 0..n {
        *counter.lock() += 1;
    }
}

fn test_seed_value_4_processes_exact_count() {
    for method in testkit::methods() {
        let counter = Value::new(0i32).unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                start(
                    method,
                    "value_increment",
                    &(counter.clone(), SEED_INCREMENTS),
                )
            })
            .collect();
        expect_success(children);
        assert_eq!(counter.get(), 4_000_000, "{method:?}");
    }
}

fn case_array_increment(payload: &[u8], fds: Vec<OwnedFd>) {
    let (counters, n): (Array<i64>, u32) = decode(payload, fds);
    for _ in 0..n {
        for c in counters.lock().iter_mut() {
            *c += 1;
        }
    }
}

fn test_seed_array_of_8_counters_exact_counts() {
    for method in testkit::methods() {
        let counters = Array::<i64>::new(8).unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                start(
                    method,
                    "array_increment",
                    &(counters.clone(), SEED_INCREMENTS),
                )
            })
            .collect();
        expect_success(children);
        assert_eq!(counters.to_vec(), vec![4_000_000i64; 8], "{method:?}");
    }
}

// ----- Semaphore(2) shared by 6 processes -----

fn case_semaphore_holder(payload: &[u8], fds: Vec<OwnedFd>) {
    let (sem, inside, high): (Semaphore, RawArray<i32>, Value<i32>) = decode(payload, fds);
    for _ in 0..300 {
        sem.acquire();
        let now = inside.fetch_add(0, 1).unwrap() + 1;
        {
            let mut h = high.lock();
            if now > *h {
                *h = now;
            }
        }
        for _ in 0..50 {
            std::hint::spin_loop();
        }
        inside.fetch_add(0, -1).unwrap();
        sem.release().unwrap();
    }
}

fn test_semaphore_2_admits_at_most_2_of_6_processes() {
    for method in testkit::methods() {
        let sem = Semaphore::new(2).unwrap();
        let inside = RawArray::<i32>::zeroed(1).unwrap();
        let high = Value::new(0i32).unwrap();
        let children: Vec<_> = (0..6)
            .map(|_| {
                start(
                    method,
                    "semaphore_holder",
                    &(sem.clone(), inside.clone(), high.clone()),
                )
            })
            .collect();
        expect_success(children);
        let high = high.get();
        assert!(
            (1..=2).contains(&high),
            "high-water mark {high} ({method:?})"
        );
        assert_eq!(sem.value(), 2);
        assert_eq!(inside.get(0), Some(0));
    }
}

// ----- an Event set in one process wakes waiters in three others -----

fn case_event_waiter(payload: &[u8], fds: Vec<OwnedFd>) {
    let (event, woken, ready): (Event, RawArray<i32>, RawArray<i32>) = decode(payload, fds);
    ready.fetch_add(0, 1).unwrap();
    assert!(
        event.wait_timeout(Duration::from_secs(60)),
        "the event was never set"
    );
    woken.fetch_add(0, 1).unwrap();
}

fn case_event_setter(payload: &[u8], fds: Vec<OwnedFd>) {
    let (event, ready): (Event, RawArray<i32>) = decode(payload, fds);
    // Let the waiters get going (not needed for correctness: a late waiter sees the flag).
    let give_up = Instant::now() + Duration::from_secs(30);
    while ready.get(0) != Some(3) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(1));
    }
    event.set();
}

fn test_event_set_in_one_process_wakes_three_others() {
    for method in testkit::methods() {
        let event = Event::new().unwrap();
        let woken = RawArray::<i32>::zeroed(1).unwrap();
        let ready = RawArray::<i32>::zeroed(1).unwrap();
        let mut children: Vec<_> = (0..3)
            .map(|_| {
                start(
                    method,
                    "event_waiter",
                    &(event.clone(), woken.clone(), ready.clone()),
                )
            })
            .collect();
        children.push(start(
            method,
            "event_setter",
            &(event.clone(), ready.clone()),
        ));
        expect_success(children);
        assert_eq!(woken.get(0), Some(3));
        assert!(event.is_set());
    }
}

// ----- Barrier(3) across 3 processes, 100 rounds -----

const ROUNDS: usize = 100;

fn case_barrier_party(payload: &[u8], fds: Vec<OwnedFd>) {
    let (barrier, me, rounds, arrivals): (Barrier, usize, RawArray<i64>, Array<u8>) =
        decode(payload, fds);
    for round in 1..=ROUNDS as i64 {
        rounds.set(me, round).unwrap();
        let index = barrier.wait().unwrap();
        // Past the barrier of round r every party has reached r, and none is past r + 1.
        for other in 0..3 {
            let r = rounds.get(other).unwrap();
            assert!(
                r == round || r == round + 1,
                "party {other} at {r} in round {round}"
            );
        }
        let slot = (round as usize - 1) * 3 + index;
        let mut a = arrivals.lock();
        a[slot] += 1;
    }
}

fn test_barrier_3_processes_100_rounds() {
    for method in testkit::methods() {
        let barrier = Barrier::new(3).unwrap();
        let rounds = RawArray::<i64>::zeroed(3).unwrap();
        let arrivals = Array::<u8>::new(ROUNDS * 3).unwrap();
        let children: Vec<_> = (0..3usize)
            .map(|me| {
                let args = (barrier.clone(), me, rounds.clone(), arrivals.clone());
                start(method, "barrier_party", &args)
            })
            .collect();
        expect_success(children);
        // Every round handed out the indices 0, 1, 2 once each.
        assert_eq!(arrivals.to_vec(), vec![1u8; ROUNDS * 3]);
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
    }
}

// ----- Condition: producer/consumers across processes -----

const ITEMS: i64 = 500;
// Mailbox fields in a RawArray<i64>, protected by the condition's lock.
const FULL: usize = 0;
const SLOT: usize = 1;
const DONE: usize = 2;
const SUM: usize = 3;
const COUNT: usize = 4;

fn case_producer(payload: &[u8], fds: Vec<OwnedFd>) {
    let (cond, mailbox): (Condition, RawArray<i64>) = decode(payload, fds);
    for item in 1..=ITEMS {
        let mut g = cond.acquire();
        cond.wait_for(&mut g, || mailbox.get(FULL) == Some(0))
            .unwrap();
        mailbox.set(SLOT, item).unwrap();
        mailbox.set(FULL, 1).unwrap();
        cond.notify_all().unwrap();
    }
    let mut g = cond.acquire();
    cond.wait_for(&mut g, || mailbox.get(FULL) == Some(0))
        .unwrap();
    mailbox.set(DONE, 1).unwrap();
    cond.notify_all().unwrap();
}

fn case_consumer(payload: &[u8], fds: Vec<OwnedFd>) {
    let (cond, mailbox): (Condition, RawArray<i64>) = decode(payload, fds);
    loop {
        let mut g = cond.acquire();
        cond.wait_for(&mut g, || {
            mailbox.get(FULL) == Some(1) || mailbox.get(DONE) == Some(1)
        })
        .unwrap();
        if mailbox.get(FULL) == Some(1) {
            let item = mailbox.get(SLOT).unwrap();
            mailbox.set(SUM, mailbox.get(SUM).unwrap() + item).unwrap();
            mailbox.set(COUNT, mailbox.get(COUNT).unwrap() + 1).unwrap();
            mailbox.set(FULL, 0).unwrap();
            cond.notify_all().unwrap();
        } else {
            return;
        }
    }
}

fn test_condition_producer_and_two_consumers() {
    for method in testkit::methods() {
        let cond = Condition::new().unwrap();
        let mailbox = RawArray::<i64>::zeroed(5).unwrap();
        let mut children = vec![start(method, "producer", &(cond.clone(), mailbox.clone()))];
        for _ in 0..2 {
            children.push(start(method, "consumer", &(cond.clone(), mailbox.clone())));
        }
        expect_success(children);
        assert_eq!(mailbox.get(COUNT), Some(ITEMS));
        assert_eq!(mailbox.get(SUM), Some(ITEMS * (ITEMS + 1) / 2));
    }
}

// ----- owner death -----

fn die_now() -> ! {
    // SAFETY: getpid has no preconditions; kill with SIGKILL ends this process at once.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL did not end the process")
}

fn case_lock_and_die(payload: &[u8], fds: Vec<OwnedFd>) {
    let (lock, locked, linger_ms): (Lock, Event, u64) = decode(payload, fds);
    lock.acquire().leak();
    locked.set();
    std::thread::sleep(Duration::from_millis(linger_ms));
    die_now();
}

fn check_lock_recovered(method: Method, linger_ms: u64) {
    let lock = Lock::new().unwrap();
    let locked = Event::new().unwrap();
    let mut child = start(
        method,
        "lock_and_die",
        &(lock.clone(), locked.clone(), linger_ms),
    );
    assert!(
        locked.wait_timeout(Duration::from_secs(30)),
        "the child never took the lock"
    );
    // The child is dead (or about to die) and not yet reaped: a zombie still holds the lock.
    let started = Instant::now();
    let guard = lock
        .acquire_timeout(Duration::from_secs(5))
        .expect("dead owner's lock recovered");
    assert!(
        guard.owner_died(),
        "{method:?}: owner_died should be reported"
    );
    assert!(started.elapsed() < Duration::from_secs(7));
    drop(guard);
    // The lock works normally afterwards.
    let guard = lock.acquire();
    assert!(!guard.owner_died());
    assert!(lock.try_acquire().is_none());
    drop(guard);
    assert!(!lock.is_locked());
    assert_eq!(child.wait().unwrap(), Exit::Signal(libc::SIGKILL));
}

fn test_lock_owner_death_is_reported_to_the_next_acquirer() {
    for method in testkit::methods() {
        check_lock_recovered(method, 0);
    }
}

fn test_lock_owner_death_wakes_a_sleeping_waiter() {
    // The parent is already asleep on the lock when the owner dies.
    for method in testkit::methods() {
        check_lock_recovered(method, 300);
    }
}

fn case_value_half_update_and_die(payload: &[u8], fds: Vec<OwnedFd>) {
    let (value, locked): (Value<i64>, Event) = decode(payload, fds);
    let mut guard = value.lock();
    *guard = 12345; // half of an update that never finishes
    std::mem::forget(guard);
    locked.set();
    die_now();
}

fn test_value_owner_death_is_reported() {
    for method in testkit::methods() {
        let value = Value::new(7i64).unwrap();
        let locked = Event::new().unwrap();
        let mut child = start(
            method,
            "value_half_update_and_die",
            &(value.clone(), locked.clone()),
        );
        assert!(locked.wait_timeout(Duration::from_secs(30)));
        let mut guard = value
            .lock_timeout(Duration::from_secs(5))
            .expect("recovered");
        assert!(guard.owner_died());
        assert_eq!(*guard, 12345);
        *guard = 8;
        drop(guard);
        let guard = value.lock();
        assert!(!guard.owner_died());
        assert_eq!(*guard, 8);
        drop(guard);
        assert_eq!(child.wait().unwrap(), Exit::Signal(libc::SIGKILL));
    }
}

fn case_rlock_twice_and_die(payload: &[u8], fds: Vec<OwnedFd>) {
    let (lock, locked): (RLock, Event) = decode(payload, fds);
    lock.acquire().leak();
    lock.acquire().leak();
    locked.set();
    die_now();
}

fn test_rlock_owner_death_is_reported() {
    for method in testkit::methods() {
        let lock = RLock::new().unwrap();
        let locked = Event::new().unwrap();
        let mut child = start(
            method,
            "rlock_twice_and_die",
            &(lock.clone(), locked.clone()),
        );
        assert!(locked.wait_timeout(Duration::from_secs(30)));
        let guard = lock
            .acquire_timeout(Duration::from_secs(5))
            .expect("recovered");
        assert!(guard.owner_died());
        assert_eq!(lock.depth(), 1);
        drop(guard);
        assert!(!lock.is_locked());
        assert_eq!(child.wait().unwrap(), Exit::Signal(libc::SIGKILL));
    }
}

// ----- timeouts against a living holder in another process -----

fn case_hold_until(payload: &[u8], fds: Vec<OwnedFd>) {
    let (lock, locked, release): (Lock, Event, Event) = decode(payload, fds);
    let guard = lock.acquire();
    locked.set();
    assert!(release.wait_timeout(Duration::from_secs(60)));
    drop(guard);
}

fn test_timeouts_return_within_the_deadline() {
    for method in testkit::methods() {
        let lock = Lock::new().unwrap();
        let (locked, release) = (Event::new().unwrap(), Event::new().unwrap());
        let child = start(
            method,
            "hold_until",
            &(lock.clone(), locked.clone(), release.clone()),
        );
        assert!(locked.wait_timeout(Duration::from_secs(30)));
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        // The holder is alive: no take-over, the acquisition times out.
        assert!(lock.acquire_timeout(timeout).is_none());
        let waited = started.elapsed();
        assert!(waited >= timeout, "{waited:?}");
        assert!(waited < timeout + Duration::from_secs(2), "{waited:?}");
        assert!(lock.try_acquire().is_none());
        release.set();
        let guard = lock
            .acquire_timeout(Duration::from_secs(30))
            .expect("released by the holder");
        assert!(!guard.owner_died());
        drop(guard);
        expect_success(vec![child]);

        let sem = Semaphore::new(0).unwrap();
        let started = Instant::now();
        assert!(!sem.acquire_timeout(timeout));
        assert!((timeout..timeout + Duration::from_secs(2)).contains(&started.elapsed()));

        let event = Event::new().unwrap();
        let started = Instant::now();
        assert!(!event.wait_timeout(timeout));
        assert!((timeout..timeout + Duration::from_secs(2)).contains(&started.elapsed()));
    }
}

fn main() {
    testkit::main(
        &[
            ("value_increment", case_value_increment),
            ("array_increment", case_array_increment),
            ("semaphore_holder", case_semaphore_holder),
            ("event_waiter", case_event_waiter),
            ("event_setter", case_event_setter),
            ("barrier_party", case_barrier_party),
            ("producer", case_producer),
            ("consumer", case_consumer),
            ("lock_and_die", case_lock_and_die),
            ("value_half_update_and_die", case_value_half_update_and_die),
            ("rlock_twice_and_die", case_rlock_twice_and_die),
            ("hold_until", case_hold_until),
        ],
        &[
            (
                "seed_value_4_processes_exact_count",
                test_seed_value_4_processes_exact_count,
            ),
            (
                "seed_array_of_8_counters_exact_counts",
                test_seed_array_of_8_counters_exact_counts,
            ),
            (
                "semaphore_2_admits_at_most_2_of_6_processes",
                test_semaphore_2_admits_at_most_2_of_6_processes,
            ),
            (
                "event_set_in_one_process_wakes_three_others",
                test_event_set_in_one_process_wakes_three_others,
            ),
            (
                "barrier_3_processes_100_rounds",
                test_barrier_3_processes_100_rounds,
            ),
            (
                "condition_producer_and_two_consumers",
                test_condition_producer_and_two_consumers,
            ),
            (
                "lock_owner_death_is_reported_to_the_next_acquirer",
                test_lock_owner_death_is_reported_to_the_next_acquirer,
            ),
            (
                "lock_owner_death_wakes_a_sleeping_waiter",
                test_lock_owner_death_wakes_a_sleeping_waiter,
            ),
            (
                "value_owner_death_is_reported",
                test_value_owner_death_is_reported,
            ),
            (
                "rlock_owner_death_is_reported",
                test_rlock_owner_death_is_reported,
            ),
            (
                "timeouts_return_within_the_deadline",
                test_timeouts_return_within_the_deadline,
            ),
        ],
    );
}
