//! [`Semaphore`] and [`BoundedSemaphore`]: Python's counting semaphores, process-shared.

use crate::futex::Deadline;
use crate::raw::{RawSemaphore, SEM_VALUE_MAX};
use crate::Error;
use ipc_shm::ShmBox;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

// SAFETY: RawSemaphore is #[repr(C)], four atomic u32s (no pointers); all-zero is a valid (empty,
// unbounded-flag-clear, zero-maximum) semaphore whose operations stay memory-safe.
unsafe impl ipc_shm::ShmSafe for RawSemaphore {}

fn check_initial(value: u32) -> Result<(), Error> {
    if value > SEM_VALUE_MAX {
        return Err(Error::InvalidArgument(
            "semaphore value above SEM_VALUE_MAX (2147483647)",
        ));
    }
    Ok(())
}

/// A process-shared counting semaphore (Python's `Semaphore`).
///
/// `acquire` takes a unit (sleeping while there is none); `release` gives one back and may raise
/// the value above its initial one. No system call unless someone has to sleep.
///
/// # Examples
///
/// ```
/// use ipc_sync::Semaphore;
/// use std::time::Duration;
///
/// let sem = Semaphore::new(2)?;
/// sem.acquire();
/// assert!(sem.try_acquire());
/// assert_eq!(sem.value(), 0);
/// assert!(!sem.acquire_timeout(Duration::from_millis(10)));
/// sem.release()?;
/// sem.release()?;
/// sem.release()?; // a plain semaphore may go above its initial value
/// assert_eq!(sem.value(), 3);
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    raw: ShmBox<RawSemaphore>,
}

impl Semaphore {
    /// Creates a semaphore holding `value` in the shared heap.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] above `SEM_VALUE_MAX` (2³¹−1); [`Error::Shm`] if the shared heap
    /// cannot allocate it.
    pub fn new(value: u32) -> Result<Semaphore, Error> {
        check_initial(value)?;
        Ok(Semaphore {
            raw: ShmBox::new(RawSemaphore::new(value))?,
        })
    }

    /// Takes a unit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.raw.acquire();
    }

    /// Takes a unit if one is available now.
    pub fn try_acquire(&self) -> bool {
        self.raw.try_acquire()
    }

    /// Takes a unit, giving up after `timeout`; returns whether it took one.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.raw.acquire_until(Some(Deadline::after(timeout)))
    }

    /// Gives a unit back, waking one waiter.
    ///
    /// # Errors
    ///
    /// [`Error::Overflow`] if the value is already `SEM_VALUE_MAX`.
    pub fn release(&self) -> Result<(), Error> {
        self.raw.release()
    }

    /// The current value (Python's `get_value()`).
    pub fn value(&self) -> u32 {
        self.raw.value()
    }

    /// The raw semaphore in shared memory.
    pub fn raw(&self) -> &RawSemaphore {
        &self.raw
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

/// A process-shared semaphore that may not be released above its initial value (Python's
/// `BoundedSemaphore`).
///
/// # Examples
///
/// ```
/// use ipc_sync::{BoundedSemaphore, Error};
///
/// let sem = BoundedSemaphore::new(1)?;
/// sem.acquire();
/// sem.release()?;
/// assert!(matches!(sem.release(), Err(Error::OverRelease)));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    raw: ShmBox<RawSemaphore>,
}

impl BoundedSemaphore {
    /// Creates a bounded semaphore holding (and bounded by) `value`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] above `SEM_VALUE_MAX`; [`Error::Shm`] if the shared heap cannot
    /// allocate it.
    pub fn new(value: u32) -> Result<BoundedSemaphore, Error> {
        check_initial(value)?;
        Ok(BoundedSemaphore {
            raw: ShmBox::new(RawSemaphore::new_bounded(value))?,
        })
    }

    /// Takes a unit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.raw.acquire();
    }

    /// Takes a unit if one is available now.
    pub fn try_acquire(&self) -> bool {
        self.raw.try_acquire()
    }

    /// Takes a unit, giving up after `timeout`; returns whether it took one.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.raw.acquire_until(Some(Deadline::after(timeout)))
    }

    /// Gives a unit back, waking one waiter.
    ///
    /// # Errors
    ///
    /// [`Error::OverRelease`] if the value is already at its bound (Python's
    /// `ValueError('semaphore or lock released too many times')`).
    pub fn release(&self) -> Result<(), Error> {
        self.raw.release()
    }

    /// The current value.
    pub fn value(&self) -> u32 {
        self.raw.value()
    }

    /// The bound (the initial value).
    pub fn max_value(&self) -> u32 {
        self.raw.max_value()
    }

    /// The raw semaphore in shared memory.
    pub fn raw(&self) -> &RawSemaphore {
        &self.raw
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("max_value", &self.max_value())
            .finish()
    }
}
