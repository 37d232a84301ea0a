//! Cross-process tests of `Pool`, under every start method (`IPC_START_METHOD` narrows a run
//! to one): the seed programs, errors, callbacks, lifecycle, initializer, worker replacement,
//! dead workers, lazy `imap`, Ctrl-C.
//!
//! Nothing here depends on timing to pass: a "slow" task sleeps, but only orders and values are
//! asserted; where an order matters, tasks wait on shared events or barriers instead.

use std::cell::Cell as StdCell;
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc_sync::{Barrier, Event, Value};
use proc_pool::{Callbacks, Error, Pool};
use proc_spawn::{get_context, StartMethod};
use rustix::process::{Pid, Signal};

// ---------------------------------------------------------------------------------------------
// Helpers

fn methods() -> Vec<StartMethod> {
    match std::env::var("IPC_START_METHOD") {
        Ok(v) if !v.is_empty() => vec![v.parse().unwrap_or_else(|_| {
            panic!("IPC_START_METHOD={v}: expected fork, spawn or forkserver")
        })],
        _ => proc_spawn::get_all_start_methods(),
    }
}

fn pool(m: StartMethod, n: usize) -> Pool {
    Pool::builder()
        .processes(n)
        .context(get_context(m))
        .build()
        .unwrap_or_else(|e| panic!("Pool({n}) under {m}: {e}"))
}

fn kill(pid: u32, sig: Signal) {
    let pid = Pid::from_raw(pid as i32).expect("a pid");
    rustix::process::kill_process(pid, sig).expect("kill");
}

/// Waits (at most 30 s) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------------------
// Task functions (they run in the workers)

fn square(x: i64) -> i64 {
    x * x
}

fn mul(a: i64, b: i64) -> i64 {
    a * b
}

fn add3(a: i64, b: i64, c: u8) -> i64 {
    a + b + i64::from(c)
}

fn add4(a: i64, b: i64, c: i64, d: String) -> String {
    format!("{}{d}", a + b + c)
}

fn my_name(_: ()) -> (String, bool) {
    let me = proc_spawn::current_process();
    (me.name().to_string(), me.daemon())
}

fn my_pid(_: ()) -> u32 {
    std::process::id()
}

fn slow_square(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(if x == 0 { 300 } else { 30 }));
    x * x
}

fn sleepy_square(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(200));
    x * x
}

fn checked_div((a, b): (i64, i64)) -> i64 {
    if b == 0 {
        panic!("division of {a} by zero");
    }
    a / b
}

fn panic_on_three(x: i64) -> i64 {
    if x % 10 == 3 {
        panic!("item {x} is unlucky");
    }
    x
}

/// Which worker ran it, and how many items that worker process has run so far.
fn pid_and_count(_: u32) -> (u32, u32) {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    (std::process::id(), COUNT.fetch_add(1, Ordering::SeqCst) + 1)
}

fn pid_after_barrier(b: Barrier) -> u32 {
    b.wait_timeout(Duration::from_secs(60))
        .expect("four tasks ran at once, one per worker");
    std::process::id()
}

/// Reports its pid, then blocks until the event is set.
fn report_then_block((pid_out, release): (Value<u32>, Event)) -> u32 {
    pid_out.set(std::process::id());
    release.wait();
    1
}

fn wait_for_event(e: Event) -> String {
    e.wait();
    "waited".into()
}

/// Kills its own worker for item `x == victim`; sleeps `micros` first.
fn double_or_die((x, victim, micros): (u32, u32, u64)) -> u32 {
    std::thread::sleep(Duration::from_micros(micros));
    if x == victim {
        kill(std::process::id(), Signal::KILL);
        std::thread::sleep(Duration::from_secs(60));
    }
    x * 2
}

fn abort_task(_: ()) -> u32 {
    std::process::abort()
}

fn exit_task(code: i32) -> u32 {
    std::process::exit(code)
}

static INIT_VALUE: AtomicU32 = AtomicU32::new(0);

fn init_global((v, counter): (u32, Value<u32>)) {
    INIT_VALUE.store(v, Ordering::SeqCst);
    *counter.lock() += 1;
}

