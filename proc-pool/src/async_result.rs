//! [`AsyncResult`], [`Callbacks`], and the collectors that turn chunk results into the value
//! of an `apply`, a `map` or an `imap` (shared by [`Pool`](crate::Pool) and
//! [`ThreadPool`](crate::ThreadPool)).

use std::fmt;
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::waiting::{deadline_after, wait_until, Waited};
use crate::wire::ChunkResults;

// ---------------------------------------------------------------------------------------------
// Callbacks

type SuccessFn<T> = Box<dyn FnOnce(&T) + Send>;
type ErrorFn = Box<dyn FnOnce(&Error) + Send>;

/// Success and error callbacks for the `_async` methods (Python's `callback=` and
/// `error_callback=`).
///
/// They run in the parent process, one at a time and in completion order (on the pool's
/// result thread; on a [`ThreadPool`](crate::ThreadPool), on the thread that completed the
/// task, under one lock), *before* the result becomes ready, so a callback has always run
/// when `get` returns. A callback gets a reference: the value stays retrievable with
/// [`AsyncResult::get`]. A panicking callback is caught and reported on standard error; it
/// does not disturb the pool.
///
/// # Examples
///
/// ```
/// use proc_pool::{Callbacks, Pool};
/// use std::sync::mpsc;
///
/// fn square(x: i64) -> i64 {
///     x * x
/// }
///
/// proc_pool::init();
/// let pool = Pool::new(2)?;
/// let (tx, rx) = mpsc::channel();
/// let cb = Callbacks::new().on_success(move |v: &i64| tx.send(*v).unwrap());
/// let r = pool.apply_async_with(square, 9, cb);
/// assert_eq!(r.get()?, 81);
/// assert_eq!(rx.recv().unwrap(), 81);
/// # Ok::<(), proc_pool::Error>(())
/// ```
pub struct Callbacks<T> {
    success: Option<SuccessFn<T>>,
    error: Option<ErrorFn>,
}

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            success: None,
            error: None,
        }
    }
}

impl<T> fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("on_success", &self.success.is_some())
            .field("on_error", &self.error.is_some())
            .finish()
    }
}

impl<T> Callbacks<T> {
    /// No callbacks.
    pub fn new() -> Callbacks<T> {
        Callbacks::default()
    }

    /// Calls `f` with the value when the task succeeds.
    pub fn on_success(mut self, f: impl FnOnce(&T) + Send + 'static) -> Callbacks<T> {
        self.success = Some(Box::new(f));
        self
    }

