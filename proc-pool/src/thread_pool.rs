//! [`ThreadPool`]: the same API on threads of this process (Python's
//! `multiprocessing.pool.ThreadPool` / `multiprocessing.dummy.Pool`), where tasks are closures
//! that may capture.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::async_result::{ApplyDeliver, AsyncResult, Callbacks, Cell, Deliver, Items, MapDeliver};
use crate::error::{Error, Result};
use crate::imap::{IMap, ImapDeliver, ImapState};
use crate::pool::default_chunksize;
use crate::waiting::{wait_until, Waited};
use crate::wire::ChunkResults;
use crate::worker::{catch_task, run_chunk};

/// A queued task: called with `None` to run, with `Some(error)` to fail without running.
type Task = Box<dyn FnOnce(Option<Error>) + Send>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Run,
    Closed,
    Terminated,
}

struct State {
    phase: Phase,
    broken: Option<Error>,
    queue: VecDeque<Task>,
    unfinished: usize,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    work_cv: Condvar,
    idle_cv: Condvar,
    /// Deliveries (and so callbacks) happen one at a time.
    deliver_lock: Mutex<()>,
    init: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, tasks: Vec<Task>) -> std::result::Result<(), (Error, Vec<Task>)> {
        let mut st = self.lock();
        if st.phase != Phase::Run {
            return Err((Error::NotRunning, tasks));
        }
        if let Some(e) = &st.broken {
            return Err((e.clone(), tasks));
        }
        st.unfinished += tasks.len();
        st.queue.extend(tasks);
        drop(st);
        self.work_cv.notify_all();
        Ok(())
    }

    /// Fails everything queued with `e`.
    fn fail_queue(&self, st: &mut State, e: &Error) -> Vec<(Task, Error)> {
        let tasks: Vec<Task> = st.queue.drain(..).collect();
        st.unfinished -= tasks.len();
        self.idle_cv.notify_all();
        tasks.into_iter().map(|t| (t, e.clone())).collect()
    }
}

fn thread_main(sh: Arc<Shared>) {
    if let Some(init) = &sh.init {
        if let Err(crate::wire::ItemError::Panicked { message, .. }) = catch_task(init) {
            let failed = {
                let mut st = sh.lock();
                let e = Error::InitializerFailed { message };
                if st.broken.is_none() {
                    st.broken = Some(e.clone());
                }
                sh.fail_queue(&mut st, &e)
            };
            for (t, e) in failed {
                t(Some(e));
            }
            return;
        }
    }
    let mut st = sh.lock();
    loop {
        if let Some(task) = st.queue.pop_front() {
            drop(st);
            task(None);
            st = sh.lock();
            st.unfinished -= 1;
            if st.unfinished == 0 {
                sh.idle_cv.notify_all();
            }
            continue;
        }
        if st.stop {
            return;
        }
        st = sh.work_cv.wait(st).unwrap_or_else(|e| e.into_inner());
    }
}

/// A function of 2 to 4 arguments applied to a tuple: what
/// [`ThreadPool::starmap`] accepts.
pub trait StarFn<Args, R>: Send + Sync + 'static {
    /// Calls the function with the tuple's elements.
    fn call_star(&self, args: Args) -> R;
}

impl<F, A, B, R> StarFn<(A, B), R> for F
where
    F: Fn(A, B) -> R + Send + Sync + 'static,
{
    fn call_star(&self, (a, b): (A, B)) -> R {
        self(a, b)
    }
}

impl<F, A, B, C, R> StarFn<(A, B, C), R> for F
where
    F: Fn(A, B, C) -> R + Send + Sync + 'static,
{
    fn call_star(&self, (a, b, c): (A, B, C)) -> R {
        self(a, b, c)
    }
}

impl<F, A, B, C, D, R> StarFn<(A, B, C, D), R> for F
where
    F: Fn(A, B, C, D) -> R + Send + Sync + 'static,
{
    fn call_star(&self, (a, b, c, d): (A, B, C, D)) -> R {
        self(a, b, c, d)
    }
}

/// Configures a [`ThreadPool`].
pub struct ThreadPoolBuilder {
    threads: usize,
    init: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("processes", &self.threads)
            .field("initializer", &self.init.is_some())
            .finish()
    }
}

impl ThreadPoolBuilder {
    /// The number of threads (0, the default, means [`proc_spawn::cpu_count`]).
    pub fn processes(mut self, n: usize) -> ThreadPoolBuilder {
        self.threads = n;
        self
    }

