//! [`JoinableQueue`]: a [`Queue`] that counts unfinished tasks (Python's
//! `multiprocessing.JoinableQueue`).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use ipc_shm::{ShmBox, ShmSafe};
use ipc_sync::futex::{self, Deadline};
use ipc_sync::raw::RawLock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::err::{Error, Result};
use crate::queue::{Queue, QueueBuilder};

/// How many `put`s at once are tracked so that a producer killed inside one gives its count
/// back (more concurrent `put`s than this are counted untracked, as before).
const PUT_SLOTS: usize = 32;

/// A `put` in flight: `lock` is held by the producing thread for the whole `put`, and
/// `counted` is 1 while the item is counted but not yet in the queue. A robust lock found with
/// a dead owner and `counted == 1` is a producer that died inside `put` (say, blocked on a
/// full queue): its count is given back, or `join` would wait for an item never put.
#[repr(C)]
struct PutSlot {
    lock: RawLock,
    counted: AtomicU64,
}

/// The shared task counter.
#[repr(C)]
struct Tasks {
    unfinished: AtomicU64,
    /// Bumped whenever `unfinished` reaches zero; `join` sleeps on it.
    seq: AtomicU32,
    waiters: AtomicU32,
    puts: [PutSlot; PUT_SLOTS],
}

// SAFETY: repr(C) of atomics and ipc-sync raw locks (repr(C) atomics themselves): no pointers,
// all-zero is valid (an unlocked lock, nothing counted), mutated through `&self`, no Drop.
unsafe impl ShmSafe for Tasks {}

impl Tasks {
    /// Takes one off `unfinished` (never below zero), waking `join` when it reaches zero.
    fn finish_one(&self) -> bool {
        match self
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        {
            Ok(prev) => {
                if prev == 1 {
                    self.seq.fetch_add(1, Ordering::SeqCst);
                    if self.waiters.load(Ordering::SeqCst) > 0 {
                        futex::wake_all(&self.seq);
                    }
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back the counts of producers that died inside `put`.
    fn reap_dead_puts(&self) {
        for slot in &self.puts {
            if !slot.lock.is_locked() {
                continue;
            }
            if let Some(acquired) = slot.lock.try_lock() {
                if acquired.owner_died() && slot.counted.swap(0, Ordering::AcqRel) == 1 {
                    self.finish_one();
                }
                // SAFETY: acquired just above by this thread; nothing else is accessed
                // through this acquisition after the release.
                unsafe { slot.lock.unlock() };
            }
        }
    }

    /// Claims a free slot for a `put` by this thread (repairing it first if a dead producer
    /// left it), or `None` when all are busy.
    fn claim(&self) -> Option<&PutSlot> {
        for slot in &self.puts {
            if slot.lock.is_locked() {
                continue;
            }
            if let Some(acquired) = slot.lock.try_lock() {
                if acquired.owner_died() && slot.counted.swap(0, Ordering::AcqRel) == 1 {
                    self.finish_one();
                }
                return Some(slot);
            }
        }
        None
    }
}

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
            puts: std::array::from_fn(|_| PutSlot {
                lock: RawLock::new(),
                counted: AtomicU64::new(0),
            }),
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

    /// Items put and not yet marked done (a producer killed inside `put` does not count).
    pub fn unfinished_tasks(&self) -> u64 {
        self.tasks.reap_dead_puts();
        self.tasks.unfinished.load(Ordering::Acquire)
    }

    /// Marks one item as processed.
    ///
    /// # Errors
    ///
    /// [`Error::TaskDoneTooManyTimes`] when there is no unfinished item (Python's
    /// `ValueError('task_done() called too many times')`).
    pub fn task_done(&self) -> Result<()> {
        if self.tasks.finish_one() {
            Ok(())
        } else {
            Err(Error::TaskDoneTooManyTimes)
        }
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
            // A producer that died inside `put` (say, blocked on a full queue) counted an item
            // that will never come: give its count back.
            t.reap_dead_puts();
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
                // wake-up, or a producer that died inside `put`, must not leave `join` asleep
                // for good.
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
        // ahead of the count; given back if the put fails, or (through the slot) if this
        // process dies inside the put.
        let slot = self.tasks.claim();
        self.tasks.unfinished.fetch_add(1, Ordering::AcqRel);
        if let Some(s) = slot {
            s.counted.store(1, Ordering::Release);
        }
        let out = r();
        if out.is_err() {
            self.tasks.finish_one();
        }
        if let Some(s) = slot {
            s.counted.store(0, Ordering::Release);
            // SAFETY: `claim` acquired this slot's lock on this thread; the slot is not used
            // through this acquisition after the release.
            unsafe { s.lock.unlock() };
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
