//! Python's `Queue`/`SimpleQueue`/`JoinableQueue` semantics, for both backends, in one process
//! (threads stand in for processes here; `xproc_queue.rs` uses real processes).

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use ipc_channel_core::{Backend, Connection, Error, JoinableQueue, Pipe, Queue, SimpleQueue};

const BACKENDS: [Backend; 2] = [Backend::Shm, Backend::Pipe];

fn queue<T>(backend: Backend, maxsize: usize) -> Queue<T> {
    Queue::builder()
        .backend(backend)
        .maxsize(maxsize)
        .build()
        .unwrap()
}

#[test]
fn fresh_bounded_queue_then_full() {
    for b in BACKENDS {
        let q = queue::<u32>(b, 6);
        assert!(q.empty());
        assert!(!q.full());
        assert_eq!(q.qsize(), 0);
        assert_eq!(q.maxsize(), 6);
        q.put(1).unwrap();
        q.put(2).unwrap();
        q.put_timeout(3, Duration::from_secs(1)).unwrap();
        q.try_put(4).unwrap();
        q.put(5).unwrap();
        q.try_put(6).unwrap();
        // put returned: the items are in the queue (no feeder thread, no delay needed).
        assert!(!q.empty());
        assert!(q.full());
        assert_eq!(q.qsize(), 6);
        assert!(matches!(q.try_put(7), Err(Error::Full)));
        let t = Instant::now();
        assert!(matches!(
            q.put_timeout(7, Duration::from_millis(100)),
            Err(Error::Full)
        ));
        assert!(t.elapsed() >= Duration::from_millis(90));
        assert!(t.elapsed() < Duration::from_secs(5));
        // FIFO.
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 2);
        assert_eq!(q.try_get().unwrap(), 3);
        assert_eq!(q.qsize(), 3);
        for want in 4..=6 {
            assert_eq!(q.get().unwrap(), want);
        }
        assert!(q.empty());
        assert!(matches!(q.try_get(), Err(Error::Empty)));
        let t = Instant::now();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(100)),
            Err(Error::Empty)
        ));
        assert!(t.elapsed() >= Duration::from_millis(90));
    }
}

#[test]
fn unbounded_qsize_steps() {
    for b in BACKENDS {
        let q = queue::<String>(b, 0);
        assert!(!q.full());
        q.put("a".into()).unwrap();
        assert_eq!(q.qsize(), 1);
        q.put("b".into()).unwrap();
        assert_eq!(q.qsize(), 2);
        assert_eq!(q.get().unwrap(), "a");
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get().unwrap(), "b");
        assert_eq!(q.qsize(), 0);
    }
}

#[test]
fn blocked_put_resumes_when_a_get_frees_room() {
    for b in BACKENDS {
        let q = queue::<u32>(b, 1);
        q.put(1).unwrap();
        let q2 = q.clone();
        let t = thread::spawn(move || q2.put(2));
        thread::sleep(Duration::from_millis(50));
        // Whenever we look, the put cannot have returned: the queue is full.
        assert!(!t.is_finished(), "put into a full queue returned");
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get().unwrap(), 1);
        t.join().unwrap().unwrap();
        assert_eq!(q.get().unwrap(), 2);
    }
}

#[test]
fn blocked_get_wakes_on_put() {
    for b in BACKENDS {
        let q = queue::<u64>(b, 0);
        let q2 = q.clone();
        let t = thread::spawn(move || q2.get());
        thread::sleep(Duration::from_millis(50));
        // Whenever we look, the get cannot have returned: the queue is empty.
        assert!(!t.is_finished(), "get from an empty queue returned");
        q.put(99).unwrap();
        assert_eq!(t.join().unwrap().unwrap(), 99);
    }
}

#[test]
fn sixteen_mib_and_beyond_no_size_cliff() {
    for b in BACKENDS {
        let q = queue::<Vec<u8>>(b, 0);
        let big: Vec<u8> = (0..(16u32 << 20) + 12345)
            .map(|i| (i % 241) as u8)
            .collect();
        let q2 = q.clone();
        let expected = big.clone();
        // The pipe backend's put waits while the socket is full, so read concurrently.
        let reader = thread::spawn(move || q2.get().unwrap());
        q.put(big).unwrap();
        assert_eq!(reader.join().unwrap(), expected);
        q.put(vec![1, 2, 3]).unwrap();
        assert_eq!(q.get().unwrap(), vec![1, 2, 3]);
    }
}

#[test]
fn shm_unbounded_put_never_waits_for_consumers() {
    // 64 MiB of unread items: chunks are chained, nothing blocks, everything comes back.
    let q = queue::<Vec<u8>>(Backend::Shm, 0);
    for i in 0..256u32 {
        q.put(vec![i as u8; 256 * 1024]).unwrap();
    }
    assert_eq!(q.qsize(), 256);
    for i in 0..256u32 {
        let v = q.get().unwrap();
        assert_eq!(v.len(), 256 * 1024);
        assert!(v.iter().all(|x| *x == i as u8));
    }
    // The chunks are reused (and the surplus given back): again, twice over.
    for round in 0..2u8 {
        for i in 0..128u32 {
            q.put(vec![round ^ i as u8; 300 * 1024]).unwrap();
        }
        for i in 0..128u32 {
            assert!(q.get().unwrap().iter().all(|x| *x == round ^ i as u8));
        }
    }
}

