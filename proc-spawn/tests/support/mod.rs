//! The behaviours every start method must show, written once and instantiated per method by
//! `tests/start_{fork,spawn,forkserver}.rs` through [`matrix!`]. Each test takes the method;
//! `IPC_START_METHOD` narrows a run to one method (the other files' tests then return at once).
//!
//! Child output is never eyeballed: children report over `Connection`s, shared values or files.
//! Tests that must own their whole process (exit-time behaviour, descriptor counts, a program
//! without the hook) re-run this test binary on one helper test (`helper_*`), which does
//! nothing unless `PROC_SPAWN_TEST_HELPER` is set.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ipc_channel_core::{Connection, Pipe, Queue};
use ipc_shm::SharedMemory;
use ipc_sync::{Array, Lock, Value};
use proc_spawn::{get_context, Error, Process, Run, StartMethod};
use serde::{Deserialize, Serialize};

/// Generates one `#[test]` per behaviour for `$method`.
#[macro_export]
macro_rules! matrix {
    ($method:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if support::selected($method) {
                    support::$name($method);
                }
            }
        )*
    };
}

/// Generates the `#[test]` of every behaviour for `$method`: the one list of behaviours, so a
/// new one is tested under all three start methods by adding it here.
#[macro_export]
macro_rules! every_behaviour {
    ($method:expr) => {
        matrix!($method;
    hello,
    string_argument,
    four_children_numbers,
    from_run_squares,
    child_fills_pipe,
    child_fills_queue,
    value_counter_four_processes,
    pipe_hello_both_ways,
    handles_as_arguments,
    exitcodes,
    join_timeout_on_sleeping_child,
    start_twice_and_before_start,
    sentinel_becomes_readable,
    parent_process_in_child,
    grandchild_names_and_parent,
    spawn_returns_value_and_panic_message,
    spawn_killed_child_reports_signal,
    large_arguments_and_result,
    result_carries_handles,
    non_capturing_closure_target,
    closures_under_fork,
    cpu_count_honours_affinity,
    default_method_from_environment,
    helper_default_method,
    invalid_method_in_environment,
    daemon_may_not_start_children,
    active_children_reaps,
    daemon_grandchild_terminated_when_child_returns,
    daemon_dies_with_killed_parent,
    lifetimes_at_main_return,
    lifetimes_at_process_exit,
    helper_exit,
    program_without_init,
    helper_no_init,
    no_fd_leak,
    helper_fd_leak,
    forkserver_restarts,
    helper_forkserver_restarts,
    child_fd_count_does_not_grow,
    panics_around_the_target_end_the_child,
    child_stdin_is_null,
    helper_stdin,
    fork_while_another_thread_prints,
    forkserver_killed_during_requests,
    helper_forkserver_killed,
        );
    };
}

/// Whether `IPC_START_METHOD` lets tests of `method` run.
pub(crate) fn selected(method: StartMethod) -> bool {
    if std::env::var_os(HELPER_ENV).is_some() {
        return true; // a helper run: the helper reads its method from HELPER_ENV
    }
    match std::env::var("IPC_START_METHOD") {
        Ok(v) if !v.is_empty() => {
            let want: StartMethod = v.parse().unwrap_or_else(|_| {
                panic!("IPC_START_METHOD={v}: expected fork, spawn or forkserver")
            });
            want == method
        }
        _ => true,
    }
}

const HELPER_ENV: &str = "PROC_SPAWN_TEST_HELPER";

/// The method a helper run was asked for, if this process is a helper run.
fn helper_method() -> Option<(StartMethod, String)> {
    let v = std::env::var(HELPER_ENV).ok()?;
    let (m, rest) = v.split_once(':')?;
    Some((m.parse().ok()?, rest.to_string()))
}

/// Runs this test binary on the single test `name` with the helper variable set to
/// `method:arg`; returns its output once it exits (killed after 100 s).
fn run_helper(name: &str, method: StartMethod, arg: &str, extra_env: &[(&str, &str)]) -> Output {
    run_helper_with_stdin(name, method, arg, extra_env, None)
}

/// [`run_helper`], with `input` written to the helper's standard input (then closed).
fn run_helper_with_stdin(
    name: &str,
    method: StartMethod,
    arg: &str,
    extra_env: &[(&str, &str)],
    input: Option<&[u8]>,
) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, format!("{}:{arg}", method.name()))
        .env_remove("IPC_START_METHOD");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    if input.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        stdin.write_all(bytes).unwrap();
    }
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(100) {
            std::thread::sleep(Duration::from_millis(100));
            if !PathBuf::from(format!("/proc/{pid}")).exists() {
                return;
            }
        }
        // our own child overran: kill it
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    });
    let out = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    out
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "proc-spawn-test-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

// ---------------------------------------------------------------------------------------------
// Targets (run in the children)

fn say_hello(out: Connection) {
    let me = proc_spawn::current_process();
    out.send(&format!("hello from {} pid {}", me.name(), me.pid()))
        .unwrap();
}

