//! Criterion benchmarks of ipc-sync against its peers, side by side in one run:
//!
//! - `uncontended`: lock + unlock of our `Lock` vs `std::sync::Mutex`, `parking_lot::Mutex` and a
//!   `PTHREAD_PROCESS_SHARED` pthread mutex in the shared heap;
//! - `two_processes`: two processes each doing 1,000,000 lock/increment/unlock on one counter
//!   (ours, with the default spin and without spinning, vs the pthread shared mutex);
//! - `ping_pong`: one cross-process round trip through our `Event`s and `Semaphore`s (spin budget
//!   0, 20 µs and 50 µs), a pipe, a bare futex word, and a bare spin on a shared word (the limit
//!   when both processes are running).
//!
//! Run: `cargo bench -p ipc-sync -- --warm-up-time 1 --measurement-time 3`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use ipc_shm::{ShmBox, ShmSafe};
use ipc_sync::futex;
use ipc_sync::primitive::atomic::{AtomicU32, Ordering};
use ipc_sync::{Event, Lock, Semaphore, Value};
use std::cell::UnsafeCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A pthread mutex placed in the shared heap, initialised `PTHREAD_PROCESS_SHARED`.
#[repr(C)]
struct SharedPthreadMutex {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    counter: UnsafeCell<u64>,
}

// SAFETY: plain C data with no pointers; all-zero is glibc's PTHREAD_MUTEX_INITIALIZER (and the
// mutex is re-initialised process-shared before use).
unsafe impl ShmSafe for SharedPthreadMutex {}
// SAFETY: the mutex is designed for concurrent use; the counter is only touched under it.
unsafe impl Sync for SharedPthreadMutex {}
// SAFETY: as above; nothing is tied to a thread.
unsafe impl Send for SharedPthreadMutex {}

fn shared_pthread_mutex() -> ShmBox<SharedPthreadMutex> {
    // SAFETY: all-zero is a valid pthread_mutex_t (PTHREAD_MUTEX_INITIALIZER on glibc).
    let zero: SharedPthreadMutex = unsafe { std::mem::zeroed() };
    let boxed = ShmBox::new(zero).expect("shared heap");
    // SAFETY: the attribute object is initialised before use and destroyed after; the mutex lives
    // in the shared heap for as long as `boxed` and is not in use yet.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutex_init(boxed.mutex.get(), &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
    }
    boxed
}

fn pthread_increment(m: &SharedPthreadMutex) {
    // SAFETY: the mutex was initialised by `shared_pthread_mutex`; the counter is only touched
    // while it is held.
    unsafe {
        libc::pthread_mutex_lock(m.mutex.get());
        *m.counter.get() += 1;
        libc::pthread_mutex_unlock(m.mutex.get());
    }
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended_lock_unlock");
    let ours = Lock::new().unwrap();
    g.bench_function("ipc_sync::Lock", |b| {
        b.iter(|| drop(black_box(ours.acquire())))
    });
    let value = Value::new(0u64).unwrap();
    g.bench_function("ipc_sync::Value (lock + increment)", |b| {
        b.iter(|| *value.lock() += 1)
    });
    let std_mutex = std::sync::Mutex::new(0u64);
    g.bench_function("std::sync::Mutex", |b| {
        b.iter(|| *black_box(&std_mutex).lock().unwrap() += 1)
    });
    let pl = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot::Mutex", |b| {
        b.iter(|| *black_box(&pl).lock() += 1)
    });
    let pthread = shared_pthread_mutex();
    g.bench_function("pthread PROCESS_SHARED", |b| {
        b.iter(|| pthread_increment(black_box(&pthread)))
    });
    g.finish();
}

/// Forks a child that runs `child`, returning its pid. The child exits with `_exit`.
fn fork_child(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the benchmark process is single-threaded here (criterion runs benchmarks on the main
    // thread); the child runs plain Rust on shared memory and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed"
    );
}

const PER_PROCESS: u64 = 1_000_000;

fn two_processes(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_processes_1m_increments_each");
    g.sample_size(10);
    for (name, spin) in [
        ("ipc_sync::Value", ipc_sync::spin_time()),
        ("ipc_sync::Value (no spin)", Duration::ZERO),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let default_spin = ipc_sync::spin_time();
                ipc_sync::set_spin_time(spin);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let value = Value::new(0u64).unwrap();
                    let start = Instant::now();
                    let v2 = value.clone();
                    let pid = fork_child(move || {
                        for _ in 0..PER_PROCESS {
                            *v2.lock() += 1;
                        }
                    });
                    for _ in 0..PER_PROCESS {
                        *value.lock() += 1;
                    }
                    reap(pid);
                    total += start.elapsed();
                    assert_eq!(value.get(), 2 * PER_PROCESS);
                }
                ipc_sync::set_spin_time(default_spin);
                total
            })
        });
    }
    g.bench_function("pthread PROCESS_SHARED", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let m = shared_pthread_mutex();
                let start = Instant::now();
                let m2 = m.clone();
                let pid = fork_child(move || {
                    for _ in 0..PER_PROCESS {
                        pthread_increment(&m2);
                    }
                });
                for _ in 0..PER_PROCESS {
                    pthread_increment(&m);
                }
                reap(pid);
                total += start.elapsed();
                // SAFETY: the child has exited; nobody else touches the counter.
                assert_eq!(unsafe { *m.counter.get() }, 2 * PER_PROCESS);
            }
            total
        })
    });
    g.finish();
}

