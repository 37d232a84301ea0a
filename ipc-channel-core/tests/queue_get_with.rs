//! Tests of the zero-copy receive, `Queue::get_with`: items round-trip as their borrowed twins
//! (`&[u8]` for `Vec<u8>`/`Bytes`, `&str` for `String`, a borrowing struct for an owning one)
//! in one process and between real processes under every start method, for both backends; a
//! mismatched type is an error; a panic in the closure consumes the item and leaks no storage;
//! records that span chunks work; calling the queue from inside the closure is an error.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use ipc_channel_core::{Backend, Bytes, Connection, Error, Pipe, Queue};
use ipc_shm::transfer;
use serde::{Deserialize, Serialize};
use testkit::Exit;

const BACKENDS: [Backend; 2] = [Backend::Shm, Backend::Pipe];
/// Bigger than one 1 MiB chunk of the shm ring: such a record always spans chunks.
const SPANNING: usize = 3 << 20;

/// The largest item a single-threaded test puts before getting: a pipe-backend `put` waits
/// while the socket buffer is full, so only the shm backend takes spanning records here (the
/// cross-process tests send them through both).
fn big(b: Backend) -> usize {
    match b {
        Backend::Shm => SPANNING,
        Backend::Pipe => 32 << 10,
    }
}

fn queue<T>(backend: Backend) -> Queue<T> {
    Queue::builder().backend(backend).build().unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Owned {
    id: u32,
    name: String,
    data: Bytes,
    tags: Vec<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Borrowed<'a> {
    id: u32,
    name: &'a str,
    data: &'a [u8],
    tags: Vec<&'a str>,
}

fn owned(i: u32) -> Owned {
    Owned {
        id: i,
        name: format!("item {i}"),
        data: Bytes(pattern(1000 + i as usize, i as u8)),
        tags: vec!["a".into(), format!("t{i}")],
    }
}

fn check_borrowed(b: &Borrowed<'_>, i: u32) {
    let o = owned(i);
    assert_eq!(b.id, o.id);
    assert_eq!(b.name, o.name);
    assert_eq!(b.data, &o.data[..]);
    assert_eq!(
        b.tags,
        o.tags.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

fn take_bytes<T>(q: &Queue<T>) -> Vec<u8> {
    q.get_with_timeout(Duration::from_secs(60), |r| {
        r.decode::<&[u8]>().map(<[u8]>::to_vec)
    })
    .unwrap()
    .unwrap()
}

/// Runs `f` with the panic messages of the tests' deliberate panics (payload "expected")
/// silenced; any other panic still prints.
fn quietly<R>(f: impl FnOnce() -> R) -> R {
    let prev = std::sync::Arc::new(std::panic::take_hook());
    let inner = std::sync::Arc::clone(&prev);
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"expected") {
            inner(info)
        }
    }));
    let r = f();
    drop(std::panic::take_hook());
    if let Ok(prev) = std::sync::Arc::try_unwrap(prev) {
        std::panic::set_hook(prev);
    }
    r
}

// --- in one process -------------------------------------------------------------------------

