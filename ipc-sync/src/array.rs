//! [`Array<T>`]: Python's synchronized `Array`: elements and one robust lock in shared memory.

use crate::futex::Deadline;
use crate::raw::{Acquired, RawLock};
use crate::Error;
use ipc_shm::{Element, ShmBox, ShmSafe, ShmSlice};
use serde::{Deserialize, Serialize};
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// One element of an [`Array`] in shared memory; the same layout as `T`.
#[repr(transparent)]
struct Slot<T>(UnsafeCell<T>);

// SAFETY: Slot<T> is a transparent UnsafeCell<T> with T: ShmSafe: no pointers, all-zero valid.
unsafe impl<T: ShmSafe> ShmSafe for Slot<T> {}

// SAFETY: elements are only reached through an ArrayGuard, which exists only while the array's
// lock is held; T: Send lets whichever thread holds the lock write them.
unsafe impl<T: Send> Sync for Slot<T> {}

/// A fixed-length array of numbers in shared memory with one lock (Python's `Array(typecode, n)`).
///
/// `lock()` returns a guard that dereferences to `[T]`, so the whole slice can be read and changed
/// under one acquisition; `get`, `set` and `to_vec` take the lock for one access. A holder's death
/// is reported by [`ArrayGuard::owner_died`], as for [`crate::Value`].
///
/// # Examples
///
/// ```
/// use ipc_sync::Array;
///
/// let arr = Array::from_slice(&[1i32, 2, 3, 4, 5])?;
/// for x in arr.lock().iter_mut() {
///     *x *= 2;
/// }
/// assert_eq!(arr.to_vec(), [2, 4, 6, 8, 10]);
/// assert_eq!(arr.get(9), None);
/// assert!(arr.set(9, 0).is_err());
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Array<T: Element + ShmSafe> {
    lock: ShmBox<RawLock>,
    slots: ShmSlice<Slot<T>>,
}

impl<T: Element + ShmSafe> Array<T> {
    /// Creates an array of `len` zeros in the shared heap.
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] if the shared heap cannot allocate it.
    pub fn new(len: usize) -> Result<Array<T>, Error> {
        Ok(Array {
            lock: ShmBox::new(RawLock::new())?,
            slots: ShmSlice::zeroed(len)?,
        })
    }

    /// Creates an array holding a copy of `values`.
    ///
    /// # Errors
    ///
    /// [`Error::Shm`] if the shared heap cannot allocate it.
    pub fn from_slice(values: &[T]) -> Result<Array<T>, Error> {
        let array = Self::new(values.len())?;
        array.lock().copy_from_slice(values);
        Ok(array)
    }

    fn guard(&self, acquired: Acquired) -> ArrayGuard<'_, T> {
        ArrayGuard {
            lock: &self.lock,
            slots: &self.slots,
            owner_died: acquired.owner_died(),
            _not_send: PhantomData,
        }
    }

    /// Locks the array, waiting as long as it takes.
    pub fn lock(&self) -> ArrayGuard<'_, T> {
        self.guard(self.lock.lock())
    }

    /// Locks the array if nobody (alive) holds it.
    pub fn try_lock(&self) -> Option<ArrayGuard<'_, T>> {
        self.lock.try_lock().map(|a| self.guard(a))
    }

    /// Locks the array, giving up after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<ArrayGuard<'_, T>> {
        self.lock
            .lock_until(Some(Deadline::after(timeout)))
            .map(|a| self.guard(a))
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Element `index` (under the lock), `None` past the end.
    pub fn get(&self, index: usize) -> Option<T> {
        self.lock().get(index).copied()
    }

    /// Sets element `index` (under the lock).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end.
    pub fn set(&self, index: usize, value: T) -> Result<(), Error> {
        let len = self.len();
        match self.lock().get_mut(index) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => Err(Error::IndexOutOfRange { index, len }),
        }
    }

    /// Replaces every element with `values` (Python's `arr[:] = values`).
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] if `values` does not have the array's length.
    pub fn set_all(&self, values: &[T]) -> Result<(), Error> {
        if values.len() != self.len() {
            return Err(Error::LengthMismatch {
                expected: self.len(),
                found: values.len(),
            });
        }
        self.lock().copy_from_slice(values);
        Ok(())
    }

    /// A copy of all elements (under the lock).
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().to_vec()
    }

    /// The elements' Python typecode.
    pub fn typecode(&self) -> char {
        T::TYPECODE
    }

    /// Whether two handles refer to the same array.
    pub fn ptr_eq(a: &Array<T>, b: &Array<T>) -> bool {
        ShmBox::ptr_eq(&a.lock, &b.lock)
    }
}

impl<T: Element + ShmSafe> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Some(g) => f.debug_struct("Array").field("values", &&*g).finish(),
            None => f
                .debug_struct("Array")
                .field("len", &self.len())
                .finish_non_exhaustive(),
        }
    }
}

/// The locked elements of an [`Array`]; dereferences to `[T]`, releases the lock on drop.
/// Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    lock: &'a RawLock,
    slots: &'a [Slot<T>],
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T> ArrayGuard<'_, T> {
    /// Whether the previous holder died while holding the lock (elements may be half-updated).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: Slot<T> is repr(transparent) over UnsafeCell<T>, itself transparent over T, so
        // the slots are `len` valid, aligned Ts. The guard holds the lock, so no other guard
        // accesses them while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr() as *const T, self.slots.len()) }
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; writing through the UnsafeCells is allowed, and `&mut self` makes
        // this the only reference made through the guard.
        unsafe { std::slice::from_raw_parts_mut(self.slots.as_ptr() as *mut T, self.slots.len()) }
    }
}

impl<T> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard stands for this thread's acquisition; references into the elements
        // borrow the guard and so end before this. Dropped once.
        unsafe { self.lock.unlock() };
    }
}

impl<T: fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("values", &&**self)
            .field("owner_died", &self.owner_died)
            .finish()
    }
}