fn read_global(_: ()) -> u32 {
    INIT_VALUE.load(Ordering::SeqCst)
}

fn init_panics(msg: String) {
    panic!("{msg}");
}

// ---------------------------------------------------------------------------------------------
// Tests

fn test_seed_map_squares() {
    for m in methods() {
        let p = pool(m, 4);
        assert_eq!(p.processes(), 4);
        assert_eq!(p.start_method(), m);
        // Workers are daemons named like Python's (`ForkPoolWorker-1`, ...).
        let (name, daemon) = p.apply(my_name, ()).unwrap();
        let prefix = match m {
            StartMethod::Fork => "ForkPoolWorker-",
            StartMethod::Spawn => "SpawnPoolWorker-",
            StartMethod::ForkServer => "ForkServerPoolWorker-",
        };
        assert!(name.starts_with(prefix), "{m}: {name}");
        assert!(daemon);
        assert_eq!(p.worker_pids().len(), 4);
        assert_eq!(
            p.map(square, 0..10).unwrap(),
            vec![0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
        );
        let serial: Vec<i64> = (0..100).map(square).collect();
        assert_eq!(p.map_chunked(square, 0..100, 20).unwrap(), serial);
        assert_eq!(p.map(square, 0..100).unwrap(), serial);
        // starmap: Python's mul over zip(range(10), range(9, -1, -1)).
        let pairs: Vec<(i64, i64)> = (0..10).zip((0..10).rev()).collect();
        let expect: Vec<i64> = pairs.iter().map(|(a, b)| a * b).collect();
        assert_eq!(p.starmap(mul, pairs.clone()).unwrap(), expect);
        assert_eq!(p.starmap_chunked(mul, pairs.clone(), 3).unwrap(), expect);
        assert_eq!(p.starmap_async(mul, pairs).get().unwrap(), expect);
        assert_eq!(
            p.starmap3(add3, vec![(1, 2, 3u8), (10, 20, 30)]).unwrap(),
            vec![6, 60]
        );
        assert_eq!(
            p.starmap4(add4, vec![(1, 2, 3, "x".to_string())]).unwrap(),
            vec!["6x".to_string()]
        );
        // An empty input.
        assert_eq!(p.map(square, Vec::new()).unwrap(), Vec::<i64>::new());
        assert_eq!(p.map_async(square, 0..0).get().unwrap(), Vec::<i64>::new());
        assert_eq!(p.imap(square, 0..0).count(), 0);
        assert_eq!(p.imap_unordered(square, 0..0).count(), 0);
        // A chunksize of 0 is an error, not a hang.
        assert!(matches!(
            p.map_chunked(square, 0..3, 0),
            Err(Error::InvalidArgument(_))
        ));
        let mut it = p.imap_chunked(square, 0..3, 0);
        assert!(matches!(it.next(), Some(Err(Error::InvalidArgument(_)))));
        assert!(it.next().is_none());
        p.close();
        p.join().unwrap();
    }
}

fn test_imap_slow_square_yields_in_order() {
    for m in methods() {
        let p = pool(m, 4);
        let ordered: Vec<i64> = p.imap(slow_square, 0..8).collect::<Result<_, _>>().unwrap();
        assert_eq!(ordered, vec![0, 1, 4, 9, 16, 25, 36, 49]);
        let mut unordered: Vec<i64> = p
            .imap_unordered(slow_square, 0..8)
            .collect::<Result<_, _>>()
            .unwrap();
        unordered.sort();
        assert_eq!(unordered, vec![0, 1, 4, 9, 16, 25, 36, 49]);
        // Python's imap(sqr, range(1000), chunksize=100) yields in order, then stops.
        let mut it = p.imap_chunked(square, 0..1000, 100);
        for i in 0..1000 {
            assert_eq!(it.next().unwrap().unwrap(), i * i);
        }
        assert!(it.next().is_none());
        assert!(it.next().is_none());
        // next_timeout: a result not yet there is a Timeout, and comes later.
        let mut it = p.imap(sleepy_square, vec![5]);
        assert_eq!(
            it.next_timeout(Duration::from_millis(1)).unwrap(),
            Err(Error::Timeout)
        );
        assert_eq!(it.next().unwrap().unwrap(), 25);
        assert!(it.next().is_none());
    }
}

fn test_chunksize_gives_the_number_of_tasks() {
    for m in methods() {
        for (chunksize, chunks) in [(1usize, 24usize), (2, 12), (3, 8)] {
            // One chunk per worker process: distinct pids count the chunks, and each worker's
            // own counter runs 1..=chunksize.
            let p = Pool::builder()
                .processes(4)
                .max_tasks_per_child(1)
                .context(get_context(m))
                .build()
                .unwrap();
            let out = p.map_chunked(pid_and_count, 0..24u32, chunksize).unwrap();
            let pids: BTreeSet<u32> = out.iter().map(|(pid, _)| *pid).collect();
            assert_eq!(pids.len(), chunks, "{m}: chunksize {chunksize}");
            for pid in &pids {
                let mut counts: Vec<u32> = out
                    .iter()
                    .filter(|(p, _)| p == pid)
                    .map(|(_, c)| *c)
                    .collect();
                counts.sort();
                assert_eq!(counts, (1..=chunksize as u32).collect::<Vec<_>>());
            }
        }
    }
}

fn test_map_async_ready_wait_get() {
    for m in methods() {
        let p = pool(m, 2);
        let r = p.map_async(sleepy_square, 0..4);
        assert!(!r.ready());
        assert_eq!(r.successful(), None);
        r.wait().unwrap();
        assert!(r.ready());
        assert_eq!(r.successful(), Some(true));
        assert_eq!(r.get().unwrap(), vec![0, 1, 4, 9]);
        assert_eq!(r.get(), Err(Error::AlreadyTaken));
        assert_eq!(r.successful(), Some(true));
        let r = p.apply_async(sleepy_square, 3);
        assert!(!r.wait_timeout(Duration::from_millis(1)).unwrap());
        assert!(r.wait_timeout(Duration::from_secs(60)).unwrap());
        assert_eq!(r.get().unwrap(), 9);
    }
}

fn test_apply_across_workers() {
    for m in methods() {
        let p = pool(m, 4);
        // Four tasks that can only finish together: they ran on four workers at once.
        let barrier = Barrier::new(4).unwrap();
        let rs: Vec<_> = (0..4)
            .map(|_| p.apply_async(pid_after_barrier, barrier.clone()))
            .collect();
        let pids: BTreeSet<u32> = rs.iter().map(|r| r.get().unwrap()).collect();
        assert_eq!(pids.len(), 4);
        let workers: BTreeSet<u32> = p.worker_pids().into_iter().collect();
        assert_eq!(pids, workers);
        assert!(!pids.contains(&std::process::id()));
        let one = p.apply(my_pid, ()).unwrap();
        assert!(workers.contains(&one));
        assert_eq!(p.apply(checked_div, (42, 6)).unwrap(), 7);
    }
}

fn test_panicking_task_is_an_error_and_the_pool_goes_on() {
    for m in methods() {
        let p = pool(m, 2);
        match p.apply(checked_div, (1, 0)) {
            Err(Error::Panicked { message, location }) => {
                assert_eq!(message, "division of 1 by zero");
                assert!(location.unwrap().contains("xproc_pool.rs"));
            }
            other => panic!("{m}: expected a panic, got {other:?}"),
        }
        // map: the error of the lowest failing index, after everything ran.
        match p.map_chunked(panic_on_three, 0..40, 7) {
            Err(Error::Panicked { message, .. }) => assert_eq!(message, "item 3 is unlucky"),
            other => panic!("{m}: expected a panic, got {other:?}"),
        }
        // imap: each item's own result, in place.
        let out: Vec<Result<i64, Error>> = p.imap_chunked(panic_on_three, 0..20, 4).collect();
        for (i, r) in out.iter().enumerate() {
            if i % 10 == 3 {
                assert!(matches!(r, Err(Error::Panicked { .. })), "{i}: {r:?}");
            } else {
                assert_eq!(r, &Ok(i as i64));
            }
        }
        let r = p.apply_async(checked_div, (5, 0));
        assert!(r.wait().is_ok());
        assert_eq!(r.successful(), Some(false));
        assert!(r.get().is_err());
        assert!(r.get().is_err(), "an error is returned by every get");
        // Same workers, still usable.
        assert_eq!(p.map(square, 0..5).unwrap(), vec![0, 1, 4, 9, 16]);
        assert_eq!(p.worker_pids().len(), 2);
    }
}

fn test_get_timeout_on_a_slow_task() {
    for m in methods() {
        let p = pool(m, 1);
        let release = Event::new().unwrap();
        let r = p.apply_async(wait_for_event, release.clone());
        let t = Instant::now();
        assert_eq!(
            r.get_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(!r.ready());
        release.set();
        assert_eq!(r.get_timeout(Duration::from_secs(60)).unwrap(), "waited");
    }
}

fn test_callbacks_run_in_completion_order() {
    for m in methods() {
        let p = pool(m, 2);
        let order = Arc::new(Mutex::new(Vec::<String>::new()));
        let gate = Event::new().unwrap();
        // `a` waits for `b`'s callback, so `b` completes first whatever the timing.
        let o = order.clone();
        let ra = p.apply_async_with(
            wait_for_event,
            gate.clone(),
            Callbacks::new().on_success(move |v: &String| o.lock().unwrap().push(format!("a:{v}"))),
        );
        let o = order.clone();
        let g = gate.clone();
        let rb = p.apply_async_with(
            square,
            5,
            Callbacks::new().on_success(move |v: &i64| {
                o.lock().unwrap().push(format!("b:{v}"));
                g.set();
            }),
        );
        assert_eq!(ra.get().unwrap(), "waited");
        assert_eq!(rb.get().unwrap(), 25);
        assert_eq!(*order.lock().unwrap(), vec!["b:25", "a:waited"]);
        // Error callback: called with the error, the success callback is not.
        let o = order.clone();
        let o2 = order.clone();
        let r = p.apply_async_with(
            checked_div,
            (1, 0),
            Callbacks::new()
                .on_success(move |_: &i64| o.lock().unwrap().push("wrong".into()))
                .on_error(move |e: &Error| o2.lock().unwrap().push(format!("err:{e}"))),
        );
        assert!(r.get().is_err());
        let last = order.lock().unwrap().last().cloned().unwrap();
        assert!(last.starts_with("err:task panicked"), "{last}");
        // map_async's callback gets the whole list (before get returns).
        let o = order.clone();
        let r = p.map_async_with(
            square,
            0..4,
            Some(1),
            Callbacks::new()
                .on_success(move |v: &Vec<i64>| o.lock().unwrap().push(format!("{v:?}"))),
        );
        assert_eq!(r.get().unwrap(), vec![0, 1, 4, 9]);
        assert_eq!(order.lock().unwrap().last().unwrap(), "[0, 1, 4, 9]");
    }
}

fn test_close_join_terminate_and_use_after_close() {
    for m in methods() {
        // close + join waits for everything queued (Python #249: maxtasksperchild=1).
        let p = Pool::builder()
            .processes(2)
            .max_tasks_per_child(1)
            .context(get_context(m))
            .build()
            .unwrap();
        assert_eq!(p.join(), Err(Error::StillRunning));
        let rs: Vec<_> = (0..6).map(|i| p.apply_async(sleepy_square, i)).collect();
        p.close();
        p.close();
        p.join().unwrap();
        for (i, r) in rs.iter().enumerate() {
            assert!(r.ready());
            assert_eq!(r.get().unwrap(), (i * i) as i64);
        }
        // Use after close.
        assert_eq!(p.apply(square, 2), Err(Error::NotRunning));
        assert_eq!(p.apply_async(square, 2).get(), Err(Error::NotRunning));
        assert_eq!(p.map(square, 0..3), Err(Error::NotRunning));
        assert_eq!(p.map(square, 0..0), Err(Error::NotRunning));
        let mut it = p.imap(square, 0..3);
        assert_eq!(it.next(), Some(Err(Error::NotRunning)));
        assert_eq!(it.next(), None);
        p.join().unwrap();
        assert!(p.worker_pids().is_empty());

        // terminate: everything outstanding fails at once, nothing hangs.
        let p = pool(m, 2);
        let never = Event::new().unwrap();
        let rs: Vec<_> = (0..50)
            .map(|_| p.apply_async(wait_for_event, never.clone()))
            .collect();
        let pids = p.worker_pids();
        p.terminate();
        for r in &rs {
            assert!(r.ready());
            assert_eq!(r.get(), Err(Error::Terminated));
        }
        for pid in pids {
            assert!(
                rustix::process::test_kill_process(Pid::from_raw(pid as i32).unwrap()).is_err(),
                "worker {pid} was stopped"
            );
        }
        assert_eq!(p.apply(square, 1), Err(Error::NotRunning));
        p.terminate();
        p.join().unwrap();

        // Dropping a pool terminates it and resolves what was pending.
        let p = pool(m, 1);
        let r = p.apply_async(wait_for_event, never.clone());
        let mut it = p.imap(wait_for_event, vec![never.clone()]);
        assert_eq!(
            it.next_timeout(Duration::from_millis(1)),
            Some(Err(Error::Timeout))
        );
        drop(p);
        assert_eq!(r.get(), Err(Error::Terminated));
        assert_eq!(it.next(), Some(Err(Error::Terminated)));
    }
}

fn test_initializer_runs_once_per_worker() {
    for m in methods() {
        let counter = Value::new(0u32).unwrap();
        let p = Pool::builder()
            .processes(3)
            .initializer(init_global, (42, counter.clone()))
            .context(get_context(m))
            .build()
            .unwrap();
        let seen = p.map_chunked(read_global, vec![(); 30], 1).unwrap();
        assert_eq!(seen, vec![42; 30]);
        p.close();
        p.join().unwrap();
        assert_eq!(counter.get(), 3);
        assert_eq!(
            INIT_VALUE.load(Ordering::SeqCst),
            0,
            "not run in the parent"
        );
    }
}

fn test_initializer_panic_breaks_the_pool() {
    for m in methods() {
        let p = Pool::builder()
            .processes(2)
            .initializer(init_panics, "no database".to_string())
            .context(get_context(m))
            .build()
            .unwrap();
        let broken = Error::InitializerFailed {
            message: "no database".into(),
        };
        // Pending tasks fail with the initializer's error (instead of hanging forever)...
        assert_eq!(p.map(square, 0..10), Err(broken.clone()));
        // ...and so do future ones; no worker is started again.
        assert_eq!(p.apply(square, 3), Err(broken.clone()));
        assert_eq!(p.apply_async(square, 3).get(), Err(broken.clone()));
        assert_eq!(p.imap(square, 0..3).next(), Some(Err(broken)));
        eventually("the failed workers to exit", || p.worker_pids().is_empty());
        p.terminate();
    }
}

fn test_max_tasks_per_child() {
    for m in methods() {
        let p = Pool::builder()
            .processes(2)
            .max_tasks_per_child(1)
            .context(get_context(m))
            .build()
            .unwrap();
        let pids: Vec<u32> = (0..10).map(|_| p.apply(my_pid, ()).unwrap()).collect();
        assert_eq!(pids.iter().collect::<BTreeSet<_>>().len(), 10, "{pids:?}");
        drop(p);
        // Python's probe: Pool(2, maxtasksperchild=2), 20 single-item tasks: 10 workers.
        let p = Pool::builder()
            .processes(2)
            .max_tasks_per_child(2)
            .context(get_context(m))
            .build()
            .unwrap();
        let out = p.map_chunked(pid_and_count, 0..20u32, 1).unwrap();
        let pids: BTreeSet<u32> = out.iter().map(|(p, _)| *p).collect();
        assert_eq!(pids.len(), 10);
    }
}

fn test_infinite_imap_stopped_after_1000() {
    for m in methods() {
        let p = pool(m, 2);
        let pulled = StdCell::new(0u64);
        let input = (0i64..).inspect(|_| pulled.set(pulled.get() + 1));
        let got: Vec<i64> = p
            .imap(square, input)
            .take(1000)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, (0..1000).map(square).collect::<Vec<_>>());
        // Lazy: at most the in-flight window beyond what was consumed.
        let window = 4 * 2;
        assert!(
            pulled.get() <= 1000 + window,
            "{m}: pulled {} items of the endless input",
            pulled.get()
        );
        let mut unordered: Vec<i64> = p
            .imap_unordered_chunked(square, 0i64.., 7)
            .take(100)
            .collect::<Result<_, _>>()
            .unwrap();
        unordered.sort();
        assert_eq!(unordered.len(), 100);
        assert!(unordered.windows(2).all(|w| w[0] < w[1]));
        // The pool is fine afterwards.
        assert_eq!(p.map(square, 0..3).unwrap(), vec![0, 1, 4]);
    }
}

/// Checks the outcome of a map in which item `victim` killed its worker: the items that failed
/// are whole chunks (of `chunksize`) including the victim's, all with the same `WorkerLost`,
/// at most `max_lost` of them; every other result is correct.
fn check_lost(
    m: StartMethod,
    out: &[Result<u32, Error>],
    victim: usize,
    chunksize: usize,
    max_lost: usize,
    workers: &BTreeSet<u32>,
) {
    let lost = match &out[victim] {
        Err(e @ Error::WorkerLost { pid, exitcode }) => {
            assert!(workers.contains(pid), "{m}: {pid} was one of the workers");
            assert_eq!(*exitcode, Some(-9));
            e.clone()
        }
        other => panic!("{m}: item {victim}: {other:?}"),
    };
    let mut failed = 0;
    for (i, r) in out.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, i as u32 * 2, "{m}: item {i}"),
            Err(e) => {
                assert_eq!(e, &lost, "{m}: item {i}");
                let c = i / chunksize;
                let chunk = &out[c * chunksize..((c + 1) * chunksize).min(out.len())];
                assert!(
                    chunk.iter().all(|r| r.is_err()),
                    "{m}: chunks fail whole: item {i}"
                );
                failed += 1;
            }
        }
    }
    assert!(failed <= max_lost, "{m}: {failed} items lost");
}

