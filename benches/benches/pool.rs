//! Group `pool`: process pools on 2 workers.
//!
//! - cases `map 100k default` and `map 100k chunksize 1`: `map` of a trivial function (`x + 1`)
//!   over 100,000 integers: multiproc's `Pool` next to its `ThreadPool` and rayon on 2 threads
//!   (`with_max_len(1)` for chunksize 1), the in-process bounds.
//! - cases `imap 10k` and `imap_unordered 10k`: the lazy forms over 10,000 items (chunksize 1,
//!   Python's default), all results collected: `Pool` next to `ThreadPool`.
//! - case `apply_async round trip`: `apply_async(f, x).get()` of one trivial call: `Pool` next to
//!   `ThreadPool` and procspawn's `Pool` (`spawn(x, f).join()`).
//! - case `cpu-bound 16 tasks`: 16 × the sum of `0..2,000,000` the slow way, on 2 workers
//!   (`Pool`, rayon, procspawn's `Pool`) and in this process alone: the report derives the
//!   speed-up.
//!
//! The Python twin is `benches/python/pool.py` (`Pool(2)`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use multiproc::{Pool, ThreadPool};
use multiproc_benches::{timing, Weight};
use rayon::prelude::*;

const N: u64 = 100_000;
/// Items of the `imap` cases: chunksize 1 runs at tens of thousands of items per second.
const IMAP_N: u64 = 10_000;
const CPU_TASKS: usize = 16;
const CPU_EACH: u64 = 2_000_000;

fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// The CPU-bound task: the sum of `0..n`, computed the slow way. Never inlined: the workers call
/// it through a function pointer, and the in-process baselines must run the same machine code.
#[inline(never)]
fn sum_to(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n {
        s = s.wrapping_add(black_box(i));
    }
    s
}

fn check_map(v: Vec<u64>) {
    assert_eq!(v.len(), N as usize);
    assert_eq!(v[N as usize - 1], N);
}