    /// Runs `f()` once in each thread before any task. If it panics, the pool is broken
    /// (every pending and future task fails with [`Error::InitializerFailed`]).
    pub fn initializer(mut self, f: impl Fn() + Send + Sync + 'static) -> ThreadPoolBuilder {
        self.init = Some(Box::new(f));
        self
    }

    /// Starts the threads.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] when a thread cannot be started.
    pub fn build(self) -> Result<ThreadPool> {
        let n = if self.threads == 0 {
            proc_spawn::cpu_count().max(1)
        } else {
            self.threads
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                phase: Phase::Run,
                broken: None,
                queue: VecDeque::new(),
                unfinished: 0,
                stop: false,
            }),
            work_cv: Condvar::new(),
            idle_cv: Condvar::new(),
            deliver_lock: Mutex::new(()),
            init: self.init,
        });
        let pool = ThreadPool {
            shared,
            threads: Mutex::new(Vec::new()),
            n,
        };
        for i in 1..=n {
            let sh = pool.shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("Thread-{i} (worker)"))
                .spawn(move || thread_main(sh))
                .map_err(|e| Error::Spawn(format!("cannot start a thread: {e}")))?;
            pool.threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t);
        }
        Ok(pool)
    }
}

/// A pool of threads with [`Pool`](crate::Pool)'s API (Python's `ThreadPool`, a.k.a.
/// `multiprocessing.dummy.Pool`): tasks are closures `Fn(A) -> R + Send + Sync + 'static`,
/// which may capture; nothing is encoded.
///
/// Differences from `Pool`, as in Python: every task runs in this process; a panicking task
/// still gives [`Error::Panicked`] and the thread goes on; [`terminate`](ThreadPool::terminate)
/// fails the queued tasks but cannot stop a running one (threads cannot be killed): it waits
/// for them. There is no `max_tasks_per_child` and no start method.
///
/// # Examples
///
/// ```
/// use proc_pool::ThreadPool;
///
/// let pool = ThreadPool::new(4)?;
/// let offset = 10;
/// assert_eq!(pool.map(move |x: i32| x + offset, 0..3)?, vec![10, 11, 12]);
/// assert_eq!(pool.map(|x: i64| x * x, 0..10)?, vec![0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// # Ok::<(), proc_pool::Error>(())
/// ```
pub struct ThreadPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    n: usize,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("state", &self.shared.lock().phase)
            .field("pool_size", &self.n)
            .finish()
    }
}

/// Runs `f` over `items`, catching each panic, and delivers chunk `chunk` under the pool's
/// delivery lock.
fn chunk_task<A, R, F>(
    sh: &Arc<Shared>,
    f: Arc<F>,
    items: Vec<A>,
    chunk: usize,
    deliver: Arc<dyn Deliver<R>>,
) -> Task
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let sh = sh.clone();
    Box::new(move |fail: Option<Error>| {
        let n = items.len();
        let results: Items<R> = match fail {
            Some(e) => Items::failed(n, &e),
            None => match run_chunk(items, |a| f(a)) {
                ChunkResults::All(v) => Items::All(v),
                ChunkResults::Each(v) => {
                    Items::Each(v.into_iter().map(|r| r.map_err(Error::from)).collect())
                }
            },
        };
        let _g = sh.deliver_lock.lock().unwrap_or_else(|e| e.into_inner());
        deliver.deliver(chunk, results);
    })
}

