//! [`Process`], [`JoinHandle`], [`Run`], and this process's view of itself and its children:
//! [`current_process`], [`parent_process`], [`active_children`], the exit sequence.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::Duration;

use ipc_shm::TransferError;
use rustix::process::Signal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{self, Trampoline};
use crate::context::{self, StartMethod};
use crate::error::{Error, Result};
use crate::start::{self, ChildHandle, ChildSpec};
use crate::sys;

/// Name, pid and daemon flag of a process: what [`current_process`], [`parent_process`] and
/// [`active_children`] return.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
}

impl ProcessInfo {
    pub(crate) fn new(name: String, pid: u32, daemon: bool) -> ProcessInfo {
        ProcessInfo { name, pid, daemon }
    }

    /// The process's name: `"MainProcess"` for the main process, `Process-N` (or the name it
    /// was given) for a child.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

// ---------------------------------------------------------------------------------------------
// This process's state

pub(crate) struct Global {
    /// `None` in the main process.
    current: Option<ProcessInfo>,
    parent: Option<ProcessInfo>,
    /// Python's `_identity`: counters from the main process down to this one.
    id_path: Vec<u32>,
    counter: u32,
    children: Vec<Arc<ChildHandle>>,
    /// A pidfd of this process (for children to watch), with the pid it was opened in.
    self_pidfd: Option<(u32, OwnedFd)>,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    current: None,
    parent: None,
    id_path: Vec::new(),
    counter: 0,
    children: Vec::new(),
    self_pidfd: None,
});

/// Locks this process's state. `start::fork` holds it across `fork()`, so that the child finds
/// it consistent and unlocked by its only thread.
pub(crate) fn global() -> MutexGuard<'static, Global> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

impl Global {
    /// Makes this (new) process the child `me`, started by `parent`.
    pub(crate) fn set_child(&mut self, me: ProcessInfo, parent: ProcessInfo, id_path: Vec<u32>) {
        self.current = Some(me);
        self.parent = Some(parent);
        self.id_path = id_path;
        self.counter = 0;
        self.children.clear();
        self.self_pidfd = None;
    }

    /// A new descriptor for this process's pidfd.
    pub(crate) fn self_pidfd(&mut self) -> Result<OwnedFd> {
        let pid = sys::getpid();
        if self.self_pidfd.as_ref().is_none_or(|(p, _)| *p != pid) {
            let fd = sys::pidfd_open(pid).map_err(|e| Error::io("pidfd_open", e))?;
            self.self_pidfd = Some((pid, fd));
        }
        let (_, fd) = self.self_pidfd.as_ref().expect("set above");
        fd.try_clone().map_err(|e| Error::io("dup", e))
    }
}

/// A new descriptor for this process's pidfd (sent to children, who watch it).
pub(crate) fn self_pidfd() -> Result<OwnedFd> {
    global().self_pidfd()
}

/// Records that this process is the child `me` (after spawn or the fork server's fork).
pub(crate) fn become_child(me: ProcessInfo, parent: ProcessInfo, id_path: Vec<u32>) {
    global().set_child(me, parent, id_path);
}

/// Is this process a child started by proc-spawn?
pub(crate) fn in_child() -> bool {
    GLOBAL
        .try_lock()
        .map(|g| g.current.is_some())
        .unwrap_or(false)
}

/// This process's name, for messages (never blocks: a panic may happen anywhere).
pub(crate) fn current_name() -> String {
    match GLOBAL.try_lock() {
        Ok(g) => g
            .current
            .as_ref()
            .map_or_else(|| "MainProcess".to_string(), |c| c.name.clone()),
        Err(_) => format!("pid {}", sys::getpid()),
    }
}

/// The process this code runs in (Python's `multiprocessing.current_process()`).
///
/// # Examples
///
/// ```
/// let me = proc_spawn::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// assert!(!me.daemon());
/// ```
pub fn current_process() -> ProcessInfo {
    let g = global();
    match &g.current {
        Some(c) => ProcessInfo::new(c.name.clone(), sys::getpid(), c.daemon),
        None => ProcessInfo::new("MainProcess".into(), sys::getpid(), false),
    }
}

/// The process that started this one, `None` in the main process (Python's
/// `multiprocessing.parent_process()`). Under `ForkServer` it is the process that asked for
/// this child, not the server that forked it.
pub fn parent_process() -> Option<ProcessInfo> {
    global().parent.clone()
}

/// The children of this process that are still running; finished ones are reaped on the way
/// (Python's `multiprocessing.active_children()`).
pub fn active_children() -> Vec<ProcessInfo> {
    reap_finished();
    global().children.iter().map(|c| c.info()).collect()
}