    /// Calls `f` with the error when the task fails.
    pub fn on_error(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Callbacks<T> {
        self.error = Some(Box::new(f));
        self
    }

    fn run(self, r: &Result<T>) {
        let call = match r {
            Ok(v) => self
                .success
                .map(|f| Box::new(move || f(v)) as Box<dyn FnOnce() + '_>),
            Err(e) => self
                .error
                .map(|f| Box::new(move || f(e)) as Box<dyn FnOnce() + '_>),
        };
        if let Some(call) = call {
            if panic::catch_unwind(AssertUnwindSafe(call)).is_err() {
                eprintln!("proc-pool: a result callback panicked (ignored)");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cell behind an AsyncResult

enum Slot<T> {
    Pending { completing: bool },
    Ready(Result<T>),
    Taken,
}

pub(crate) struct Cell<T> {
    slot: Mutex<Slot<T>>,
    cv: Condvar,
    /// Threads waiting on `cv` (a notification is a system call: only when someone waits).
    waiters: AtomicUsize,
    callbacks: Mutex<Option<Callbacks<T>>>,
}

impl<T> Cell<T> {
    pub(crate) fn new(callbacks: Callbacks<T>) -> Arc<Cell<T>> {
        Arc::new(Cell {
            slot: Mutex::new(Slot::Pending { completing: false }),
            cv: Condvar::new(),
            waiters: AtomicUsize::new(0),
            callbacks: Mutex::new(Some(callbacks)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts this thread among the waiters until the guard is dropped.
    fn count_waiter(&self) -> WaiterCount<'_> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        WaiterCount(&self.waiters)
    }

    /// Resolves the cell (the first resolution wins): runs the callbacks, then makes the
    /// result ready and wakes the waiters.
    pub(crate) fn complete(&self, r: Result<T>) {
        {
            let mut s = self.lock();
            match &mut *s {
                Slot::Pending { completing } if !*completing => *completing = true,
                _ => return,
            }
        }
        let cbs = self
            .callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(cbs) = cbs {
            cbs.run(&r);
        }
        *self.lock() = Slot::Ready(r);
        // A waiter counts itself before it looks at the slot (under the lock): either it saw
        // `Ready`, or its count is visible here.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.cv.notify_all();
        }
    }
}

/// Uncounts a waiter when dropped.
struct WaiterCount<'a>(&'a AtomicUsize);

impl Drop for WaiterCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// AsyncResult

/// The result of an `apply_async`, `map_async` or `starmap_async`: Python's `AsyncResult`.
///
/// It does not borrow the pool; it may be moved to another thread and waited on there. If the
/// pool is terminated or dropped first, it resolves to [`Error::Terminated`] (it never hangs).
///
/// [`get`](AsyncResult::get) moves a successful value out (results need not be `Clone`); a
/// second `get` returns [`Error::AlreadyTaken`]. An error is returned by every `get`.
///
/// # Examples
///
/// ```
/// use proc_pool::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// proc_pool::init();
/// let pool = Pool::new(2)?;
/// let r = pool.map_async(square, 0..4);
/// r.wait()?;
/// assert!(r.ready());
/// assert_eq!(r.successful(), Some(true));
/// assert_eq!(r.get()?, vec![0, 1, 4, 9]);
/// # Ok::<(), proc_pool::Error>(())
/// ```
pub struct AsyncResult<T> {
    cell: Arc<Cell<T>>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .field("successful", &self.successful())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn from_cell(cell: Arc<Cell<T>>) -> AsyncResult<T> {
        AsyncResult { cell }
    }

    /// A result that is already failed (work refused at submission).
    pub(crate) fn failed(e: Error, callbacks: Callbacks<T>) -> AsyncResult<T> {
        let cell = Cell::new(callbacks);
        cell.complete(Err(e));
        AsyncResult { cell }
    }

    /// Whether the result has arrived (successful or not).
    pub fn ready(&self) -> bool {
        !matches!(*self.cell.lock(), Slot::Pending { .. })
    }

    /// `None` until the result is ready, then whether the task succeeded (Python raises
    /// `ValueError` before it is ready; here that is `None`).
    pub fn successful(&self) -> Option<bool> {
        match &*self.cell.lock() {
            Slot::Pending { .. } => None,
            Slot::Ready(r) => Some(r.is_ok()),
            Slot::Taken => Some(true),
        }
    }

    /// Waits until the result is ready.
    ///
    /// # Errors
    ///
    /// [`Error::Interrupted`] when `SIGINT` arrives while waiting.
    pub fn wait(&self) -> Result<()> {
        self.wait_deadline(None).map(|_| ())
    }

    /// Waits at most `timeout`: whether the result is ready.
    ///
    /// # Errors
    ///
    /// [`Error::Interrupted`] when `SIGINT` arrives while waiting.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_deadline(deadline_after(timeout))
    }

    fn wait_deadline(&self, deadline: Option<std::time::Instant>) -> Result<bool> {
        let _counted = self.cell.count_waiter();
        let g = self.cell.lock();
        let (_g, how) = wait_until(g, &self.cell.cv, deadline, |s| {
            !matches!(s, Slot::Pending { .. })
        });
        match how {
            Waited::Done => Ok(true),
            Waited::TimedOut => Ok(false),
            Waited::Interrupted => Err(Error::Interrupted),
        }
    }

    /// Waits for the result and returns it: the value (moved out), or the task's error.
    ///
    /// # Errors
    ///
    /// The task's error ([`Error::Panicked`], [`Error::WorkerLost`], ...);
    /// [`Error::Interrupted`] on `SIGINT`; [`Error::AlreadyTaken`] after a successful `get`.
    pub fn get(&self) -> Result<T> {
        self.get_deadline(None)
    }

    /// Like [`get`](AsyncResult::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get`](AsyncResult::get), plus [`Error::Timeout`], after which the result stays
    /// retrievable.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_deadline(deadline_after(timeout))
    }

    fn get_deadline(&self, deadline: Option<std::time::Instant>) -> Result<T> {
        let _counted = self.cell.count_waiter();
        let g = self.cell.lock();
        let (mut g, how) = wait_until(g, &self.cell.cv, deadline, |s| {
            !matches!(s, Slot::Pending { .. })
        });
        match how {
            Waited::Done => {}
            Waited::TimedOut => return Err(Error::Timeout),
            Waited::Interrupted => return Err(Error::Interrupted),
        }
        match std::mem::replace(&mut *g, Slot::Taken) {
            Slot::Ready(Ok(v)) => Ok(v),
            Slot::Ready(Err(e)) => {
                *g = Slot::Ready(Err(e.clone()));
                Err(e)
            }
            Slot::Taken => Err(Error::AlreadyTaken),
            Slot::Pending { .. } => unreachable!("waited until not pending"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Collectors

/// One chunk's results, typed: all values, or each item's outcome.
pub(crate) enum Items<R> {
    All(Vec<R>),
    Each(Vec<Result<R>>),
}

impl<R> Items<R> {
    /// `n` copies of `e`.
    pub(crate) fn failed(n: usize, e: &Error) -> Items<R> {
        Items::Each((0..n).map(|_| Err(e.clone())).collect())
    }

    /// Each item's outcome.
    pub(crate) fn into_results(self) -> Vec<Result<R>> {
        match self {
            Items::All(v) => v.into_iter().map(Ok).collect(),
            Items::Each(v) => v,
        }
    }
}

/// Receives the results of the chunks of one submission, typed.
pub(crate) trait Deliver<R>: Send + Sync {
    /// The items of chunk `chunk` (its position in the submission), in input order.
    fn deliver(&self, chunk: usize, items: Items<R>);
}

/// What a worker sent back for one chunk.
pub(crate) enum ChunkOutcome {
    /// The encoded [`ChunkResults<R>`] and its descriptors.
    Encoded(Vec<u8>, Vec<OwnedFd>),
    /// The whole chunk failed.
    Failed(Error),
}

/// A submission's receiver as the pool's result thread sees it: untyped.
pub(crate) trait Sink: Send + Sync {
    fn chunk_done(&self, chunk: usize, n_items: usize, outcome: ChunkOutcome);
}

/// Decodes chunk results as `R` and hands them to a typed [`Deliver`].
pub(crate) struct Decoding<R, D> {
    pub(crate) inner: D,
    _r: std::marker::PhantomData<fn() -> R>,
}

impl<R, D> Decoding<R, D> {
    pub(crate) fn new(inner: D) -> Decoding<R, D> {
        Decoding {
            inner,
            _r: std::marker::PhantomData,
        }
    }
}

/// Turns one chunk's outcome into exactly `n` item results (bytes from a worker are untrusted:
/// a malformed or mis-sized answer is a `Decode` error for each item).
pub(crate) fn decode_items<R: DeserializeOwned>(n: usize, outcome: ChunkOutcome) -> Items<R> {
    let decoded = match outcome {
        ChunkOutcome::Failed(e) => return Items::failed(n, &e),
        ChunkOutcome::Encoded(bytes, fds) => {
            ipc_shm::transfer::decode::<ChunkResults<R>>(&bytes, fds)
        }
    };
    let got = match &decoded {
        Ok(ChunkResults::All(v)) => v.len(),
        Ok(ChunkResults::Each(v)) => v.len(),
        Err(_) => n,
    };
    if got != n {
        return Items::failed(
            n,
            &Error::Decode(format!(
                "a worker returned {got} results for a chunk of {n}"
            )),
        );
    }
    match decoded {
        Ok(ChunkResults::All(v)) => Items::All(v),
        Ok(ChunkResults::Each(v)) => {
            Items::Each(v.into_iter().map(|r| r.map_err(Error::from)).collect())
        }
        Err(e) => Items::failed(n, &Error::Decode(format!("the result: {e}"))),
    }
}

impl<R, D> Sink for Decoding<R, D>
where
    R: DeserializeOwned,
    D: Deliver<R>,
{
    fn chunk_done(&self, chunk: usize, n_items: usize, outcome: ChunkOutcome) {
        self.inner.deliver(chunk, decode_items(n_items, outcome));
    }
}

/// `apply`: one chunk of one item.
pub(crate) struct ApplyDeliver<R> {
    pub(crate) cell: Arc<Cell<R>>,
}

impl<R: Send> Deliver<R> for ApplyDeliver<R> {
    fn deliver(&self, _chunk: usize, items: Items<R>) {
        let r = items
            .into_results()
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(Error::Decode("no result for the task".into())));
        self.cell.complete(r);
    }
}

struct MapAcc<R> {
    /// Each chunk's values, once it succeeded whole.
    chunks: Vec<Option<Vec<R>>>,
    /// The error of the lowest input index seen so far.
    first_error: Option<(usize, Error)>,
    chunks_left: usize,
}

/// `map`: collects each chunk's values; resolves once every chunk is done (Python does not
/// fail fast either), with the error of the lowest-indexed failed item if any failed.
pub(crate) struct MapDeliver<R> {
    acc: Mutex<MapAcc<R>>,
    n: usize,
    chunksize: usize,
    cell: Arc<Cell<Vec<R>>>,
}

impl<R> MapDeliver<R> {
    pub(crate) fn new(n: usize, chunksize: usize, cell: Arc<Cell<Vec<R>>>) -> MapDeliver<R> {
        let chunks = n.div_ceil(chunksize.max(1));
        let mut slots = Vec::with_capacity(chunks);
        slots.resize_with(chunks, || None);
        MapDeliver {
            acc: Mutex::new(MapAcc {
                chunks: slots,
                first_error: None,
                chunks_left: chunks,
            }),
            n,
            chunksize,
            cell,
        }
    }

    /// Completes at once when there is nothing to map.
    pub(crate) fn finish_if_empty(&self) {
        let acc = self.acc.lock().unwrap_or_else(|e| e.into_inner());
        if acc.chunks_left == 0 {
            drop(acc);
            self.cell.complete(Ok(Vec::new()));
        }
    }
}

impl<R: Send> Deliver<R> for MapDeliver<R> {
    fn deliver(&self, chunk: usize, items: Items<R>) {
        let mut acc = self.acc.lock().unwrap_or_else(|e| e.into_inner());
        let base = chunk * self.chunksize;
        let values = match items {
            Items::All(v) => Some(v),
            Items::Each(v) => {
                let mut ok = Vec::with_capacity(v.len());
                let mut failed = false;
                for (i, r) in v.into_iter().enumerate() {
                    match r {
                        Ok(x) => ok.push(x),
                        Err(e) => {
                            if !failed
                                && acc.first_error.as_ref().is_none_or(|(j, _)| base + i < *j)
                            {
                                acc.first_error = Some((base + i, e));
                            }
                            failed = true;
                        }
                    }
                }
                (!failed).then_some(ok)
            }
        };
        if let (Some(v), Some(slot)) = (values, acc.chunks.get_mut(chunk)) {
            *slot = Some(v);
        }
        acc.chunks_left = acc.chunks_left.saturating_sub(1);
        if acc.chunks_left > 0 {
            return;
        }
        let result = match acc.first_error.take() {
            Some((_, e)) => Err(e),
            None => {
                let mut out = Vec::with_capacity(self.n);
                for c in std::mem::take(&mut acc.chunks) {
                    match c {
                        Some(mut v) => out.append(&mut v),
                        None => {
                            out.clear();
                            break;
                        }
                    }
                }
                if out.len() == self.n {
                    Ok(out)
                } else {
                    Err(Error::Decode("a result is missing".into()))
                }
            }
        };
        drop(acc);
        self.cell.complete(result);
    }
}
