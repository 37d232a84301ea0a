//! [`Queue`]: Python's `multiprocessing.Queue`, typed, with a choice of backend.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipc_shm::transfer;
use ipc_sync::futex::Deadline;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::connection::DEFAULT_MAX_MESSAGE_SIZE;
use crate::err::{from_decode, from_encode, Error, Result};
use crate::flavors::pipe::PipeQueue;
use crate::flavors::ring_core::{CoreError, CrashPoint, Writer};
use crate::flavors::shm_ring::{ShmRing, DEFAULT_RESERVE};
use crate::flavors::{no_hook, Backend, Flavor, RecvBuf};

thread_local! {
    /// Encoding buffer reused by every pipe-backend `put` of this thread.
    static OUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Receive buffer reused by every pipe-backend `get` of this thread.
    static IN: RefCell<RecvBuf> = RefCell::new(RecvBuf::default());
    /// Where a shared-memory `get` of this thread copies a record that spans chunks.
    static SPILL: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Settings for a [`Queue`] (and the other queues), made by [`Queue::builder`].
///
/// # Examples
///
/// ```
/// use ipc_channel_core::{Backend, Queue};
///
/// let q: Queue<String> = Queue::builder().backend(Backend::Pipe).maxsize(2).build()?;
/// q.put("a".to_string())?;
/// q.put("b".to_string())?;
/// assert!(q.full());
/// # Ok::<(), ipc_channel_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct QueueBuilder {
    backend: Backend,
    maxsize: usize,
    max_message_size: u64,
    reserve: u64,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            backend: Backend::Shm,
            maxsize: 0,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            reserve: DEFAULT_RESERVE,
        }
    }
}

impl QueueBuilder {
    /// The backend ([`Backend::Shm`] by default).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The most items the queue holds; 0 (the default) means unbounded, as in Python.
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// The largest encoded item, in bytes (1 GiB by default); a larger one is an error at
    /// `put`.
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// For [`Backend::Shm`]: the address space the queue reserves for unread items (16 GiB by
    /// default; memory is committed only as items are written and given back as they are
    /// read). An unbounded queue holding this much unread data fails `put` with an error
    /// instead of blocking.
    pub fn shm_reserve(mut self, bytes: u64) -> Self {
        self.reserve = bytes;
        self
    }

    /// Makes the queue.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]/[`Error::Shm`] when the socketpair or shared memory cannot be made,
    /// [`Error::InvalidArgument`] for an unusable setting.
    pub fn build<T>(self) -> Result<Queue<T>> {
        let flavor = match self.backend {
            Backend::Pipe => Flavor::Pipe(PipeQueue::new(self.maxsize, self.max_message_size)?),
            Backend::Shm => Flavor::Shm(ShmRing::new(
                self.maxsize,
                self.max_message_size,
                self.reserve,
            )?),
        };
        Ok(Queue::from_flavor(flavor))
    }
}

struct Shared {
    flavor: Flavor,
    closed: AtomicBool,
}

/// A multi-producer, multi-consumer FIFO queue between processes: Python's
/// `multiprocessing.Queue`.
///
/// Items are any serde type, encoded with postcard in the caller. `Clone` gives another handle
/// to the same queue; a handle sent to another process (as a process argument, or inside a
/// message on a [`Connection`](crate::Connection)) reaches the same queue.
///
/// Unlike Python's, `put` does not hand the item to a feeder thread: it encodes the item in
/// the caller (an unencodable item is an error right there) and returns only once the item is
/// in the queue, so a process may `_exit` right after a `put` and lose nothing (PP4). `qsize`,
/// `empty` and `full` read shared counters and are exact at the moment they are read.
///
/// Two backends ([`Backend`]): the shared-memory chunk ring (default), where an unbounded
/// `put` never blocks; and a seqpacket socketpair, which can carry OS handles inside items.
///
/// # Examples
///
/// ```
/// use ipc_channel_core::{Error, Queue};
/// use std::time::Duration;
///
/// let q: Queue<Option<u32>> = Queue::new()?;
/// for i in 0..5 {
///     q.put(Some(i))?;
/// }
/// q.put(None)?;
/// assert_eq!(q.qsize(), 6);
/// let mut got = Vec::new();
/// while let Some(i) = q.get()? {
///     got.push(i);
/// }
/// assert_eq!(got, [0, 1, 2, 3, 4]);
/// assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(Error::Empty)));
/// # Ok::<(), Error>(())
/// ```
pub struct Queue<T> {
    shared: Arc<Shared>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            shared: Arc::clone(&self.shared),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("backend", &self.backend())
            .field("maxsize", &self.maxsize())
            .field("qsize", &self.qsize())
            .finish()
    }
}

