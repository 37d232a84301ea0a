//! The tour: a narrated run through multiproc, every layer used across real processes under
//! every start method, with a short timing table and a check of everything it shows.
//!
//! ```sh
//! cargo run --release --example tour
//! ```
//!
//! Each line marked `ok` is a check that ran and held; the program exits non-zero if one did
//! not. Timings are medians on this machine: compare them with each other, not with another
//! machine's.

use multiproc::prelude::*;
use multiproc::{Address, Backend, ChannelError, Client, Listener, RawArray, SharedMemory};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

// ---- what the children run (plain functions: they cross processes by name) ----

fn square(x: i64) -> i64 {
    x * x
}

fn exit_with(code: i32) {
    match code {
        0 => {}
        1 => panic!("a deliberate panic in a child"),
        _ => std::process::exit(code),
    }
}

fn sleep_forever(_: ()) {
    std::thread::sleep(Duration::from_secs(3600));
}

fn double_all(a: RawArray<i32>) {
    for i in 0..a.len() {
        let v = a.get(i).expect("index in range");
        a.set(i, v * 2).expect("index in range");
    }
}

fn write_named(name: String) {
    let shm = SharedMemory::open(&name).expect("attach by name");
    shm.write_at(0, b"hello from a child").expect("in bounds");
}

fn count((counter, n): (Value<i32>, u32)) {
    for _ in 0..n {
        *counter.lock() += 1;
    }
}

fn die_holding(lock: Lock) {
    let guard = lock.acquire();
    std::mem::forget(guard);
    std::process::abort(); // dies holding the lock
}

fn wait_then_signal((event, done): (Event, Semaphore)) {
    event.wait();
    done.release().expect("unbounded semaphore");
}

fn barrier_rounds((barrier, rounds, tally): (Barrier, u32, Value<u32>)) {
    for _ in 0..rounds {
        if barrier.wait().expect("barrier not broken") == 0 {
            *tally.lock() += 1;
        }
    }
}

fn send_hello(conn: Connection) {
    conn.send(&"hello".to_string()).expect("parent alive");
}

/// Echoes numbers until `u64::MAX` (a sentinel rather than end-of-file: a forked child also
/// holds a copy of the parent's end, so it would never see one).
fn echo(conn: Connection) {
    while let Ok(v) = conn.recv::<u64>() {
        if v == u64::MAX || conn.send(&v).is_err() {
            break;
        }
    }
}

/// Squares, except that item 3 takes its worker down with it.
fn square_or_die(x: i64) -> i64 {
    if x == 3 {
        std::process::abort();
    }
    x * x
}

/// A CPU-bound task: the seed's sum, made expensive enough to measure.
fn cpu_sum(n: u64) -> u64 {
    (0..n).fold(0u64, |acc, i| acc.wrapping_add(i * i % 7))
}

fn producer(q: Queue<Option<u32>>) {
    for i in 0..5 {
        q.put(Some(i)).expect("queue open");
    }
    q.put(None).expect("queue open");
}

fn queue_echo((inbox, outbox): (Queue<u64>, Queue<u64>)) {
    while let Ok(v) = inbox.get() {
        if v == u64::MAX {
            break;
        }
        outbox.put(v).expect("queue open");
    }
}

fn add_to_raw((v, n): (RawValue<i64>, u32)) {
    for _ in 0..n {
        v.fetch_add(1);
    }
}

fn rlock_twice((rl, depth): (RLock, Value<u64>)) {
    let outer = rl.acquire();
    let inner = rl.acquire(); // re-entrant for its owner
    depth.set(rl.depth());
    drop(inner);
    drop(outer);
}

fn announce((cond, mailbox): (Condition, Value<u32>)) {
    for i in 1..=5 {
        let _guard = cond.acquire();
        mailbox.set(i);
        cond.notify_all().expect("held by this process");
    }
}

fn add_to_all(arr: Array<i64>) {
    for _ in 0..1000 {
        for x in arr.lock().iter_mut() {
            *x += 1;
        }
    }
}

