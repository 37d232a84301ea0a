//! Faults: processes killed (SIGKILL, a segfault, `abort`) at random points inside pools,
//! locks and queues, the main process killed under its whole tree, the fork server killed;
//! each case asserts what must survive.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::{
    get_context, Array, Backend, Barrier, ChannelError, Event, JoinableQueue, Pool, PoolError,
    Process, Queue, RawArray, SharedMemory, StartMethod,
};

use crate::probe;
use crate::{method_name, Rng, Scale, Tally};

/// How long a step that should take milliseconds may take before the case calls it a hang.
const HANG: Duration = Duration::from_secs(60);

// ---- task functions run by pool workers ---------------------------------------------------

/// The pool's task: a value the parent can check.
pub fn task(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (x >> 7)
}

/// One item in this many makes the crashing tasks crash.
const CRASH_EVERY: u64 = 1000;

fn crashes(x: u64) -> bool {
    x % CRASH_EVERY == CRASH_EVERY / 2
}

/// [`task`] after about 100 µs of work (a busy loop, not a sleep), so that a map lasts long
/// enough for kills every ~50 ms to land on busy workers.
pub fn task_slow(x: u64) -> u64 {
    let t0 = Instant::now();
    let mut acc = x;
    while t0.elapsed() < Duration::from_micros(100) {
        acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(1));
    }
    std::hint::black_box(acc);
    task(x)
}

/// [`task`], except that some items kill their worker with `SIGSEGV`.
pub fn task_segfault(x: u64) -> u64 {
    if crashes(x) {
        // SAFETY: signal and raise have no memory-safety preconditions. The default action
        // is restored first: Rust's own SIGSEGV handler (stack-overflow detection) would
        // return from a raised signal instead of ending the process.
        unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        }
        unreachable!("SIGSEGV with its default action returned");
    }
    task(x)
}

/// [`task`], except that some items make their worker call `abort`.
pub fn task_abort(x: u64) -> u64 {
    if crashes(x) {
        std::process::abort();
    }
    task(x)
}