fn shout((s, out): (String, Connection)) {
    out.send(&s.to_uppercase()).unwrap();
}

fn number((n, out): (u32, Connection)) {
    out.send(&n).unwrap();
}

#[derive(Serialize, Deserialize)]
struct Squarer {
    n: u64,
    out: Connection,
}

impl Run for Squarer {
    fn run(self) {
        self.out.send(&(self.n * self.n)).unwrap();
    }
}

fn producer(out: Connection) {
    for i in 0..5u32 {
        out.send(&Some(i)).unwrap();
    }
    out.send(&None::<u32>).unwrap();
}

fn queue_producer(q: Queue<Option<u32>>) {
    for i in 0..5u32 {
        q.put(Some(i)).unwrap();
    }
    q.put(None).unwrap();
}

/// Reads the inbox until `None`, doubles each item into the outbox.
fn queue_doubler((inbox, outbox): (Queue<Option<u64>>, Queue<u64>)) {
    while let Some(x) = inbox.get().unwrap() {
        outbox.put(x * 2).unwrap();
    }
}

fn add_many((counter, n): (Value<i32>, u32)) {
    for _ in 0..n {
        *counter.lock() += 1;
    }
}

fn pipe_hello(conn: Connection) {
    conn.send(&"hello".to_string()).unwrap();
    // and the other way round
    let back: String = conn.recv().unwrap();
    conn.send(&format!("{back}!")).unwrap();
}

fn nothing(_: ()) {}

/// Restricts itself to CPU 0, reports `cpu_count()`.
fn pinned_cpu_count(out: Connection) {
    // SAFETY: `cpu_set_t` is plain data; the set is initialised by `CPU_ZERO`/`CPU_SET` and
    // passed with its size.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(r, 0);
    out.send(&proc_spawn::cpu_count()).unwrap();
}

fn report_method(out: Connection) {
    out.send(&proc_spawn::get_start_method().name().to_string())
        .unwrap();
}

/// Returns one end of a fresh pipe and a shared value: handles travel back in results too.
fn make_channel(greeting: String) -> (Connection, Value<i64>) {
    let (a, b) = Pipe::new().unwrap();
    a.send(&greeting).unwrap();
    (b, Value::new(99).unwrap())
}

