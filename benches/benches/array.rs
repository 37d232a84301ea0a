//! Group `array`: a shared array of 1,000,000 `f64` filled by a child process and summed by the
//! parent.
//!
//! One iteration: create the `Array` (zeroed, in shared memory), start a child (`fork`, as
//! Python's default on Linux up to 3.13) that fills it under its lock (`a[i] = i / 2`), join the
//! child, sum the array under the lock in the parent. Next to it, the same fill and sum of a `Vec`
//! in one process (the memory-bandwidth bound). The Python twin is `benches/python/array.py`
//! (`Array('d', n)`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use multiproc::{get_context, Array, StartMethod};
use multiproc_benches::{timing, Weight};

const LEN: usize = 1_000_000;
const CASE: &str = "1M f64 fill+sum";

fn fill(a: Array<f64>) {
    let mut g = a.lock();
    for (i, x) in g.iter_mut().enumerate() {
        *x = i as f64 * 0.5;
    }
}

fn expected() -> f64 {
    (0..LEN).map(|i| i as f64 * 0.5).sum()
}

fn bench(c: &mut Criterion) {
    let t = timing(Weight::Heavy);
    let mut g = c.benchmark_group("array");
    g.warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .sample_size(t.samples)
        .sampling_mode(criterion::SamplingMode::Flat);
    let want = expected();
    let fork = get_context(StartMethod::Fork);
    g.bench_function(BenchmarkId::new("multiproc Array", CASE), |b| {
        b.iter(|| {
            let a = Array::<f64>::new(LEN).expect("array");
            let mut child = fork.process(fill, a.clone());
            child.start().expect("start");
            child.join().expect("join");
            assert_eq!(child.exitcode(), Some(0));
            let sum: f64 = a.lock().iter().sum();
            assert_eq!(sum, want);
        })
    });
    g.bench_function(BenchmarkId::new("in-process Vec", CASE), |b| {
        b.iter(|| {
            let mut v = vec![0f64; LEN];
            for (i, x) in v.iter_mut().enumerate() {
                *x = i as f64 * 0.5;
            }
            let sum: f64 = black_box(&v).iter().sum();
            assert_eq!(sum, want);
        })
    });
    g.finish();
}

fn main() {
    multiproc::init();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