fn deadline(timeout: Duration) -> Option<Deadline> {
    Some(Deadline::after(timeout))
}

impl Queue<()> {
    /// Settings beyond [`new`](Queue::new) and [`bounded`](Queue::bounded): backend, maximum
    /// message size, shared-memory reserve. (Defined on `Queue<()>` so that `Queue::builder()`
    /// needs no type annotation; [`QueueBuilder::build`] picks the item type.)
    pub fn builder() -> QueueBuilder {
        QueueBuilder::default()
    }
}

impl<T> Queue<T> {
    fn from_flavor(flavor: Flavor) -> Queue<T> {
        Queue {
            shared: Arc::new(Shared {
                flavor,
                closed: AtomicBool::new(false),
            }),
            _items: PhantomData,
        }
    }

    /// An unbounded queue with the default (shared-memory) backend.
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] when the shared memory cannot be made.
    pub fn new() -> Result<Queue<T>> {
        Queue::builder().build()
    }

    /// A queue holding at most `maxsize` items (0 means unbounded, as in Python).
    ///
    /// # Errors
    ///
    /// As [`new`](Queue::new).
    pub fn bounded(maxsize: usize) -> Result<Queue<T>> {
        Queue::builder().maxsize(maxsize).build()
    }

    /// The backend this queue was built with.
    pub fn backend(&self) -> Backend {
        self.shared.flavor.backend()
    }

    /// The most items the queue holds (0: unbounded).
    pub fn maxsize(&self) -> usize {
        self.shared.flavor.maxsize()
    }

    /// The largest encoded item `put` accepts, in bytes.
    pub fn max_message_size(&self) -> u64 {
        self.shared.flavor.max_message_size()
    }

    /// The number of items in the queue.
    pub fn qsize(&self) -> usize {
        self.shared.flavor.len()
    }

    /// Is the queue empty?
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Is the (bounded) queue full? Always `false` for an unbounded queue.
    pub fn full(&self) -> bool {
        let max = self.maxsize();
        max > 0 && self.qsize() >= max
    }

    /// Closes this process's handles to the queue (shared by its clones in this process):
    /// afterwards `put` and `get` return [`Error::Closed`]. Other processes are not affected.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }

    /// Has [`close`](Queue::close) been called?
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Test hook: runs `f` while holding the consumers' side of the queue, as a `get` does in
    /// its critical section. Cross-process tests kill a process inside `f` to check that the
    /// queue is not wedged for the others. Not part of the API.
    #[cfg(feature = "testing-hooks")]
    #[doc(hidden)]
    pub fn __testing_hold_get_side(&self, f: impl FnOnce()) {
        self.shared.flavor.hold_get_side(f)
    }

    /// Test hook: as `__testing_hold_get_side`, for the
    /// producers' side. Not part of the API.
    #[cfg(feature = "testing-hooks")]
    #[doc(hidden)]
    pub fn __testing_hold_put_side(&self, f: impl FnOnce()) {
        self.shared.flavor.hold_put_side(f)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }
}

