//! Queue throughput, one producer process and one consumer (this process), 64-byte and 64 KiB
//! messages: the shm backend, the pipe backend, a raw OS pipe (write/read of the same bytes),
//! `crossbeam-channel` between two threads of one process (the upper bound), and a plain
//! `memcpy` of the message (the bandwidth reference for 64 KiB).
//!
//! Each measurement asks the producer for `iters` messages over a control pipe and times how
//! long the consumer takes to receive them all.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use ipc_channel_core::{Backend, Connection, Pipe, Queue};
use ipc_shm::transfer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte buffer that serializes as one byte string (as `serde_bytes` would), not as a
/// sequence of `u8` values.
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
        }
        d.deserialize_bytes(V)
    }
}

fn case_queue_producer(payload: &[u8], fds: Vec<OwnedFd>) {
    let (q, control, size): (Queue<Bytes>, Connection, usize) =
        transfer::decode(payload, fds).unwrap();
    let msg = vec![0xabu8; size];
    while let Ok(n) = control.recv::<u64>() {
        for _ in 0..n {
            q.put(Bytes(msg.clone())).unwrap();
        }
    }
}

fn case_pipe_producer(payload: &[u8], mut fds: Vec<OwnedFd>) {
    // Descriptor 0 is the pipe; the rest belong to the encoded control connection.
    let mut w = std::fs::File::from(fds.remove(0));
    let (control, size): (Connection, usize) = transfer::decode(payload, fds).unwrap();
    let msg = vec![0xabu8; size];
    while let Ok(n) = control.recv::<u64>() {
        for _ in 0..n {
            w.write_all(&msg).unwrap();
        }
    }
}

fn spawn_queue_producer(q: &Queue<Bytes>, size: usize) -> (Connection, testkit::Child) {
    let (mine, theirs) = Pipe::new().unwrap();
    let (bytes, fds) = transfer::encode(&(q.clone(), theirs, size)).unwrap();
    let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let child = testkit::start(testkit::Method::Spawn, "queue_producer", &bytes, &b).unwrap();
    (mine, child)
}

fn throughput(c: &mut Criterion) {
    for size in [64usize, 64 * 1024] {
        let mut g = c.benchmark_group(format!("queue_{size}B"));
        g.throughput(Throughput::Bytes(size as u64));

        for backend in [Backend::Shm, Backend::Pipe] {
            let q: Queue<Bytes> = Queue::builder().backend(backend).build().unwrap();
            let (control, mut child) = spawn_queue_producer(&q, size);
            g.bench_function(BenchmarkId::new(format!("{backend:?}"), size), |b| {
                b.iter_custom(|iters| {
                    control.send(&iters).unwrap();
                    let t = Instant::now();
                    for _ in 0..iters {
                        black_box(q.get().unwrap());
                    }
                    t.elapsed()
                })
            });
            drop(control);
            child.wait().unwrap();
        }

        {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let (mine, theirs) = Pipe::new().unwrap();
            let (bytes, fds) = transfer::encode(&(theirs, size)).unwrap();
            let mut all: Vec<_> = vec![w.as_fd()];
            all.extend(fds.iter().map(|f| f.as_fd()));
            // The control connection's descriptor follows the pipe's.
            let mut child =
                testkit::start(testkit::Method::Spawn, "pipe_producer", &bytes, &all).unwrap();
            drop(w);
            let mut r = std::fs::File::from(r);
            let mut buf = vec![0u8; size];
            g.bench_function(BenchmarkId::new("raw_os_pipe", size), |b| {
                b.iter_custom(|iters| {
                    mine.send(&iters).unwrap();
                    let t = Instant::now();
                    for _ in 0..iters {
                        r.read_exact(&mut buf).unwrap();
                        black_box(&buf);
                    }
                    t.elapsed()
                })
            });
            drop(mine);
            child.wait().unwrap();
        }

        {
            let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
            let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<u64>();
            let producer = std::thread::spawn(move || {
                let msg = vec![0xabu8; size];
                while let Ok(n) = ctl_rx.recv() {
                    for _ in 0..n {
                        tx.send(msg.clone()).unwrap();
                    }
                }
            });
            g.bench_function(BenchmarkId::new("crossbeam_channel_threads", size), |b| {
                b.iter_custom(|iters| {
                    ctl_tx.send(iters).unwrap();
                    let t = Instant::now();
                    for _ in 0..iters {
                        black_box(rx.recv().unwrap());
                    }
                    t.elapsed()
                })
            });
            drop(ctl_tx);
            producer.join().unwrap();
        }

        {
            let src = vec![0xabu8; size];
            let mut dst = vec![0u8; size];
            g.bench_function(BenchmarkId::new("memcpy", size), |b| {
                b.iter(|| {
                    dst.copy_from_slice(black_box(&src));
                    black_box(&dst);
                })
            });
        }
        g.finish();
    }
}

fn main() {
    testkit::dispatch(&[
        ("queue_producer", case_queue_producer),
        ("pipe_producer", case_pipe_producer),
    ]);
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1));
    throughput(&mut c);
    c.final_summary();
}