fn sleep_forever(_: ()) {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// ---- pool ---------------------------------------------------------------------------------

/// Pool: a worker `SIGKILL`ed at random every ~50 ms during a map.
pub fn pool_sigkill(s: &Scale, t: &mut Tally) {
    pool_fault(s, t, task_slow, true);
}

/// Pool: workers that segfault on some items.
pub fn pool_segfault(s: &Scale, t: &mut Tally) {
    pool_fault(s, t, task_segfault, false);
}

/// Pool: workers that `abort` on some items.
pub fn pool_abort(s: &Scale, t: &mut Tally) {
    pool_fault(s, t, task_abort, false);
}

fn pool_fault(s: &Scale, t: &mut Tally, f: fn(u64) -> u64, killer: bool) {
    let n = s.pick(if killer { 5_000 } else { 2_000 }, 100_000);
    let pool = match Pool::builder().processes(2).context(s.ctx()).build() {
        Ok(p) => p,
        Err(e) => return t.fail(format!("pool: {e}")),
    };
    let done = AtomicBool::new(false);
    let kills = AtomicU64::new(0);
    let (mut ok, mut lost_worker, mut seen) = (0u64, 0u64, 0u64);
    std::thread::scope(|sc| {
        if killer {
            sc.spawn(|| {
                let mut rng = Rng::new();
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                    let pids = pool.worker_pids();
                    if !pids.is_empty() && !done.load(Ordering::Acquire) {
                        probe::kill(pids[rng.below(pids.len() as u64) as usize], libc::SIGKILL);
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let mut it = pool.imap_chunked(f, 0..n, 16);
        loop {
            if s.out_of_time() {
                break;
            }
            match it.next_timeout(HANG) {
                None => break,
                Some(Ok(v)) => {
                    if v != task(seen) {
                        t.fail(format!("task {seen}: wrong result {v}"));
                    }
                    ok += 1;
                }
                Some(Err(PoolError::WorkerLost { .. })) => lost_worker += 1,
                Some(Err(PoolError::Timeout)) => {
                    t.fail(format!(
                        "the map hung at task {seen} (nothing for {HANG:?})"
                    ));
                    break;
                }
                Some(Err(e)) => t.fail(format!("task {seen}: unexpected error {e}")),
            }
            seen += 1;
        }
        done.store(true, Ordering::Release);
    });
    t.iterations = seen;
    let finished = !s.out_of_time() || seen == n;
    if finished && seen != n {
        t.lose(
            n - seen,
            format!("{} of {n} tasks yielded nothing", n - seen),
        );
    }
    if !killer && seen == n && lost_worker == 0 {
        t.fail("no task failed with WorkerLost though workers crashed");
    }
    if killer && kills.load(Ordering::Relaxed) > 0 && lost_worker == 0 && seen == n {
        t.note("no kill landed on a busy worker");
    }
    if killer {
        t.note(format!(
            "{ok} ok, {lost_worker} WorkerLost, {} kills",
            kills.load(Ordering::Relaxed)
        ));
    } else {
        t.note(format!("{ok} ok, {lost_worker} WorkerLost"));
    }
    // The pool maps again, correctly, after all that.
    match pool.map(task, 0..1_000u64) {
        Ok(v) => t.check(v == (0..1_000).map(task).collect::<Vec<_>>(), || {
            "map after the faults: wrong results".into()
        }),
        Err(e) => t.fail(format!("map after the faults: {e}")),
    }
    let pids = pool.worker_pids();
    pool.close();
    if let Err(e) = pool.join() {
        t.fail(format!("join: {e}"));
    }
    drop(pool);
    let (gone, _) = probe::wait_until(Duration::from_secs(10), || {
        pids.iter().all(|&p| !probe::alive(p))
    });
    if !gone {
        t.leak(
            pids.iter().filter(|&&p| probe::alive(p)).count() as u64,
            "workers alive after the pool was joined and dropped",
        );
    }
}

// ---- locks --------------------------------------------------------------------------------

/// Holds the lock of `arr` forever after bumping `[0]` and, when `finish`, `[1]`.
fn lock_holder((arr, ready, finish): (Array<u64>, Event, bool)) {
    let mut g = arr.lock();
    g[0] += 1;
    if finish {
        g[1] += 1;
    }
    ready.set();
    sleep_forever(());
    drop(g);
}

/// Acquires the lock of `arr` and reports whether it learnt of a dead owner (1) or not (2).
fn lock_waiter((arr, started, out): (Array<u64>, Event, RawArray<u64>)) {
    started.set();
    let g = arr.lock();
    let _ = out.set(0, if g.owner_died() { 1 } else { 2 });
}

/// Locks: the holder killed inside its critical section, again and again.
///
/// The lock protects two counters the holder bumps in turn; it is killed after the first or
/// after both. The next acquirer (sometimes a process already blocked on the lock, sometimes
/// the parent) must get the lock with `owner_died`, and find the first counter bumped and the
/// second bumped exactly when the holder finished its update.
pub fn lock_holder_killed(s: &Scale, t: &mut Tally) {
    let iters = s.pick(10, 1_000);
    let ctx = s.ctx();
    let (arr, ready, started, out) = match (
        Array::<u64>::new(2),
        Event::new(),
        Event::new(),
        RawArray::<u64>::zeroed(1),
    ) {
        (Ok(a), Ok(r), Ok(st), Ok(o)) => (a, r, st, o),
        _ => return t.fail("cannot create the shared objects"),
    };
    let mut rng = Rng::new();
    let mut count = 0u64;
    for i in 0..iters {
        if s.out_of_time() {
            break;
        }
        let finish = rng.below(2) == 0;
        ready.clear();
        started.clear();
        let _ = out.set(0, 0);
        let mut holder = ctx.process(lock_holder, (arr.clone(), ready.clone(), finish));
        if let Err(e) = holder.start() {
            t.fail(format!("iteration {i}: holder start: {e}"));
            break;
        }
        if !ready.wait_timeout(HANG) {
            t.fail(format!("iteration {i}: the holder never took the lock"));
            let _ = holder.kill();
            let _ = holder.join();
            break;
        }
        let with_waiter = i % 2 == 1;
        let mut waiter = None;
        if with_waiter {
            let mut w = ctx.process(lock_waiter, (arr.clone(), started.clone(), out.clone()));
            if let Err(e) = w.start() {
                t.fail(format!("iteration {i}: waiter start: {e}"));
            } else {
                if !started.wait_timeout(HANG) {
                    t.fail(format!("iteration {i}: the waiter never started"));
                }
                waiter = Some(w);
            }
        }
        let _ = holder.kill();
        let _ = holder.join();
        t.check(holder.exitcode() == Some(-libc::SIGKILL), || {
            format!("iteration {i}: holder exit code {:?}", holder.exitcode())
        });
        if let Some(mut w) = waiter {
            match w.join_timeout(HANG) {
                Ok(Some(0)) => t.check(out.get(0) == Some(1), || {
                    format!("iteration {i}: the blocked acquirer did not get OwnerDied")
                }),
                Ok(None) => {
                    t.fail(format!(
                        "iteration {i}: deadlock: the blocked acquirer never got the lock"
                    ));
                    let _ = w.kill();
                    let _ = w.join();
                    break;
                }
                other => t.fail(format!("iteration {i}: waiter ended {other:?}")),
            }
        }
        let Some(mut g) = arr.lock_timeout(HANG) else {
            t.fail(format!("iteration {i}: deadlock: the lock never came back"));
            break;
        };
        if with_waiter {
            t.check(!g.owner_died(), || {
                format!("iteration {i}: OwnerDied reported twice for one death")
            });
        } else {
            t.check(g.owner_died(), || format!("iteration {i}: no OwnerDied"));
        }
        t.check(g[0] == count + 1, || {
            format!(
                "iteration {i}: counter {} after {} updates begun",
                g[0],
                count + 1
            )
        });
        let want = if finish { count + 1 } else { count };
        t.check(g[1] == want, || {
            format!(
                "iteration {i}: second counter {} (want {want}, finished: {finish})",
                g[1]
            )
        });
        // Repair what the holder left half done, as a recovering user does.
        count += 1;
        g[0] = count;
        g[1] = count;
        drop(g);
        t.iterations += 1;
    }
    let end = arr.lock_timeout(HANG).map(|g| g.owner_died());
    match end {
        Some(died) => t.check(!died, || "OwnerDied after a clean release".into()),
        None => t.fail("lock stuck at the end"),
    }
}

// ---- queues -------------------------------------------------------------------------------

/// Producer slots and consumer slots per round.
const QP: usize = 4;
const QC: usize = 4;
/// The parent's own slot, for the messages it drains at the end.
const PARENT_SLOT: usize = QC;

/// `(producer slot, sequence number, payload)`; `None` tells a consumer to stop.
type QMsg = Option<(u32, u32, Vec<u8>)>;

fn payload(p: u32, seq: u32, big_every: u32) -> Vec<u8> {
    // Mostly small messages; one in `big_every` spans several pipe records (64 KiB each).
    let len = if seq % big_every == 5 {
        150 * 1024
    } else {
        16 + (seq as usize * 37) % 300
    };
    (0..len)
        .map(|i| (p as usize * 31 + seq as usize * 7 + i) as u8)
        .collect()
}

/// What producers and consumers of a round record, in shared memory, so that it outlives
/// a killed process.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct QState {
    /// Per `(producer, seq)`: how many times it was received.
    counts: RawArray<u32>,
    /// Per producer: how many of its `put`s returned `Ok`.
    done: RawArray<u64>,
    /// Per producer: `put`s that returned an error (a loss reported, not silent).
    put_errs: RawArray<u64>,
    /// Per consumer: `get`s that returned an error.
    get_errs: RawArray<u64>,
    /// Per consumer: messages whose content was wrong.
    corrupt: RawArray<u64>,
    /// Per consumer: 1 between the start of a `get` and the record of what it returned.
    pending: RawArray<u64>,
    nseq: u32,
    /// One message in this many is large.
    big_every: u32,
}

fn q_producer((q, st, slot): (Queue<QMsg>, QState, u32)) {
    for seq in 0..st.nseq {
        match q.put(Some((slot, seq, payload(slot, seq, st.big_every)))) {
            Ok(()) => {
                let _ = st.done.set(slot as usize, u64::from(seq) + 1);
            }
            Err(_) => {
                let _ = st.put_errs.fetch_add(slot as usize, 1);
            }
        }
    }
}

fn q_consumer((q, st, slot): (Queue<QMsg>, QState, u32)) {
    let c = slot as usize;
    let mut errs = 0;
    loop {
        let _ = st.pending.set(c, 1);
        match q.get() {
            Ok(Some((p, seq, data))) => {
                // Recorded first (the window in which a kill loses a message this consumer
                // already had is then a few instructions), checked after.
                if p as usize >= QP || seq >= st.nseq {
                    let _ = st.corrupt.fetch_add(c, 1);
                    continue;
                }
                let _ = st
                    .counts
                    .fetch_add(p as usize * st.nseq as usize + seq as usize, 1);
                let _ = st.pending.set(c, 0);
                if data != payload(p, seq, st.big_every) {
                    let _ = st.corrupt.fetch_add(c, 1);
                }
            }
            Ok(None) => {
                let _ = st.pending.set(c, 0);
                return;
            }
            Err(_) => {
                let _ = st.get_errs.fetch_add(c, 1);
                errs += 1;
                if errs > 1000 {
                    let _ = st.pending.set(c, 0);
                    return;
                }
            }
        }
        let _ = st.pending.set(c, 0);
    }
}

/// Queues, pipe backend: producers killed mid-`put`, consumers mid-`get`.
pub fn queue_kills_pipe(s: &Scale, t: &mut Tally) {
    queue_kills(s, t, Backend::Pipe);
}

/// Queues, shared-memory backend: producers killed mid-`put`, consumers mid-`get`.
pub fn queue_kills_shm(s: &Scale, t: &mut Tally) {
    queue_kills(s, t, Backend::Shm);
}

fn queue_kills(s: &Scale, t: &mut Tally, backend: Backend) {
    let rounds = s.pick(3, 200);
    let nseq = s.pick(100, 400) as u32;
    let mut rng = Rng::new();
    let (mut tolerated_total, mut delivered) = (0u64, 0u64);
    for round in 0..rounds {
        if s.out_of_time() {
            break;
        }
        match queue_round(s, t, backend, nseq, &mut rng, round) {
            Some((tol, n)) => {
                tolerated_total += tol;
                delivered += n;
            }
            None => break,
        }
        t.iterations += 1;
    }
    t.note(format!(
        "{delivered} messages delivered; {tolerated_total} missing but explained (taken by a \
         consumer killed inside get, before it could record it; or an error reported)"
    ));
}

/// One round: 3 producers and 3 consumers, one of each killed at a random moment, a fourth
/// of each started afterwards. Returns (tolerated losses, messages delivered).
fn queue_round(
    s: &Scale,
    t: &mut Tally,
    backend: Backend,
    nseq: u32,
    rng: &mut Rng,
    round: u64,
) -> Option<(u64, u64)> {
    // Odd rounds use a bounded queue: producers then also die blocked in `put`, and the
    // queue must keep every place.
    let maxsize = if round % 2 == 1 { 8 } else { 0 };
    let q: Queue<QMsg> = match Queue::builder().backend(backend).maxsize(maxsize).build() {
        Ok(q) => q,
        Err(e) => {
            t.fail(format!("queue: {e}"));
            return None;
        }
    };
    let mk = |n: usize| RawArray::<u64>::zeroed(n);
    let st = QState {
        counts: match RawArray::<u32>::zeroed(QP * nseq as usize) {
            Ok(a) => a,
            Err(e) => {
                t.fail(format!("shared state: {e}"));
                return None;
            }
        },
        done: mk(QP).ok()?,
        put_errs: mk(QP).ok()?,
        get_errs: mk(QC + 1).ok()?,
        corrupt: mk(QC + 1).ok()?,
        pending: mk(QC + 1).ok()?,
        nseq,
        // Large messages are slow to copy in a debug build: fewer at the reduced size.
        big_every: s.pick(48, 16) as u32,
    };
    let ctx = s.ctx();
    let start = |f: fn((Queue<QMsg>, QState, u32)), slot: usize| -> Option<Process> {
        let mut p = ctx.process(f, (q.clone(), st.clone(), slot as u32));
        p.start().ok().map(|_| p)
    };
    let mut producers: Vec<Option<Process>> = (0..3).map(|i| start(q_producer, i)).collect();
    let mut consumers: Vec<Option<Process>> = (0..3).map(|i| start(q_consumer, i)).collect();
    if producers.iter().chain(&consumers).any(Option::is_none) {
        t.fail(format!("round {round}: a process did not start"));
    }
    // Kill a producer once traffic flows, at a random moment of its puts.
    let kp = rng.below(3) as usize;
    let kc = rng.below(3) as usize;
    let _ = probe::wait_until(HANG, || {
        st.done.get(kp).unwrap_or(0) > 0 || !alive_proc(&producers[kp])
    });
    std::thread::sleep(Duration::from_micros(rng.below(3000)));
    if let Some(p) = &producers[kp] {
        let _ = p.kill();
    }
    // And a consumer, at a random moment of its gets.
    std::thread::sleep(Duration::from_micros(rng.below(3000)));
    if let Some(c) = &consumers[kc] {
        let _ = c.kill();
    }
    // The survivors go on, and newcomers can use the queue.
    producers.push(start(q_producer, 3));
    consumers.push(start(q_consumer, 3));
    let mut killed_c_pending = 0;
    for (i, p) in producers.iter_mut().enumerate() {
        let Some(p) = p else { continue };
        match p.join_timeout(HANG) {
            Ok(Some(code)) => {
                if i != kp {
                    t.check(code == 0, || {
                        format!("round {round}: producer {i} exit {code}")
                    });
                }
            }
            _ => {
                t.fail(format!("round {round}: producer {i} hung in put"));
                let _ = p.kill();
                let _ = p.join();
            }
        }
    }
    if let Some(c) = &mut consumers[kc] {
        let _ = c.join_timeout(HANG);
        if c.exitcode() == Some(-libc::SIGKILL) {
            killed_c_pending = st.pending.get(kc).unwrap_or(0);
        }
    }
    // One stop message per consumer still running.
    let live: Vec<usize> = (0..consumers.len())
        .filter(|&i| consumers[i].as_ref().is_some_and(|c| c.is_alive()))
        .collect();
    for _ in &live {
        if let Err(e) = q.put(None) {
            t.fail(format!("round {round}: put after the kills: {e}"));
        }
    }
    for i in live {
        let c = consumers[i].as_mut().expect("live consumer");
        match c.join_timeout(HANG) {
            Ok(Some(0)) => {}
            Ok(Some(code)) => t.fail(format!("round {round}: consumer {i} exit {code}")),
            _ => {
                t.fail(format!("round {round}: consumer {i} hung in get"));
                let _ = c.kill();
                let _ = c.join();
            }
        }
    }
    // Whatever is left goes to the parent.
    let mut drained_errs = 0u64;
    loop {
        match q.try_get() {
            Ok(Some((p, seq, data))) => {
                if p as usize >= QP || seq >= nseq || data != payload(p, seq, st.big_every) {
                    let _ = st.corrupt.fetch_add(PARENT_SLOT, 1);
                } else {
                    let _ = st
                        .counts
                        .fetch_add(p as usize * nseq as usize + seq as usize, 1);
                }
            }
            Ok(None) => t.fail(format!("round {round}: a stop message too many")),
            Err(ChannelError::Empty) => break,
            Err(e) => {
                drained_errs += 1;
                if drained_errs > 100 {
                    t.fail(format!("round {round}: drain keeps failing: {e}"));
                    break;
                }
            }
        }
    }
    // The pipe backend's counters (qsize, and a bounded queue's places) can drift by one
    // when a kill lands between a system call and the counter update after it (see SOAK.md):
    // a known defect, counted in its own column rather than failing the run.
    let drift_note = |what: String| -> String {
        format!(
            "round {round}: {what} (producer killed after {} puts, consumer killed with a \
             get pending: {killed_c_pending})",
            st.done.get(kp).unwrap_or(0)
        )
    };
    if !(q.qsize() == 0 && q.empty()) {
        let what = format!(
            "drained queue reports qsize {} empty {}",
            q.qsize(),
            q.empty()
        );
        if backend == Backend::Pipe && q.qsize() <= 2 {
            t.known(drift_note(what));
        } else {
            t.fail(drift_note(what));
        }
    }
    if maxsize > 0 {
        // Every place is still there: exactly `maxsize` more items fit.
        let mut fit = 0;
        while fit <= maxsize && q.try_put(None).is_ok() {
            fit += 1;
        }
        if fit != maxsize {
            let what = format!("bounded queue holds {fit} items after the kills, not {maxsize}");
            if backend == Backend::Pipe && fit.abs_diff(maxsize) <= 2 {
                t.known(drift_note(what));
            } else {
                t.fail(drift_note(what));
            }
        }
        while q.try_get().is_ok() {}
    }
    // The accounts.
    let counts = st.counts.to_vec();
    let (mut missing, mut dup, mut phantom, mut delivered) = (0u64, 0u64, 0u64, 0u64);
    for p in 0..QP {
        let done = st.done.get(p).unwrap_or(0);
        let killed = p == kp;
        for seq in 0..nseq as u64 {
            let c = counts[p * nseq as usize + seq as usize];
            delivered += u64::from(c.min(1));
            if c > 1 {
                dup += 1;
            } else if seq < done && c == 0 {
                missing += 1;
            } else if c == 1 && seq >= done && !(killed && seq == done) {
                phantom += 1;
            }
        }
    }
    let corrupt: u64 = st.corrupt.to_vec().iter().sum();
    let reported: u64 = st.put_errs.to_vec().iter().sum::<u64>()
        + st.get_errs.to_vec().iter().sum::<u64>()
        + drained_errs;
    t.check(dup == 0, || {
        format!("round {round}: {dup} messages received twice")
    });
    t.check(phantom == 0, || {
        format!("round {round}: {phantom} messages received whose put never began")
    });
    t.check(corrupt == 0, || {
        format!("round {round}: {corrupt} corrupt messages")
    });
    let tolerated = killed_c_pending + reported;
    if missing > tolerated {
        t.lose(
            missing - tolerated,
            format!(
                "round {round} ({}): {missing} messages whose put returned never arrived \
                 ({killed_c_pending} explained by a consumer killed in get, {reported} errors)",
                method_name(s.method)
            ),
        );
    }
    Some((missing.min(tolerated), delivered))
}

fn alive_proc(p: &Option<Process>) -> bool {
    p.as_ref().is_some_and(|p| p.is_alive())
}

// ---- joinable queue -----------------------------------------------------------------------

fn jq_blocked_producer((q, started): (JoinableQueue<u32>, Event)) {
    started.set();
    // The queue is full: this blocks until the parent kills us.
    let _ = q.put(2);
}

/// JoinableQueue: a producer killed while blocked in `put` on a full queue must not leave
/// an unfinished task behind (else `join` waits forever for an item that was never put).
pub fn joinable_producer_killed(s: &Scale, t: &mut Tally) {
    let iters = s.pick(3, 100);
    for i in 0..iters {
        if s.out_of_time() {
            break;
        }
        for backend in [Backend::Pipe, Backend::Shm] {
            let q: JoinableQueue<u32> =
                match JoinableQueue::from_builder(Queue::builder().backend(backend).maxsize(1)) {
                    Ok(q) => q,
                    Err(e) => return t.fail(format!("queue: {e}")),
                };
            let Ok(started) = Event::new() else {
                return t.fail("event");
            };
            if let Err(e) = q.put(1) {
                return t.fail(format!("put: {e}"));
            }
            let mut p = s
                .ctx()
                .process(jq_blocked_producer, (q.clone(), started.clone()));
            if p.start().is_err() || !started.wait_timeout(HANG) {
                return t.fail("producer did not start");
            }
            // Let it reach the blocking put (not needed for correctness: killed earlier, it
            // simply never counted).
            std::thread::sleep(Duration::from_millis(5));
            let _ = p.kill();
            let _ = p.join();
            match q.get_timeout(HANG) {
                Ok(1) => {}
                other => t.fail(format!("iteration {i} {backend:?}: get {other:?}")),
            }
            let _ = q.task_done();
            match q.join_timeout(Duration::from_secs(10)) {
                Ok(true) => {}
                other => {
                    t.fail(format!(
                        "iteration {i} {backend:?}: join after the dead producer: {other:?} \
                         ({} unfinished tasks)",
                        q.unfinished_tasks()
                    ));
                    return;
                }
            }
            t.iterations += 1;
        }
    }
}

// ---- barrier ------------------------------------------------------------------------------

/// Waits at `b` and records the outcome in `out[slot]`: 1 passed, 2 broken.
fn barrier_party((b, out, slot): (Barrier, RawArray<u64>, u32)) {
    let r = b.wait_timeout(Duration::from_secs(30));
    let _ = out.set(slot as usize, if r.is_ok() { 1 } else { 2 });
}

/// Barrier: a party killed while waiting. A barrier of 3: party A waits and is killed, party
/// B arrives, then the parent. Asserted: nobody hangs, the barrier does not trip with only two
/// live parties (the dead one counted in): it breaks, and B and the parent both get
/// `BrokenBarrier`; after `reset` the barrier works again.
pub fn barrier_party_killed(s: &Scale, t: &mut Tally) {
    let iters = s.pick(2, 50);
    let ctx = s.ctx();
    for i in 0..iters {
        if s.out_of_time() {
            break;
        }
        let (Ok(b), Ok(out)) = (Barrier::new(3), RawArray::<u64>::zeroed(2)) else {
            return t.fail("shared state");
        };
        let mut a = ctx.process(barrier_party, (b.clone(), out.clone(), 0));
        if a.start().is_err() {
            return t.fail("start");
        }
        let (waiting, _) = probe::wait_until(HANG, || b.n_waiting() == 1);
        t.check(waiting, || format!("iteration {i}: party A never arrived"));
        let _ = a.kill();
        let _ = a.join();
        let mut c = ctx.process(barrier_party, (b.clone(), out.clone(), 1));
        if c.start().is_err() {
            return t.fail("start");
        }
        let _ = probe::wait_until(HANG, || b.n_waiting() >= 2 || !c.is_alive());
        let mine = b.wait_timeout(Duration::from_secs(30));
        match c.join_timeout(HANG) {
            Ok(Some(0)) => {}
            other => {
                t.fail(format!("iteration {i}: party B ended {other:?}"));
                let _ = c.kill();
                let _ = c.join();
                continue;
            }
        }
        let theirs = out.get(1).unwrap_or(0);
        t.check(theirs == if mine.is_ok() { 1 } else { 2 }, || {
            format!("iteration {i}: B and the parent disagree ({theirs}, {mine:?})")
        });
        t.check(mine.is_err(), || {
            format!("iteration {i}: the barrier tripped with 2 live parties of 3 (the dead party stayed counted)")
        });
        // After a reset, three live parties pass.
        b.reset();
        let mut d = ctx.process(barrier_party, (b.clone(), out.clone(), 0));
        let mut e = ctx.process(barrier_party, (b.clone(), out.clone(), 1));
        if d.start().is_err() || e.start().is_err() {
            return t.fail("start");
        }
        let again = b.wait_timeout(HANG);
        let _ = (d.join_timeout(HANG), e.join_timeout(HANG));
        t.check(again.is_ok() && out.to_vec() == [1, 1], || {
            format!(
                "iteration {i}: after reset: {again:?}, parties {:?}",
                out.to_vec()
            )
        });
        t.iterations += 1;
    }
}

// ---- parent death -------------------------------------------------------------------------

fn method_from(name: &str) -> StartMethod {
    match name {
        "fork" => StartMethod::Fork,
        "spawn" => StartMethod::Spawn,
        _ => StartMethod::ForkServer,
    }
}

/// The "main process" of the parent-death case: daemon children, a pool, a fork server and a
/// named segment; reports every pid it knows, then waits to be killed.
fn pd_main((method, shm_name, pids, ready): (String, String, RawArray<u32>, Event)) {
    let ctx = get_context(method_from(&method));
    let shm = SharedMemory::create(Some(&shm_name), 4096).expect("named segment");
    let mut known = Vec::new();
    let mut kids = Vec::new();
    for _ in 0..2 {
        let mut p = ctx.process(sleep_forever, ()).daemon(true);
        p.start().expect("daemon child");
        known.extend(p.pid());
        kids.push(p);
    }
    let mut fs = get_context(StartMethod::ForkServer)
        .process(sleep_forever, ())
        .daemon(true);
    fs.start().expect("forkserver child");
    known.extend(fs.pid());
    let pool = Pool::builder()
        .processes(2)
        .context(ctx)
        .build()
        .expect("pool");
    assert_eq!(
        pool.map(task, 0..10u64).expect("map"),
        (0..10).map(task).collect::<Vec<_>>()
    );
    known.extend(pool.worker_pids());
    known.extend(multiproc::spawn::forkserver_pid());
    for (i, p) in known.iter().enumerate() {
        let _ = pids.set(i, *p);
    }
    ready.set();
    sleep_forever(());
    drop((shm, kids, fs, pool));
}

/// Parent death: the main process `SIGKILL`ed with daemon children, a pool, a fork server
/// and a named segment: nothing of its tree and no name may be left.
pub fn parent_killed(s: &Scale, t: &mut Tally) {
    let iters = s.pick(1, 20);
    let mut worst = Duration::ZERO;
    let mut tree_size = 0;
    for i in 0..iters {
        if s.out_of_time() {
            break;
        }
        let name = format!("soak-pd-{}-{i}", std::process::id());
        let (Ok(pids), Ok(ready)) = (RawArray::<u32>::zeroed(16), Event::new()) else {
            return t.fail("shared state");
        };
        let mut main = s.ctx().process(
            pd_main,
            (
                method_name(s.method).to_string(),
                name.clone(),
                pids.clone(),
                ready.clone(),
            ),
        );
        if let Err(e) = main.start() {
            return t.fail(format!("start: {e}"));
        }
        if !ready.wait_timeout(HANG) {
            t.fail(format!(
                "iteration {i}: the main process never got ready ({:?})",
                main.exitcode()
            ));
            let _ = main.kill();
            let _ = main.join();
            return;
        }
        let main_pid = main.pid().unwrap_or(0);
        let mut tree: Vec<u32> = pids.to_vec().into_iter().filter(|&p| p != 0).collect();
        for d in probe::descendants(main_pid) {
            if !tree.contains(&d) {
                tree.push(d);
            }
        }
        // The soak process's own fork server is not part of the tree (a forked main inherits
        // the right to use it); the main's children started through it are.
        let own_server = multiproc::spawn::forkserver_pid();
        tree.retain(|&p| Some(p) != own_server && p != std::process::id());
        t.check(
            std::path::Path::new(&format!("/dev/shm/{name}")).exists(),
            || format!("iteration {i}: the named segment was never created"),
        );
        tree_size = tree_size.max(tree.len());
        t.check(tree.len() >= 5, || {
            format!(
                "iteration {i}: only {} processes in the tree: {tree:?}",
                tree.len()
            )
        });
        let t0 = Instant::now();
        let _ = main.kill();
        let _ = main.join();
        let shm_path = format!("/dev/shm/{name}");
        let (clean, took) = probe::wait_until(Duration::from_secs(10), || {
            tree.iter().all(|&p| !probe::alive(p)) && !std::path::Path::new(&shm_path).exists()
        });
        let took = took.min(t0.elapsed());
        worst = worst.max(took);
        if !clean {
            let left: Vec<u32> = tree.iter().copied().filter(|&p| probe::alive(p)).collect();
            let name_left = std::path::Path::new(&shm_path).exists();
            t.leak(
                left.len() as u64 + u64::from(name_left),
                format!(
                    "iteration {i}: 10 s after the kill: processes {left:?} alive, name left: {name_left}"
                ),
            );
            for p in left {
                probe::kill(p, libc::SIGKILL);
            }
            let _ = std::fs::remove_file(&shm_path);
        } else if took > Duration::from_secs(5) {
            t.fail(format!(
                "iteration {i}: the tree took {took:?} to go (bound: 2 s, asserted 5 s)"
            ));
        }
        t.iterations += 1;
    }
    t.note(format!(
        "slowest teardown {:.0} ms, up to {tree_size} processes besides the main one",
        worst.as_secs_f64() * 1e3
    ));
}

// ---- fork server --------------------------------------------------------------------------

fn forkserver_start_ok(t: &mut Tally, what: &str, x: u64) -> bool {
    match get_context(StartMethod::ForkServer).spawn(task, x).join() {
        Ok(v) if v == task(x) => true,
        Ok(v) => {
            t.fail(format!("{what}: wrong result {v}"));
            false
        }
        Err(e) => {
            t.fail(format!("{what}: {e}"));
            false
        }
    }
}

/// The fork server killed while idle: the next start succeeds.
pub fn forkserver_killed_idle(s: &Scale, t: &mut Tally) {
    let iters = s.pick(3, 100);
    for i in 0..iters {
        if s.out_of_time() {
            break;
        }
        if !forkserver_start_ok(t, "start before the kill", i) {
            return;
        }
        let Some(pid) = multiproc::spawn::forkserver_pid() else {
            return t.fail("no fork server pid after a ForkServer start");
        };
        probe::kill(pid, libc::SIGKILL);
        let (gone, _) = probe::wait_until(HANG, || !probe::alive(pid));
        t.check(gone, || format!("fork server {pid} survived SIGKILL"));
        if !forkserver_start_ok(t, &format!("iteration {i}: start after the kill"), i + 1) {
            return;
        }
        t.check(multiproc::spawn::forkserver_pid() != Some(pid), || {
            "the dead fork server is still reported".into()
        });
        t.iterations += 1;
    }
}

/// The fork server killed while it forks children for another thread: starts in flight may
/// fail with an error (never hang), and the next start succeeds.
pub fn forkserver_killed_forking(s: &Scale, t: &mut Tally) {
    let iters = s.pick(3, 100);
    let mut rng = Rng::new();
    let mut inflight_errors = 0u64;
    for i in 0..iters {
        if s.out_of_time() {
            break;
        }
        if !forkserver_start_ok(t, "start before the kill", i) {
            return;
        }
        let Some(pid) = multiproc::spawn::forkserver_pid() else {
            return t.fail("no fork server pid");
        };
        let stop = AtomicBool::new(false);
        let (errs, wrong) = std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                let (mut errs, mut wrong, mut k) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::Acquire) {
                    match get_context(StartMethod::ForkServer).spawn(task, k).join() {
                        Ok(v) if v == task(k) => {}
                        Ok(_) => wrong += 1,
                        Err(_) => errs += 1,
                    }
                    k += 1;
                }
                (errs, wrong)
            });
            std::thread::sleep(Duration::from_millis(rng.below(40)));
            probe::kill(pid, libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(20));
            stop.store(true, Ordering::Release);
            h.join().unwrap_or((0, 1))
        });
        inflight_errors += errs;
        t.check(wrong == 0, || {
            format!("iteration {i}: {wrong} wrong results")
        });
        if !forkserver_start_ok(t, &format!("iteration {i}: start after the kill"), i + 7) {
            return;
        }
        t.iterations += 1;
    }
    t.note(format!(
        "{inflight_errors} starts in flight at a kill failed with an error"
    ));
}