fn test_worker_killed_mid_map_fails_only_its_tasks() {
    for m in methods() {
        let p = pool(m, 4);
        let before: BTreeSet<u32> = p.worker_pids().into_iter().collect();
        // 1,000 tasks of 1 ms, one item each; the task of item 500 SIGKILLs its own worker.
        // A worker sends each answer at once after 200 us of work, so exactly that task fails.
        let out: Vec<Result<u32, Error>> = p
            .imap(double_or_die, (0..1000).map(|x| (x, 500, 1000)))
            .collect();
        assert_eq!(out.len(), 1000);
        check_lost(m, &out, 500, 1, 1, &before);
        // Trivial tasks in chunks of 10: answers travel in batches, so the chunks whose answers
        // the worker had not sent yet fail with the victim's (at most 64 chunks before it);
        // nothing runs twice, every other result is correct.
        eventually("the workers to be replaced", || p.worker_pids().len() == 4);
        let before: BTreeSet<u32> = p.worker_pids().into_iter().collect();
        let out: Vec<Result<u32, Error>> = p
            .imap_chunked(double_or_die, (0..1000).map(|x| (x, 123, 0)), 10)
            .collect();
        assert_eq!(out.len(), 1000);
        check_lost(m, &out, 123, 10, 65 * 10, &before);
        // map: the WorkerLost error itself.
        assert!(matches!(
            p.map(double_or_die, (0..100).map(|x| (x, 50, 0))),
            Err(Error::WorkerLost { .. })
        ));
        // Replaced: four workers again, and the pool maps again.
        eventually("the workers to be replaced", || p.worker_pids().len() == 4);
        let serial: Vec<i64> = (0..1000).map(square).collect();
        assert_eq!(p.map(square, 0..1000).unwrap(), serial);
    }
}