impl<T: Serialize> Queue<T> {
    /// Puts `item` at the end of the queue, waiting for room if the queue is bounded and full.
    /// Returns once the item is in the queue.
    ///
    /// With the shared-memory backend an unbounded queue never waits here; with the pipe
    /// backend `put` may wait while the socket buffer is full (until consumers read).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the item cannot be encoded (nothing is put), [`Error::TooLarge`]
    /// over the maximum message size, [`Error::Closed`] after [`close`](Queue::close).
    pub fn put(&self, item: T) -> Result<()> {
        self.put_deadline(&item, None)
    }

    /// Like [`put`](Queue::put), failing with [`Error::Full`] if no room appeared within
    /// `timeout`. With the pipe backend, a socket buffer that stays full counts as no room
    /// (even for an unbounded queue); once the first record of an item is out, the rest is
    /// sent whatever the timeout, so an item is never left half-sent.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put), plus [`Error::Full`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        self.put_deadline(&item, deadline(timeout))
    }

    /// Like [`put`](Queue::put) without waiting: [`Error::Full`] if the queue is full
    /// (Python's `put_nowait`), or with the pipe backend if the socket buffer is full.
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Queue::put_timeout).
    pub fn try_put(&self, item: T) -> Result<()> {
        self.put_deadline(&item, deadline(Duration::ZERO))
    }

    pub(crate) fn put_deadline(&self, item: &T, deadline: Option<Deadline>) -> Result<()> {
        self.put_hooked(item, deadline, &no_hook)
    }

    /// Test hook: a `put` that calls `die` at `point` (which is expected not to return: it
    /// ends the process, to check what the other processes find). Not part of the API.
    #[cfg(feature = "testing-hooks")]
    #[doc(hidden)]
    pub fn __testing_put_crashing(&self, item: T, point: CrashPoint, die: fn()) -> Result<()> {
        self.put_hooked(&item, None, &move |p| {
            if p == point {
                die()
            }
        })
    }

    fn put_hooked(
        &self,
        item: &T,
        deadline: Option<Deadline>,
        hook: &dyn Fn(CrashPoint),
    ) -> Result<()> {
        self.check_open()?;
        let r = match &self.shared.flavor {
            Flavor::Pipe(p) => Inside::check(&self.shared, "put").and_then(|()| {
                OUT.with(|out| {
                    let mut out = out.try_borrow_mut().map_err(|_| {
                        Error::Encode("put called re-entrantly from an item's Serialize".into())
                    })?;
                    out.clear();
                    let r = transfer::encode_into(item, &mut out)
                        .map_err(from_encode)
                        .and_then(|fds| {
                            let borrowed: Vec<BorrowedFd<'_>> =
                                fds.iter().map(|f| f.as_fd()).collect();
                            p.put(&out, &borrowed, deadline, hook)
                        });
                    if out.capacity() > (1 << 20) {
                        *out = Vec::new();
                    }
                    r
                })
            }),
            Flavor::Shm(s) => {
                let _inside = Inside::enter(&self.shared, "put")?;
                // Encoded straight into the queue's memory, under the producers' lock. No
                // transfer scope: a handle inside the item fails to encode, clearly.
                let mut failure = None;
                let r = s.put(deadline, hook, |w| {
                    let sink = RingSink {
                        w,
                        buf: [0; SINK_BUF],
                        n: 0,
                    };
                    postcard::serialize_with_flavor::<T, _, ()>(item, sink).map_err(|e| {
                        failure = Some(e);
                        CoreError::Aborted
                    })
                });
                match r {
                    // The encoder gave up (a storage error, which the sink reports to it as a
                    // full buffer, is returned by `put` as itself instead).
                    Err(Error::Encode(_)) => Err(shm_encode_error(failure)),
                    r => r,
                }
            }
        };
        r.map_err(|e| match e {
            Error::Timeout => Error::Full,
            e => e,
        })
    }
}

fn shm_encode_error(e: Option<postcard::Error>) -> Error {
    let e = e.map_or_else(|| "encoding failed".to_string(), |e| e.to_string());
    Error::Encode(format!(
        "{e} (the shared-memory queue backend cannot carry OS handles; use Backend::Pipe)"
    ))
}

