//! Benchmarks of ipc-shm against their limits: segment creation, `RawValue` operations next to
//! a `std` atomic in private memory, `RawArray` bulk copies next to `copy_from_slice`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipc_shm::{RawArray, RawValue, Segment};

fn segment(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment");
    for size in [4096usize, 1 << 20] {
        g.bench_with_input(
            BenchmarkId::new("create_map_drop", size),
            &size,
            |b, &size| {
                b.iter(|| {
                    let s = Segment::new(size).unwrap();
                    s.write_at(0, &[1]).unwrap(); // touch a page
                    black_box(s)
                })
            },
        );
    }
    g.finish();
}

fn value(c: &mut Criterion) {
    let mut g = c.benchmark_group("value");
    let shared = RawValue::new(0i64).unwrap();
    let private = Box::new(AtomicI64::new(0));
    g.bench_function("raw_value_load", |b| b.iter(|| black_box(&shared).load()));
    g.bench_function("std_atomic_load", |b| {
        b.iter(|| black_box(&private).load(Ordering::SeqCst))
    });
    g.bench_function("raw_value_store", |b| {
        b.iter(|| black_box(&shared).store(7))
    });
    g.bench_function("std_atomic_store", |b| {
        b.iter(|| black_box(&private).store(7, Ordering::SeqCst))
    });
    g.bench_function("raw_value_fetch_add", |b| {
        b.iter(|| black_box(&shared).fetch_add(1))
    });
    g.bench_function("std_atomic_fetch_add", |b| {
        b.iter(|| black_box(&private).fetch_add(1, Ordering::SeqCst))
    });
    g.finish();
}

fn array(c: &mut Criterion) {
    let mut g = c.benchmark_group("array");
    for n in [1024usize, 65536] {
        let src: Vec<i32> = (0..n as i32).collect();
        let shared = RawArray::<i32>::zeroed(n).unwrap();
        let mut private = vec![0i32; n];
        let mut out = vec![0i32; n];
        g.throughput(Throughput::Bytes((n * 4) as u64));
        g.bench_with_input(
            BenchmarkId::new("raw_array_copy_from_slice", n),
            &n,
            |b, _| b.iter(|| shared.copy_from_slice(black_box(&src)).unwrap()),
        );
        g.bench_with_input(BenchmarkId::new("std_copy_from_slice", n), &n, |b, _| {
            b.iter(|| black_box(&mut private[..]).copy_from_slice(black_box(&src)))
        });
        g.bench_with_input(
            BenchmarkId::new("raw_array_copy_to_slice", n),
            &n,
            |b, _| b.iter(|| shared.copy_to_slice(black_box(&mut out)).unwrap()),
        );
        g.bench_with_input(BenchmarkId::new("std_copy_to_slice", n), &n, |b, _| {
            b.iter(|| black_box(&mut out[..]).copy_from_slice(black_box(&private)))
        });
    }
    g.finish();
}

criterion_group!(benches, segment, value, array);
criterion_main!(benches);
