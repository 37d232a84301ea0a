//! Group `lock`: a process-shared lock, uncontended and contended.
//!
//! - case `uncontended`: one lock + unlock of multiproc's `Lock` next to `std::sync::Mutex` (the
//!   in-process reference), a `PTHREAD_PROCESS_SHARED` pthread mutex in shared memory, and a
//!   bare futex mutex (the OS limit: one compare-and-swap and one swap).
//! - case `2x1M increments`: two processes (this one and a forked child) each add one to a shared
//!   counter 1,000,000 times under the lock (the seed program): multiproc's `Value` next to the
//!   pthread and futex mutexes, and `std::sync::Mutex` between two threads. The time is from the
//!   child's start to its join, with the parent's own increments in between.
//!
//! The Python twin is `benches/python/lock.py` (`Value.get_lock()`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use multiproc::{get_context, Lock, Process, ShmBox, StartMethod, Value};
use multiproc_benches::{timing, FutexCounter, FutexMutex, PthreadCounter, Weight};

const PER_PROCESS: u64 = 1_000_000;

fn uncontended(c: &mut Criterion) {
    const CASE: &str = "uncontended";
    let t = timing(Weight::Light);
    let mut g = c.benchmark_group("lock");
    g.warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .sample_size(t.samples);
    let ours = Lock::new().expect("lock");
    g.bench_function(BenchmarkId::new("multiproc Lock", CASE), |b| {
        b.iter(|| drop(black_box(ours.acquire())))
    });
    let std_mutex = std::sync::Mutex::new(());
    g.bench_function(BenchmarkId::new("std Mutex", CASE), |b| {
        b.iter(|| drop(black_box(&std_mutex).lock().expect("not poisoned")))
    });
    let pthread = PthreadCounter::new_shared().expect("shared heap");
    g.bench_function(BenchmarkId::new("pthread process-shared", CASE), |b| {
        b.iter(|| black_box(&*pthread).lock_unlock())
    });
    let futex = ShmBox::new(FutexMutex::new()).expect("shared heap");
    g.bench_function(BenchmarkId::new("futex mutex", CASE), |b| {
        b.iter(|| {
            let m = black_box(&*futex);
            m.lock();
            m.unlock();
        })
    });
    g.finish();
}

fn increment_value(v: Value<u64>) {
    for _ in 0..PER_PROCESS {
        *v.lock() += 1;
    }
}

/// One run of the contended case: the child process (not started yet), the parent's share of
/// the increments, and the final count (read after the child's join).
type Run = (Process, Box<dyn FnOnce()>, Box<dyn FnOnce() -> u64>);

/// Times `iters` runs: start the child, do the parent's share, join the child; checks that no
/// increment was lost.
fn two_processes(iters: u64, mut setup: impl FnMut() -> Run) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (mut child, parent, count) = setup();
        let start = Instant::now();
        child.start().expect("start");
        parent();
        child.join().expect("join");
        total += start.elapsed();
        assert_eq!(child.exitcode(), Some(0), "child failed");
        assert_eq!(count(), 2 * PER_PROCESS, "increments lost");
    }
    total
}

fn contended(c: &mut Criterion) {
    const CASE: &str = "2x1M increments";
    let t = timing(Weight::VeryHeavy);
    let mut g = c.benchmark_group("lock");
    g.warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .sample_size(t.samples)
        .sampling_mode(criterion::SamplingMode::Flat);
    let fork = get_context(StartMethod::Fork);

    g.bench_function(BenchmarkId::new("multiproc Value", CASE), |b| {
        b.iter_custom(|iters| {
            two_processes(iters, || {
                let v = Value::new(0u64).expect("value");
                let child = fork.process(increment_value, v.clone());
                let v2 = v.clone();
                let parent = Box::new(move || {
                    for _ in 0..PER_PROCESS {
                        *v2.lock() += 1;
                    }
                });
                (child, parent, Box::new(move || v.get()))
            })
        })
    });

    g.bench_function(BenchmarkId::new("pthread process-shared", CASE), |b| {
        b.iter_custom(|iters| {
            two_processes(iters, || {
                let m = PthreadCounter::new_shared().expect("shared heap");
                let m2 = m.clone();
                let child = Process::from_closure(move || {
                    for _ in 0..PER_PROCESS {
                        m2.increment();
                    }
                });
                let m3 = m.clone();
                let parent = Box::new(move || {
                    for _ in 0..PER_PROCESS {
                        m3.increment();
                    }
                });
                (child, parent, Box::new(move || m.get()))
            })
        })
    });
    g.bench_function(BenchmarkId::new("futex mutex", CASE), |b| {
        b.iter_custom(|iters| {
            two_processes(iters, || {
                let m = ShmBox::new(FutexCounter::default()).expect("shared heap");
                let m2 = m.clone();
                let child = Process::from_closure(move || {
                    for _ in 0..PER_PROCESS {
                        m2.increment();
                    }
                });
                let m3 = m.clone();
                let parent = Box::new(move || {
                    for _ in 0..PER_PROCESS {
                        m3.increment();
                    }
                });
                (child, parent, Box::new(move || m.get()))
            })
        })
    });
    g.bench_function(BenchmarkId::new("std Mutex (2 threads)", CASE), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let m = std::sync::Mutex::new(0u64);
                let start = Instant::now();
                std::thread::scope(|s| {
                    s.spawn(|| {
                        for _ in 0..PER_PROCESS {
                            *m.lock().expect("not poisoned") += 1;
                        }
                    });
                    for _ in 0..PER_PROCESS {
                        *m.lock().expect("not poisoned") += 1;
                    }
                });
                total += start.elapsed();
                assert_eq!(*m.lock().expect("not poisoned"), 2 * PER_PROCESS);
            }
            total
        })
    });
    g.finish();
}

fn main() {
    multiproc::init();
    let mut c = Criterion::default().configure_from_args();
    uncontended(&mut c);
    contended(&mut c);
    c.final_summary();
}