/// Measures `iters` round trips between this process and a forked partner. `partner(n)` runs in
/// the child and answers `n` pings; `ping()` sends one and waits for the answer.
fn round_trips(iters: u64, partner: impl FnOnce(u64), mut ping: impl FnMut()) -> Duration {
    let pid = fork_child(move || partner(iters + 1));
    ping(); // the child is up and running
    let start = Instant::now();
    for _ in 0..iters {
        ping();
    }
    let elapsed = start.elapsed();
    reap(pid);
    elapsed
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_process_round_trip");
    let default_spin = ipc_sync::spin_time();
    for micros in [0u64, 20, 50] {
        let spin = Duration::from_micros(micros);
        g.bench_function(format!("ipc_sync::Event (spin {micros} us)"), |b| {
            b.iter_custom(|iters| {
                ipc_sync::set_spin_time(spin);
                let (ping, pong) = (Event::new().unwrap(), Event::new().unwrap());
                let (p2, q2) = (ping.clone(), pong.clone());
                round_trips(
                    iters,
                    move |n| {
                        for _ in 0..n {
                            p2.wait();
                            p2.clear();
                            q2.set();
                        }
                    },
                    || {
                        ping.set();
                        pong.wait();
                        pong.clear();
                    },
                )
            })
        });
        g.bench_function(format!("ipc_sync::Semaphore (spin {micros} us)"), |b| {
            b.iter_custom(|iters| {
                ipc_sync::set_spin_time(spin);
                let (ping, pong) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
                let (p2, q2) = (ping.clone(), pong.clone());
                round_trips(
                    iters,
                    move |n| {
                        for _ in 0..n {
                            p2.acquire();
                            q2.release().unwrap();
                        }
                    },
                    || {
                        ping.release().unwrap();
                        pong.acquire();
                    },
                )
            })
        });
    }
    ipc_sync::set_spin_time(default_spin);
    g.bench_function("pipe", |b| {
        b.iter_custom(|iters| {
            let (r1, w1) = rustix::pipe::pipe().unwrap();
            let (r2, w2) = rustix::pipe::pipe().unwrap();
            round_trips(
                iters,
                |n| {
                    let mut byte = [0u8];
                    for _ in 0..n {
                        rustix::io::read(&r1, &mut byte).unwrap();
                        rustix::io::write(&w2, &byte).unwrap();
                    }
                },
                || {
                    let mut byte = [1u8];
                    rustix::io::write(&w1, &byte).unwrap();
                    rustix::io::read(&r2, &mut byte).unwrap();
                },
            )
        })
    });
    g.bench_function("bare futex word", |b| {
        b.iter_custom(|iters| {
            // 0: the parent's turn to ping; 1: the child's turn to answer.
            let word = ShmBox::new(AtomicU32::new(0)).unwrap();
            let w2 = word.clone();
            round_trips(
                iters,
                move |n| {
                    for _ in 0..n {
                        while w2.load(Ordering::Acquire) != 1 {
                            futex::wait(&w2, 0, None);
                        }
                        w2.store(0, Ordering::Release);
                        futex::wake(&w2, 1);
                    }
                },
                || {
                    word.store(1, Ordering::Release);
                    futex::wake(&word, 1);
                    while word.load(Ordering::Acquire) != 0 {
                        futex::wait(&word, 1, None);
                    }
                },
            )
        })
    });
    g.bench_function("bare spin (the limit)", |b| {
        b.iter_custom(|iters| {
            // 0: the parent's turn to ping; 1: the child's turn to answer. Nobody ever sleeps.
            let word = ShmBox::new(AtomicU32::new(0)).unwrap();
            let w2 = word.clone();
            round_trips(
                iters,
                move |n| {
                    for _ in 0..n {
                        while w2.load(Ordering::Acquire) != 1 {
                            std::hint::spin_loop();
                        }
                        w2.store(0, Ordering::Release);
                    }
                },
                || {
                    word.store(1, Ordering::Release);
                    while word.load(Ordering::Acquire) != 0 {
                        std::hint::spin_loop();
                    }
                },
            )
        })
    });
    g.finish();
}

criterion_group!(benches, uncontended, two_processes, ping_pong);
criterion_main!(benches);