/// The number of CPUs this process may use: the size of its affinity mask (so a process
/// restricted with `taskset` sees its share), at least 1.
pub fn cpu_count() -> usize {
    sys::cpu_count()
}

fn register(child: Arc<ChildHandle>) {
    global().children.push(child);
}

fn forget(child: &Arc<ChildHandle>) {
    global().children.retain(|c| !Arc::ptr_eq(c, child));
}

/// Reaps finished children (Python's `_cleanup()` at each start).
fn reap_finished() {
    let snapshot: Vec<Arc<ChildHandle>> = global().children.clone();
    for c in snapshot {
        if !matches!(c.try_status(), Ok(None)) {
            forget(&c);
        }
    }
}

/// Python's exit sequence: daemon children are terminated, then every child is joined. Runs at
/// `exit` in a parent (an `atexit` handler) and at the end of every child.
pub(crate) fn shutdown_children() {
    let snapshot: Vec<Arc<ChildHandle>> = std::mem::take(&mut global().children);
    for c in snapshot.iter().filter(|c| c.daemon) {
        let _ = c.signal(Signal::TERM);
    }
    for c in &snapshot {
        let _ = c.wait(None);
    }
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(shutdown_children);
}

fn ensure_atexit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = sys::atexit(at_exit);
    });
}

/// A daemon child dies with its parent: a small thread waits for the parent's pidfd to become
/// readable (the parent ended, however it ended) and kills this process.
pub(crate) fn watch_parent(parent: OwnedFd) {
    let spawned = std::thread::Builder::new()
        .name("proc-spawn-parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            match sys::poll_readable(&[parent.as_fd()], None) {
                Ok(r) if r[0] => {
                    sys::kill_self(Signal::KILL);
                    return;
                }
                Ok(_) => continue,
                Err(_) => return,
            }
        });
    if spawned.is_err() {
        eprintln!(
            "Process {}: cannot start the thread that watches the parent",
            current_name()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs: what a child runs

/// A `fn(A) -> R` target with its arguments.
pub(crate) trait TargetJob: Send {
    /// The arguments, transfer-encoded.
    fn encode(&self) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), TransferError>;
    /// The target's and its trampoline's addresses.
    fn addresses(&self) -> (usize, usize);
    /// Runs the target in this process (a forked child); returns the exit code.
    fn run_here(self: Box<Self>, reply: Option<BorrowedFd<'_>>) -> i32;
}

struct FnJob<A, R> {
    f: fn(A) -> R,
    args: A,
}

impl<A, R> TargetJob for FnJob<A, R>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: 'static,
{
    fn encode(&self) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), TransferError> {
        ipc_shm::transfer::encode(&self.args)
    }

    fn addresses(&self) -> (usize, usize) {
        (
            self.f as *const () as usize,
            bootstrap::trampoline::<A, R> as Trampoline as usize,
        )
    }

    fn run_here(self: Box<Self>, _reply: Option<BorrowedFd<'_>>) -> i32 {
        let FnJob { f, args } = *self;
        match bootstrap::call_caught(move || f(args)) {
            Ok(_) => 0,
            Err(_) => 1,
        }
    }
}

struct FnResultJob<A, R> {
    f: fn(A) -> R,
    args: A,
}

impl<A, R> TargetJob for FnResultJob<A, R>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    fn encode(&self) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), TransferError> {
        ipc_shm::transfer::encode(&self.args)
    }

    fn addresses(&self) -> (usize, usize) {
        (
            self.f as *const () as usize,
            bootstrap::trampoline_result::<A, R> as Trampoline as usize,
        )
    }

    fn run_here(self: Box<Self>, reply: Option<BorrowedFd<'_>>) -> i32 {
        let FnResultJob { f, args } = *self;
        bootstrap::finish_with_result(bootstrap::call_caught(move || f(args)), reply)
    }
}