fn test_worker_killed_from_outside_abort_and_exit() {
    for m in methods() {
        let p = pool(m, 2);
        let pid = Value::new(0u32).unwrap();
        let release = Event::new().unwrap();
        let r = p.apply_async(report_then_block, (pid.clone(), release.clone()));
        eventually("the task to start", || pid.get() != 0);
        let victim = pid.get();
        kill(victim, Signal::KILL);
        assert_eq!(
            r.get(),
            Err(Error::WorkerLost {
                pid: victim,
                exitcode: Some(-9)
            })
        );
        match p.apply(abort_task, ()) {
            Err(Error::WorkerLost { exitcode, .. }) => assert_eq!(exitcode, Some(-6)),
            other => panic!("{m}: abort: {other:?}"),
        }
        match p.apply(exit_task, 3) {
            Err(Error::WorkerLost { exitcode, .. }) => assert_eq!(exitcode, Some(3)),
            other => panic!("{m}: exit: {other:?}"),
        }
        assert_eq!(p.apply(square, 12).unwrap(), 144);
        eventually("the workers to be replaced", || p.worker_pids().len() == 2);
        p.close();
        p.join().unwrap();
    }
}

/// Creates a shared value in the worker and returns it (a handle in a result).
fn make_value(v: u32) -> Value<u32> {
    Value::new(v).expect("a shared value")
}

