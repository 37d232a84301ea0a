//! [`Value<T>`]: Python's synchronized `Value`: one element and its robust lock in shared memory.

use crate::futex::Deadline;
use crate::raw::{Acquired, RawLock};
use crate::Error;
use ipc_shm::{Element, ShmBox, ShmSafe};
use serde::{Deserialize, Serialize};
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// The shared-memory layout of a [`Value`]: the lock, then the element it protects.
#[repr(C)]
struct ValueCell<T> {
    lock: RawLock,
    value: UnsafeCell<T>,
}

// SAFETY: ValueCell is #[repr(C)] of a RawLock (atomics) and an UnsafeCell<T> with T: ShmSafe, so
// it holds no pointers and all-zero is valid (unlocked, T's zero).
unsafe impl<T: ShmSafe> ShmSafe for ValueCell<T> {}

// SAFETY: the element is only reached through a ValueGuard, which exists only while the lock is
// held, so shared references from several threads never touch it at the same time; T: Send lets
// the element be written by whichever thread holds the lock.
unsafe impl<T: Send> Sync for ValueCell<T> {}

/// A number in shared memory with a lock (Python's `Value(typecode, x)`).
///
/// `lock()` returns a guard that dereferences to the number: `*counter.lock() += 1` is one atomic
/// read-modify-write across processes (Python's `v.value += 1` is not; this is what
/// `with v.get_lock():` gives there). `get` and `set` take the lock for one access.
///
/// If a process dies while holding the lock, the next `lock()` gets it with
/// [`ValueGuard::owner_died`] true: the number may hold a half-done update.
///
/// Locking twice in one thread (for instance `get()` while a guard is alive) deadlocks, as with
/// `std::sync::Mutex`.
///
/// # Examples
///
/// ```
/// use ipc_sync::Value;
///
/// let counter = Value::new(0i32)?;
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| for _ in 0..1000 { *counter.lock() += 1 });
///     }
/// });
/// assert_eq!(counter.get(), 4000);
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Value<T: Element + ShmSafe> {
    cell: ShmBox<ValueCell<T>>,
}

impl<T: Element + ShmSafe> Value<T> {
    /// Creates a value holding `value` in the shared heap.
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] if the shared heap cannot allocate it.
    pub fn new(value: T) -> Result<Value<T>, Error> {
        Ok(Value {
            cell: ShmBox::new(ValueCell {
                lock: RawLock::new(),
                value: UnsafeCell::new(value),
            })?,
        })
    }

    fn guard(&self, acquired: Acquired) -> ValueGuard<'_, T> {
        ValueGuard {
            cell: &self.cell,
            owner_died: acquired.owner_died(),
            _not_send: PhantomData,
        }
    }

    /// Locks the value, waiting as long as it takes.
    pub fn lock(&self) -> ValueGuard<'_, T> {
        self.guard(self.cell.lock.lock())
    }

    /// Locks the value if nobody (alive) holds it.
    pub fn try_lock(&self) -> Option<ValueGuard<'_, T>> {
        self.cell.lock.try_lock().map(|a| self.guard(a))
    }

    /// Locks the value, giving up after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<ValueGuard<'_, T>> {
        self.cell
            .lock
            .lock_until(Some(Deadline::after(timeout)))
            .map(|a| self.guard(a))
    }

    /// Reads the value under the lock.
    pub fn get(&self) -> T {
        *self.lock()
    }

    /// Writes the value under the lock.
    pub fn set(&self, value: T) {
        *self.lock() = value;
    }

    /// The element's Python typecode (`'i'` for `i32`, ...).
    pub fn typecode(&self) -> char {
        T::TYPECODE
    }

    /// Whether two handles refer to the same value.
    pub fn ptr_eq(a: &Value<T>, b: &Value<T>) -> bool {
        ShmBox::ptr_eq(&a.cell, &b.cell)
    }
}

impl<T: Element + ShmSafe> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Some(g) => f.debug_struct("Value").field("value", &*g).finish(),
            None => f
                .debug_struct("Value")
                .field("value", &format_args!("<locked>"))
                .finish(),
        }
    }
}

/// The locked number of a [`Value`]; dereferences to it, releases the lock on drop. Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    cell: &'a ValueCell<T>,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T> ValueGuard<'_, T> {
    /// Whether the previous holder died while holding the lock (the number may be half-updated).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other guard (in any process) accesses the
        // element until it is dropped; the cell lives as long as the borrowed handle.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference made through the guard.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard stands for this thread's acquisition; no reference into the element
        // outlives it (they borrow the guard). Dropped once.
        unsafe { self.cell.lock.unlock() };
    }
}

impl<T: fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueGuard")
            .field("value", &**self)
            .field("owner_died", &self.owner_died)
            .finish()
    }
}