fn do_tasks((q, done): (JoinableQueue<u32>, Value<u32>)) {
    while let Ok(x) = q.get() {
        if x != u32::MAX {
            *done.lock() += x;
        }
        q.task_done().expect("one task_done per get");
        if x == u32::MAX {
            break;
        }
    }
}

fn knock((path, key): (String, Vec<u8>)) {
    let refused = matches!(
        Client::connect(std::path::PathBuf::from(&path), Some(b"not the key")),
        Err(ChannelError::Authentication(_))
    );
    let conn = Client::connect(std::path::PathBuf::from(&path), Some(&key)).expect("right key");
    conn.send(&refused).expect("listener alive");
}

// ---- narration ----

struct Tour {
    colour: bool,
    checks: usize,
    failures: Vec<String>,
    timings: Vec<(String, String)>,
}

impl Tour {
    /// A transient status line, on a terminal only (the next output line replaces it).
    fn progress(&self, what: &str) {
        if self.colour {
            use std::io::Write;
            print!("\r\x1b[2K  \x1b[2m… {what}\x1b[0m");
            let _ = std::io::stdout().flush();
        }
    }

    fn clear_progress(&self) {
        if self.colour {
            print!("\r\x1b[2K");
        }
    }

    fn section(&self, title: &str) {
        self.clear_progress();
        if self.colour {
            println!("\n\x1b[1m{title}\x1b[0m");
        } else {
            println!("\n{title}");
        }
    }

    fn check(&mut self, ok: bool, what: String) {
        self.clear_progress();
        self.checks += 1;
        let mark = match (ok, self.colour) {
            (true, true) => "\x1b[32mok\x1b[0m  ",
            (true, false) => "ok  ",
            (false, true) => "\x1b[31mFAIL\x1b[0m",
            (false, false) => "FAIL",
        };
        println!("  {mark} {what}");
        if !ok {
            self.failures.push(what);
        }
    }

