//! Group `queue`: `Queue` throughput and ping-pong between two processes.
//!
//! - cases `64 B` and `64 KiB` (time per message, one producer process, this process consuming):
//!   multiproc's `Queue` with each backend (`shm`, `pipe`) next to a raw OS pipe carrying the same
//!   bytes (the OS limit) and `crossbeam-channel` between two threads of one process (the
//!   in-process bound). Each measurement asks the producer for `iters` messages over a control
//!   connection and times how long this process takes to receive them all.
//! - case `ping-pong`: a `u64` to a child through one queue and back through another, per backend,
//!   next to a raw pipe pair and `crossbeam-channel` between two threads.
//!
//! The Python twin is `benches/python/queue.py` (`Queue` and `SimpleQueue`).

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion};
use multiproc::{Backend, Connection, Pipe, Process, Queue};
use multiproc_benches::{timing, Weight};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte buffer that serializes as one byte string (as `serde_bytes` would), not as a sequence
/// of `u8` values.
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Shm => "shm",
        _ => "pipe",
    }
}

fn size_case(size: usize) -> &'static str {
    if size == 64 {
        "64 B"
    } else {
        "64 KiB"
    }
}

/// The producer child: puts `n` messages of `size` bytes each time the control asks for `n`,
/// until asked for `u64::MAX` (whatever the start method: a forked child would never see the
/// control connection close).
fn queue_producer((q, control, size): (Queue<Bytes>, Connection, usize)) {
    let msg = vec![0xabu8; size];
    while let Ok(n) = control.recv::<u64>() {
        if n == u64::MAX {
            return;
        }
        for _ in 0..n {
            q.put(Bytes(msg.clone())).expect("put");
        }
    }
}

/// The ping-pong child: answers every `u64` until `u64::MAX`.
fn queue_echo((inbox, outbox): (Queue<u64>, Queue<u64>)) {
    while let Ok(v) = inbox.get() {
        if v == u64::MAX || outbox.put(v).is_err() {
            return;
        }
    }
}