/// A closure run in a forked child; gets the socket for its result, returns the exit code.
pub(crate) type ClosureJob = Box<dyn FnOnce(Option<BorrowedFd<'_>>) -> i32 + Send>;

/// What a [`Process`] runs.
pub(crate) enum Job {
    Target(Box<dyn TargetJob>),
    Closure(ClosureJob),
}

impl Job {
    /// Runs the job in this (forked) process; the exit code.
    pub(crate) fn run_here(self, reply: Option<BorrowedFd<'_>>) -> i32 {
        match self {
            Job::Target(t) => t.run_here(reply),
            Job::Closure(c) => c(reply),
        }
    }
}

fn run_it<T: Run>(obj: T) {
    obj.run()
}

// ---------------------------------------------------------------------------------------------
// Process

/// Python's subclass-of-`Process`-with-`run()` pattern: an object whose `run` is the child's
/// body. The object travels to the child as a serde value; see [`Process::from_run`].
///
/// # Examples
///
/// ```
/// use proc_spawn::{Process, Run};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Worker {
///     n: u64,
/// }
///
/// impl Run for Worker {
///     fn run(self) {
///         println!("{}", self.n * self.n);
///     }
/// }
///
/// proc_spawn::init();
/// let mut p = Process::from_run(Worker { n: 7 });
/// assert!(p.get_name().starts_with("Worker-"));
/// p.start().unwrap();
/// p.join().unwrap();
/// ```
pub trait Run {
    /// The child's body.
    fn run(self);
}

/// A child process running a function (Python's `multiprocessing.Process`).
///
/// The target is a function pointer `fn(A) -> R` (a `fn` item or a closure that captures
/// nothing) and its argument, a serde value that may contain multiproc handles (queues, locks,
/// shared values, connections): they are transferred with their file descriptors whatever the
/// start method. Several arguments travel as a tuple. Under [`StartMethod::Fork`] any closure
/// can be run with [`Process::from_closure`].
///
/// # Examples
///
/// ```
/// use proc_spawn::Process;
///
/// fn greet((name, times): (String, u32)) {
///     for _ in 0..times {
///         println!("hello {name}");
///     }
/// }
///
/// proc_spawn::init(); // first line of main
/// let mut p = Process::new(greet, ("bob".to_string(), 2)).name("greeter");
/// p.start().unwrap();
/// p.join().unwrap();
/// assert_eq!(p.exitcode(), Some(0));
/// ```
pub struct Process {
    name: String,
    daemon: bool,
    method: Option<StartMethod>,
    id_path: Vec<u32>,
    want_result: bool,
    job: Option<Job>,
    child: Option<Arc<ChildHandle>>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Process");
        d.field("name", &self.name).field("daemon", &self.daemon);
        match &self.child {
            None => d.field("state", &"initial"),
            Some(c) => d.field("pid", &c.pid).field("exitcode", &self.exitcode()),
        };
        d.finish()
    }
}

/// The next child identity `(name suffix, id path)`: Python's `Process-N`, `Process-N:M` for
/// the children of child N.
fn next_identity() -> (String, Vec<u32>) {
    let mut g = global();
    g.counter += 1;
    let mut path = g.id_path.clone();
    path.push(g.counter);
    let suffix = path
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(":");
    (suffix, path)
}

impl Process {
    fn with_job(prefix: &str, job: Job, method: Option<StartMethod>) -> Process {
        let (suffix, id_path) = next_identity();
        Process {
            name: format!("{prefix}-{suffix}"),
            daemon: current_process().daemon(),
            method,
            id_path,
            want_result: false,
            job: Some(job),
            child: None,
        }
    }

    /// A process that will run `f(args)`, with the program's default start method unless built
    /// from a [`Context`](crate::Context). Nothing happens until [`start`](Process::start).
    ///
    /// The result of `f` is discarded (use [`spawn`] to get it back).
    pub fn new<A, R>(f: fn(A) -> R, args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: 'static,
    {
        Process::with_job("Process", Job::Target(Box::new(FnJob { f, args })), None)
    }

    pub(crate) fn new_with_result<A, R>(f: fn(A) -> R, args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let mut p = Process::with_job(
            "Process",
            Job::Target(Box::new(FnResultJob { f, args })),
            None,
        );
        p.want_result = true;
        p
    }

    /// A process that will run `obj.run()`; its default name is the type's name and a counter
    /// (`Worker-1`), as Python names a subclass's processes.
    pub fn from_run<T>(obj: T) -> Process
    where
        T: Run + Serialize + DeserializeOwned + Send + 'static,
    {
        let full = std::any::type_name::<T>();
        let base = full.split('<').next().unwrap_or(full);
        let short = base.rsplit("::").next().unwrap_or(base);
        Process::with_job(
            short,
            Job::Target(Box::new(FnJob {
                f: run_it::<T>,
                args: obj,
            })),
            None,
        )
    }

    /// A process that runs the closure `f` in a forked copy of this process: always
    /// [`StartMethod::Fork`], whatever the default. The closure may capture anything `Send`.
    ///
    /// Forking a process in which other threads run is dangerous: a lock another thread held
    /// at the moment of the fork stays locked forever in the child (printing, the allocator of
    /// some libraries, any `Mutex`). Python deprecates it for that reason; prefer
    /// [`Process::new`] with `Spawn` or `ForkServer` in multithreaded programs.
    pub fn from_closure<F>(f: F) -> Process
    where
        F: FnOnce() + Send + 'static,
    {
        let job: ClosureJob = Box::new(move |_reply| match bootstrap::call_caught(f) {
            Ok(()) => 0,
            Err(_) => 1,
        });
        Process::with_job("Process", Job::Closure(job), Some(StartMethod::Fork))
    }

    pub(crate) fn from_closure_with_result<F, R>(f: F) -> Process
    where
        F: FnOnce() -> R + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let job: ClosureJob =
            Box::new(move |reply| bootstrap::finish_with_result(bootstrap::call_caught(f), reply));
        let mut p = Process::with_job("Process", Job::Closure(job), Some(StartMethod::Fork));
        p.want_result = true;
        p
    }