    fn result<T, E: std::fmt::Display>(&mut self, r: Result<T, E>, what: &str) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.check(false, format!("{what}: {e}"));
                None
            }
        }
    }

    fn timing(&mut self, what: &str, value: String) {
        self.timings.push((what.to_string(), value));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn main() {
    multiproc::init(); // first line: in a child it runs the target and exits

    let started = Instant::now();
    let mut t = Tour {
        colour: std::io::stdout().is_terminal(),
        checks: 0,
        failures: Vec::new(),
        timings: Vec::new(),
    };
    println!("multiproc tour: Python's multiprocessing in Rust, across real processes");
    println!(
        "machine: {} cpus usable, start methods {:?}",
        cpu_count(),
        get_all_start_methods()
    );

    processes(&mut t);
    shared_memory(&mut t);
    synchronization(&mut t);
    messaging(&mut t);
    pool(&mut t);
    more(&mut t);
    timings(&mut t);

    t.clear_progress();
    t.section("Timings (medians on this machine; compare them with each other)");
    let w = t.timings.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &t.timings {
        println!("  {k:<w$}  {v}");
    }

    println!();
    let secs = started.elapsed().as_secs_f64();
    if t.failures.is_empty() {
        println!("all {} checks passed in {secs:.1} s", t.checks);
    } else {
        println!(
            "{} of {} checks FAILED in {secs:.1} s: {:?}",
            t.failures.len(),
            t.checks,
            t.failures
        );
        std::process::exit(1);
    }
}

fn processes(t: &mut Tour) {
    t.section("1. Processes: one API, three start methods (proc-spawn)");
    for m in get_all_start_methods() {
        let ctx = get_context(m);
        let r = ctx.spawn(square, 7).join();
        if let Some(v) = t.result(r, &format!("{m:?}: spawn(square, 7)")) {
            t.check(v == 49, format!("{m:?}: a child computed square(7) = {v}"));
        }
    }
    let ctx = get_context(StartMethod::ForkServer);
    let mut codes = Vec::new();
    for code in [0, 1, 3] {
        let mut p = ctx.process(exit_with, code);
        if p.start().is_ok() && p.join().is_ok() {
            codes.push(p.exitcode());
        }
    }
    let mut p = ctx.process(sleep_forever, ());
    if p.start().is_ok() && p.kill().is_ok() && p.join().is_ok() {
        codes.push(p.exitcode());
    }
    t.check(
        codes == [Some(0), Some(1), Some(3), Some(-9)],
        format!("exit codes as in Python: clean 0, panic 1, exit(3) 3, SIGKILL -9: {codes:?}"),
    );
}

fn shared_memory(t: &mut Tour) {
    t.section("2. Shared memory (ipc-shm)");
    for m in get_all_start_methods() {
        let Some(a) = t.result(RawArray::from_slice(&[1i32, 2, 3, 4, 5]), "RawArray") else {
            return;
        };
        let mut p = get_context(m).process(double_all, a.clone());
        let ran = p.start().is_ok() && p.join().is_ok() && p.exitcode() == Some(0);
        t.check(
            ran && a.to_vec() == [2, 4, 6, 8, 10],
            format!(
                "{m:?}: RawArray [1, 2, 3, 4, 5] doubled by a child: {:?}",
                a.to_vec()
            ),
        );
    }
    let Some(shm) = t.result(SharedMemory::create(None, 64), "SharedMemory::create") else {
        return;
    };
    let mut p = Process::new(write_named, shm.name().to_string());
    let ran = p.start().is_ok() && p.join().is_ok() && p.exitcode() == Some(0);
    let mut buf = [0u8; 18];
    let read = shm.read_at(0, &mut buf).is_ok();
    t.check(
        ran && read && &buf == b"hello from a child",
        format!(
            "SharedMemory: a child attached by name and wrote {:?}",
            String::from_utf8_lossy(&buf)
        ),
    );
    let unlinked = shm.unlink().is_ok() && SharedMemory::open(shm.name()).is_err();
    t.check(
        unlinked,
        "SharedMemory::unlink removed the name".to_string(),
    );
}

fn synchronization(t: &mut Tour) {
    t.section("3. Synchronization on futexes in shared memory (ipc-sync)");
    for m in get_all_start_methods() {
        sync_under(t, m);
    }
}

fn sync_under(t: &mut Tour, m: StartMethod) {
    let ctx = get_context(m);
    let Some(counter) = t.result(Value::new(0i32), "Value::new") else {
        return;
    };
    let mut procs: Vec<Process> = (0..4)
        .map(|_| ctx.process(count, (counter.clone(), 100_000)))
        .collect();
    let ok =
        procs.iter_mut().all(|p| p.start().is_ok()) && procs.iter_mut().all(|p| p.join().is_ok());
    t.check(
        ok && counter.get() == 400_000,
        format!(
            "{m:?}: Value<i32>, 4 processes x 100000 locked increments = {}",
            counter.get()
        ),
    );

    let Some(lock) = t.result(Lock::new(), "Lock::new") else {
        return;
    };
    let mut p = ctx.process(die_holding, lock.clone());
    let _ = p.start().and_then(|_| p.join());
    match lock.acquire_timeout(Duration::from_secs(10)) {
        Some(g) => t.check(
            g.owner_died(),
            format!(
                "{m:?}: a Lock's holder died (exit code {:?}); the next acquirer got it, owner_died() = {}",
                p.exitcode(),
                g.owner_died()
            ),
        ),
        None => t.check(false, format!("{m:?}: a dead holder's Lock was not recovered")),
    }

    let (Some(event), Some(done)) = (
        t.result(Event::new(), "Event::new"),
        t.result(Semaphore::new(0), "Semaphore::new"),
    ) else {
        return;
    };
    let mut waiters: Vec<Process> = (0..3)
        .map(|_| ctx.process(wait_then_signal, (event.clone(), done.clone())))
        .collect();
    let started = waiters.iter_mut().all(|w| w.start().is_ok());
    event.set();
    let woke = (0..3)
        .filter(|_| done.acquire_timeout(Duration::from_secs(10)))
        .count();
    for w in &mut waiters {
        let _ = w.join();
    }
    t.check(
        started && woke == 3,
        format!("{m:?}: one Event::set() woke {woke} waiting processes, each released a Semaphore"),
    );

    let (Some(barrier), Some(tally)) = (
        t.result(Barrier::new(3), "Barrier::new"),
        t.result(Value::new(0u32), "Value::new"),
    ) else {
        return;
    };
    let mut parties: Vec<Process> = (0..3)
        .map(|_| ctx.process(barrier_rounds, (barrier.clone(), 100, tally.clone())))
        .collect();
    let ok = parties.iter_mut().all(|p| p.start().is_ok())
        && parties
            .iter_mut()
            .all(|p| p.join().is_ok() && p.exitcode() == Some(0));
    t.check(
        ok && tally.get() == 100,
        format!(
            "{m:?}: 3 processes passed a Barrier(3) together {} times",
            tally.get()
        ),
    );
}

fn messaging(t: &mut Tour) {
    t.section("4. Messaging (ipc-channel-core)");
    for m in get_all_start_methods() {
        let ctx = get_context(m);
        if let Some((a, b)) = t.result(Pipe::new(), "Pipe::new") {
            let mut p = ctx.process(send_hello, b);
            let ok = p.start().is_ok();
            let got = a.recv_timeout::<String>(Duration::from_secs(10));
            let _ = p.join();
            t.check(
                ok && got.as_deref().ok() == Some("hello"),
                format!("{m:?}: Pipe, {:?} from a child", got.unwrap_or_default()),
            );
        }
        for backend in [Backend::Shm, Backend::Pipe] {
            let Some(q) = t.result(
                Queue::builder().backend(backend).build::<Option<u32>>(),
                "Queue::builder().build()",
            ) else {
                continue;
            };
            let mut p = ctx.process(producer, q.clone()).name("producer");
            let ok = p.start().is_ok();
            let mut got = Vec::new();
            while let Ok(Some(i)) = q.get_timeout(Duration::from_secs(10)) {
                got.push(i);
            }
            let _ = p.join();
            t.check(
                ok && got == [0, 1, 2, 3, 4] && p.exitcode() == Some(0),
                format!("{m:?}: Queue ({backend:?} backend), a producer put {got:?} then the None sentinel"),
            );
        }
    }
}

fn pool(t: &mut Tour) {
    t.section("5. Pool (proc-pool)");
    let Some(pool) = t.result(Pool::new(2), "Pool::new") else {
        return;
    };
    if let Some(v) = t.result(pool.map(square, 0..10), "Pool::map") {
        t.check(
            v == [0, 1, 4, 9, 16, 25, 36, 49, 64, 81],
            format!("Pool(2).map(square, 0..10) = {v:?}"),
        );
    }
    let results: Vec<_> = pool.imap_chunked(square_or_die, 0..8, 1).collect();
    let lost: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Err(multiproc::PoolError::WorkerLost { .. })))
        .map(|(i, _)| i)
        .collect();
    let others_ok = results
        .iter()
        .enumerate()
        .all(|(i, r)| i == 3 || r.as_ref().ok() == Some(&((i * i) as i64)));
    t.check(
        lost == [3] && others_ok,
        format!("a worker died mid-map (abort): only its task failed, with WorkerLost: {lost:?}"),
    );
    if let Some(v) = t.result(pool.map(square, 0..4), "Pool::map after a lost worker") {
        t.check(
            v == [0, 1, 4, 9],
            format!("the pool replaced the worker and maps again: {v:?}"),
        );
    }
    let r = pool.apply_async(square, 7);
    t.check(
        r.get_timeout(Duration::from_secs(10)).ok() == Some(49),
        "apply_async(square, 7).get() = 49".to_string(),
    );

    // Timings: apply_async round trip, and speed-up of a CPU-bound map on 2 workers.
    let mut v = Vec::new();
    for _ in 0..500 {
        let s = Instant::now();
        if pool.apply_async(square, 3).get().is_err() {
            break;
        }
        v.push(s.elapsed());
    }
    if v.len() == 500 {
        t.timing("Pool apply_async round trip", fmt_duration(median(v)));
    }
    t.progress("timing a CPU-bound map, serially and on 2 workers");
    let work = vec![3_000_000u64; 8];
    let s = Instant::now();
    let serial: Vec<u64> = work.iter().map(|n| cpu_sum(*n)).collect();
    let serial_time = s.elapsed();
    let s = Instant::now();
    let parallel = pool.map_chunked(cpu_sum, work, 1);
    let parallel_time = s.elapsed();
    t.check(
        parallel.as_ref().ok() == Some(&serial),
        "a CPU-bound map on 2 workers gives the serial results".to_string(),
    );
    t.timing(
        "Pool speed-up, CPU-bound map, 2 workers",
        format!(
            "{:.2}x ({} serial, {} pooled)",
            serial_time.as_secs_f64() / parallel_time.as_secs_f64(),
            fmt_duration(serial_time),
            fmt_duration(parallel_time)
        ),
    );
}