/// Bytes the encoder gathers before writing them to the queue (postcard emits small items a
/// byte at a time).
const SINK_BUF: usize = 256;

/// postcard's output, written into a queue record through a small staging buffer.
struct RingSink<'a, 'w> {
    w: &'a mut Writer<'w, ShmRing>,
    buf: [u8; SINK_BUF],
    n: usize,
}

impl RingSink<'_, '_> {
    fn flush(&mut self) -> postcard::Result<()> {
        let n = std::mem::take(&mut self.n);
        self.w
            .write(&self.buf[..n])
            .map_err(|_| postcard::Error::SerializeBufferFull)
    }
}

impl postcard::ser_flavors::Flavor for RingSink<'_, '_> {
    type Output = ();

    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        if self.n == SINK_BUF {
            self.flush()?;
        }
        self.buf[self.n] = b;
        self.n += 1;
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.n + data.len() > SINK_BUF {
            self.flush()?;
        }
        if data.len() >= SINK_BUF {
            return self
                .w
                .write(data)
                .map_err(|_| postcard::Error::SerializeBufferFull);
        }
        self.buf[self.n..self.n + data.len()].copy_from_slice(data);
        self.n += data.len();
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<()> {
        self.flush()
    }
}

thread_local! {
    /// The queue whose shared-memory lock this thread holds while it runs an item's `Serialize`
    /// or `Deserialize` (0: none).
    static INSIDE: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as encoding or decoding in place for one queue, so that the same queue's
/// `put` or `get` called from inside an item's serde code is an error instead of a deadlock on
/// the lock this thread holds.
struct Inside {
    prev: usize,
}

impl Inside {
    fn enter(shared: &Arc<Shared>, op: &str) -> Result<Inside> {
        Inside::check(shared, op)?;
        let prev = INSIDE.with(Cell::get);
        INSIDE.with(|c| c.set(Arc::as_ptr(shared) as usize));
        Ok(Inside { prev })
    }

    /// Fails if this thread is inside an in-place encode or decode of `shared` (or inside the
    /// closure of [`Queue::get_with`]).
    fn check(shared: &Arc<Shared>, op: &str) -> Result<()> {
        if INSIDE.with(Cell::get) != Arc::as_ptr(shared) as usize {
            return Ok(());
        }
        let e = format!(
            "{op} called re-entrantly on the same queue (from an item's serde code \
             or from the closure of get_with)"
        );
        Err(if op == "put" {
            Error::Encode(e)
        } else {
            Error::Decode(e)
        })
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|c| c.set(self.prev));
    }
}

impl<T: DeserializeOwned> Queue<T> {
    /// Removes and returns the first item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the item does not decode as `T` (it is consumed),
    /// [`Error::Closed`] after [`close`](Queue::close).
    pub fn get(&self) -> Result<T> {
        self.get_deadline(None)
    }

