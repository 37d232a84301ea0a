//! Cross-process tests of the queues, in real child processes under every start method
//! `testkit::methods()` names, for both backends.

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use ipc_channel_core::{__CrashPoint, Backend, Connection, Error, JoinableQueue, Pipe, Queue};
use ipc_shm::transfer;
use ipc_sync::{Lock, Value};
use testkit::Exit;

const BACKENDS: [Backend; 2] = [Backend::Shm, Backend::Pipe];

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8], fds: Vec<OwnedFd>) -> T {
    transfer::decode(payload, fds).expect("decode the case argument")
}

fn start<T: serde::Serialize>(method: testkit::Method, case: &str, arg: &T) -> testkit::Child {
    let (bytes, fds) = transfer::encode(arg).unwrap();
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    testkit::start(method, case, &bytes, &borrowed).unwrap()
}

fn wait_ok(child: &mut testkit::Child) {
    assert_eq!(
        child.wait_timeout(Duration::from_secs(100)).unwrap(),
        Some(Exit::Code(0))
    );
}

fn queue<T>(backend: Backend) -> Queue<T> {
    Queue::builder().backend(backend).build().unwrap()
}

// --- seed (c): producer puts 0..5 and a None sentinel; the consumer reads to the sentinel ----

fn case_producer(payload: &[u8], fds: Vec<OwnedFd>) {
    let q: Queue<Option<u32>> = decode(payload, fds);
    for i in 0..5 {
        q.put(Some(i)).unwrap();
    }
    q.put(None).unwrap();
}

fn test_producer_consumer_seed() {
    for method in testkit::methods() {
        for b in BACKENDS {
            let q = queue::<Option<u32>>(b);
            let mut producer = start(method, "producer", &q);
            let mut got = Vec::new();
            while let Some(i) = q.get_timeout(Duration::from_secs(60)).unwrap() {
                println!("consumed {i}");
                got.push(i);
            }
            assert_eq!(got, [0, 1, 2, 3, 4]);
            wait_ok(&mut producer);
        }
    }
}

// --- 4 producers x 25,000, 2 consumers, exactly once by content ----------------------------

const PRODUCERS: u32 = 4;
const PER_PRODUCER: u32 = 25_000;

fn case_many_producer(payload: &[u8], fds: Vec<OwnedFd>) {
    let (q, p): (Queue<Option<(u32, u32)>>, u32) = decode(payload, fds);
    for i in 0..PER_PRODUCER {
        q.put(Some((p, i))).unwrap();
    }
}

fn case_many_consumer(payload: &[u8], fds: Vec<OwnedFd>) {
    let (q, report): (Queue<Option<(u32, u32)>>, Connection) = decode(payload, fds);
    let mut got = Vec::new();
    while let Some(item) = q.get().unwrap() {
        got.push(item);
    }
    report.send(&got).unwrap();
}

fn test_four_producers_two_consumers_exactly_once() {
    for method in testkit::methods() {
        for b in BACKENDS {
            let q = queue::<Option<(u32, u32)>>(b);
            let mut reports = Vec::new();
            let mut consumers = Vec::new();
            for _ in 0..2 {
                let (mine, theirs) = Pipe::new().unwrap();
                consumers.push(start(method, "many_consumer", &(q.clone(), theirs)));
                reports.push(mine);
            }
            let mut producers: Vec<_> = (0..PRODUCERS)
                .map(|p| start(method, "many_producer", &(q.clone(), p)))
                .collect();
            for p in &mut producers {
                wait_ok(p);
            }
            q.put(None).unwrap();
            q.put(None).unwrap();
            let mut seen = HashSet::new();
            let mut total = 0usize;
            for (c, r) in consumers.iter_mut().zip(&reports) {
                let got: Vec<(u32, u32)> = r.recv().unwrap();
                // Each consumer sees each producer's items in the order they were put.
                let mut last = vec![None::<u32>; PRODUCERS as usize];
                for (p, i) in &got {
                    assert!(last[*p as usize].is_none_or(|l| *i > l));
                    last[*p as usize] = Some(*i);
                }
                total += got.len();
                seen.extend(got);
                wait_ok(c);
            }
            assert_eq!(
                total,
                (PRODUCERS * PER_PRODUCER) as usize,
                "{b:?}: duplicates"
            );
            for p in 0..PRODUCERS {
                for i in 0..PER_PRODUCER {
                    assert!(seen.contains(&(p, i)), "{b:?}: lost ({p}, {i})");
                }
            }
            assert!(q.empty());
        }
    }
}

// --- put then _exit: nothing is lost ------------------------------------------------------