fn more(t: &mut Tour) {
    t.section("6. The rest of the family (default start method)");
    if let Some(v) = t.result(RawValue::new(0i64), "RawValue::new") {
        let mut ps: Vec<Process> = (0..2)
            .map(|_| Process::new(add_to_raw, (v.clone(), 50_000)))
            .collect();
        let ok =
            ps.iter_mut().all(|p| p.start().is_ok()) && ps.iter_mut().all(|p| p.join().is_ok());
        t.check(
            ok && v.load() == 100_000,
            format!(
                "RawValue: 2 processes x 50000 lock-free fetch_add = {}",
                v.load()
            ),
        );
    }
    if let (Some(rl), Some(depth)) = (
        t.result(RLock::new(), "RLock::new"),
        t.result(Value::new(0u64), "Value::new"),
    ) {
        let mut p = Process::new(rlock_twice, (rl.clone(), depth.clone()));
        let ok = p.start().is_ok() && p.join().is_ok() && p.exitcode() == Some(0);
        t.check(
            ok && depth.get() == 2 && !rl.is_locked(),
            format!(
                "RLock: a child took it twice (depth {}), released it twice",
                depth.get()
            ),
        );
    }
    if let (Some(cond), Some(mailbox)) = (
        t.result(Condition::new(), "Condition::new"),
        t.result(Value::new(0u32), "Value::new"),
    ) {
        let mut p = Process::new(announce, (cond.clone(), mailbox.clone()));
        let started = p.start().is_ok();
        let mut g = cond.acquire();
        let seen = cond
            .wait_for_timeout(&mut g, || mailbox.get() == 5, Duration::from_secs(10))
            .unwrap_or(false);
        drop(g);
        let _ = p.join();
        t.check(
            started && seen,
            format!(
                "Condition: woken until another process's value reached {}",
                mailbox.get()
            ),
        );
    }
    if let Some(arr) = t.result(Array::<i64>::new(8), "Array::new") {
        let mut ps: Vec<Process> = (0..4)
            .map(|_| Process::new(add_to_all, arr.clone()))
            .collect();
        let ok =
            ps.iter_mut().all(|p| p.start().is_ok()) && ps.iter_mut().all(|p| p.join().is_ok());
        t.check(
            ok && arr.to_vec() == [4000; 8],
            format!(
                "Array<i64>: 4 processes x 1000 locked passes over 8 counters = {:?}",
                arr.to_vec()
            ),
        );
    }
    if let (Some(q), Some(done)) = (
        t.result(JoinableQueue::<u32>::new(), "JoinableQueue::new"),
        t.result(Value::new(0u32), "Value::new"),
    ) {
        let mut p = Process::new(do_tasks, (q.clone(), done.clone()));
        let started = p.start().is_ok();
        for i in 1..=10 {
            let _ = q.put(i);
        }
        let _ = q.put(u32::MAX);
        let joined = q.join().is_ok();
        let _ = p.join();
        t.check(
            started && joined && done.get() == 55,
            format!(
                "JoinableQueue: join() returned once a worker marked 11 tasks done (sum {})",
                done.get()
            ),
        );
    }
    let key = b"tour secret".to_vec();
    if let Some(listener) = t.result(Listener::bind_temp(Some(&key)), "Listener::bind_temp") {
        if let Address::Unix(path) = listener.address() {
            let mut p = Process::new(knock, (path.display().to_string(), key.clone()));
            let started = p.start().is_ok();
            let first = listener.accept();
            let second = listener.accept();
            let refused = second.as_ref().ok().and_then(|c| c.recv::<bool>().ok());
            let _ = p.join();
            t.check(
                started
                    && matches!(first, Err(ChannelError::Authentication(_)))
                    && refused == Some(true),
                "Listener/Client: a wrong authkey refused on both sides, the right one let in"
                    .to_string(),
            );
        }
    }
    if let Some(tp) = t.result(ThreadPool::new(2), "ThreadPool::new") {
        let offset = 2i64;
        let v = tp.map(move |x: i64| x + offset, 0..3);
        t.check(
            v.as_ref().ok() == Some(&vec![2, 3, 4]),
            format!(
                "ThreadPool: a capturing closure mapped over 0..3 = {:?}",
                v.unwrap_or_default()
            ),
        );
    }
    if let Some(pool) = t.result(Pool::new(2), "Pool::new") {
        let v: Result<Vec<i64>, _> = pool.imap(square, 0..8).collect();
        t.check(
            v.as_ref().ok() == Some(&vec![0, 1, 4, 9, 16, 25, 36, 49]),
            format!(
                "Pool::imap yields in input order: {:?}",
                v.unwrap_or_default()
            ),
        );
    }
}

