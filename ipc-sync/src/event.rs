//! [`Event`]: Python's `multiprocessing.Event`.

use crate::futex::Deadline;
use crate::raw::RawEvent;
use crate::Error;
use ipc_shm::ShmBox;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

// SAFETY: RawEvent is #[repr(C)], one atomic u32 (no pointers); all-zero is the clear state.
unsafe impl ipc_shm::ShmSafe for RawEvent {}

/// A process-shared flag that processes wait on (Python's `Event`).
///
/// `set` wakes every waiter; a waiter also returns `true` if the flag was set and cleared again
/// while it slept. `is_set` and waiting on a set flag are a single load.
///
/// # Examples
///
/// ```
/// use ipc_sync::Event;
/// use std::time::Duration;
///
/// let event = Event::new()?;
/// assert!(!event.wait_timeout(Duration::from_millis(10)));
/// std::thread::scope(|s| {
///     s.spawn(|| event.set());
///     event.wait();
/// });
/// assert!(event.is_set());
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    raw: ShmBox<RawEvent>,
}

impl Event {
    /// Creates a clear event in the shared heap.
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] if the shared heap cannot allocate it.
    pub fn new() -> Result<Event, Error> {
        Ok(Event {
            raw: ShmBox::new(RawEvent::new())?,
        })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.raw.set();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.raw.clear();
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.raw.is_set()
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.raw.wait_until(None);
    }

    /// Returns whether the flag is set, without waiting (the same as [`Event::is_set`]).
    pub fn try_wait(&self) -> bool {
        self.raw.is_set()
    }

    /// Waits until the flag is set or `timeout` passes; returns whether it was set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.raw.wait_until(Some(Deadline::after(timeout)))
    }

    /// The raw event in shared memory.
    pub fn raw(&self) -> &RawEvent {
        &self.raw
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
