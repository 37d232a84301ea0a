//! Load and leaks: thousands of process start/join cycles, pools and shared objects created
//! and dropped, millions of messages through each queue backend; each case compares this
//! process's descriptors, memory, mappings, zombies and `/dev/shm` names before and after.

use std::time::Duration;

use multiproc::{Backend, Lock, Pool, Process, Queue, RawArray, RawValue, Value};

use crate::faults::task;
use crate::probe::{self, Snapshot};
use crate::{Scale, Tally};

/// Descriptors a loop may leave open (lazily created, once-only resources).
const FD_SLACK: usize = 2;
/// Mappings a loop may add (allocator arenas, a heap segment growing once).
const MAP_SLACK: usize = 16;
/// Resident memory a loop may add, KiB (allocator caches).
const RSS_SLACK_KIB: u64 = 16 * 1024;

fn compare(t: &mut Tally, before: &Snapshot, with_memory: bool) {
    let after = Snapshot::take();
    if after.fds > before.fds + FD_SLACK {
        t.leak(
            (after.fds - before.fds) as u64,
            format!("descriptors {} -> {}", before.fds, after.fds),
        );
    }
    if with_memory {
        if after.maps > before.maps + MAP_SLACK {
            t.leak(
                (after.maps - before.maps) as u64,
                format!("mappings {} -> {}", before.maps, after.maps),
            );
        }
        if after.rss_kib > before.rss_kib + RSS_SLACK_KIB {
            t.leak(
                1,
                format!("RSS {} KiB -> {} KiB", before.rss_kib, after.rss_kib),
            );
        }
    }
    let names = probe::shm_new_names(&before.shm);
    t.leak(
        names.len() as u64,
        format!("/dev/shm names left: {names:?}"),
    );
    let z = probe::zombies();
    t.leak(z.len() as u64, format!("zombie children: {z:?}"));
    t.note(format!(
        "fds {}->{}, maps {}->{}, RSS {}->{} KiB",
        before.fds, after.fds, before.maps, after.maps, before.rss_kib, after.rss_kib
    ));
}

fn noop(_: ()) {}

/// Process start/join cycles: descriptors, RSS and mappings flat, no zombies.
pub fn start_join_cycles(s: &Scale, t: &mut Tally) {
    let n = s.pick(100, 10_000);
    let ctx = s.ctx();
    let cycle = |t: &mut Tally| -> bool {
        let mut p: Process = ctx.process(noop, ());
        if let Err(e) = p.start() {
            t.fail(format!("start: {e}"));
            return false;
        }
        if let Err(e) = p.join() {
            t.fail(format!("join: {e}"));
            return false;
        }
        t.check(p.exitcode() == Some(0), || {
            format!("exit code {:?}", p.exitcode())
        });
        true
    };
    // Warm up: the fork server, the resource tracker and lazy statics exist from here on.
    for _ in 0..20 {
        if !cycle(t) {
            return;
        }
    }
    let before = Snapshot::take();
    for _ in 0..n {
        if s.out_of_time() || !cycle(t) {
            break;
        }
        t.iterations += 1;
    }
    compare(t, &before, true);
}

/// Pools created, used and dropped: descriptors, names and processes back to the baseline.
pub fn pool_churn(s: &Scale, t: &mut Tally) {
    let n = s.pick(5, 1_000);
    let want: Vec<u64> = (0..20).map(task).collect();
    let one = |t: &mut Tally| -> Vec<u32> {
        match Pool::builder().processes(2).context(s.ctx()).build() {
            Ok(pool) => {
                match pool.map(task, 0..20u64) {
                    Ok(v) => t.check(v == want, || "wrong map results".into()),
                    Err(e) => t.fail(format!("map: {e}")),
                }
                pool.worker_pids()
            }
            Err(e) => {
                t.fail(format!("pool: {e}"));
                Vec::new()
            }
        }
    };
    let _ = one(t);
    let before = Snapshot::take();
    let mut workers = Vec::new();
    for _ in 0..n {
        if s.out_of_time() {
            break;
        }
        workers.extend(one(t));
        t.iterations += 1;
    }
    let (gone, _) = probe::wait_until(Duration::from_secs(10), || {
        workers.iter().all(|&p| !probe::alive(p))
    });
    if !gone {
        let left: Vec<u32> = workers
            .iter()
            .copied()
            .filter(|&p| probe::alive(p))
            .collect();
        t.leak(
            left.len() as u64,
            format!("workers alive 10 s after their pool was dropped: {left:?}"),
        );
    }
    compare(t, &before, true);
}