/// A pool inside a worker: workers are daemons, which may not have children.
fn nested_pool(_: ()) -> String {
    match Pool::new(1) {
        Ok(_) => "started".into(),
        Err(e) => e.to_string(),
    }
}

fn test_handles_travel_in_arguments() {
    for m in methods() {
        let p = pool(m, 2);
        let counter = Value::new(0u32).unwrap();
        fn bump((c, n): (Value<u32>, u32)) -> u32 {
            for _ in 0..n {
                *c.lock() += 1;
            }
            n
        }
        let args: Vec<(Value<u32>, u32)> = (0..20).map(|_| (counter.clone(), 100)).collect();
        assert_eq!(p.map_chunked(bump, args, 3).unwrap(), vec![100; 20]);
        assert_eq!(counter.get(), 2000);
        // And in results: values made in the workers, shared with the parent.
        let made = p.map_chunked(make_value, 0..6u32, 2).unwrap();
        for (i, v) in made.iter().enumerate() {
            assert_eq!(v.get(), i as u32);
            v.set(v.get() + 100);
        }
        assert_eq!(made.iter().map(|v| v.get()).sum::<u32>(), 615);
        // A pool inside a worker is refused cleanly, as in Python.
        let e = p.apply(nested_pool, ()).unwrap();
        assert!(e.contains("daemonic"), "{e}");
    }
}