fn test_round_trips_as_borrowed_twins() {
    for b in BACKENDS {
        let q = queue::<Vec<u8>>(b);
        for len in [0, 1, 100, 32 << 10, big(b)] {
            let v = pattern(len, 3);
            q.put(v.clone()).unwrap();
            assert_eq!(take_bytes(&q), v, "{b:?} Vec<u8> of {len}");
        }
        let q = queue::<Bytes>(b);
        for len in [0, 7, 32 << 10, big(b)] {
            let v = pattern(len, 5);
            q.put(Bytes(v.clone())).unwrap();
            // The record's length is the byte string's and its length prefix.
            let (got, enc) = q
                .get_with(|r| (r.decode::<&[u8]>().unwrap().to_vec(), r.encoded_len()))
                .unwrap();
            assert_eq!(got, v, "{b:?} Bytes of {len}");
            assert!(enc > len && enc <= len + 10, "{enc} for {len}");
        }
        // Vec<u8> and Bytes share their wire form: each decodes the other's items.
        let q = queue::<Vec<u8>>(b);
        q.put(vec![1, 2, 3]).unwrap();
        assert_eq!(
            q.get_with(|r| r.decode::<Bytes>().unwrap()).unwrap().0,
            [1, 2, 3]
        );
        let q = queue::<String>(b);
        for s in ["", "hello", "héllo wörld ✓", &"x".repeat(big(b))] {
            q.put(s.to_string()).unwrap();
            let got = q
                .get_with(|r| r.decode::<&str>().map(str::to_owned))
                .unwrap()
                .unwrap();
            assert_eq!(got, s, "{b:?}");
        }
        let q = queue::<Owned>(b);
        for i in 0..10 {
            q.put(owned(i)).unwrap();
        }
        for i in 0..10 {
            q.get_with(|r| {
                // Decoding twice is fine: the record stays until the closure returns.
                check_borrowed(&r.decode::<Borrowed<'_>>().unwrap(), i);
                check_borrowed(&r.decode::<Borrowed<'_>>().unwrap(), i);
                assert_eq!(r.decode::<Owned>().unwrap(), owned(i));
            })
            .unwrap();
        }
        assert!(q.empty());
    }
}

fn test_mismatched_type_is_an_error_and_consumes_the_item() {
    for b in BACKENDS {
        let q = queue::<Vec<u8>>(b);
        q.put(vec![0xff, 0xfe, 0xfd]).unwrap();
        q.put(vec![1]).unwrap();
        let e = q.get_with(|r| r.decode::<&str>().map(str::len)).unwrap();
        assert!(matches!(e, Err(Error::Decode(_))), "{b:?}: {e:?}");
        // Too long for the type: trailing bytes are refused.
        let e = q.get_with(|r| r.decode::<u8>()).unwrap();
        assert!(
            matches!(e, Err(Error::Decode(ref m)) if m.contains("trailing")),
            "{e:?}"
        );
        assert!(q.empty());
        let q = queue::<String>(b);
        q.put("hello".into()).unwrap();
        // Too short for the type.
        let e = q
            .get_with(|r| r.decode::<(&str, u64)>().map(|(_, n)| n))
            .unwrap();
        assert!(matches!(e, Err(Error::Decode(_))), "{e:?}");
        q.put("again".into()).unwrap();
        assert_eq!(q.get().unwrap(), "again");
    }
}

fn test_panic_in_closure_consumes_the_record() {
    for b in BACKENDS {
        for len in [10, big(b) / 2] {
            let q = queue::<Bytes>(b);
            q.put(Bytes(pattern(len, 1))).unwrap();
            q.put(Bytes(pattern(len, 2))).unwrap();
            let r = quietly(|| {
                catch_unwind(AssertUnwindSafe(|| {
                    q.get_with(|r| {
                        let _ = r.decode::<&[u8]>();
                        std::panic::panic_any("expected");
                    })
                }))
            });
            assert!(r.is_err(), "the panic reaches the caller");
            assert_eq!(q.qsize(), 1, "{b:?} {len}");
            assert_eq!(take_bytes(&q), pattern(len, 2));
            q.put(Bytes(pattern(len, 3))).unwrap();
            assert_eq!(q.get().unwrap().0, pattern(len, 3));
            assert!(q.empty());
        }
    }
}

fn test_panics_leak_no_storage() {
    // 8 MiB of reserve: 7 chunks. A 3 MiB record spans 4; had a panicking consumer kept the
    // chunks it passed, a few rounds would exhaust the queue.
    for round_len in [SPANNING, 600 << 10] {
        let q: Queue<Bytes> = Queue::builder().shm_reserve(8 << 20).build().unwrap();
        for i in 0..30u8 {
            q.put(Bytes(pattern(round_len, i)))
                .unwrap_or_else(|e| panic!("round {i}: {e}"));
            let r = quietly(|| {
                catch_unwind(AssertUnwindSafe(|| {
                    q.get_with(|_| std::panic::panic_any("expected"))
                }))
            });
            assert!(r.is_err());
            assert!(q.empty());
        }
    }
}

fn test_queue_calls_inside_the_closure_are_errors() {
    for b in BACKENDS {
        let q = queue::<u32>(b);
        let other = queue::<u32>(b);
        q.put(1).unwrap();
        q.put(2).unwrap();
        let clone = q.clone();
        q.get_with(|r| {
            assert_eq!(r.decode::<u32>().unwrap(), 1);
            assert!(matches!(clone.try_get(), Err(Error::Decode(_))), "{b:?}");
            assert!(matches!(clone.put(9), Err(Error::Encode(_))), "{b:?}");
            assert!(matches!(
                clone.get_with_timeout(Duration::ZERO, |_| ()),
                Err(Error::Decode(_))
            ));
            // Another queue is fine.
            other.put(5).unwrap();
            assert_eq!(other.get_with(|r| r.decode::<u32>().unwrap()).unwrap(), 5);
        })
        .unwrap();
        assert_eq!(q.get().unwrap(), 2);
        q.put(3).unwrap();
        assert_eq!(q.get_with(|r| r.decode::<u32>().unwrap()).unwrap(), 3);
    }
}

fn test_timeout_and_closed() {
    for b in BACKENDS {
        let q = queue::<u32>(b);
        let mut called = false;
        let r = q.get_with_timeout(Duration::from_millis(20), |_| called = true);
        assert!(matches!(r, Err(Error::Empty)), "{b:?}: {r:?}");
        assert!(!called);
        q.close();
        assert!(matches!(q.get_with(|_| ()), Err(Error::Closed)));
    }
}

fn test_pipe_record_hands_over_handles_once() {
    let q = queue::<Connection>(Backend::Pipe);
    let (a, b) = Pipe::new().unwrap();
    q.put(b).unwrap();
    q.get_with(|r| {
        let c: Connection = r.decode().unwrap();
        // The descriptor went to the first decode.
        assert!(r.decode::<Connection>().is_err());
        c.send(&7u32).unwrap();
    })
    .unwrap();
    assert_eq!(a.recv::<u32>().unwrap(), 7);
}

// --- between processes ------------------------------------------------------------------------

const SIZES: [usize; 4] = [0, 64, 64 << 10, SPANNING];

fn case_put_all(payload: &[u8], fds: Vec<OwnedFd>) {
    let (qb, qs, qo): (Queue<Bytes>, Queue<String>, Queue<Owned>) =
        transfer::decode(payload, fds).unwrap();
    for (i, len) in SIZES.into_iter().enumerate() {
        qb.put(Bytes(pattern(len, i as u8))).unwrap();
        qs.put("ü".repeat(len / 2)).unwrap();
    }
    for i in 0..20 {
        qo.put(owned(i)).unwrap();
    }
}

fn case_get_with_all(payload: &[u8], fds: Vec<OwnedFd>) {
    let (qb, qs, qo): (Queue<Bytes>, Queue<String>, Queue<Owned>) =
        transfer::decode(payload, fds).unwrap();
    let wait = Duration::from_secs(60);
    for (i, len) in SIZES.into_iter().enumerate() {
        qb.get_with_timeout(wait, |r| {
            assert_eq!(r.decode::<&[u8]>().unwrap(), &pattern(len, i as u8)[..]);
            assert!(r.decode::<&str>().is_err() || len < 2);
        })
        .unwrap();
        qs.get_with_timeout(wait, |r| {
            assert_eq!(r.decode::<&str>().unwrap(), "ü".repeat(len / 2));
        })
        .unwrap();
    }
    for i in 0..20 {
        qo.get_with_timeout(wait, |r| {
            check_borrowed(&r.decode::<Borrowed<'_>>().unwrap(), i);
        })
        .unwrap();
    }
    assert!(qb.empty() && qs.empty() && qo.empty());
}

fn start<T: Serialize>(method: testkit::Method, case: &str, arg: &T) -> testkit::Child {
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

fn queues(b: Backend) -> (Queue<Bytes>, Queue<String>, Queue<Owned>) {
    (queue(b), queue(b), queue(b))
}

fn test_child_puts_parent_reads_in_place() {
    for method in testkit::methods() {
        for b in BACKENDS {
            let qs = queues(b);
            let mut child = start(method, "put_all", &qs);
            // The parent reads as the child does in the other test.
            let arg = transfer::encode(&qs).unwrap();
            case_get_with_all(&arg.0, arg.1);
            wait_ok(&mut child);
        }
    }
}

fn test_parent_puts_child_reads_in_place() {
    for method in testkit::methods() {
        for b in BACKENDS {
            let qs = queues(b);
            let mut child = start(method, "get_with_all", &qs);
            let arg = transfer::encode(&qs).unwrap();
            case_put_all(&arg.0, arg.1);
            wait_ok(&mut child);
            assert!(qs.0.empty() && qs.1.empty() && qs.2.empty());
        }
    }
}

fn main() {
    testkit::main(
        &[
            ("put_all", case_put_all),
            ("get_with_all", case_get_with_all),
        ],
        &[
            (
                "round_trips_as_borrowed_twins",
                test_round_trips_as_borrowed_twins,
            ),
            (
                "mismatched_type_is_an_error_and_consumes_the_item",
                test_mismatched_type_is_an_error_and_consumes_the_item,
            ),
            (
                "panic_in_closure_consumes_the_record",
                test_panic_in_closure_consumes_the_record,
            ),
            ("panics_leak_no_storage", test_panics_leak_no_storage),
            (
                "queue_calls_inside_the_closure_are_errors",
                test_queue_calls_inside_the_closure_are_errors,
            ),
            ("timeout_and_closed", test_timeout_and_closed),
            (
                "pipe_record_hands_over_handles_once",
                test_pipe_record_hands_over_handles_once,
            ),
            (
                "child_puts_parent_reads_in_place",
                test_child_puts_parent_reads_in_place,
            ),
            (
                "parent_puts_child_reads_in_place",
                test_parent_puts_child_reads_in_place,
            ),
        ],
    );
}
