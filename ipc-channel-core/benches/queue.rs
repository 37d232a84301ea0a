//! Queue throughput, one producer process and one consumer (this process), 64-byte and 64 KiB
//! messages: the shm backend, the pipe backend, a raw OS pipe (write/read of the same bytes),
//! `crossbeam-channel` between two threads of one process (the upper bound), a plain `memcpy`
//! of the message (the bandwidth reference for 64 KiB), and the shm backend with spinning
//! turned off in both processes (what the spin before sleeping buys).
//!
//! The queue producers put one buffer over and over through a borrowing type with `Bytes`'s
//! wire form (`BytesRef`), so each put copies the message once, into the queue, like the raw
//! pipe's `write`; the crossbeam producer clones it (a channel of owned `Vec`s needs one copy).
//!
//! Each measurement asks the producer for `iters + 1` messages over a control pipe, receives
//! the first, and times how long the consumer takes to receive the rest (so the producer's
//! wake-up on the control pipe is not counted). The interleaved comparison at the end prints
//! the minimum and the median of its batches.
//!
//! Two more rows compare the zero-copy receive, `Queue::get_with`, fairly: there the consumer
//! reads the message where the producer wrote it, in the queue's shared memory, instead of
//! copying it out. A receive that never touches the bytes would not be comparable with a copy,
//! so both rows read every byte with the same cheap fold (a wrapping sum of 64-bit words):
//! `Shm_get_with_fold` folds the borrowed bytes in place (same queue and producer as `Shm`),
//! and `memcpy_fold` is the reference, a `memcpy` of the message followed by the fold of the
//! copy. The printed `/ memcpy` ratios divide by the plain `memcpy` row; the line after the
//! table gives `Shm_get_with_fold / memcpy_fold`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use ipc_channel_core::{Backend, Bytes, Connection, Pipe, Queue};
use ipc_shm::transfer;

/// A borrowed byte string with the wire form of [`Bytes`]: the producers put the same buffer
/// again and again without cloning it, so a put costs one copy (into the queue), as the raw
/// pipe producer's `write` does.
struct BytesRef<'a>(&'a [u8]);