fn slice_len(s: ipc_shm::ShmSlice<u8>) -> usize {
    s.len()
}

/// `terminate` releases the arguments of the chunks a live worker held but never started: a
/// shared-memory handle inside them no longer keeps its block alive (each encoded handle holds
/// a reference on its block until it is decoded). Observable through the heap's documented
/// reuse: a freed block is the next one handed out for its size class.
fn test_terminate_releases_the_arguments_of_unstarted_chunks() {
    for m in methods() {
        let p = pool(m, 1);
        let release = Event::new().unwrap(); // never set: the worker stays busy
                                             // Keeps this process's arena mapped while the slice comes and goes.
        let pin = ipc_shm::ShmSlice::<u8>::zeroed(16).unwrap();
        let blocker = p.apply_async(wait_for_event, release.clone());
        let slice = ipc_shm::ShmSlice::<u8>::zeroed(3000).unwrap();
        let addr = slice.as_ptr();
        // The first of these is sent to the busy worker (it has room for two chunks); the
        // others wait in the pool's queue.
        let rs: Vec<_> = (0..4)
            .map(|_| p.apply_async(slice_len, slice.clone()))
            .collect();
        p.terminate();
        assert_eq!(blocker.get(), Err(Error::Terminated), "{m}");
        for r in rs {
            assert_eq!(r.get(), Err(Error::Terminated), "{m}");
        }
        drop(slice);
        let again = ipc_shm::ShmSlice::<u8>::zeroed(3000).unwrap();
        assert_eq!(
            again.as_ptr(),
            addr,
            "{m}: the slice's block was not freed: a reference is still held"
        );
        drop((again, pin, release));
    }
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C: the pool's parent runs in a child of the test binary (the signal targets it).

fn catches_sigint(pid: u32) -> bool {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let caught = s
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .expect("SigCgt");
    caught & (1 << (libc::SIGINT - 1)) != 0
}

/// In a worker: waits until the pool's parent catches SIGINT (it does only while blocked in
/// a pool call), sends it one, sends itself one too (ignored), waits until the parent saw the
/// interruption (so the result cannot win the race), and returns its pid.
fn interrupt_parent(seen: Event) -> u32 {
    let parent = proc_spawn::parent_process().expect("a parent").pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !catches_sigint(parent) {
        assert!(Instant::now() < deadline, "the parent never caught SIGINT");
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(parent, Signal::INT);
    kill(std::process::id(), Signal::INT);
    assert!(seen.wait_timeout(Duration::from_secs(60)));
    std::process::id()
}

fn case_sigint(payload: &[u8], _fds: Vec<OwnedFd>) {
    let m: StartMethod = std::str::from_utf8(payload).unwrap().parse().unwrap();
    // A shell starting the tests in the background makes them ignore SIGINT (and the pool
    // rightly leaves an ignored SIGINT alone): give this process the default action.
    // SAFETY: `SIG_DFL` installs no handler; this single-threaded child has no pool yet.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let p = pool(m, 2);
    let seen = Event::new().unwrap();
    let r = p.apply_async(interrupt_parent, seen.clone());
    assert_eq!(r.get(), Err(Error::Interrupted));
    seen.set();
    // The worker ignored its own SIGINT and delivered its result.
    let pid = r.get().unwrap();
    assert!(p.worker_pids().contains(&pid));
    // A blocking map is interrupted the same way; the pool can still be terminated.
    let seen = Event::new().unwrap();
    let e = p.map(interrupt_parent, vec![seen.clone()]);
    assert_eq!(e, Err(Error::Interrupted));
    seen.set();
    p.terminate();
    // Outside pool calls SIGINT has its default action again.
    assert!(!catches_sigint(std::process::id()));
}

fn test_sigint_interrupts_a_blocking_get() {
    for m in methods() {
        let mut child =
            testkit::start(testkit::Method::Fork, "sigint", m.name().as_bytes(), &[]).unwrap();
        assert_eq!(child.wait().unwrap(), testkit::Exit::Code(0), "{m}");
    }
}

fn main() {
    testkit::main(
        &[("sigint", case_sigint)],
        &[
            ("seed_map_squares", test_seed_map_squares),
            (
                "imap_slow_square_yields_in_order",
                test_imap_slow_square_yields_in_order,
            ),
            (
                "chunksize_gives_the_number_of_tasks",
                test_chunksize_gives_the_number_of_tasks,
            ),
            ("map_async_ready_wait_get", test_map_async_ready_wait_get),
            ("apply_across_workers", test_apply_across_workers),
            (
                "panicking_task_is_an_error_and_the_pool_goes_on",
                test_panicking_task_is_an_error_and_the_pool_goes_on,
            ),
            (
                "get_timeout_on_a_slow_task",
                test_get_timeout_on_a_slow_task,
            ),
            (
                "callbacks_run_in_completion_order",
                test_callbacks_run_in_completion_order,
            ),
            (
                "close_join_terminate_and_use_after_close",
                test_close_join_terminate_and_use_after_close,
            ),
            (
                "initializer_runs_once_per_worker",
                test_initializer_runs_once_per_worker,
            ),
            (
                "initializer_panic_breaks_the_pool",
                test_initializer_panic_breaks_the_pool,
            ),
            ("max_tasks_per_child", test_max_tasks_per_child),
            (
                "infinite_imap_stopped_after_1000",
                test_infinite_imap_stopped_after_1000,
            ),
            (
                "worker_killed_mid_map_fails_only_its_tasks",
                test_worker_killed_mid_map_fails_only_its_tasks,
            ),
            (
                "worker_killed_from_outside_abort_and_exit",
                test_worker_killed_from_outside_abort_and_exit,
            ),
            (
                "handles_travel_in_arguments",
                test_handles_travel_in_arguments,
            ),
            (
                "terminate_releases_the_arguments_of_unstarted_chunks",
                test_terminate_releases_the_arguments_of_unstarted_chunks,
            ),
            (
                "sigint_interrupts_a_blocking_get",
                test_sigint_interrupts_a_blocking_get,
            ),
        ],
    );
}