impl ThreadPool {
    /// A pool of `n` threads (0 means [`proc_spawn::cpu_count`]).
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] when a thread cannot be started.
    pub fn new(n: usize) -> Result<ThreadPool> {
        ThreadPool::builder().processes(n).build()
    }

    /// A [`ThreadPoolBuilder`].
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder {
            threads: 0,
            init: None,
        }
    }

    /// The number of threads.
    pub fn processes(&self) -> usize {
        self.n
    }

    fn submit_or_fail(&self, tasks: Vec<Task>) {
        if let Err((e, tasks)) = self.shared.submit(tasks) {
            for t in tasks {
                t(Some(e.clone()));
            }
        }
    }

    fn map_impl<A, R, F>(
        &self,
        f: Arc<F>,
        items: Vec<A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> AsyncResult<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        let n = items.len();
        let cs = match chunksize {
            Some(0) => {
                return AsyncResult::failed(
                    Error::InvalidArgument("chunksize must be 1 or more, not 0".into()),
                    callbacks,
                )
            }
            Some(c) => c,
            None => default_chunksize(n, self.n),
        };
        let cell = Cell::new(callbacks);
        let deliver = Arc::new(MapDeliver::new(n, cs, cell.clone()));
        if n == 0 {
            let st = self.shared.lock();
            let refused = if st.phase != Phase::Run {
                Some(Error::NotRunning)
            } else {
                st.broken.clone()
            };
            drop(st);
            match refused {
                Some(e) => cell.complete(Err(e)),
                None => deliver.finish_if_empty(),
            }
            return AsyncResult::from_cell(cell);
        }
        let mut tasks = Vec::with_capacity(n.div_ceil(cs));
        let mut it = items.into_iter();
        let mut chunk = 0;
        loop {
            let part: Vec<A> = it.by_ref().take(cs).collect();
            if part.is_empty() {
                break;
            }
            let d: Arc<dyn Deliver<R>> = deliver.clone();
            tasks.push(chunk_task(&self.shared, f.clone(), part, chunk, d));
            chunk += 1;
        }
        self.submit_or_fail(tasks);
        AsyncResult::from_cell(cell)
    }

    /// `[f(x) for x in items]` on the threads.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`](crate::Pool::map).
    pub fn map<A, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items).get()
    }

    /// [`map`](ThreadPool::map) with an explicit chunksize.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_chunked`](crate::Pool::map_chunked).
    pub fn map_chunked<A, R, F, I>(&self, f: F, items: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, items, Some(chunksize), Callbacks::new())
            .get()
    }

    /// [`map`](ThreadPool::map) without waiting.
    pub fn map_async<A, R, F, I>(&self, f: F, items: I) -> AsyncResult<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, items, None, Callbacks::new())
    }

    /// [`map_async`](ThreadPool::map_async) with an explicit chunksize.
    pub fn map_async_chunked<A, R, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> AsyncResult<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, items, Some(chunksize), Callbacks::new())
    }

    /// [`map_async`](ThreadPool::map_async) with an optional chunksize and callbacks.
    pub fn map_async_with<A, R, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> AsyncResult<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_impl(
            Arc::new(f),
            items.into_iter().collect(),
            chunksize,
            callbacks,
        )
    }

    /// `[f(*t) for t in items]` for closures of 2, 3 or 4 arguments.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`](crate::Pool::map).
    pub fn starmap<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: StarFn<T, R>,
        I: IntoIterator<Item = T>,
    {
        self.starmap_async_with(f, items, None, Callbacks::new())
            .get()
    }

    /// [`starmap`](ThreadPool::starmap) with an explicit chunksize.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_chunked`](crate::Pool::map_chunked).
    pub fn starmap_chunked<T, R, F, I>(&self, f: F, items: I, chunksize: usize) -> Result<Vec<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: StarFn<T, R>,
        I: IntoIterator<Item = T>,
    {
        self.starmap_async_with(f, items, Some(chunksize), Callbacks::new())
            .get()
    }

    /// [`starmap`](ThreadPool::starmap) without waiting.
    pub fn starmap_async<T, R, F, I>(&self, f: F, items: I) -> AsyncResult<Vec<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: StarFn<T, R>,
        I: IntoIterator<Item = T>,
    {
        self.starmap_async_with(f, items, None, Callbacks::new())
    }

    /// [`starmap_async`](ThreadPool::starmap_async) with an optional chunksize and callbacks.
    pub fn starmap_async_with<T, R, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> AsyncResult<Vec<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: StarFn<T, R>,
        I: IntoIterator<Item = T>,
    {
        let f = Arc::new(f);
        let g = move |t: T| f.call_star(t);
        self.map_impl(
            Arc::new(g),
            items.into_iter().collect(),
            chunksize,
            callbacks,
        )
    }

    /// [`Pool::starmap3`](crate::Pool::starmap3)'s counterpart (same as
    /// [`starmap`](ThreadPool::starmap)).
    ///
    /// # Errors
    ///
    /// As [`Pool::map`](crate::Pool::map).
    pub fn starmap3<A, B, C, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        A: Send + 'static,
        B: Send + 'static,
        C: Send + 'static,
        R: Send + 'static,
        F: Fn(A, B, C) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = (A, B, C)>,
    {
        self.starmap(f, items)
    }

    /// [`Pool::starmap4`](crate::Pool::starmap4)'s counterpart (same as
    /// [`starmap`](ThreadPool::starmap)).
    ///
    /// # Errors
    ///
    /// As [`Pool::map`](crate::Pool::map).
    pub fn starmap4<A, B, C, D, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        A: Send + 'static,
        B: Send + 'static,
        C: Send + 'static,
        D: Send + 'static,
        R: Send + 'static,
        F: Fn(A, B, C, D) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = (A, B, C, D)>,
    {
        self.starmap(f, items)
    }

    /// `f(arg)` on a thread; waits for it.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply`](crate::Pool::apply).
    pub fn apply<A, R, F>(&self, f: F, arg: A) -> Result<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.apply_async(f, arg).get()
    }

    /// `f(arg)` on a thread, without waiting.
    pub fn apply_async<A, R, F>(&self, f: F, arg: A) -> AsyncResult<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.apply_async_with(f, arg, Callbacks::new())
    }

    /// [`apply_async`](ThreadPool::apply_async) with callbacks.
    pub fn apply_async_with<A, R, F>(&self, f: F, arg: A, callbacks: Callbacks<R>) -> AsyncResult<R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        let cell = Cell::new(callbacks);
        let d: Arc<dyn Deliver<R>> = Arc::new(ApplyDeliver { cell: cell.clone() });
        let task = chunk_task(&self.shared, Arc::new(f), vec![arg], 0, d);
        self.submit_or_fail(vec![task]);
        AsyncResult::from_cell(cell)
    }

    fn imap_impl<'a, A, R, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> IMap<'a, R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        let state = ImapState::new(ordered, chunksize.max(1));
        if chunksize == 0 {
            return IMap::failed(
                Error::InvalidArgument("chunksize must be 1 or more, not 0".into()),
                state,
            );
        }
        let f = Arc::new(f);
        let sh = self.shared.clone();
        let deliver: Arc<dyn Deliver<R>> = Arc::new(ImapDeliver(state.clone()));
        let mut input = items.into_iter();
        let feed = Box::new(move |chunk: usize| -> Option<Result<usize>> {
            let part: Vec<A> = input.by_ref().take(chunksize).collect();
            if part.is_empty() {
                return None;
            }
            let n = part.len();
            let task = chunk_task(&sh, f.clone(), part, chunk, deliver.clone());
            match sh.submit(vec![task]) {
                Ok(()) => Some(Ok(n)),
                Err((e, _)) => Some(Err(e)),
            }
        });
        IMap::new(state, feed, 4 * self.n)
    }

    /// A lazy `map` in input order (see [`Pool::imap`](crate::Pool::imap)).
    pub fn imap<'a, A, R, F, I>(&self, f: F, items: I) -> IMap<'a, R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_impl(f, items, 1, true)
    }

    /// [`imap`](ThreadPool::imap) with `chunksize` items per task.
    pub fn imap_chunked<'a, A, R, F, I>(&self, f: F, items: I, chunksize: usize) -> IMap<'a, R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_impl(f, items, chunksize, true)
    }

    /// A lazy `map` in completion order.
    pub fn imap_unordered<'a, A, R, F, I>(&self, f: F, items: I) -> IMap<'a, R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_impl(f, items, 1, false)
    }

    /// [`imap_unordered`](ThreadPool::imap_unordered) with `chunksize` items per task.
    pub fn imap_unordered_chunked<'a, A, R, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMap<'a, R>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_impl(f, items, chunksize, false)
    }

    /// Takes no more work; what was submitted still runs. Idempotent.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        if st.phase == Phase::Run {
            st.phase = Phase::Closed;
        }
    }

    /// Fails every queued task with [`Error::Terminated`], lets the running ones finish, and
    /// stops the threads. Idempotent.
    pub fn terminate(&self) {
        let failed = {
            let mut st = self.shared.lock();
            st.phase = Phase::Terminated;
            self.shared.fail_queue(&mut st, &Error::Terminated)
        };
        for (t, e) in failed {
            t(Some(e));
        }
        self.stop_threads();
    }

    /// Waits for everything submitted, after [`close`](ThreadPool::close) (or
    /// [`terminate`](ThreadPool::terminate)), and stops the threads.
    ///
    /// # Errors
    ///
    /// [`Error::StillRunning`] when the pool is neither closed nor terminated;
    /// [`Error::Interrupted`] on `SIGINT` while waiting.
    pub fn join(&self) -> Result<()> {
        let st = self.shared.lock();
        if st.phase == Phase::Run {
            return Err(Error::StillRunning);
        }
        let (st, how) = wait_until(st, &self.shared.idle_cv, None, |s| s.unfinished == 0);
        drop(st);
        if how == Waited::Interrupted {
            return Err(Error::Interrupted);
        }
        self.stop_threads();
        Ok(())
    }

    fn stop_threads(&self) {
        self.shared.lock().stop = true;
        self.shared.work_cv.notify_all();
        let threads: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Drop for ThreadPool {
    /// Terminates the pool: queued tasks fail with [`Error::Terminated`].
    fn drop(&mut self) {
        self.terminate();
    }
}