fn timings(t: &mut Tour) {
    for m in get_all_start_methods() {
        t.progress(&format!("timing process start+join under {m:?}"));
        let ctx = get_context(m);
        let mut v = Vec::new();
        for _ in 0..7 {
            let s = Instant::now();
            if ctx.spawn(square, 3).join().is_err() {
                t.check(false, format!("{m:?}: start+join for timing"));
                return;
            }
            v.push(s.elapsed());
        }
        t.timing(
            &format!("process start+join, {m:?}"),
            fmt_duration(median(v)),
        );
    }

    t.progress("timing Pipe round trips");
    if let Some((a, b)) = t.result(Pipe::new(), "Pipe::new") {
        let mut p = Process::new(echo, b);
        if p.start().is_ok() {
            let mut v = Vec::new();
            for i in 0..2000u64 {
                let s = Instant::now();
                if a.send(&i).is_err() || a.recv::<u64>().ok() != Some(i) {
                    break;
                }
                v.push(s.elapsed());
            }
            let _ = a.send(&u64::MAX);
            let _ = p.join();
            if v.len() == 2000 {
                t.timing("Pipe round trip (small message)", fmt_duration(median(v)));
            } else {
                t.check(false, "Pipe echo for timing".into());
            }
        }
    }

    t.progress("timing Queue round trips");
    if let (Some(inbox), Some(outbox)) = (
        t.result(Queue::<u64>::new(), "Queue::new"),
        t.result(Queue::<u64>::new(), "Queue::new"),
    ) {
        let mut p = Process::new(queue_echo, (inbox.clone(), outbox.clone()));
        if p.start().is_ok() {
            let mut v = Vec::new();
            for i in 0..2000u64 {
                let s = Instant::now();
                if inbox.put(i).is_err()
                    || outbox.get_timeout(Duration::from_secs(10)).ok() != Some(i)
                {
                    break;
                }
                v.push(s.elapsed());
            }
            let _ = inbox.put(u64::MAX);
            let _ = p.join();
            if v.len() == 2000 {
                t.timing("Queue round trip (shm ring)", fmt_duration(median(v)));
            } else {
                t.check(false, "Queue echo for timing".into());
            }
        }
    }
}