fn case_put_then_exit(payload: &[u8], fds: Vec<OwnedFd>) {
    let q: Queue<Vec<u8>> = decode(payload, fds);
    for i in 0..100u8 {
        q.put(vec![i; 1000]).unwrap();
    }
    // No destructors, no flush, no atexit: whatever put returned for must already be there.
    // SAFETY: _exit ends the process at once; nothing of this process is used afterwards.
    unsafe { libc::_exit(0) };
}

fn test_put_then_exit_loses_nothing() {
    for method in testkit::methods() {
        for b in BACKENDS {
            let q = queue::<Vec<u8>>(b);
            let mut child = start(method, "put_then_exit", &q);
            if b == Backend::Shm {
                // The shm backend's put never waits for a consumer: the child is gone before
                // anything is read.
                wait_ok(&mut child);
            }
            for i in 0..100u8 {
                assert_eq!(
                    q.get_timeout(Duration::from_secs(60)).unwrap(),
                    vec![i; 1000]
                );
            }
            wait_ok(&mut child);
            assert!(q.empty());
        }
    }
}

// --- a consumer (or producer) killed while holding its side does not wedge the queue -------

fn case_hold_get_side(payload: &[u8], fds: Vec<OwnedFd>) {
    let (q, ready): (Queue<u32>, Connection) = decode(payload, fds);
    q.__testing_hold_get_side(|| {
        ready.send(&()).unwrap();
        std::thread::sleep(Duration::from_secs(100));
    });
}

fn case_hold_put_side(payload: &[u8], fds: Vec<OwnedFd>) {
    let (q, ready): (Queue<u32>, Connection) = decode(payload, fds);
    q.__testing_hold_put_side(|| {
        ready.send(&()).unwrap();
        std::thread::sleep(Duration::from_secs(100));
    });
}

fn case_blocked_get(payload: &[u8], fds: Vec<OwnedFd>) {
    let (q, ready): (Queue<u32>, Connection) = decode(payload, fds);
    ready.send(&()).unwrap();
    let _ = q.get();
}

fn test_killed_holder_does_not_wedge_the_queue() {
    for method in testkit::methods() {
        for b in BACKENDS {
            for case in ["hold_get_side", "hold_put_side", "blocked_get"] {
                let q = queue::<u32>(b);
                let blocked = case == "blocked_get";
                if !blocked {
                    q.put(1).unwrap();
                }
                let (mine, theirs) = Pipe::new().unwrap();
                let mut child = start(method, case, &(q.clone(), theirs));
                let () = mine.recv().unwrap();
                child.kill(libc::SIGKILL).unwrap();
                assert_eq!(
                    child.wait_timeout(Duration::from_secs(30)).unwrap(),
                    Some(Exit::Signal(libc::SIGKILL))
                );
                // The survivors take over the dead holder's lock and carry on.
                if blocked {
                    // The pipe backend's get waits holding the read lock; it died there.
                    q.put(1).unwrap();
                }
                q.put(2).unwrap();
                assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), 1);
                assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), 2);
                assert!(matches!(q.try_get(), Err(Error::Empty)));
            }
        }
    }
}

// --- a process dying at each step inside put/get leaves a working queue ---------------------

const POINTS: [__CrashPoint; 4] = [
    __CrashPoint::PutBeforeCommit,
    __CrashPoint::PutBeforeFlip,
    __CrashPoint::GetBeforeFlip,
    __CrashPoint::GetBeforeFree,
];

fn die() {
    // SAFETY: _exit ends the process at once, in the middle of the queue operation (holding
    // its lock), which is the point of the test; nothing of this process runs afterwards.
    unsafe { libc::_exit(7) }
}

/// 3 MiB: spans chunks of the shm backend (1 MiB) and records of the pipe backend (64 KiB).
fn big() -> Vec<u8> {
    (0..3u32 << 20).map(|i| (i % 253) as u8).collect()
}

fn small(b: u8) -> Vec<u8> {
    vec![b; 10]
}

fn case_crash(payload: &[u8], fds: Vec<OwnedFd>) {
    let (q, point, put): (Queue<Vec<u8>>, usize, bool) = decode(payload, fds);
    let point = POINTS[point];
    if put {
        let _ = q.__testing_put_crashing(big(), point, die);
    } else {
        let _ = q.__testing_get_crashing(point, die);
    }
    panic!("the crash point {point:?} was not reached");
}