#[test]
fn shm_reserve_exhaustion_is_an_error_not_a_hang() {
    let q: Queue<Vec<u8>> = Queue::builder().shm_reserve(4 << 20).build().unwrap();
    let mut n = 0;
    let err = loop {
        match q.put(vec![7; 512 * 1024]) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 100, "reserve never ran out");
    };
    assert!(matches!(err, Error::Shm(_)), "{err:?}");
    // What was put is still there, intact.
    for _ in 0..n {
        assert_eq!(q.get().unwrap(), vec![7; 512 * 1024]);
    }
    q.put(vec![1]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1]);
}

#[test]
fn max_message_size_is_checked_at_put() {
    for b in BACKENDS {
        let q: Queue<Vec<u8>> = Queue::builder()
            .backend(b)
            .max_message_size(100)
            .build()
            .unwrap();
        assert!(matches!(
            q.put(vec![0; 200]),
            Err(Error::TooLarge { max: 100, .. })
        ));
        assert!(q.empty());
        q.put(vec![0; 50]).unwrap();
        assert_eq!(q.get().unwrap().len(), 50);
    }
}

#[test]
fn closed_queue_refuses_put_and_get() {
    for b in BACKENDS {
        let q = queue::<u8>(b, 0);
        let other = q.clone();
        q.close();
        q.close();
        assert!(q.is_closed());
        assert!(matches!(q.put(1), Err(Error::Closed)));
        assert!(matches!(q.get(), Err(Error::Closed)));
        assert!(matches!(other.put(1), Err(Error::Closed)));
    }
}

#[test]
fn decode_errors_are_errors() {
    for b in BACKENDS {
        let q = queue::<String>(b, 0);
        q.put("not a u64 tuple".into()).unwrap();
        let same: Queue<(u64, u64, u64, u64)> = {
            // Reinterpret through a serialized handle of the same queue with another type.
            let (bytes, fds) = ipc_shm::transfer::encode(&q).unwrap();
            ipc_shm::transfer::decode(&bytes, fds).unwrap()
        };
        assert!(matches!(same.get(), Err(Error::Decode(_))));
        q.put("fine".into()).unwrap();
        assert_eq!(q.get().unwrap(), "fine");
    }
}

#[test]
fn handles_travel_through_the_pipe_backend_only() {
    let q = queue::<Connection>(Backend::Pipe, 0);
    let (a, b) = Pipe::new().unwrap();
    q.put(b).unwrap();
    let b2 = q.get().unwrap();
    b2.send(&"via queue").unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "via queue");

    let shm = queue::<Connection>(Backend::Shm, 0);
    let (_c, d) = Pipe::new().unwrap();
    match shm.put(d) {
        Err(Error::Encode(m)) => assert!(m.contains("Backend::Pipe"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(shm.empty());
}

#[test]
fn threads_mpmc_exactly_once() {
    for b in BACKENDS {
        let q = queue::<(u32, u32)>(b, 0);
        let producers: Vec<_> = (0..4u32)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    for i in 0..5000u32 {
                        q.put((p, i)).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        match q.get_timeout(Duration::from_secs(2)) {
                            Ok(v) => got.push(v),
                            Err(Error::Empty) => return got,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all = HashSet::new();
        let mut total = 0;
        for c in consumers {
            let got = c.join().unwrap();
            // Per producer, each consumer sees items in order.
            let mut last = [None::<u32>; 4];
            for (p, i) in &got {
                if let Some(l) = last[*p as usize] {
                    assert!(*i > l);
                }
                last[*p as usize] = Some(*i);
            }
            total += got.len();
            all.extend(got);
        }
        assert_eq!(total, 20_000);
        assert_eq!(all.len(), 20_000);
    }
}

#[test]
fn simple_queue() {
    for b in BACKENDS {
        let q = SimpleQueue::<bool>::with_backend(b).unwrap();
        assert!(q.empty());
        q.put(&q.empty()).unwrap();
        q.put(&q.empty()).unwrap();
        assert!(q.get().unwrap());
        assert!(!q.get().unwrap());
        assert!(q.empty());
        q.close();
        q.close();
        assert!(matches!(q.put(&true), Err(Error::Closed)));
    }
    let q = SimpleQueue::<u8>::new().unwrap();
    q.put(&1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
}

#[test]
fn joinable_queue_task_done_and_join() {
    let q = JoinableQueue::<u32>::new().unwrap();
    assert!(q.join_timeout(Duration::ZERO).unwrap());
    for i in 0..6 {
        q.put(i).unwrap();
    }
    assert_eq!(q.unfinished_tasks(), 6);
    assert!(!q.join_timeout(Duration::from_millis(20)).unwrap());
    let results = std::sync::Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                match q.get_timeout(Duration::from_millis(200)) {
                    Ok(i) => {
                        results.lock().unwrap().push(i * 2);
                        q.task_done().unwrap();
                    }
                    Err(Error::Empty) => return,
                    Err(e) => panic!("{e}"),
                }
            });
        }
        q.join().unwrap();
        assert_eq!(q.unfinished_tasks(), 0);
    });
    let mut r = results.into_inner().unwrap();
    r.sort();
    assert_eq!(r, [0, 2, 4, 6, 8, 10]);
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooManyTimes)));
    q.close();
    assert!(matches!(q.put(1), Err(Error::Closed)));
    assert!(matches!(q.get(), Err(Error::Closed)));
    assert_eq!(q.unfinished_tasks(), 0, "a failed put is not counted");
}