    pub(crate) fn with_method(mut self, method: StartMethod) -> Process {
        self.method = Some(method);
        self
    }

    /// Sets the name (default `Process-N`).
    pub fn name(mut self, name: impl Into<String>) -> Process {
        self.name = name.into();
        self
    }

    /// Makes the process a daemon (default: this process's own flag, so `false` in the main
    /// process). A daemon is terminated when its parent exits, dies with its parent when that
    /// is killed, and may not start children. Once the process has started the flag cannot
    /// change (Python raises; here the call has no effect).
    pub fn daemon(mut self, daemon: bool) -> Process {
        if self.child.is_none() {
            self.daemon = daemon;
        }
        self
    }

    /// The name (the getter: `name` is the builder method).
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// Whether it is (or will be) a daemon (the getter: `daemon` is the builder method).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The start method this process will use (or used): its context's, or the program's
    /// default.
    pub fn start_method(&self) -> Option<StartMethod> {
        self.method
    }

    /// Starts the child.
    ///
    /// Under `Spawn` and `ForkServer` it returns once the child has acknowledged its orders,
    /// so a program that cannot run children (it lacks the hook and never calls
    /// [`init`](crate::init)) is reported here.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`] the second time; [`Error::DaemonChildren`] in a daemon;
    /// [`Error::Transfer`] when the arguments cannot be encoded; [`Error::NotInitialized`] when
    /// the child never reached `init()`; [`Error::Refused`] when it refused the request;
    /// [`Error::Io`] when the system refuses (out of processes or descriptors).
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err(Error::AlreadyStarted);
        }
        let Some(job) = self.job.take() else {
            return Err(Error::AlreadyStarted);
        };
        bootstrap::refuse_if_bootstrapping();
        bootstrap::keep_hook();
        if current_process().daemon() {
            self.job = Some(job);
            return Err(Error::DaemonChildren);
        }
        let method = match self.method {
            Some(m) => m,
            None => match context::default_method() {
                Ok(m) => m,
                Err(e) => {
                    self.job = Some(job);
                    return Err(e);
                }
            },
        };
        self.method = Some(method);
        reap_finished();
        ensure_atexit();
        let spec = ChildSpec {
            name: self.name.clone(),
            daemon: self.daemon,
            id_path: self.id_path.clone(),
            want_result: self.want_result,
        };
        match start::start(method, job, &spec) {
            Ok(handle) => {
                let handle = Arc::new(handle);
                register(handle.clone());
                self.child = Some(handle);
                Ok(())
            }
            Err((e, job)) => {
                self.job = job;
                Err(e)
            }
        }
    }

    fn started(&self) -> Result<&Arc<ChildHandle>> {
        self.child.as_ref().ok_or(Error::NotStarted)
    }

    fn settle(&self, status: Result<Option<i32>>) -> Result<Option<i32>> {
        if let (Ok(Some(_)), Some(c)) = (&status, &self.child) {
            forget(c);
        }
        status
    }

    /// Waits until the child ends (and reaps it).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] before [`start`](Process::start).
    pub fn join(&mut self) -> Result<()> {
        let c = self.started()?;
        self.settle(c.wait(None)).map(|_| ())
    }

    /// Waits at most `timeout` for the child to end: its exit code if it did, `None` if it is
    /// still running (it is left running, as in Python).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] before [`start`](Process::start).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let c = self.started()?;
        self.settle(c.wait(Some(timeout)))
    }

    /// Whether the child was started and has not ended yet (a child that ended is reaped).
    pub fn is_alive(&self) -> bool {
        match &self.child {
            None => false,
            Some(c) => matches!(self.settle(c.try_status()), Ok(None)),
        }
    }

    /// The exit code: `None` before start and while running; `0` when the target returned, `1`
    /// when it panicked, `-N` when the child was killed by signal `N` (`-15` after
    /// [`terminate`](Process::terminate), `-9` after [`kill`](Process::kill)).
    pub fn exitcode(&self) -> Option<i32> {
        let c = self.child.as_ref()?;
        self.settle(c.try_status()).ok().flatten()
    }

    /// The child's pid, `None` before start.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// Sends `SIGTERM` (a child that already ended is left alone).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] before [`start`](Process::start).
    pub fn terminate(&self) -> Result<()> {
        self.started()?.signal(Signal::TERM)
    }

    /// Sends `SIGKILL` (a child that already ended is left alone).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] before [`start`](Process::start).
    pub fn kill(&self) -> Result<()> {
        self.started()?.signal(Signal::KILL)
    }

    /// A descriptor that becomes readable when the child ends (a pidfd), to wait on several
    /// processes and connections at once with `poll`.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] before [`start`](Process::start).
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.started()?.sentinel())
    }

    fn result<R: DeserializeOwned>(&self) -> Option<Result<std::result::Result<R, String>>> {
        let (payload, fds) = self.child.as_ref()?.take_result()?;
        Some(start::decode_result(&payload, fds))
    }
}