    /// Like [`get`](Queue::get), failing with [`Error::Empty`] if nothing arrived within
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get), plus [`Error::Empty`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_deadline(deadline(timeout))
    }

    /// Like [`get`](Queue::get) without waiting: [`Error::Empty`] if the queue is empty
    /// (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Queue::get_timeout).
    pub fn try_get(&self) -> Result<T> {
        self.get_deadline(deadline(Duration::ZERO))
    }

    pub(crate) fn get_deadline(&self, deadline: Option<Deadline>) -> Result<T> {
        self.get_hooked(deadline, &no_hook)
    }

    /// Test hook: a `get` that calls `die` at `point` (see
    /// `__testing_put_crashing`). Not part of the API.
    #[cfg(feature = "testing-hooks")]
    #[doc(hidden)]
    pub fn __testing_get_crashing(&self, point: CrashPoint, die: fn()) -> Result<T> {
        self.get_hooked(None, &move |p| {
            if p == point {
                die()
            }
        })
    }

    fn get_hooked(&self, deadline: Option<Deadline>, hook: &dyn Fn(CrashPoint)) -> Result<T> {
        self.check_open()?;
        let r = match &self.shared.flavor {
            Flavor::Pipe(p) => Inside::check(&self.shared, "get").and_then(|()| {
                IN.with(|buf| {
                    let mut fresh = RecvBuf::default();
                    let mut guard = buf.try_borrow_mut();
                    let buf: &mut RecvBuf = match guard.as_deref_mut() {
                        Ok(b) => b,
                        Err(_) => &mut fresh,
                    };
                    let mut fds: Vec<OwnedFd> = Vec::new();
                    p.get(buf, &mut fds, deadline, hook)?;
                    let r = transfer::decode::<T>(buf.bytes(), fds).map_err(from_decode);
                    buf.trim();
                    r
                })
            }),
            Flavor::Shm(s) => {
                let _inside = Inside::enter(&self.shared, "get")?;
                SPILL
                    .with(|spill| {
                        let mut fresh = Vec::new();
                        let mut guard = spill.try_borrow_mut();
                        let spill: &mut Vec<u8> = match guard.as_deref_mut() {
                            Ok(b) => b,
                            Err(_) => &mut fresh,
                        };
                        // Decoded where the record lies in the queue's memory when it can be.
                        let r = s.get(spill, deadline, hook, decode_shm::<T>);
                        if spill.capacity() > (1 << 20) {
                            *spill = Vec::new();
                        }
                        r
                    })
                    .and_then(|r| r)
            }
        };
        r.map_err(|e| match e {
            Error::Timeout => Error::Empty,
            e => e,
        })
    }
}