#[test]
fn queue_is_send_sync_and_serializable() {
    fn check<T: Send + Sync + Clone + serde::Serialize + serde::de::DeserializeOwned>() {}
    check::<Queue<String>>();
    check::<SimpleQueue<String>>();
    check::<JoinableQueue<String>>();
}

/// Runs `f` on a thread and fails if it has not finished after a minute (it hung).
fn finishes<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the operation blocked")
}

#[test]
fn pipe_try_put_and_put_timeout_do_not_block_on_a_full_socket() {
    for maxsize in [0, 1_000_000] {
        let q: Queue<(u64, Vec<u8>)> = queue(Backend::Pipe, maxsize);
        // No consumer: the socket buffer fills; try_put must then say Full, not wait.
        let (q, n) = finishes(move || {
            let mut n = 0u64;
            loop {
                match q.try_put((n, vec![n as u8; 100])) {
                    Ok(()) => n += 1,
                    Err(Error::Full) => return (q, n),
                    Err(e) => panic!("{e}"),
                }
                assert!(n < 10_000_000, "the socket never filled");
            }
        });
        assert!(n > 0);
        let q = finishes(move || {
            let r = q.put_timeout((n, vec![]), Duration::from_millis(50));
            assert!(matches!(r, Err(Error::Full)), "{r:?}");
            q
        });
        // Nothing refused was half-sent: exactly the accepted items come out, in order.
        for i in 0..n {
            assert_eq!(q.try_get().unwrap(), (i, vec![i as u8; 100]));
        }
        assert!(matches!(q.try_get(), Err(Error::Empty)));
        assert_eq!(q.qsize(), 0);
        // With room again, try_put succeeds.
        q.try_put((7, vec![1; 10])).unwrap();
        assert_eq!(q.get().unwrap(), (7, vec![1; 10]));
    }
}

/// A `u32` whose decoding panics on 13 and whose encoding fails on 666.
#[derive(Debug, PartialEq)]
struct Touchy(u32);

impl serde::Serialize for Touchy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 666 {
            return Err(serde::ser::Error::custom("666 refuses to be encoded"));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Touchy, D::Error> {
        let v = <u32 as serde::Deserialize>::deserialize(d)?;
        assert_ne!(v, 13, "13 panics while decoding");
        Ok(Touchy(v))
    }
}

#[test]
fn an_item_whose_decoding_panics_is_consumed_and_the_queue_goes_on() {
    for b in BACKENDS {
        let q = queue::<Touchy>(b, 2);
        q.put(Touchy(13)).unwrap();
        q.put(Touchy(14)).unwrap();
        let q2 = q.clone();
        let r = std::panic::catch_unwind(move || q2.get());
        assert!(r.is_err(), "{b:?}: decoding 13 panics");
        // The panicking item was taken (not handed to every consumer in turn), its place freed.
        assert_eq!(q.qsize(), 1, "{b:?}");
        q.try_put(Touchy(15)).unwrap();
        assert_eq!(q.get().unwrap(), Touchy(14));
        assert_eq!(q.get().unwrap(), Touchy(15));
        assert!(q.empty());
    }
}

#[test]
fn an_item_that_fails_to_encode_puts_nothing() {
    for b in BACKENDS {
        let q = queue::<Touchy>(b, 0);
        q.put(Touchy(1)).unwrap();
        assert!(matches!(q.put(Touchy(666)), Err(Error::Encode(_))), "{b:?}");
        // A large item abandoned halfway through its encoding (in the shm backend, after
        // filling several chunks) leaves nothing behind either. (The pipe backend's put of a
        // big item would wait for a reader: 100 KiB fits its socket buffer.)
        let len = if b == Backend::Shm {
            3 << 20
        } else {
            100 << 10
        };
        let big: Queue<(Vec<u8>, Touchy)> = queue(b, 0);
        assert!(matches!(
            big.put((vec![7; len], Touchy(666))),
            Err(Error::Encode(_))
        ));
        assert!(big.empty(), "{b:?}");
        big.put((vec![8; len], Touchy(2))).unwrap();
        assert_eq!(big.get().unwrap(), (vec![8; len], Touchy(2)));
        q.put(Touchy(2)).unwrap();
        assert_eq!(q.qsize(), 2, "{b:?}");
        assert_eq!(q.get().unwrap(), Touchy(1));
        assert_eq!(q.get().unwrap(), Touchy(2));
    }
}