/// A task that holds a shared array for a while.
fn hold(a: RawArray<u8>) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    a.len() as u64
}

/// Pools terminated while their tasks, whose arguments are shared arrays (1 MiB each, every
/// page written), are queued or running: once the arrays are dropped here too, nothing of
/// them may stay alive (a pool that kept references to the chunks it had sent would keep
/// 8 MiB per iteration): descriptors, mappings and memory back to the baseline.
pub fn pool_terminate_with_handles(s: &Scale, t: &mut Tally) {
    let n = s.pick(10, 300);
    let one = |t: &mut Tally| {
        let pool = match Pool::builder().processes(2).context(s.ctx()).build() {
            Ok(p) => p,
            Err(e) => return t.fail(format!("pool: {e}")),
        };
        let args: Vec<RawArray<u8>> = (0..8)
            .filter_map(|_| RawArray::<u8>::zeroed(1 << 20).ok())
            .collect();
        t.check(args.len() == 8, || "arrays".into());
        for a in &args {
            for i in (0..a.len()).step_by(4096) {
                let _ = a.set(i, 1);
            }
        }
        let r = pool.map_async(hold, args.clone());
        pool.terminate();
        match r.get_timeout(Duration::from_secs(60)) {
            Ok(v) => t.check(v.iter().all(|&l| l == 1 << 20), || "wrong results".into()),
            Err(multiproc::PoolError::Terminated)
            | Err(multiproc::PoolError::WorkerLost { .. }) => {}
            Err(e) => t.fail(format!("result after terminate: {e}")),
        }
        drop(args);
        drop(pool);
    };
    one(t);
    let before = Snapshot::take();
    for _ in 0..n {
        if s.out_of_time() {
            break;
        }
        one(t);
        t.iterations += 1;
    }
    compare(t, &before, true);
}

/// Values and Locks created, used and dropped: descriptors, mappings and names back to the
/// baseline.
pub fn value_lock_churn(s: &Scale, t: &mut Tally) {
    let n = s.pick(2_000, 100_000);
    let one = |t: &mut Tally, i: u64| {
        match (Value::new(i), Lock::new()) {
            (Ok(v), Ok(l)) => {
                let g = l.acquire();
                *v.lock() += 1;
                drop(g);
                t.check(v.get() == i + 1, || "value lost its update".into());
            }
            _ => t.fail("create"),
        };
    };
    for i in 0..100 {
        one(t, i);
    }
    let before = Snapshot::take();
    for i in 0..n {
        if s.out_of_time() {
            break;
        }
        one(t, i);
        t.iterations += 1;
    }
    compare(t, &before, true);
}

