//! Pool benchmarks, side by side in one run (the goals in brackets; Python's figures on
//! this machine from the benchmark report issue):
//!
//! - `map_100k`: `map` of a trivial function over 100,000 integers on 2 workers, default
//!   chunking and chunksize 1: ours, `ThreadPool`, rayon (2 threads; the in-process upper
//!   bound). [≥ 10× Python's ≈5 M items/s with default chunking, ≥ 20× Python's ≈38 k items/s
//!   with chunksize 1]
//! - `round_trip`: `apply_async(..).get()` vs a raw `Connection` round trip to a child process
//!   and vs a task on procspawn's pool (2 processes).
//!   [within 2× of the raw round trip; ≥ 10× faster than Python's ≈290 µs; faster than
//!   procspawn's pool, ≈106 µs]
//! - `cpu_bound`: the seed's sum of `0..n` over 16 items, on 2 workers vs in this process.
//!   [speed-up ≥ 1.9×]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use ipc_channel_core::{Connection, Pipe};
use proc_pool::{Pool, ThreadPool};
use proc_spawn::Process;
use rayon::prelude::*;

const N: u64 = 100_000;

fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// The seed's CPU-bound task: the sum of `0..n`, computed the slow way.
fn sum_to(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n {
        s = s.wrapping_add(black_box(i));
    }
    s
}

fn echo_server(conn: Connection) {
    while let Ok(x) = conn.recv::<u64>() {
        if conn.send(&x).is_err() {
            break;
        }
    }
}

fn map_100k(c: &mut Criterion) {
    let pool = Pool::new(2).expect("pool");
    let threads = ThreadPool::new(2).expect("thread pool");
    let rayon2 = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon");
    let mut g = c.benchmark_group("map_100k");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.bench_function(BenchmarkId::new("pool", "default"), |b| {
        b.iter(|| pool.map(inc, 0..N).expect("map"))
    });
    g.bench_function(BenchmarkId::new("pool", "chunksize1"), |b| {
        b.iter(|| pool.map_chunked(inc, 0..N, 1).expect("map"))
    });
    g.bench_function(BenchmarkId::new("thread_pool", "default"), |b| {
        b.iter(|| threads.map(inc, 0..N).expect("map"))
    });
    g.bench_function(BenchmarkId::new("thread_pool", "chunksize1"), |b| {
        b.iter(|| threads.map_chunked(inc, 0..N, 1).expect("map"))
    });
    g.bench_function(BenchmarkId::new("rayon", "default"), |b| {
        b.iter(|| rayon2.install(|| (0..N).into_par_iter().map(inc).collect::<Vec<u64>>()))
    });
    g.bench_function(BenchmarkId::new("rayon", "chunksize1"), |b| {
        b.iter(|| {
            rayon2.install(|| {
                (0..N as u32)
                    .into_par_iter()
                    .with_max_len(1)
                    .map(|x| inc(u64::from(x)))
                    .collect::<Vec<u64>>()
            })
        })
    });
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let pool = Pool::new(2).expect("pool");
    let (mine, theirs) = Pipe::new().expect("pipe");
    let mut server = Process::new(echo_server, theirs).daemon(true);
    server.start().expect("echo server");
    let mut g = c.benchmark_group("round_trip");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("raw_connection", |b| {
        b.iter(|| {
            mine.send(&7u64).expect("send");
            mine.recv::<u64>().expect("recv")
        })
    });
    g.bench_function("apply_async_get", |b| {
        b.iter(|| pool.apply_async(inc, 7).get().expect("get"))
    });
    let ps = procspawn::Pool::new(2).expect("procspawn pool");
    g.bench_function("procspawn_pool", |b| {
        b.iter(|| ps.spawn(7u64, inc).join().expect("procspawn join"))
    });
    g.finish();
    ps.kill();
    drop(mine);
    let _ = server.join_timeout(Duration::from_secs(5));
}

fn cpu_bound(c: &mut Criterion) {
    const ITEMS: usize = 16;
    const EACH: u64 = 2_000_000;
    let pool = Pool::new(2).expect("pool");
    let mut g = c.benchmark_group("cpu_bound");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("one_process", |b| {
        b.iter(|| (0..ITEMS).map(|_| sum_to(EACH)).collect::<Vec<u64>>())
    });
    g.bench_function("pool_2_workers", |b| {
        b.iter(|| pool.map(sum_to, vec![EACH; ITEMS]).expect("map"))
    });
    g.finish();
}

fn main() {
    procspawn::init();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args();
    map_100k(&mut c);
    round_trip(&mut c);
    cpu_bound(&mut c);
    c.final_summary();
}