/// Raw pipe: a write end in a forked child that writes `n` messages when asked, until asked for
/// `u64::MAX` (a forked child holds copies of the parent's descriptors, so it never sees the
/// control connection close).
fn pipe_producer(size: usize) -> (File, Connection, Process) {
    let (r, w) = pipe();
    let (mine, theirs) = Pipe::new().expect("pipe");
    let mut child = Process::from_closure(move || {
        let mut w = File::from(w);
        let msg = vec![0xabu8; size];
        while let Ok(n) = theirs.recv::<u64>() {
            if n == u64::MAX {
                return;
            }
            for _ in 0..n {
                w.write_all(&msg).expect("write");
            }
        }
    });
    child.start().expect("start");
    (File::from(r), mine, child)
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2 failed");
    use std::os::fd::FromRawFd;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A wrapping sum of the bytes as 64-bit words: a cheap way to read every byte.
#[inline(never)]
fn fold(bytes: &[u8]) -> u64 {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder().iter().map(|&b| u64::from(b)).sum::<u64>();
    words.fold(tail, |acc, w| {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        acc.wrapping_add(u64::from_ne_bytes(a))
    })
}

fn bench(c: &mut Criterion) {
    let t = timing(Weight::Light);
    let sizes = [64usize, 64 * 1024];
    let backends = [Backend::Shm, Backend::Pipe];

    // Forked children first, while this process has a single thread.
    let mut raw_pipes: Vec<_> = sizes.iter().map(|&s| pipe_producer(s)).collect();
    let (ping_r, ping_w) = pipe();
    let (pong_r, pong_w) = pipe();
    let mut raw_echo = Process::from_closure(move || {
        let (mut r, mut w) = (File::from(ping_r), File::from(pong_w));
        let mut buf = [0u8; 8];
        while r.read_exact(&mut buf).is_ok() {
            if u64::from_ne_bytes(buf) == u64::MAX || w.write_all(&buf).is_err() {
                return;
            }
        }
    });
    raw_echo.start().expect("start");
    let (mut ping_w, mut pong_r) = (File::from(ping_w), File::from(pong_r));

    let mut g = c.benchmark_group("queue");
    g.warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .sample_size(t.samples);

    // Throughput.
    for (i, &size) in sizes.iter().enumerate() {
        let case = size_case(size);
        for backend in backends {
            let q: Queue<Bytes> = Queue::builder().backend(backend).build().expect("queue");
            let (control, theirs) = Pipe::new().expect("pipe");
            let mut child = Process::new(queue_producer, (q.clone(), theirs, size));
            child.start().expect("start producer");
            let name = format!("multiproc Queue {}", backend_name(backend));
            g.bench_function(BenchmarkId::new(name, case), |b| {
                b.iter_custom(|n| {
                    control.send(&n).expect("ask");
                    let t = Instant::now();
                    for _ in 0..n {
                        black_box(q.get().expect("get"));
                    }
                    t.elapsed()
                })
            });
            if backend == Backend::Shm {
                // Zero-copy receive: the consumer reads each message where it lies in the ring
                // (and folds it, so every byte is read, as the reference below does).
                let name = "multiproc Queue shm get_with (borrowed, fold)";
                g.bench_function(BenchmarkId::new(name, case), |b| {
                    b.iter_custom(|n| {
                        control.send(&n).expect("ask");
                        let t = Instant::now();
                        for _ in 0..n {
                            let sum = q
                                .get_with(|r| r.decode::<&[u8]>().map(fold))
                                .expect("get_with")
                                .expect("bytes");
                            black_box(sum);
                        }
                        t.elapsed()
                    })
                });
            }
            control.send(&u64::MAX).expect("stop");
            child.join().expect("join producer");
        }
        // The copy a message must at least cost: memcpy of the same size in one process, and
        // memcpy followed by the fold the borrowed consumer does.
        let (src, mut dst) = (vec![0xabu8; size], vec![0u8; size]);
        g.bench_function(BenchmarkId::new("memcpy (reference)", case), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
        g.bench_function(BenchmarkId::new("memcpy + fold (reference)", case), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(fold(black_box(&dst)))
            })
        });
        let (r, control, _) = &mut raw_pipes[i];
        let mut buf = vec![0u8; size];
        g.bench_function(BenchmarkId::new("raw pipe", case), |b| {
            b.iter_custom(|n| {
                control.send(&n).expect("ask");
                let t = Instant::now();
                for _ in 0..n {
                    r.read_exact(&mut buf).expect("read");
                    black_box(&buf);
                }
                t.elapsed()
            })
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<u64>();
        let producer = std::thread::spawn(move || {
            let msg = vec![0xabu8; size];
            while let Ok(n) = ctl_rx.recv() {
                for _ in 0..n {
                    if tx.send(msg.clone()).is_err() {
                        return;
                    }
                }
            }
        });
        g.bench_function(BenchmarkId::new("crossbeam-channel (threads)", case), |b| {
            b.iter_custom(|n| {
                ctl_tx.send(n).expect("ask");
                let t = Instant::now();
                for _ in 0..n {
                    black_box(rx.recv().expect("recv"));
                }
                t.elapsed()
            })
        });
        drop(ctl_tx);
        producer.join().expect("producer thread");
    }
    for (r, control, mut child) in raw_pipes {
        control.send(&u64::MAX).expect("stop");
        drop(r);
        child.join().expect("join");
    }

    // Ping-pong.
    const PING: &str = "ping-pong";
    for backend in backends {
        let build = || -> Queue<u64> { Queue::builder().backend(backend).build().expect("queue") };
        let (inbox, outbox) = (build(), build());
        let mut child = Process::new(queue_echo, (inbox.clone(), outbox.clone()));
        child.start().expect("start echo");
        let name = format!("multiproc Queue {}", backend_name(backend));
        g.bench_function(BenchmarkId::new(name, PING), |b| {
            b.iter(|| {
                inbox.put(black_box(7)).expect("put");
                outbox.get().expect("get")
            })
        });
        inbox.put(u64::MAX).expect("stop");
        child.join().expect("join echo");
    }
    g.bench_function(BenchmarkId::new("raw pipe", PING), |b| {
        b.iter(|| {
            let mut buf = 7u64.to_ne_bytes();
            ping_w.write_all(&buf).expect("write");
            pong_r.read_exact(&mut buf).expect("read");
            u64::from_ne_bytes(buf)
        })
    });
    ping_w.write_all(&u64::MAX.to_ne_bytes()).expect("stop");
    raw_echo.join().expect("join");

    let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u64>(1);
    let (pong_tx, pong_rx) = crossbeam_channel::bounded::<u64>(1);
    let echo = std::thread::spawn(move || {
        while let Ok(v) = ping_rx.recv() {
            if pong_tx.send(v).is_err() {
                return;
            }
        }
    });
    g.bench_function(BenchmarkId::new("crossbeam-channel (threads)", PING), |b| {
        b.iter(|| {
            ping_tx.send(black_box(7)).expect("send");
            pong_rx.recv().expect("recv")
        })
    });
    drop(ping_tx);
    echo.join().expect("echo thread");
    g.finish();
}

fn main() {
    multiproc::init();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
