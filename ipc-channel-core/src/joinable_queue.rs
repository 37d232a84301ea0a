//! [`JoinableQueue`]: a [`Queue`] that counts unfinished tasks (Python's
//! `multiprocessing.JoinableQueue`).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use ipc_shm::{ShmBox, ShmSafe};
use ipc_sync::futex::{self, Deadline};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::err::{Error, Result};
use crate::queue::{Queue, QueueBuilder};

/// The shared task counter.
#[repr(C)]
struct Tasks {
    unfinished: AtomicU64,
    /// Bumped whenever `unfinished` reaches zero; `join` sleeps on it.
    seq: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: repr(C) of atomics: no pointers, all-zero is valid, mutated through `&self`, no Drop.
unsafe impl ShmSafe for Tasks {}

/// A [`Queue`] whose consumers call [`task_done`](JoinableQueue::task_done) once per item they
/// finished, so that [`join`](JoinableQueue::join) can wait until every item put has been
/// processed.
///
/// # Examples
///
/// ```
/// use ipc_channel_core::JoinableQueue;
///
/// let q = JoinableQueue::new()?;
/// q.put(1u32)?;
/// q.put(2u32)?;
/// let worker = {
///     let q = q.clone();
///     std::thread::spawn(move || {
///         for _ in 0..2 {
///             let _item: u32 = q.get().unwrap();
///             q.task_done().unwrap();
///         }
///     })
/// };
/// q.join()?; // returns once both items are done
/// worker.join().unwrap();
/// assert!(q.task_done().is_err()); // more task_done() than items
/// # Ok::<(), ipc_channel_core::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueue<T> {
    queue: Queue<T>,
    tasks: ShmBox<Tasks>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field("unfinished", &self.unfinished_tasks())
            .finish()
    }
}

impl<T> JoinableQueue<T> {
    /// An unbounded joinable queue with the default backend.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn new() -> Result<JoinableQueue<T>> {
        JoinableQueue::from_builder(Queue::builder())
    }

    /// A joinable queue holding at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn bounded(maxsize: usize) -> Result<JoinableQueue<T>> {
        JoinableQueue::from_builder(Queue::builder().maxsize(maxsize))
    }

    /// A joinable queue with the settings of `builder`.
    ///
    /// # Errors
    ///
    /// As [`QueueBuilder::build`].
    pub fn from_builder(builder: QueueBuilder) -> Result<JoinableQueue<T>> {
        let tasks = ShmBox::new(Tasks {
            unfinished: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        })
        .map_err(|e| Error::Shm(e.to_string()))?;
        Ok(JoinableQueue {
            queue: builder.build()?,
            tasks,
        })
    }

    /// The queue underneath (for `qsize`, `empty`, `full`, `close`, `maxsize`).
    pub fn queue(&self) -> &Queue<T> {
        &self.queue
    }

    /// The number of items in the queue.
    pub fn qsize(&self) -> usize {
        self.queue.qsize()
    }

    /// Is the queue empty?
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Is the (bounded) queue full?
    pub fn full(&self) -> bool {
        self.queue.full()
    }

    /// Closes this process's handle (see [`Queue::close`]).
    pub fn close(&self) {
        self.queue.close()
    }

    /// Items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> u64 {
        self.tasks.unfinished.load(Ordering::Acquire)
    }

    /// Marks one item as processed.
    ///
    /// # Errors
    ///
    /// [`Error::TaskDoneTooManyTimes`] when there is no unfinished item (Python's
    /// `ValueError('task_done() called too many times')`).
    pub fn task_done(&self) -> Result<()> {
        let t = &*self.tasks;
        let prev = t
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .map_err(|_| Error::TaskDoneTooManyTimes)?;
        if prev == 1 {
            t.seq.fetch_add(1, Ordering::SeqCst);
            if t.waiters.load(Ordering::SeqCst) > 0 {
                futex::wake_all(&t.seq);
            }
        }
        Ok(())
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a closed queue.
    pub fn join(&self) -> Result<()> {
        self.join_deadline(None).map(|_| ())
    }

    /// Like [`join`](JoinableQueue::join), giving up after `timeout`: `Ok(true)` when all
    /// items are done, `Ok(false)` on timeout.
    ///
    /// # Errors
    ///
    /// As [`join`](JoinableQueue::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_deadline(Some(Deadline::after(timeout)))
    }

    fn join_deadline(&self, deadline: Option<Deadline>) -> Result<bool> {
        let t = &*self.tasks;
        loop {
            let seen = t.seq.load(Ordering::SeqCst);
            if t.unfinished.load(Ordering::SeqCst) == 0 {
                return Ok(true);
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return Ok(false);
            }
            t.waiters.fetch_add(1, Ordering::SeqCst);
            if t.unfinished.load(Ordering::SeqCst) != 0 && t.seq.load(Ordering::SeqCst) == seen {
                // Re-check every 100 ms: a worker that died between its decrement and the
                // wake-up must not leave `join` asleep for good.
                let tick = Deadline::after(Duration::from_millis(100));
                futex::wait(&t.seq, seen, Some(deadline.map_or(tick, |d| d.min(tick))));
            }
            t.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl<T: Serialize> JoinableQueue<T> {
    fn counted(&self, r: impl FnOnce() -> Result<()>) -> Result<()> {
        // Counted before the item becomes visible, so a fast consumer's task_done never runs
        // ahead of the count; given back if the put fails.
        self.tasks.unfinished.fetch_add(1, Ordering::AcqRel);
        let out = r();
        if out.is_err() {
            let _ = self
                .tasks
                .unfinished
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        out
    }

    /// Puts an item (see [`Queue::put`]) and counts it as an unfinished task.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, item: T) -> Result<()> {
        self.counted(|| self.queue.put(item))
    }

    /// [`Queue::put_timeout`], counting the item.
    ///
    /// # Errors
    ///
    /// As [`Queue::put_timeout`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        self.counted(|| self.queue.put_timeout(item, timeout))
    }

    /// [`Queue::try_put`], counting the item.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`].
    pub fn try_put(&self, item: T) -> Result<()> {
        self.counted(|| self.queue.try_put(item))
    }
}

impl<T: DeserializeOwned> JoinableQueue<T> {
    /// [`Queue::get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// [`Queue::get_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.queue.get_timeout(timeout)
    }

    /// [`Queue::try_get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    pub fn try_get(&self) -> Result<T> {
        self.queue.try_get()
    }
}
