//! [`RawValue`]: one scalar in shared memory, accessed atomically (Python's `RawValue`).

use core::fmt;
use core::sync::atomic::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::boxed::ShmBox;
use crate::element::{Element, IntElement};
use crate::error::Error;

/// One `T` in the shared heap, without a lock: every access is a single atomic operation
/// (`SeqCst`, so a value stored in one process is seen by any later load in another, in one
/// global order with every other `SeqCst` operation).
///
/// `Clone` is another handle to the same value; a handle reaches another process by `fork` or
/// by handle transfer (it is `Serialize + Deserialize` through [`transfer`](crate::transfer)).
/// For read-modify-write sequences other than `fetch_add`, use `ipc_sync::Value`, which adds a
/// lock.
///
/// # Examples
///
/// ```
/// use ipc_shm::RawValue;
///
/// let v = RawValue::new(40i64).unwrap();
/// let w = v.clone();
/// w.fetch_add(2);
/// assert_eq!(v.load(), 42);
/// v.store(-1);
/// assert_eq!(w.load(), -1);
/// let x = RawValue::new(1.5f64).unwrap();
/// assert_eq!(x.load(), 1.5);
/// ```
pub struct RawValue<T: Element> {
    cell: ShmBox<T::Atomic>,
}

impl<T: Element> RawValue<T> {
    /// A new shared value holding `value`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the heap cannot grow (out of memory or descriptors).
    pub fn new(value: T) -> Result<Self, Error> {
        let cell = ShmBox::new(unsafe_zeroed_atomic::<T>())?;
        T::store(&cell, value, Ordering::SeqCst);
        Ok(RawValue { cell })
    }

    /// Reads the value.
    #[inline]
    pub fn load(&self) -> T {
        T::load(&self.cell, Ordering::SeqCst)
    }

    /// Writes the value.
    #[inline]
    pub fn store(&self, value: T) {
        T::store(&self.cell, value, Ordering::SeqCst)
    }

    /// Do `a` and `b` designate the same shared value?
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        ShmBox::ptr_eq(&a.cell, &b.cell)
    }
}

impl<T: IntElement> RawValue<T> {
    /// Adds `delta` and returns the previous value, atomically. Overflow wraps around (as
    /// Python's ctypes values do), it never panics.
    #[inline]
    pub fn fetch_add(&self, delta: T) -> T {
        T::fetch_add(&self.cell, delta, Ordering::SeqCst)
    }
}

/// The all-zero atomic for `T` (a valid value: `ShmSafe` requires it).
pub(crate) fn unsafe_zeroed_atomic<T: Element>() -> T::Atomic {
    // SAFETY: `T::Atomic` is ShmSafe, so the all-zero bit pattern is a valid value of it.
    unsafe { core::mem::zeroed() }
}

impl<T: Element> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            cell: self.cell.clone(),
        }
    }
}

impl<T: Element> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawValue<{}>({:?})", T::TYPECODE, self.load())
    }
}

impl<T: Element> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.cell.serialize(s)
    }
}

impl<'de, T: Element> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RawValue {
            cell: ShmBox::deserialize(d)?,
        })
    }
}