impl<T> Queue<T> {
    /// Removes the first item and runs `f` on its encoded bytes where they lie, without
    /// copying them out first: the zero-copy receive. Returns what `f` returns, waiting as
    /// long as it takes for an item.
    ///
    /// `f` gets a [`Record`], which borrows the item for the duration of the call;
    /// [`Record::decode`] decodes it as any type whose wire form matches `T`'s, in particular
    /// a *borrowing* one: `&[u8]` for a `T` of `Vec<u8>` or [`Bytes`], `&str` for `String`, a
    /// struct of such fields for a struct of owned ones. `f` cannot keep the borrow (the
    /// record's lifetime is local to the call), so copy out whatever must outlive it.
    ///
    /// - With [`Backend::Shm`] the record is read in place in the queue's shared memory, under
    ///   the consumers' lock: its space is not given back to producers, and other consumers
    ///   (in any process) wait, until `f` returns. Keep `f` short. A record that spans two
    ///   of the queue's 1 MiB chunks (items close to or over 1 MiB) is first copied into a
    ///   buffer of this thread, and `f` then runs on that copy after the lock is released.
    /// - With [`Backend::Pipe`] the record is read from the socket into a buffer of this
    ///   thread (one copy, as [`get`](Queue::get) makes) and `f` borrows that buffer. OS handles
    ///   inside the item are handed over to the first successful [`Record::decode`] only.
    ///
    /// The item is taken from the queue whatever `f` does: also when it fails to decode, and
    /// when `f` panics (the panic then continues in the caller, and the queue stays usable).
    /// A consumer process *killed* while `f` runs on an in-place record leaves the item in the
    /// queue for the next consumer. Calling `put`/`get`/`get_with` on the same queue (any of
    /// its handles in this process) from inside `f` is an error ([`Error::Encode`] or
    /// [`Error::Decode`]), not a deadlock; other queues may be used.
    ///
    /// The bytes are shared with every process holding the queue; see the crate's safety
    /// model for what that trusts them with.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`close`](Queue::close), [`Error::Decode`] when called from
    /// inside another `get_with` (or an item's serde code) on the same queue, [`Error::Shm`]
    /// or [`Error::Io`] when the backend fails. Decoding errors are [`Record::decode`]'s, in
    /// `f`'s hands.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_channel_core::{Bytes, Queue};
    ///
    /// let q: Queue<Bytes> = Queue::new()?;
    /// q.put(Bytes(vec![7u8; 64 * 1024]))?;
    /// // Sum the bytes where they lie in the queue's shared memory.
    /// let sum = q.get_with(|rec| -> Result<u64, ipc_channel_core::Error> {
    ///     let bytes: &[u8] = rec.decode()?;
    ///     Ok(bytes.iter().map(|&b| u64::from(b)).sum())
    /// })??;
    /// assert_eq!(sum, 7 * 64 * 1024);
    ///
    /// // The borrowed twin of `String` is `&str`; a type that does not match is an error.
    /// let q: Queue<String> = Queue::new()?;
    /// q.put("hello".to_string())?;
    /// q.put("world".to_string())?;
    /// assert_eq!(q.get_with(|rec| rec.decode::<&str>().map(str::len))??, 5);
    /// assert!(q.get_with(|rec| rec.decode::<(&str, u64)>().is_err())?);
    /// assert!(q.empty());
    /// # Ok::<(), ipc_channel_core::Error>(())
    /// ```
    pub fn get_with<R>(&self, f: impl for<'a> FnOnce(Record<'a>) -> R) -> Result<R> {
        self.get_with_deadline(None, f)
    }

    /// Like [`get_with`](Queue::get_with), failing with [`Error::Empty`] (without calling `f`)
    /// if nothing arrived within `timeout`; `Duration::ZERO` does not wait.
    ///
    /// # Errors
    ///
    /// As [`get_with`](Queue::get_with), plus [`Error::Empty`].
    pub fn get_with_timeout<R>(
        &self,
        timeout: Duration,
        f: impl for<'a> FnOnce(Record<'a>) -> R,
    ) -> Result<R> {
        self.get_with_deadline(deadline(timeout), f)
    }

    fn get_with_deadline<R>(
        &self,
        deadline: Option<Deadline>,
        f: impl for<'a> FnOnce(Record<'a>) -> R,
    ) -> Result<R> {
        self.check_open()?;
        let _inside = Inside::enter(&self.shared, "get")?;
        let r = match &self.shared.flavor {
            Flavor::Pipe(p) => IN.with(|buf| {
                let mut fresh = RecvBuf::default();
                let mut guard = buf.try_borrow_mut();
                let buf: &mut RecvBuf = match guard.as_deref_mut() {
                    Ok(b) => b,
                    Err(_) => &mut fresh,
                };
                let mut fds: Vec<OwnedFd> = Vec::new();
                p.get(buf, &mut fds, deadline, &no_hook)?;
                let r = f(Record {
                    bytes: buf.bytes(),
                    fds: Some(RefCell::new(fds)),
                });
                buf.trim();
                Ok(r)
            }),
            Flavor::Shm(s) => SPILL.with(|spill| {
                let mut fresh = Vec::new();
                let mut guard = spill.try_borrow_mut();
                let spill: &mut Vec<u8> = match guard.as_deref_mut() {
                    Ok(b) => b,
                    Err(_) => &mut fresh,
                };
                let r = s.get(spill, deadline, no_hook, |bytes| {
                    f(Record { bytes, fds: None })
                });
                if spill.capacity() > (1 << 20) {
                    *spill = Vec::new();
                }
                r
            }),
        };
        r.map_err(|e| match e {
            Error::Timeout => Error::Empty,
            e => e,
        })
    }
}

/// One encoded item, borrowed where it lies while the closure of [`Queue::get_with`] runs.
///
/// The item has already been taken from the queue; decoding it any number of times, or not at
/// all, changes nothing there.
pub struct Record<'a> {
    bytes: &'a [u8],
    /// The descriptors that came with a pipe-backend record (`None`: shared-memory backend,
    /// which carries none).
    fds: Option<RefCell<Vec<OwnedFd>>>,
}