/// Items still go through (put from a thread: the pipe backend's socket buffer is smaller than
/// them, so a put waits for the reader).
fn still_works(q: &Queue<Vec<u8>>) {
    let putter = {
        let q = q.clone();
        std::thread::spawn(move || {
            for i in 0..8u8 {
                q.put(vec![i; 600 * 1024]).unwrap();
            }
        })
    };
    for i in 0..8u8 {
        assert_eq!(
            q.get_timeout(Duration::from_secs(60)).unwrap(),
            vec![i; 600 * 1024]
        );
    }
    putter.join().unwrap();
    assert!(matches!(q.try_get(), Err(Error::Empty)));
}

fn test_process_dying_inside_put_or_get() {
    for method in testkit::methods() {
        for b in BACKENDS {
            for point in [0, 1] {
                eprintln!("  {method:?} {b:?} {:?}", POINTS[point]);
                let q = queue::<Vec<u8>>(b);
                q.put(small(1)).unwrap();
                let mut child = start(method, "crash", &(q.clone(), point, true));
                assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), small(1));
                if POINTS[point] == __CrashPoint::PutBeforeFlip {
                    // Committed before the producer died: delivered.
                    assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), big());
                }
                assert_eq!(
                    child.wait_timeout(Duration::from_secs(60)).unwrap(),
                    Some(Exit::Code(7)),
                    "{b:?} {:?}",
                    POINTS[point]
                );
                // Nothing half-written is ever delivered, and a consumer does not wait for the
                // rest of a message whose producer is dead.
                assert!(matches!(
                    q.get_timeout(Duration::from_millis(300)),
                    Err(Error::Empty)
                ));
                // The next producer takes the dead one's lock over and repairs the tail.
                q.put(small(2)).unwrap();
                assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), small(2));
                assert!(matches!(q.try_get(), Err(Error::Empty)));
                still_works(&q);
            }
            for point in [2, 3] {
                eprintln!("  {method:?} {b:?} {:?}", POINTS[point]);
                let q = queue::<Vec<u8>>(b);
                let mut child = start(method, "crash", &(q.clone(), point, false));
                let putter = {
                    let q = q.clone();
                    std::thread::spawn(move || {
                        q.put(big()).unwrap();
                        q.put(small(2)).unwrap();
                    })
                };
                assert_eq!(
                    child.wait_timeout(Duration::from_secs(60)).unwrap(),
                    Some(Exit::Code(7)),
                    "{b:?} {:?}",
                    POINTS[point]
                );
                let first = q.get_timeout(Duration::from_secs(60)).unwrap();
                if b == Backend::Shm && POINTS[point] == __CrashPoint::GetBeforeFlip {
                    // Not committed: the record is still there for the next consumer.
                    assert_eq!(first, big());
                    assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), small(2));
                } else {
                    // Taken by the consumer that died (with the pipe backend, the rest of its
                    // records are discarded by the next consumer).
                    assert_eq!(first, small(2));
                }
                putter.join().unwrap();
                assert!(matches!(q.try_get(), Err(Error::Empty)));
                still_works(&q);
            }
        }
    }
}

// --- a Queue, a Lock and a Value sent through a Connection to a running process -------------

type Kit = (Queue<u64>, Lock, Value<u64>);

fn case_kit_server(payload: &[u8], fds: Vec<OwnedFd>) {
    let control: Connection = decode(payload, fds);
    let (q, lock, value): Kit = control.recv().unwrap();
    for _ in 0..1000 {
        *value.lock() += 1;
    }
    {
        let _g = lock.acquire();
        q.put(value.get()).unwrap();
    }
    // Echo whatever the parent puts on a second queue it sends, then stop.
    let echo: Queue<u64> = control.recv().unwrap();
    let v = echo.get().unwrap();
    q.put(v * 2).unwrap();
}

fn test_queue_lock_value_through_connection() {
    for method in testkit::methods() {
        for b in BACKENDS {
            let (control, theirs) = Pipe::new().unwrap();
            let mut child = start(method, "kit_server", &theirs);
            drop(theirs);
            let q = queue::<u64>(b);
            let lock = Lock::new().unwrap();
            let value = Value::new(0u64).unwrap();
            // The child is already running; the handles reach it over the connection.
            let guard = lock.acquire();
            control
                .send(&(q.clone(), lock.clone(), value.clone()))
                .unwrap();
            for _ in 0..1000 {
                *value.lock() += 1;
            }
            // The child cannot put until we release the lock.
            assert!(matches!(
                q.get_timeout(Duration::from_millis(100)),
                Err(Error::Empty)
            ));
            drop(guard);
            let seen = q.get_timeout(Duration::from_secs(60)).unwrap();
            assert!((1000..=2000).contains(&seen), "{seen}");
            let echo = queue::<u64>(b);
            control.send(&echo).unwrap();
            echo.put(21).unwrap();
            assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), 42);
            wait_ok(&mut child);
            assert_eq!(value.get(), 2000);
        }
    }
}