fn bench(c: &mut Criterion) {
    let t = timing(Weight::Heavy);
    let pool = Pool::new(2).expect("pool");
    let threads = ThreadPool::new(2).expect("thread pool");
    let rayon2 = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon");
    let procspawn_pool = procspawn::Pool::new(2).expect("procspawn pool");
    let mut g = c.benchmark_group("pool");
    g.warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .sample_size(t.samples)
        .sampling_mode(criterion::SamplingMode::Flat);

    let case = "map 100k default";
    g.bench_function(BenchmarkId::new("multiproc Pool", case), |b| {
        b.iter(|| check_map(pool.map(inc, 0..N).expect("map")))
    });
    g.bench_function(BenchmarkId::new("multiproc ThreadPool", case), |b| {
        b.iter(|| check_map(threads.map(inc, 0..N).expect("map")))
    });
    g.bench_function(BenchmarkId::new("rayon (2 threads)", case), |b| {
        b.iter(|| check_map(rayon2.install(|| (0..N).into_par_iter().map(inc).collect())))
    });

    let case = "map 100k chunksize 1";
    g.bench_function(BenchmarkId::new("multiproc Pool", case), |b| {
        b.iter(|| check_map(pool.map_chunked(inc, 0..N, 1).expect("map")))
    });
    g.bench_function(BenchmarkId::new("multiproc ThreadPool", case), |b| {
        b.iter(|| check_map(threads.map_chunked(inc, 0..N, 1).expect("map")))
    });
    g.bench_function(BenchmarkId::new("rayon (2 threads)", case), |b| {
        b.iter(|| {
            check_map(rayon2.install(|| {
                (0..N as u32)
                    .into_par_iter()
                    .with_max_len(1)
                    .map(|x| inc(u64::from(x)))
                    .collect()
            }))
        })
    });

    let case = "imap 10k";
    let check_ordered = |v: Vec<u64>| {
        assert_eq!(v.len(), IMAP_N as usize);
        assert_eq!(v[IMAP_N as usize - 1], IMAP_N);
    };
    g.bench_function(BenchmarkId::new("multiproc Pool", case), |b| {
        b.iter(|| {
            check_ordered(
                pool.imap(inc, 0..IMAP_N)
                    .map(|r| r.expect("item"))
                    .collect(),
            )
        })
    });
    g.bench_function(BenchmarkId::new("multiproc ThreadPool", case), |b| {
        b.iter(|| {
            check_ordered(
                threads
                    .imap(inc, 0..IMAP_N)
                    .map(|r| r.expect("item"))
                    .collect(),
            )
        })
    });

    let case = "imap_unordered 10k";
    let check_unordered = |v: Vec<u64>| {
        assert_eq!(v.len(), IMAP_N as usize);
        assert_eq!(v.iter().sum::<u64>(), IMAP_N * (IMAP_N + 1) / 2);
    };
    g.bench_function(BenchmarkId::new("multiproc Pool", case), |b| {
        b.iter(|| {
            check_unordered(
                pool.imap_unordered(inc, 0..IMAP_N)
                    .map(|r| r.expect("item"))
                    .collect(),
            )
        })
    });
    g.bench_function(BenchmarkId::new("multiproc ThreadPool", case), |b| {
        b.iter(|| {
            check_unordered(
                threads
                    .imap_unordered(inc, 0..IMAP_N)
                    .map(|r| r.expect("item"))
                    .collect(),
            )
        })
    });
    g.finish();

    // One call: light.
    let t = timing(Weight::Light);
    let mut g = c.benchmark_group("pool");
    g.warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .sample_size(t.samples);
    let case = "apply_async round trip";
    g.bench_function(BenchmarkId::new("multiproc Pool", case), |b| {
        b.iter(|| assert_eq!(pool.apply_async(inc, black_box(7)).get().expect("get"), 8))
    });
    g.bench_function(BenchmarkId::new("multiproc ThreadPool", case), |b| {
        b.iter(|| {
            assert_eq!(
                threads.apply_async(inc, black_box(7)).get().expect("get"),
                8
            )
        })
    });
    g.bench_function(BenchmarkId::new("procspawn Pool", case), |b| {
        b.iter(|| {
            let h = procspawn_pool.spawn(black_box(7u64), inc);
            assert_eq!(h.join().expect("join"), 8)
        })
    });
    g.finish();

    let t = timing(Weight::Heavy);
    let mut g = c.benchmark_group("pool");
    g.warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .sample_size(t.samples)
        .sampling_mode(criterion::SamplingMode::Flat);
    let case = "cpu-bound 16 tasks";
    let expected = sum_to(CPU_EACH);
    let check = |v: Vec<u64>| {
        assert_eq!(v.len(), CPU_TASKS);
        assert!(v.iter().all(|&s| s == expected));
    };
    g.bench_function(BenchmarkId::new("one process", case), |b| {
        b.iter(|| check((0..CPU_TASKS).map(|_| sum_to(CPU_EACH)).collect()))
    });
    g.bench_function(BenchmarkId::new("multiproc Pool", case), |b| {
        b.iter(|| check(pool.map(sum_to, vec![CPU_EACH; CPU_TASKS]).expect("map")))
    });
    g.bench_function(BenchmarkId::new("rayon (2 threads)", case), |b| {
        b.iter(|| {
            check(rayon2.install(|| {
                vec![CPU_EACH; CPU_TASKS]
                    .into_par_iter()
                    .map(sum_to)
                    .collect()
            }))
        })
    });
    g.bench_function(BenchmarkId::new("procspawn Pool", case), |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..CPU_TASKS)
                .map(|_| procspawn_pool.spawn(CPU_EACH, sum_to))
                .collect();
            check(
                handles
                    .into_iter()
                    .map(|h| h.join().expect("join"))
                    .collect(),
            )
        })
    });
    g.finish();
    procspawn_pool.shutdown();
}

fn main() {
    procspawn::init();
    multiproc::init();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