impl<'a> Record<'a> {
    /// Decodes the item as `B`, which may borrow from the record: `&'a [u8]`, `&'a str`, or
    /// structs and tuples holding them. `B` must have the wire form of the queue's item type
    /// (postcard's): `Vec<u8>`, [`Bytes`] and `&[u8]` share one, as do `String` and `&str`,
    /// and a struct and its borrowing twin (same fields in the same order).
    ///
    /// Decoding checks everything it reads, so any mismatch (bytes that are not valid UTF-8
    /// for a `&str`, a record too short or too long for `B`) is an [`Error::Decode`], never a
    /// panic; a mismatch that happens to decode gives a wrong value, as with
    /// [`get`](Queue::get). With the pipe backend, OS handles in the item go to the first
    /// decode that succeeds; a later decode of a type holding handles fails.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when the record does not decode as `B` or leaves bytes over;
    /// [`Error::Transfer`] when the descriptors that came with a pipe-backend record do not
    /// match the handles in `B`.
    pub fn decode<B: Deserialize<'a>>(&self) -> Result<B> {
        let bytes = self.bytes;
        let Some(fds) = &self.fds else {
            return decode_borrowed(bytes);
        };
        let mut fds = fds.borrow_mut();
        let mine = std::mem::take(&mut *fds);
        let (r, check) = transfer::install_fds(mine, || decode_borrowed::<B>(bytes));
        // Handles took duplicates of what they used; on failure the record keeps none (the
        // table was consumed), so a retry sees no descriptors.
        let v = r?;
        check.map_err(Error::Transfer)?;
        Ok(v)
    }

    /// The length of the encoded item, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("encoded_len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

fn decode_borrowed<'a, B: Deserialize<'a>>(bytes: &'a [u8]) -> Result<B> {
    match postcard::take_from_bytes::<B>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(Error::Decode(format!(
            "{} trailing bytes after the item",
            rest.len()
        ))),
        Err(e) => Err(Error::Decode(e.to_string())),
    }
}

/// An owned byte buffer that travels as one byte string (serde's `serialize_bytes`, as
/// `serde_bytes::ByteBuf` does) rather than as a sequence of `u8` values.
///
/// With postcard both forms have the same bytes on the wire, so a `Queue<Vec<u8>>` and a
/// `Queue<Bytes>` are read alike (as `&[u8]` by [`Record::decode`]); but a `Vec<u8>` is
/// encoded and decoded one byte at a time, a `Bytes` with one copy. Use it for large binary
/// items.
///
/// # Examples
///
/// ```
/// use ipc_channel_core::{Bytes, Queue};
///
/// let q: Queue<Bytes> = Queue::new()?;
/// q.put(Bytes::from(b"abc".to_vec()))?;
/// assert_eq!(&*q.get()?, b"abc");
/// # Ok::<(), ipc_channel_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(v)
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Vec<u8> {
        b.0
    }
}

impl std::ops::Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Bytes, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                v: Vec<u8>,
            ) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Bytes, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

fn decode_shm<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(Error::Decode(format!(
            "{} trailing bytes after the item",
            rest.len()
        ))),
        Err(e) => Err(Error::Decode(e.to_string())),
    }
}

#[derive(Serialize, Deserialize)]
enum Wire {
    Pipe(PipeQueue),
    Shm(ShmRing),
}

/// A queue travels as its shared memory and sockets (through the handle-transfer table); the
/// receiving process gets a handle to the same queue, open.
impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.shared.flavor {
            Flavor::Pipe(p) => WireRef::Pipe(p).serialize(s),
            Flavor::Shm(r) => WireRef::Shm(r).serialize(s),
        }
    }
}

#[derive(Serialize)]
enum WireRef<'a> {
    Pipe(&'a PipeQueue),
    Shm(&'a ShmRing),
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Queue::from_flavor(match Wire::deserialize(d)? {
            Wire::Pipe(p) => Flavor::Pipe(p),
            Wire::Shm(r) => Flavor::Shm(r),
        }))
    }
}