// --- JoinableQueue across processes ------------------------------------------------------

fn case_joinable_worker(payload: &[u8], fds: Vec<OwnedFd>) {
    let (q, results): (JoinableQueue<Option<u32>>, Queue<u32>) = decode(payload, fds);
    while let Some(i) = q.get().unwrap() {
        results.put(i * 2).unwrap();
        q.task_done().unwrap();
    }
    q.task_done().unwrap();
}

fn test_joinable_queue_across_processes() {
    for method in testkit::methods() {
        let q = JoinableQueue::<Option<u32>>::new().unwrap();
        let results = Queue::<u32>::new().unwrap();
        let mut workers: Vec<_> = (0..2)
            .map(|_| start(method, "joinable_worker", &(q.clone(), results.clone())))
            .collect();
        for i in 0..6 {
            q.put(Some(i)).unwrap();
        }
        q.join().unwrap();
        let mut got: Vec<u32> = (0..6).map(|_| results.try_get().unwrap()).collect();
        got.sort();
        assert_eq!(got, [0, 2, 4, 6, 8, 10]);
        q.put(None).unwrap();
        q.put(None).unwrap();
        q.join().unwrap();
        for w in &mut workers {
            wait_ok(w);
        }
        assert!(matches!(q.task_done(), Err(Error::TaskDoneTooManyTimes)));
    }
}

// --- a consumer whose descriptor table is full (pipe backend) --------------------------------

fn case_fd_starved_get(payload: &[u8], fds: Vec<OwnedFd>) {
    let q: Queue<Connection> = decode(payload, fds);
    // Make every new descriptor fail: the limit just above the highest open one, and every
    // hole below it filled.
    let top = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let lim = libc::rlimit {
        rlim_cur: top + 1,
        rlim_max: old.rlim_max,
    };
    // SAFETY: `lim` is a valid rlimit; lowering the soft limit only affects this child.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut fill = Vec::new();
    let err = loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => fill.push(f),
            Err(e) => break e,
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE));
    // The item's descriptor cannot be installed: an error, and the item counts as taken.
    match q.get_timeout(Duration::from_secs(10)) {
        Err(Error::MissingFds {
            expected: 1,
            received: 0,
        }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    drop(fill);
    assert_eq!(q.qsize(), 0);
}

fn test_full_descriptor_table_is_an_error_and_frees_the_place() {
    for method in testkit::methods() {
        let q: Queue<Connection> = Queue::builder()
            .backend(Backend::Pipe)
            .maxsize(1)
            .build()
            .unwrap();
        let (a, b) = Pipe::new().unwrap();
        q.put(a).unwrap();
        let mut child = start(method, "fd_starved_get", &q);
        wait_ok(&mut child);
        assert_eq!(q.qsize(), 0);
        // The place the refused item held is free again.
        q.put_timeout(b, Duration::from_secs(5)).unwrap();
        assert_eq!(q.qsize(), 1);
        let c: Connection = q.get().unwrap();
        assert!(c.writable());
    }
}

fn main() {
    testkit::main(
        &[
            ("producer", case_producer),
            ("many_producer", case_many_producer),
            ("many_consumer", case_many_consumer),
            ("put_then_exit", case_put_then_exit),
            ("hold_get_side", case_hold_get_side),
            ("hold_put_side", case_hold_put_side),
            ("blocked_get", case_blocked_get),
            ("kit_server", case_kit_server),
            ("joinable_worker", case_joinable_worker),
            ("crash", case_crash),
            ("fd_starved_get", case_fd_starved_get),
        ],
        &[
            ("producer_consumer_seed", test_producer_consumer_seed),
            (
                "four_producers_two_consumers_exactly_once",
                test_four_producers_two_consumers_exactly_once,
            ),
            (
                "put_then_exit_loses_nothing",
                test_put_then_exit_loses_nothing,
            ),
            (
                "killed_holder_does_not_wedge_the_queue",
                test_killed_holder_does_not_wedge_the_queue,
            ),
            (
                "process_dying_inside_put_or_get",
                test_process_dying_inside_put_or_get,
            ),
            (
                "queue_lock_value_through_connection",
                test_queue_lock_value_through_connection,
            ),
            (
                "joinable_queue_across_processes",
                test_joinable_queue_across_processes,
            ),
            (
                "full_descriptor_table_is_an_error_and_frees_the_place",
                test_full_descriptor_table_is_an_error_and_frees_the_place,
            ),
        ],
    );
}