// ---------------------------------------------------------------------------------------------
// JoinHandle, spawn, fork

/// A child that computes a value: [`join`](JoinHandle::join) returns it. Built by [`spawn`],
/// [`fork`] and [`Context::spawn`](crate::Context::spawn).
pub struct JoinHandle<R> {
    process: Process,
    start_error: Option<Error>,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("process", &self.process)
            .field("start_error", &self.start_error)
            .finish()
    }
}

impl<R: DeserializeOwned> JoinHandle<R> {
    pub(crate) fn start(mut process: Process) -> JoinHandle<R> {
        let start_error = process.start().err();
        JoinHandle {
            process,
            start_error,
            _result: PhantomData,
        }
    }

    /// Waits for the child and returns its result.
    ///
    /// # Errors
    ///
    /// The error that prevented the start; [`Error::Panicked`] (its `Display` carries the
    /// child's panic message); [`Error::Signaled`] when the child was killed;
    /// [`Error::Exited`] when it exited without a result; [`Error::Transfer`] when the result
    /// cannot be decoded.
    pub fn join(mut self) -> Result<R> {
        if let Some(e) = self.start_error.take() {
            return Err(e);
        }
        self.process.join()?;
        let name = self.process.name.clone();
        match self.process.result::<R>() {
            Some(Ok(Ok(v))) => Ok(v),
            Some(Ok(Err(message))) => Err(Error::Panicked { name, message }),
            Some(Err(e)) => Err(e),
            None => match self.process.exitcode() {
                Some(code) if code < 0 => Err(Error::Signaled {
                    name,
                    signal: -code,
                }),
                code => Err(Error::Exited {
                    name,
                    code: code.unwrap_or(start::LOST_STATUS),
                }),
            },
        }
    }

    /// The child's pid (`None` if it could not be started).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the child has ended (or could not be started).
    pub fn is_finished(&self) -> bool {
        !self.process.is_alive()
    }

    /// The process behind this handle (to terminate it, wait on its sentinel, ...).
    pub fn process(&self) -> &Process {
        &self.process
    }
}

/// Runs `f(args)` in a child process with the program's default start method and returns a
/// handle whose [`join`](JoinHandle::join) gives back `f`'s result (or the child's panic
/// message). An error starting the child is returned by `join`.
///
/// # Examples
///
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// proc_spawn::init();
/// assert_eq!(proc_spawn::spawn(square, 12).join().unwrap(), 144);
/// ```
pub fn spawn<A, R>(f: fn(A) -> R, args: A) -> JoinHandle<R>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    JoinHandle::start(Process::new_with_result(f, args))
}

/// Runs the closure `f` in a forked child ([`StartMethod::Fork`]) and returns a handle whose
/// [`join`](JoinHandle::join) gives back its result. See [`Process::from_closure`] for the
/// danger of forking a multithreaded process.
///
/// # Examples
///
/// ```
/// let base = 40;
/// let h = proc_spawn::fork(move || base + 2);
/// assert_eq!(h.join().unwrap(), 42);
/// ```
pub fn fork<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    JoinHandle::start(Process::from_closure_with_result(f))
}