impl serde::Serialize for BytesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn case_queue_producer(payload: &[u8], fds: Vec<OwnedFd>) {
    // The queue handle is typed for what this side puts: the same queue as the consumer's
    // `Queue<Bytes>` (a handle's item type is not part of its wire form).
    let (q, control, size, spin): (Queue<BytesRef<'static>>, Connection, usize, bool) =
        transfer::decode(payload, fds).unwrap();
    if !spin {
        ipc_sync::set_spin_time(Duration::ZERO);
    }
    let msg: &'static [u8] = vec![0xabu8; size].leak();
    while let Ok(n) = control.recv::<u64>() {
        for _ in 0..n {
            q.put(BytesRef(msg)).unwrap();
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

fn spawn_queue_producer(q: &Queue<Bytes>, size: usize, spin: bool) -> (Connection, testkit::Child) {
    let (mine, theirs) = Pipe::new().unwrap();
    let (bytes, fds) = transfer::encode(&(q.clone(), theirs, size, spin)).unwrap();
    let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let child = testkit::start(testkit::Method::Spawn, "queue_producer", &bytes, &b).unwrap();
    (mine, child)
}

/// The sources of one message size: producers in child processes (queues, raw pipe) and a
/// producer thread (crossbeam-channel), each sending `n` messages when asked.
struct Sources {
    size: usize,
    queues: Vec<(Backend, Queue<Bytes>, Connection, testkit::Child)>,
    pipe: (std::fs::File, Connection, testkit::Child),
    crossbeam: (
        crossbeam_channel::Receiver<Vec<u8>>,
        crossbeam_channel::Sender<u64>,
        std::thread::JoinHandle<()>,
    ),
    buf: Vec<u8>,
}

const KINDS: [&str; 8] = [
    "Shm",
    "Pipe",
    "raw_os_pipe",
    "crossbeam_channel_threads",
    "memcpy",
    "Shm_no_spin",
    "Shm_get_with_fold",
    "memcpy_fold",
];
/// Indices in `KINDS` of the zero-copy row and its reference.
const GET_WITH: usize = 6;
const MEMCPY_FOLD: usize = 7;

/// The read both fair rows make of every byte: a wrapping sum of native-endian 64-bit words
/// (and of the last bytes).
#[inline(never)]
fn fold(bytes: &[u8]) -> u64 {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder().iter().map(|&b| u64::from(b)).sum::<u64>();
    words.fold(tail, |acc, w| {
        acc.wrapping_add(u64::from_ne_bytes(w.try_into().expect("8 bytes")))
    })
}

impl Sources {
    fn start(size: usize) -> Sources {
        let mut queues = Vec::new();
        // The third queue's consumer and producer never spin before sleeping (ipc-sync's spin
        // time 0 in both processes): what the spin buys.
        for (backend, spin) in [
            (Backend::Shm, true),
            (Backend::Pipe, true),
            (Backend::Shm, false),
        ] {
            let q: Queue<Bytes> = Queue::builder().backend(backend).build().unwrap();
            let (control, child) = spawn_queue_producer(&q, size, spin);
            queues.push((backend, q, control, child));
        }
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (mine, theirs) = Pipe::new().unwrap();
        let (bytes, fds) = transfer::encode(&(theirs, size)).unwrap();
        let mut all: Vec<_> = vec![w.as_fd()];
        // The control connection's descriptor follows the pipe's.
        all.extend(fds.iter().map(|f| f.as_fd()));
        let child = testkit::start(testkit::Method::Spawn, "pipe_producer", &bytes, &all).unwrap();
        drop(w);
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
        Sources {
            size,
            queues,
            pipe: (std::fs::File::from(r), mine, child),
            crossbeam: (rx, ctl_tx, producer),
            buf: vec![0u8; size],
        }
    }

    /// Receives `n` messages of source `kind` and returns the time it took. The producer is
    /// asked for one message more, received before the clock starts: the time a sleeping
    /// producer takes to wake up and answer the control message (milliseconds on a loaded
    /// machine) is not throughput, and it would swamp the short batches of the comparison.
    fn receive(&mut self, kind: usize, n: u64) -> Duration {
        match kind {
            0 | 1 | 5 => {
                let (_, q, control, _) = &self.queues[if kind == 5 { 2 } else { kind }];
                let spin = ipc_sync::spin_time();
                if kind == 5 {
                    ipc_sync::set_spin_time(Duration::ZERO);
                }
                control.send(&(n + 1)).unwrap();
                black_box(q.get().unwrap());
                let t = Instant::now();
                for _ in 0..n {
                    black_box(q.get().unwrap());
                }
                let took = t.elapsed();
                ipc_sync::set_spin_time(spin);
                took
            }
            GET_WITH => {
                let (_, q, control, _) = &self.queues[0];
                let take = |q: &Queue<Bytes>| {
                    q.get_with(|r| fold(r.decode::<&[u8]>().expect("a byte string")))
                        .unwrap()
                };
                control.send(&(n + 1)).unwrap();
                black_box(take(q));
                let t = Instant::now();
                for _ in 0..n {
                    black_box(take(q));
                }
                t.elapsed()
            }
            MEMCPY_FOLD => {
                let src = vec![0xabu8; self.size];
                let t = Instant::now();
                for _ in 0..n {
                    self.buf.copy_from_slice(black_box(&src));
                    black_box(fold(black_box(&self.buf)));
                }
                t.elapsed()
            }
            2 => {
                let (r, control, _) = &mut self.pipe;
                control.send(&(n + 1)).unwrap();
                r.read_exact(&mut self.buf).unwrap();
                let t = Instant::now();
                for _ in 0..n {
                    r.read_exact(&mut self.buf).unwrap();
                    black_box(&self.buf);
                }
                t.elapsed()
            }
            3 => {
                let (rx, ctl, _) = &self.crossbeam;
                ctl.send(n + 1).unwrap();
                black_box(rx.recv().unwrap());
                let t = Instant::now();
                for _ in 0..n {
                    black_box(rx.recv().unwrap());
                }
                t.elapsed()
            }
            4 => {
                let src = vec![0xabu8; self.size];
                let t = Instant::now();
                for _ in 0..n {
                    self.buf.copy_from_slice(black_box(&src));
                    black_box(&self.buf);
                }
                t.elapsed()
            }
            _ => unreachable!("no source {kind}"),
        }
    }

    fn stop(self) {
        for (_, q, control, mut child) in self.queues {
            drop((q, control));
            child.wait().unwrap();
        }
        let (r, control, mut child) = self.pipe;
        drop((r, control));
        child.wait().unwrap();
        let (rx, ctl, producer) = self.crossbeam;
        drop((rx, ctl));
        producer.join().unwrap();
    }
}

fn throughput(c: &mut Criterion, sources: &mut Sources) {
    let size = sources.size;
    let mut g = c.benchmark_group(format!("queue_{size}B"));
    g.throughput(Throughput::Bytes(size as u64));
    for (kind, name) in KINDS.iter().enumerate() {
        g.bench_function(BenchmarkId::new(*name, size), |b| {
            b.iter_custom(|iters| sources.receive(kind, iters))
        });
    }
    g.finish();
}

/// Interleaved batches: each source's minimum (the comparison least disturbed by other work on
/// a shared machine) and median.
fn interleaved_minimum(sources: &mut Sources) {
    const ROUNDS: usize = 21;
    let batch: u64 = if sources.size <= 64 { 5000 } else { 200 };
    let mut all = vec![Vec::with_capacity(ROUNDS); KINDS.len()];
    for _ in 0..ROUNDS {
        for (kind, v) in all.iter_mut().enumerate() {
            v.push(sources.receive(kind, batch).as_secs_f64() * 1e6 / batch as f64);
        }
    }
    for v in &mut all {
        v.sort_by(f64::total_cmp);
    }
    let min: Vec<f64> = all.iter().map(|v| v[0]).collect();
    let med: Vec<f64> = all.iter().map(|v| v[ROUNDS / 2]).collect();
    println!(
        "\n{} B messages, interleaved over {ROUNDS} batches of {batch} (min, median):",
        sources.size
    );
    for (kind, name) in KINDS.iter().enumerate() {
        println!(
            "  {name:<28} {:>9.3} {:>9.3} us/msg {:>9.1} MiB/s   pipe backend / this: {:>6.2}x {:>6.2}x   / memcpy: {:>6.2}x {:>6.2}x",
            min[kind],
            med[kind],
            sources.size as f64 / min[kind] / 1.048_576,
            min[1] / min[kind],
            med[1] / med[kind],
            min[kind] / min[4],
            med[kind] / med[4],
        );
    }
    println!(
        "  {:<28} min {:>6.2}x  median {:>6.2}x",
        "Shm_get_with_fold / memcpy_fold:",
        min[GET_WITH] / min[MEMCPY_FOLD],
        med[GET_WITH] / med[MEMCPY_FOLD],
    );
}

fn main() {
    testkit::dispatch(&[
        ("queue_producer", case_queue_producer),
        ("pipe_producer", case_pipe_producer),
    ]);
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1));
    let mut all = Vec::new();
    for size in [64usize, 64 * 1024] {
        let mut sources = Sources::start(size);
        throughput(&mut c, &mut sources);
        all.push(sources);
    }
    c.final_summary();
    for sources in &mut all {
        interleaved_minimum(sources);
    }
    for sources in all {
        sources.stop();
    }
}
