//! [`Barrier`]: Python's `multiprocessing.Barrier` (without the `action` callable).

use crate::futex::Deadline;
use crate::raw::{RawBarrier, MAX_PARTIES};
use crate::Error;
use ipc_shm::ShmBox;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

// SAFETY: RawBarrier is #[repr(C)], two atomic u32s (no pointers); all-zero is a valid barrier
// (a zero party count is read as one).
unsafe impl ipc_shm::ShmSafe for RawBarrier {}

/// A process-shared, reusable barrier for a fixed number of parties (Python's `Barrier`).
///
/// [`Barrier::wait`] returns the arrival index (`0` for the first to arrive, `parties - 1` for
/// the last). A timeout, [`Barrier::abort`] or [`Barrier::reset`] during a wait breaks the barrier
/// for every party waiting: they get [`Error::BrokenBarrier`], as Python raises
/// `BrokenBarrierError`, and later waits fail too until `reset`.
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
        })
    }

    /// Waits until all parties have called `wait`; returns this party's arrival index.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] if the barrier is broken or becomes broken while waiting.
    pub fn wait(&self) -> Result<usize, Error> {
        self.raw.wait_until(None).map(|i| i as usize)
    }

    /// Like [`Barrier::wait`], but a wait longer than `timeout` breaks the barrier (for every
    /// party, as in Python) and returns [`Error::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] as for `wait`, and on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, Error> {
        self.raw
            .wait_until(Some(Deadline::after(timeout)))
            .map(|i| i as usize)
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
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) {
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
