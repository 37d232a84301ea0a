//! [`SimpleQueue`]: Python's `multiprocessing.SimpleQueue`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::err::Result;
use crate::flavors::Backend;
use crate::queue::Queue;

/// A minimal unbounded queue: `put`, `get`, `empty`, `close` and nothing else, as in Python.
/// It is a [`Queue`] underneath (shared-memory backend by default), so it has the same
/// guarantees: `put` returns once the item is in the queue, and a consumer killed mid-`get`
/// does not wedge the others.
///
/// # Examples
///
/// ```
/// use ipc_channel_core::SimpleQueue;
///
/// let q = SimpleQueue::new()?;
/// assert!(q.empty());
/// q.put(&"x".to_string())?;
/// assert!(!q.empty());
/// assert_eq!(q.get()?, "x");
/// # Ok::<(), ipc_channel_core::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SimpleQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("backend", &self.inner.backend())
            .finish()
    }
}

impl<T> SimpleQueue<T> {
    /// A new queue with the shared-memory backend.
    ///
    /// # Errors
    ///
    /// [`Error::Shm`](crate::Error::Shm) when the shared memory cannot be made.
    pub fn new() -> Result<SimpleQueue<T>> {
        SimpleQueue::with_backend(Backend::Shm)
    }

    /// A new queue with the given backend ([`Backend::Pipe`] lets items carry OS handles).
    ///
    /// # Errors
    ///
    /// As [`new`](SimpleQueue::new).
    pub fn with_backend(backend: Backend) -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            inner: Queue::builder().backend(backend).build()?,
        })
    }

    /// Is the queue empty?
    pub fn empty(&self) -> bool {
        self.inner.empty()
    }

    /// Closes this process's handle: later `put`/`get` return
    /// [`Error::Closed`](crate::Error::Closed). Closing twice is fine.
    pub fn close(&self) {
        self.inner.close()
    }
}

impl<T: Serialize> SimpleQueue<T> {
    /// Puts `item` in the queue (encoded synchronously; an unencodable item is an error here).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, item: &T) -> Result<()> {
        self.inner.put_deadline(item, None)
    }
}

impl<T: DeserializeOwned> SimpleQueue<T> {
    /// Removes and returns the first item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.inner.get()
    }
}
