//! [`Barrier`]: Python's `multiprocessing.Barrier` (without the `action` callable).

use crate::futex::Deadline;
use crate::raw::{RawBarrier, RawLock, MAX_PARTIES};
use crate::Error;
use ipc_shm::ShmBox;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

// SAFETY: RawBarrier is #[repr(C)], two atomic u32s (no pointers); all-zero is a valid barrier
// (a zero party count is read as one).
unsafe impl ipc_shm::ShmSafe for RawBarrier {}

/// How many parties at once are watched for a process that dies while it waits (more wait
/// unwatched).
const WATCHED: usize = 64;

/// One robust lock per waiting party, held for the whole wait: a slot found locked by a dead
/// owner is a party whose process died while it was counted in.
#[repr(C)]
struct Watch {
    slots: [RawLock; WATCHED],
}

// SAFETY: #[repr(C)] array of RawLock (itself ShmSafe: repr(C) atomics, no pointers); all-zero is
// a valid value (every lock unlocked).
unsafe impl ipc_shm::ShmSafe for Watch {}

/// A process-shared, reusable barrier for a fixed number of parties (Python's `Barrier`).
///
/// [`Barrier::wait`] returns the arrival index (`0` for the first to arrive, `parties - 1` for
/// the last). A timeout, [`Barrier::abort`] or [`Barrier::reset`] during a wait breaks the barrier
/// for every party waiting: they get [`Error::BrokenBarrier`], as Python raises
/// `BrokenBarrierError`, and later waits fail too until `reset`.
///
/// A party whose process dies while it waits breaks the barrier (as a timeout does) when the
/// party that would complete it arrives: the others get [`Error::BrokenBarrier`] instead of
/// passing with a dead party counted in (Python, whose barrier lives in a manager, would count
/// it too, and the next round would wait forever). Up to 64 waiting parties are watched.
///
/// Python's `action` callable is not offered: a function cannot run "in the barrier" across
/// processes; let the party with index 0 do the work after the wait.
///
/// # Examples
///
/// ```
/// use ipc_sync::Barrier;
///
/// let barrier = Barrier::new(3)?;
/// let mut indices: Vec<usize> = std::thread::scope(|s| {
///     let handles: Vec<_> = (0..3).map(|_| s.spawn(|| barrier.wait().unwrap())).collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Barrier {
    raw: ShmBox<RawBarrier>,
    watch: ShmBox<Watch>,
}

impl Barrier {
    /// Creates a barrier for `parties` parties in the shared heap.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for 0 parties or more than 65535; [`Error::Shm`] if the shared
    /// heap cannot allocate it.
    pub fn new(parties: usize) -> Result<Barrier, Error> {
        if parties == 0 || parties > MAX_PARTIES as usize {
            return Err(Error::InvalidArgument(
                "barrier parties must be in 1..=65535",
            ));
        }
        Ok(Barrier {
            raw: ShmBox::new(RawBarrier::new(parties as u32))?,
            watch: ShmBox::new(Watch {
                slots: std::array::from_fn(|_| RawLock::new()),
            })?,
        })
    }

    /// Waits with the slot of a watched party held; the party that completes the barrier
    /// first checks that nobody counted in has died.
    fn wait_watched(&self, deadline: Option<Deadline>) -> Result<usize, Error> {
        let mine = self.claim();
        let dead = if self.raw.n_waiting() + 1 >= self.raw.parties() {
            self.clear_dead(mine)
        } else {
            0
        };
        let r = if dead > 0 {
            // A party died while it waited: break the barrier rather than let it trip with
            // one party missing, and take the dead out of the count (they cannot leave).
            self.raw.abort();
            for _ in 0..dead {
                self.raw.forget_dead_party();
            }
            Err(Error::BrokenBarrier)
        } else {
            self.raw.wait_until(deadline).map(|i| i as usize)
        };
        if let Some(slot) = mine {
            // SAFETY: `claim` acquired this slot on this thread; nothing is accessed through
            // that acquisition after the release.
            unsafe { slot.unlock() };
        }
        r
    }

    /// Takes a free slot for this thread's wait (`None` when all are taken).
    fn claim(&self) -> Option<&RawLock> {
        self.watch
            .slots
            .iter()
            .find(|slot| !slot.is_locked() && slot.try_lock().is_some())
    }

    /// Frees the slots of dead parties (other than `mine`); returns how many there were.
    fn clear_dead(&self, mine: Option<&RawLock>) -> u32 {
        let mut dead = 0;
        for slot in &self.watch.slots {
            if mine.is_some_and(|m| std::ptr::eq(m, slot)) || !slot.is_locked() {
                continue;
            }
            // A slot held by a live party stays held; one whose owner died is taken over.
            if let Some(acquired) = slot.try_lock() {
                dead += u32::from(acquired.owner_died());
                // SAFETY: acquired just above by this thread; released at once.
                unsafe { slot.unlock() };
            }
        }
        dead
    }

    /// Waits until all parties have called `wait`; returns this party's arrival index.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] if the barrier is broken or becomes broken while waiting.
    pub fn wait(&self) -> Result<usize, Error> {
        self.wait_watched(None)
    }

    /// Like [`Barrier::wait`], but a wait longer than `timeout` breaks the barrier (for every
    /// party, as in Python) and returns [`Error::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] as for `wait`, and on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, Error> {
        self.wait_watched(Some(Deadline::after(timeout)))
    }

    /// Passes only if this party is the last one to arrive; otherwise breaks the barrier (the
    /// `try_` form of a wait whose only non-blocking outcome is that one).
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] unless this was the last party.
    pub fn try_wait(&self) -> Result<usize, Error> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Breaks the barrier: current and future waits fail until [`Barrier::reset`].
    pub fn abort(&self) {
        self.raw.abort();
    }

    /// Returns the barrier to its initial state; parties waiting now get
    /// [`Error::BrokenBarrier`]. Parties that died waiting are forgotten.
    pub fn reset(&self) {
        for _ in 0..self.clear_dead(None) {
            self.raw.forget_dead_party();
        }
        self.raw.reset();
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.raw.parties() as usize
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> usize {
        self.raw.n_waiting() as usize
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.raw.broken()
    }

    /// The raw barrier in shared memory.
    pub fn raw(&self) -> &RawBarrier {
        &self.raw
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}