/// Mixes a producer's id and a sequence number into a checksum term.
fn mix(p: u64, seq: u64) -> u64 {
    let mut x = (p << 56) ^ seq ^ 0xA5A5_5A5A_1234_5678;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

const TP: usize = 4;
/// A message of the 4 × 4 case: `(producer, seq)`, `None` to stop a consumer.
type TpQueue = Queue<Option<(u64, u64)>>;
const TC: usize = 4;

/// Producer `p`: `n` messages `(p, seq)`, stopping early when `stop` is set; records how many
/// it put in `out[p]`.
fn tp_producer((q, p, n, stop, out): (TpQueue, u64, u64, RawValue<u32>, RawArray<u64>)) {
    let mut seq = 0;
    while seq < n {
        if seq % 1024 == 0 && stop.load() != 0 {
            break;
        }
        q.put(Some((p, seq))).expect("put");
        seq += 1;
    }
    let _ = out.set(p as usize, seq);
}

/// Consumer `c`: per producer, the count, the sum of sequence numbers and the sum of
/// [`mix`] of what it received, into `out[(c * TP + p) * 3 ..]`; stops at `None`.
fn tp_consumer((q, c, out): (TpQueue, u64, RawArray<u64>)) {
    let mut acc = [[0u64; 3]; TP];
    while let Some((p, seq)) = q.get().expect("get") {
        let a = &mut acc[(p as usize).min(TP - 1)];
        a[0] += 1;
        a[1] = a[1].wrapping_add(seq);
        a[2] = a[2].wrapping_add(mix(p, seq));
    }
    for (p, a) in acc.iter().enumerate() {
        for (k, v) in a.iter().enumerate() {
            let _ = out.set((c as usize * TP + p) * 3 + k, *v);
        }
    }
}

/// 4 producers × 4 consumers, pipe backend: exactly-once delivery checked by content.
pub fn queue_4x4_pipe(s: &Scale, t: &mut Tally) {
    queue_4x4(s, t, Backend::Pipe);
}

/// 4 producers × 4 consumers, shared-memory backend: exactly-once delivery checked by content.
pub fn queue_4x4_shm(s: &Scale, t: &mut Tally) {
    queue_4x4(s, t, Backend::Shm);
}

fn queue_4x4(s: &Scale, t: &mut Tally, backend: Backend) {
    let total = s.pick(40_000, 10_000_000);
    let per = total / TP as u64;
    let q: TpQueue = match Queue::builder().backend(backend).maxsize(10_000).build() {
        Ok(q) => q,
        Err(e) => return t.fail(format!("queue: {e}")),
    };
    let (Ok(stop), Ok(put_counts), Ok(sums)) = (
        RawValue::new(0u32),
        RawArray::<u64>::zeroed(TP),
        RawArray::<u64>::zeroed(TC * TP * 3),
    ) else {
        return t.fail("shared state");
    };
    let ctx = s.ctx();
    let mut consumers: Vec<Process> = (0..TC as u64)
        .map(|c| ctx.process(tp_consumer, (q.clone(), c, sums.clone())))
        .collect();
    let mut producers: Vec<Process> = (0..TP as u64)
        .map(|p| {
            ctx.process(
                tp_producer,
                (q.clone(), p, per, stop.clone(), put_counts.clone()),
            )
        })
        .collect();
    for p in consumers.iter_mut().chain(producers.iter_mut()) {
        if let Err(e) = p.start() {
            t.fail(format!("start: {e}"));
            stop.store(1);
        }
    }
    for p in &mut producers {
        loop {
            match p.join_timeout(Duration::from_secs(1)) {
                Ok(Some(code)) => {
                    t.check(code == 0, || format!("producer exit {code}"));
                    break;
                }
                Ok(None) if s.out_of_time() => stop.store(1),
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
    for _ in 0..TC {
        if let Err(e) = q.put(None) {
            t.fail(format!("stop message: {e}"));
        }
    }
    for c in &mut consumers {
        match c.join() {
            Ok(()) => t.check(c.exitcode() == Some(0), || {
                format!("consumer exit {:?}", c.exitcode())
            }),
            Err(e) => t.fail(format!("consumer join: {e}")),
        }
    }
    let sums = sums.to_vec();
    let mut received = 0u64;
    for p in 0..TP {
        let n = put_counts.get(p).unwrap_or(0);
        let mut got = [0u64; 3];
        for c in 0..TC {
            for (k, g) in got.iter_mut().enumerate() {
                *g = g.wrapping_add(sums[(c * TP + p) * 3 + k]);
            }
        }
        received += got[0];
        let want_sum = (0..n).fold(0u64, |a, s| a.wrapping_add(s));
        let want_mix = (0..n).fold(0u64, |a, s| a.wrapping_add(mix(p as u64, s)));
        if got[0] < n {
            t.lose(
                n - got[0],
                format!("producer {p}: {} of {n} received", got[0]),
            );
        }
        t.check(got[0] <= n, || {
            format!("producer {p}: {} received of {n} put", got[0])
        });
        t.check(got[1] == want_sum && got[2] == want_mix, || {
            format!("producer {p}: checksum mismatch (a message lost, doubled or altered)")
        });
    }
    t.iterations = received;
    t.check(q.empty(), || "queue not empty at the end".into());
}