fn reverse_bytes(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

fn square(x: i64) -> i64 {
    x * x
}

fn panics(msg: String) -> u8 {
    panic!("{msg}")
}

fn sleep_secs(s: u64) {
    std::thread::sleep(Duration::from_secs(s));
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn report_parent(out: Connection) {
    let parent = proc_spawn::parent_process().map(|p| (p.name().to_string(), p.pid()));
    let me = proc_spawn::current_process();
    out.send(&(
        parent,
        me.name().to_string(),
        me.pid(),
        me.daemon(),
        proc_spawn::get_start_method().name().to_string(),
    ))
    .unwrap();
}

/// Starts a grandchild that reports its parent and name; reports what it heard.
fn nested_report((method, out): (String, Connection)) {
    let m: StartMethod = method.parse().unwrap();
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(report_parent, b);
    p.start().unwrap();
    let heard: (Option<(String, u32)>, String, u32, bool, String) = a.recv().unwrap();
    p.join().unwrap();
    out.send(&(proc_spawn::current_process().pid(), heard))
        .unwrap();
}

#[allow(clippy::type_complexity)]
fn use_handles(
    (lock, value, array, conn, shm): (Lock, Value<i64>, Array<i32>, Connection, SharedMemory),
) {
    {
        let _g = lock.acquire();
        value.set(value.get() + 41);
    }
    let doubled: Vec<i32> = array.to_vec().iter().map(|x| x * 2).collect();
    for (i, v) in doubled.into_iter().enumerate() {
        array.set(i, v).unwrap();
    }
    shm.write_at(0, b"child was here").unwrap();
    conn.send(&"done".to_string()).unwrap();
}

/// A daemon tries to start a child of its own; reports the error.
fn daemon_tries_child((method, out): (String, Connection)) {
    let m: StartMethod = method.parse().unwrap();
    let mut p = get_context(m).process(nothing, ());
    let r = p.start();
    out.send(&r.map_err(|e| e.to_string())).unwrap();
}

/// Starts a daemon grandchild that sleeps for a minute, reports its pid, returns.
fn start_daemon_and_return((method, out): (String, Connection)) {
    let m: StartMethod = method.parse().unwrap();
    let mut d = get_context(m).process(sleep_secs, 60).daemon(true);
    d.start().unwrap();
    out.send(&d.pid().unwrap()).unwrap();
}

/// Starts a daemon grandchild that sleeps, reports its pid, then sleeps until killed.
fn start_daemon_and_wait((method, out): (String, Connection)) {
    let m: StartMethod = method.parse().unwrap();
    let mut d = get_context(m).process(sleep_secs, 60).daemon(true);
    d.start().unwrap();
    out.send(&d.pid().unwrap()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn wait_for_word(conn: Connection) {
    let _: String = conn.recv().unwrap();
}

fn write_file_after((path, secs): (String, u64)) {
    std::thread::sleep(Duration::from_millis(secs));
    std::fs::write(path, b"written").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Helpers for the assertions

/// Waits until the process `pid` no longer runs (pidfd readable, or gone already).
fn process_gone_within(pid: u32, limit: Duration) -> bool {
    let fd = match rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::PidfdFlags::empty(),
    ) {
        Ok(fd) => fd,
        Err(_) => return true, // no such process any more
    };
    let mut pfd = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::event::Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: 0,
    };
    loop {
        match rustix::event::poll(&mut pfd, Some(&ts)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// ---------------------------------------------------------------------------------------------
// The behaviours

pub(crate) fn hello(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(say_hello, b);
    p.start().unwrap();
    let got: String = a.recv().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(
        got,
        format!("hello from {} pid {}", p.get_name(), p.pid().unwrap())
    );
    assert!(p.get_name().starts_with("Process-"), "{}", p.get_name());
}

pub(crate) fn string_argument(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(shout, ("hello, world".to_string(), b));
    p.start().unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "HELLO, WORLD");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

pub(crate) fn four_children_numbers(m: StartMethod) {
    let mut readers = Vec::new();
    let mut procs = Vec::new();
    for n in 0..4u32 {
        let (a, b) = Pipe::new().unwrap();
        let mut p = get_context(m).process(number, (n, b));
        p.start().unwrap();
        readers.push(a);
        procs.push(p);
    }
    let mut got: Vec<u32> = readers.iter().map(|r| r.recv().unwrap()).collect();
    for p in &mut procs {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    got.sort();
    assert_eq!(got, [0, 1, 2, 3]);
    let pids: std::collections::BTreeSet<u32> = procs.iter().map(|p| p.pid().unwrap()).collect();
    assert_eq!(pids.len(), 4);
}

pub(crate) fn from_run_squares(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process_from_run(Squarer { n: 12, out: b });
    assert!(p.get_name().starts_with("Squarer-"), "{}", p.get_name());
    p.start().unwrap();
    assert_eq!(a.recv::<u64>().unwrap(), 144);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

pub(crate) fn child_fills_pipe(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(producer, b).name("producer");
    p.start().unwrap();
    let mut got = Vec::new();
    while let Some(i) = a.recv::<Option<u32>>().unwrap() {
        got.push(i);
    }
    p.join().unwrap();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert_eq!(p.exitcode(), Some(0));
}

/// Python's seed (c): a child fills a `Queue` the parent reads, and queues as arguments both
/// ways, for both queue backends.
pub(crate) fn child_fills_queue(m: StartMethod) {
    let q = Queue::<Option<u32>>::new().unwrap();
    let mut p = get_context(m)
        .process(queue_producer, q.clone())
        .name("producer");
    p.start().unwrap();
    let mut got = Vec::new();
    while let Some(i) = q.get_timeout(Duration::from_secs(60)).unwrap() {
        got.push(i);
    }
    p.join().unwrap();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert_eq!(p.exitcode(), Some(0));

    for backend in [
        ipc_channel_core::Backend::Pipe,
        ipc_channel_core::Backend::Shm,
    ] {
        let inbox = Queue::builder().backend(backend).build().unwrap();
        let outbox = Queue::builder().backend(backend).build().unwrap();
        let mut p = get_context(m).process(queue_doubler, (inbox.clone(), outbox.clone()));
        p.start().unwrap();
        for x in 1..=100u64 {
            inbox.put(Some(x)).unwrap();
        }
        inbox.put(None).unwrap();
        let mut sum = 0;
        for _ in 0..100 {
            sum += outbox.get_timeout(Duration::from_secs(60)).unwrap();
        }
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(sum, 2 * 5050, "{backend:?}");
    }
}

pub(crate) fn value_counter_four_processes(m: StartMethod) {
    let counter = Value::new(0i32).unwrap();
    let mut procs: Vec<Process> = (0..4)
        .map(|_| get_context(m).process(add_many, (counter.clone(), 1_000_000)))
        .collect();
    for p in &mut procs {
        p.start().unwrap();
    }
    for p in &mut procs {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    assert_eq!(counter.get(), 4_000_000);
}

pub(crate) fn pipe_hello_both_ways(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(pipe_hello, b);
    p.start().unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "hello");
    a.send(&"back".to_string()).unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "back!");
    p.join().unwrap();
}

pub(crate) fn handles_as_arguments(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let value = Value::new(1i64).unwrap();
    let array = Array::from_slice(&[1i32, 2, 3, 4, 5]).unwrap();
    let shm = SharedMemory::create(None, 64).unwrap();
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(
        use_handles,
        (lock.clone(), value.clone(), array.clone(), b, shm.clone()),
    );
    p.start().unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "done");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(value.get(), 42);
    assert_eq!(array.to_vec(), [2, 4, 6, 8, 10]);
    let mut buf = [0u8; 14];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"child was here");
    assert!(lock.try_acquire().is_some(), "the lock was left held");
    shm.unlink().unwrap();
}

pub(crate) fn exitcodes(m: StartMethod) {
    let ctx = get_context(m);
    let mut ok = ctx.process(nothing, ());
    ok.start().unwrap();
    ok.join().unwrap();
    assert_eq!(ok.exitcode(), Some(0));

    let mut bad = ctx.process(panics, "on purpose".to_string());
    bad.start().unwrap();
    bad.join().unwrap();
    assert_eq!(bad.exitcode(), Some(1));

    let mut seven = ctx.process(exit_with, 7);
    seven.start().unwrap();
    seven.join().unwrap();
    assert_eq!(seven.exitcode(), Some(7));

    let mut term = ctx.process(sleep_secs, 60);
    term.start().unwrap();
    assert!(term.is_alive());
    assert_eq!(term.exitcode(), None);
    term.terminate().unwrap();
    term.join().unwrap();
    assert_eq!(term.exitcode(), Some(-15));
    assert!(!term.is_alive());
    // terminate/kill after the end: silent no-ops
    term.terminate().unwrap();
    term.kill().unwrap();
    assert_eq!(term.exitcode(), Some(-15));

    let mut kill = ctx.process(sleep_secs, 60);
    kill.start().unwrap();
    kill.kill().unwrap();
    kill.join().unwrap();
    assert_eq!(kill.exitcode(), Some(-9));
}

pub(crate) fn join_timeout_on_sleeping_child(m: StartMethod) {
    let mut p = get_context(m).process(sleep_secs, 60);
    p.start().unwrap();
    let t = Instant::now();
    assert_eq!(p.join_timeout(Duration::from_millis(300)).unwrap(), None);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(p.is_alive());
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    p.kill().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(-9));
}

pub(crate) fn start_twice_and_before_start(m: StartMethod) {
    let mut p = get_context(m).process(nothing, ());
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    assert!(matches!(p.join(), Err(Error::NotStarted)));
    assert!(matches!(p.terminate(), Err(Error::NotStarted)));
    assert!(matches!(p.sentinel(), Err(Error::NotStarted)));
    p.start().unwrap();
    let e = p.start().unwrap_err();
    assert!(matches!(e, Error::AlreadyStarted));
    assert_eq!(e.to_string(), "cannot start a process twice");
    // the daemon flag cannot change once started
    let mut p = p.daemon(true);
    assert!(!p.is_daemon());
    p.join().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
    assert_eq!(p.exitcode(), Some(0));
}

pub(crate) fn sentinel_becomes_readable(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(wait_for_word, b);
    p.start().unwrap();
    {
        let s = p.sentinel().unwrap();
        let mut pfd = [rustix::event::PollFd::new(&s, rustix::event::PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        assert_eq!(rustix::event::poll(&mut pfd, Some(&zero)).unwrap(), 0);
    }
    a.send(&"go".to_string()).unwrap();
    {
        let s = p.sentinel().unwrap();
        let mut pfd = [rustix::event::PollFd::new(&s, rustix::event::PollFlags::IN)];
        let limit = rustix::event::Timespec {
            tv_sec: 60,
            tv_nsec: 0,
        };
        assert_eq!(rustix::event::poll(&mut pfd, Some(&limit)).unwrap(), 1);
    }
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

pub(crate) fn parent_process_in_child(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(report_parent, b).name("Kid");
    p.start().unwrap();
    #[allow(clippy::type_complexity)]
    let (parent, name, pid, daemon, method): (
        Option<(String, u32)>,
        String,
        u32,
        bool,
        String,
    ) = a.recv().unwrap();
    p.join().unwrap();
    assert_eq!(
        parent,
        Some(("MainProcess".to_string(), std::process::id()))
    );
    assert_eq!(name, "Kid");
    assert_eq!(Some(pid), p.pid());
    assert!(!daemon);
    assert_eq!(method, m.name());
    assert_eq!(proc_spawn::parent_process(), None);
}

pub(crate) fn grandchild_names_and_parent(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(nested_report, (m.name().to_string(), b));
    p.start().unwrap();
    #[allow(clippy::type_complexity)]
    let (child_pid, (parent, name, _pid, _daemon, _method)): (
        u32,
        (Option<(String, u32)>, String, u32, bool, String),
    ) = a.recv().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(Some(child_pid), p.pid());
    assert_eq!(parent, Some((p.get_name().to_string(), child_pid)));
    // Python's `Process-N:M`
    assert_eq!(name, format!("{}:1", p.get_name()));
}

pub(crate) fn spawn_returns_value_and_panic_message(m: StartMethod) {
    let ctx = get_context(m);
    assert_eq!(ctx.spawn(square, 12).join().unwrap(), 144);
    let e = ctx
        .spawn(panics, "the answer is 42".to_string())
        .join()
        .unwrap_err();
    assert!(matches!(e, Error::Panicked { .. }), "{e:?}");
    assert!(e.to_string().contains("the answer is 42"), "{e}");
    let h = ctx.spawn(exit_with, 3);
    match h.join() {
        Err(Error::Exited { code: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// `cpu_count()` honours the affinity mask (a child pinned to one CPU counts one).
pub(crate) fn cpu_count_honours_affinity(m: StartMethod) {
    assert!(proc_spawn::cpu_count() >= 1);
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(pinned_cpu_count, b);
    p.start().unwrap();
    assert_eq!(a.recv::<usize>().unwrap(), 1);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

/// Code that names no method gets `IPC_START_METHOD`'s; the first use fixes the choice, so a
/// later `set_start_method` is an error unless forced. In a process of its own (the choice is
/// global).
pub(crate) fn default_method_from_environment(m: StartMethod) {
    let out = run_helper(
        "helper_default_method",
        m,
        "",
        &[("IPC_START_METHOD", m.name())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("default method checked"), "{stdout}");
}

/// A misspelt `IPC_START_METHOD` is an error at `start()`, not a silent default.
pub(crate) fn invalid_method_in_environment(m: StartMethod) {
    if m != StartMethod::Spawn {
        return; // one process-wide check is enough
    }
    let out = run_helper(
        "helper_default_method",
        m,
        "invalid",
        &[("IPC_START_METHOD", "forkk")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("invalid method refused"), "{stdout}");
}

pub(crate) fn helper_default_method(_: StartMethod) {
    let Some((m, arg)) = helper_method() else {
        return;
    };
    if arg == "invalid" {
        let mut p = Process::new(nothing, ());
        let e = p.start().unwrap_err();
        assert!(matches!(e, Error::UnknownStartMethod(_)), "{e:?}");
        assert!(e.to_string().contains("forkk"), "{e}");
        assert!(e.to_string().contains("IPC_START_METHOD"), "{e}");
        // the explicit choice of a context still works
        let mut p = get_context(m).process(nothing, ());
        p.start().unwrap();
        p.join().unwrap();
        println!("invalid method refused");
        return;
    }
    let (a, b) = Pipe::new().unwrap();
    let mut p = Process::new(report_method, b);
    assert_eq!(p.start_method(), None);
    p.start().unwrap();
    assert_eq!(p.start_method(), Some(m));
    assert_eq!(a.recv::<String>().unwrap(), m.name());
    p.join().unwrap();
    assert_eq!(proc_spawn::get_start_method(), m);
    let other = if m == StartMethod::Spawn {
        StartMethod::Fork
    } else {
        StartMethod::Spawn
    };
    let e = proc_spawn::set_start_method(other).unwrap_err();
    assert!(matches!(e, Error::ContextAlreadySet(x) if x == m), "{e}");
    proc_spawn::force_start_method(Some(other));
    assert_eq!(proc_spawn::get_start_method(), other);
    proc_spawn::force_start_method(None);
    println!("default method checked");
}

/// A closure that captures nothing is a `fn` pointer: a target for every method.
pub(crate) fn non_capturing_closure_target(m: StartMethod) {
    let h = get_context(m).spawn(|(a, b): (u32, u32)| a * b + 1, (6, 7));
    assert_eq!(h.join().unwrap(), 43);
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(
        |c: Connection| c.send(&proc_spawn::current_process().pid()).unwrap(),
        b,
    );
    p.start().unwrap();
    assert_eq!(Some(a.recv::<u32>().unwrap()), p.pid());
    p.join().unwrap();
}

/// A result may carry handles (their descriptors travel with it).
pub(crate) fn result_carries_handles(m: StartMethod) {
    let (conn, value) = get_context(m)
        .spawn(make_channel, "through the result".to_string())
        .join()
        .unwrap();
    assert_eq!(conn.recv::<String>().unwrap(), "through the result");
    assert_eq!(value.get(), 99);
    value.set(100);
    assert_eq!(value.get(), 100);
}

/// Under `Fork` any closure runs, captures included (`from_closure`, `fork`).
pub(crate) fn closures_under_fork(m: StartMethod) {
    if m != StartMethod::Fork {
        return; // closures only exist under Fork
    }
    let counter = Value::new(0i64).unwrap();
    let word = String::from("captured");
    let (a, b) = Pipe::new().unwrap();
    let c2 = counter.clone();
    let mut p = Process::from_closure(move || {
        *c2.lock() += word.len() as i64;
        b.send(&word).unwrap();
    });
    assert_eq!(p.start_method(), Some(StartMethod::Fork));
    p.start().unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "captured");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(counter.get(), 8);
    let base = 40;
    assert_eq!(proc_spawn::fork(move || base + 2).join().unwrap(), 42);
    let e = proc_spawn::fork(|| -> u8 { panic!("closure panic") })
        .join()
        .unwrap_err();
    assert!(e.to_string().contains("closure panic"), "{e}");
}

/// Arguments larger than one fork-server packet and a result larger than a socket buffer (the
/// parent must read it while the child is still writing).
pub(crate) fn large_arguments_and_result(m: StartMethod) {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut expected = big.clone();
    expected.reverse();
    let got = get_context(m).spawn(reverse_bytes, big).join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected);
}

pub(crate) fn spawn_killed_child_reports_signal(m: StartMethod) {
    let h = get_context(m).spawn(sleep_secs, 60);
    h.process().kill().unwrap();
    match h.join() {
        Err(e @ Error::Signaled { signal: 9, .. }) => {
            assert!(e.to_string().contains("signal 9"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

pub(crate) fn daemon_may_not_start_children(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m)
        .process(daemon_tries_child, (m.name().to_string(), b))
        .daemon(true);
    assert!(p.is_daemon());
    p.start().unwrap();
    let r: Result<(), String> = a.recv().unwrap();
    p.join().unwrap();
    assert_eq!(
        r,
        Err("daemonic processes are not allowed to have children".to_string())
    );
}

pub(crate) fn active_children_reaps(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(wait_for_word, b);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert!(proc_spawn::active_children().iter().any(|c| c.pid() == pid));
    a.send(&"go".to_string()).unwrap();
    // once it ended, active_children() reaps it and no longer lists it
    let t = Instant::now();
    while proc_spawn::active_children().iter().any(|c| c.pid() == pid) {
        assert!(t.elapsed() < Duration::from_secs(60), "child never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(p.exitcode(), Some(0));
    assert!(!PathBuf::from(format!("/proc/{pid}")).exists() || !is_zombie(pid));
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

pub(crate) fn daemon_grandchild_terminated_when_child_returns(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(start_daemon_and_return, (m.name().to_string(), b));
    p.start().unwrap();
    let daemon_pid: u32 = a.recv().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    // The child terminated and reaped its daemon before it exited.
    assert!(process_gone_within(daemon_pid, Duration::from_secs(10)));
}

pub(crate) fn daemon_dies_with_killed_parent(m: StartMethod) {
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(start_daemon_and_wait, (m.name().to_string(), b));
    p.start().unwrap();
    let daemon_pid: u32 = a.recv().unwrap();
    assert!(!process_gone_within(daemon_pid, Duration::ZERO));
    p.kill().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-9));
    assert!(
        process_gone_within(daemon_pid, Duration::from_secs(30)),
        "the daemon outlived its SIGKILLed parent"
    );
}

/// Exit-time lifetimes in a process of its own: `main` returns with a daemon child (sleeping a
/// minute) and a non-daemon child (writing a file after 500 ms) running.
pub(crate) fn lifetimes_at_main_return(m: StartMethod) {
    check_exit_lifetimes(m, "return");
}

/// The same when the program ends with `std::process::exit`.
pub(crate) fn lifetimes_at_process_exit(m: StartMethod) {
    check_exit_lifetimes(m, "exit");
}

fn check_exit_lifetimes(m: StartMethod, how: &str) {
    let dir = temp_dir("exit");
    let t = Instant::now();
    let out = run_helper(
        "helper_exit",
        m,
        &format!("{how}|{}", dir.to_str().unwrap()),
        &[],
    );
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "helper failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // joined before the program ended
    assert_eq!(std::fs::read(dir.join("non-daemon")).unwrap(), b"written");
    // terminated: it would have written after a minute
    assert!(!dir.join("daemon").exists());
    assert!(took < Duration::from_secs(50), "{took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid_line = stdout
        .lines()
        .find_map(|l| l.split_once("daemon pid ").map(|(_, r)| r))
        .expect("the helper printed the daemon's pid");
    let daemon_pid: u32 = pid_line.trim().parse().unwrap();
    assert!(process_gone_within(daemon_pid, Duration::from_secs(10)));
    let _ = std::fs::remove_dir_all(&dir);
}

pub(crate) fn helper_exit(_: StartMethod) {
    let Some((m, arg)) = helper_method() else {
        return;
    };
    let (how, dir) = arg.split_once('|').unwrap();
    let dir = PathBuf::from(dir);
    let ctx = get_context(m);
    let mut d = ctx
        .process(
            write_file_after,
            (dir.join("daemon").to_str().unwrap().to_string(), 60_000),
        )
        .daemon(true);
    d.start().unwrap();
    println!("daemon pid {}", d.pid().unwrap());
    let mut n = ctx.process(
        write_file_after,
        (dir.join("non-daemon").to_str().unwrap().to_string(), 500),
    );
    n.start().unwrap();
    if how == "exit" {
        std::process::exit(0);
    }
    // return from the test (and from main) with both running
}

/// A program without the hook that never calls `init()`: starting a child is an error that
/// names `init()`, not a hang (under Fork no re-execution is involved, so it works).
pub(crate) fn program_without_init(m: StartMethod) {
    let out = run_helper("helper_no_init", m, "", &[(proc_spawn::NO_HOOK_ENV, "1")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("outcome: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no outcome in {stdout}"));
    if m == StartMethod::Fork {
        assert_eq!(line, "ok 0");
    } else {
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains("proc_spawn::init()"), "{line}");
        assert!(line.contains("exit code 1"), "{line}");
    }
}

pub(crate) fn helper_no_init(_: StartMethod) {
    let Some((m, _)) = helper_method() else {
        return;
    };
    let mut p = get_context(m).process(nothing, ());
    match p.start() {
        Ok(()) => {
            p.join().unwrap();
            println!("outcome: ok {}", p.exitcode().unwrap());
        }
        Err(e) => println!("outcome: error: {e}"),
    }
}

/// 1,000 start/join cycles leave the number of open descriptors unchanged (in a process of its
/// own, so that no other test opens descriptors meanwhile).
pub(crate) fn no_fd_leak(m: StartMethod) {
    let out = run_helper("helper_fd_leak", m, "1000", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("fds: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no fd count in {stdout}"));
    let (before, after) = line.split_once(' ').unwrap();
    assert_eq!(before, after, "descriptors before and after 1000 cycles");
}

pub(crate) fn helper_fd_leak(_: StartMethod) {
    let Some((m, n)) = helper_method() else {
        return;
    };
    let n: usize = n.parse().unwrap();
    let ctx = get_context(m);
    // warm up: the fork server and the cached pidfd of this process exist from here on
    let mut p = ctx.process(nothing, ());
    p.start().unwrap();
    p.join().unwrap();
    let before = open_fds();
    for i in 0..n {
        if i % 2 == 0 {
            let mut p = ctx.process(nothing, ());
            p.start().unwrap();
            p.join().unwrap();
            assert_eq!(p.exitcode(), Some(0));
        } else {
            assert_eq!(ctx.spawn(square, i as i64).join().unwrap(), (i * i) as i64);
        }
    }
    let after = open_fds();
    println!("fds: {before} {after}");
}

/// The fork server restarts when it was killed; a child in flight when it died ends with the
/// "unknown" status 255. In a process of its own: killing the server would disturb the
/// children of the tests running beside it.
pub(crate) fn forkserver_restarts(m: StartMethod) {
    if m != StartMethod::ForkServer {
        return;
    }
    let out = run_helper("helper_forkserver_restarts", m, "", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("restart checked"), "{stdout}");
}

pub(crate) fn helper_forkserver_restarts(_: StartMethod) {
    let Some((m, _)) = helper_method() else {
        return;
    };
    let ctx = get_context(m);
    assert_eq!(ctx.spawn(square, 3).join().unwrap(), 9);
    let (a, b) = Pipe::new().unwrap();
    let mut inflight = ctx.process(wait_for_word, b);
    inflight.start().unwrap();
    let server = proc_spawn::forkserver_pid().expect("a fork server runs");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(server as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert!(process_gone_within(server, Duration::from_secs(30)));
    assert_eq!(ctx.spawn(square, 4).join().unwrap(), 16);
    let again = proc_spawn::forkserver_pid().unwrap();
    assert_ne!(again, server);
    a.send(&"go".to_string()).unwrap();
    inflight.join().unwrap();
    assert_eq!(inflight.exitcode(), Some(255));
    println!("restart checked");
}

/// A fd the parent holds (not close-on-exec) is not something the child should depend on, but
/// the sentinel of one child is not inherited by its siblings under spawn/forkserver: every
/// child sees the same number of descriptors however many siblings run.
pub(crate) fn child_fd_count_does_not_grow(m: StartMethod) {
    fn count_fds(out: Connection) {
        out.send(&std::fs::read_dir("/proc/self/fd").unwrap().count())
            .unwrap();
        let _: String = out.recv().unwrap();
    }
    if m == StartMethod::Fork {
        return; // a forked child is a copy: it holds what its parent held
    }
    let mut counts = Vec::new();
    let mut keep = Vec::new();
    for _ in 0..4 {
        let (a, b) = Pipe::new().unwrap();
        let mut p = get_context(m).process(count_fds, b);
        p.start().unwrap();
        counts.push(a.recv::<usize>().unwrap());
        keep.push((p, a));
    }
    for (mut p, a) in keep {
        a.send(&"bye".to_string()).unwrap();
        p.join().unwrap();
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
}

// ---------------------------------------------------------------------------------------------
// Added by the review (helper J)

/// A result whose serialization panics: user code that runs in the child after the target.
#[derive(Deserialize, Debug)]
struct PanicsWhenSerialized;

impl Serialize for PanicsWhenSerialized {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("serialize refused")
    }
}

fn make_panicking_result(_: ()) -> PanicsWhenSerialized {
    PanicsWhenSerialized
}

/// An argument whose deserialization panics: user code that runs in the child before the
/// target.
#[derive(Debug)]
struct PanicsWhenDeserialized;

impl Serialize for PanicsWhenDeserialized {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for PanicsWhenDeserialized {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("deserialize refused")
    }
}

fn take_panicking_argument(_: PanicsWhenDeserialized) -> u8 {
    7
}

/// A panic in user code the child runs around the target (decoding the arguments, encoding
/// the result) is the child's panic: exit code 1, message to the parent. It must never unwind
/// out of the child's body into the copied stack of its parent (Fork) or into `main` (Spawn,
/// ForkServer), which would run the parent's code a second time in the child.
pub(crate) fn panics_around_the_target_end_the_child(m: StartMethod) {
    let ctx = get_context(m);
    let h = ctx.spawn(make_panicking_result, ());
    let pid = h.pid();
    let e = h.join().unwrap_err();
    assert!(matches!(e, Error::Panicked { .. }), "{e:?} (child {pid:?})");
    assert!(e.to_string().contains("serialize refused"), "{e}");
    let mut p = ctx.process(make_panicking_result, ());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(
        p.exitcode(),
        Some(0),
        "the result of Process::new is discarded"
    );
    if m != StartMethod::Fork {
        // under Fork the argument is moved, not decoded
        let e = ctx
            .spawn(take_panicking_argument, PanicsWhenDeserialized)
            .join()
            .unwrap_err();
        assert!(matches!(e, Error::Panicked { .. }), "{e:?}");
        assert!(e.to_string().contains("deserialize refused"), "{e}");
        let mut p = ctx.process(take_panicking_argument, PanicsWhenDeserialized);
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(1));
    }
}

fn read_stdin(out: Connection) {
    use std::io::Read;
    let mut got = Vec::new();
    let r = std::io::stdin().read_to_end(&mut got);
    out.send(&(r.map_err(|e| e.to_string()), got)).unwrap();
}

/// A child's standard input is `/dev/null` (as Python's children's `sys.stdin`): children do
/// not compete with their parent for its input, and a child reading it gets the end at once.
pub(crate) fn child_stdin_is_null(m: StartMethod) {
    let out = run_helper_with_stdin("helper_stdin", m, "", &[], Some(b"typed at the terminal\n"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stdin checked"), "{stdout}");
}

pub(crate) fn helper_stdin(_: StartMethod) {
    let Some((m, _)) = helper_method() else {
        return;
    };
    let (a, b) = Pipe::new().unwrap();
    let mut p = get_context(m).process(read_stdin, b);
    p.start().unwrap();
    let (r, got): (Result<usize, String>, Vec<u8>) = a.recv().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(r, Ok(0));
    assert_eq!(String::from_utf8_lossy(&got), "");
    // the parent's own input is untouched
    let mut mine = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut mine).unwrap();
    assert_eq!(mine, "typed at the terminal\n");
    println!("stdin checked");
}

fn write_stderr(_: ()) {
    use std::io::Write;
    std::io::stderr()
        .write_all(b"child writes to stderr\n")
        .unwrap();
}

/// Under Fork, a thread of the parent holding the standard error lock at the moment of the
/// fork does not leave the child unable to print (the lock is taken across the fork, as
/// Python's own locks are).
pub(crate) fn fork_while_another_thread_prints(m: StartMethod) {
    if m != StartMethod::Fork {
        return;
    }
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let guard = std::io::stderr().lock();
        held_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(guard);
    });
    held_rx.recv().unwrap();
    let mut p = get_context(m).process(write_stderr, ());
    p.start().unwrap();
    let code = p.join_timeout(Duration::from_secs(30)).unwrap();
    holder.join().unwrap();
    if code.is_none() {
        p.kill().unwrap();
        p.join().unwrap();
    }
    assert_eq!(code, Some(0), "the child hung on the stderr lock");
}

/// The fork server may die at any moment of a request (idle, reading it, forking): the request
/// goes to its successor and succeeds. A thread kills the current server every 50 ms, far
/// apart enough that no request can meet three dead servers in a row.
pub(crate) fn forkserver_killed_during_requests(m: StartMethod) {
    if m != StartMethod::ForkServer {
        return;
    }
    let out = run_helper("helper_forkserver_killed", m, "", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("killed servers:"), "{stdout}");
}

pub(crate) fn helper_forkserver_killed(_: StartMethod) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let Some((m, _)) = helper_method() else {
        return;
    };
    let ctx = get_context(m);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let killer = std::thread::spawn(move || {
        let mut last = None;
        let mut killed = 0;
        while !stop2.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            let now = proc_spawn::forkserver_pid();
            if let Some(pid) = now.filter(|_| now != last) {
                last = now;
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid as i32).unwrap(),
                    rustix::process::Signal::KILL,
                );
                killed += 1;
            }
        }
        killed
    });
    for i in 0..300i64 {
        match ctx.spawn(square, i).join() {
            Ok(v) => assert_eq!(v, i * i),
            Err(e) => panic!("request {i}: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let killed = killer.join().unwrap();
    println!("killed servers: {killed}");
}
