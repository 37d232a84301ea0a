//! [`RawArray`]: a fixed-length array of scalars in shared memory (Python's `RawArray`).

use core::fmt;
use core::mem::size_of;
use core::sync::atomic::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::boxed::ShmSlice;
use crate::element::{Element, IntElement};
use crate::error::Error;

/// `len` elements of `T` in the shared heap, without a lock.
///
/// Element access ([`get`](RawArray::get), [`set`](RawArray::set),
/// [`fetch_add`](RawArray::fetch_add)) is atomic (`SeqCst`) per element. The bulk copies
/// ([`copy_from_slice`](RawArray::copy_from_slice), [`copy_to_slice`](RawArray::copy_to_slice),
/// [`to_vec`](RawArray::to_vec)) run at `memcpy` speed and are atomic per *byte* only: an
/// element another process writes during the copy may be read half old, half new. Use
/// `ipc_sync::Array` (which adds a lock) when that matters.
///
/// `Clone` is another handle to the same array; handles travel to other processes like
/// [`RawValue`](crate::RawValue)'s.
///
/// # Examples
///
/// ```
/// use ipc_shm::RawArray;
///
/// let a = RawArray::from_slice(&[1i32, 2, 3, 4, 5]).unwrap();
/// for i in 0..a.len() {
///     a.set(i, a.get(i).unwrap() * 2).unwrap();
/// }
/// assert_eq!(a.to_vec(), [2, 4, 6, 8, 10]);
/// assert_eq!(a.get(5), None);
/// assert!(a.set(5, 0).is_err());
/// ```
pub struct RawArray<T: Element> {
    cells: ShmSlice<T::Atomic>,
}

impl<T: Element> RawArray<T> {
    /// `len` zero elements.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] when the size overflows, [`Error::Io`] when the heap cannot grow.
    pub fn zeroed(len: usize) -> Result<Self, Error> {
        Ok(RawArray {
            cells: ShmSlice::zeroed(len)?,
        })
    }

    /// A shared copy of `values`.
    ///
    /// # Errors
    ///
    /// As [`zeroed`](RawArray::zeroed).
    pub fn from_slice(values: &[T]) -> Result<Self, Error> {
        let a = RawArray::zeroed(values.len())?;
        a.copy_from_slice(values)?;
        Ok(a)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Is the array empty?
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Element `index`, or `None` when out of range.
    #[inline]
    pub fn get(&self, index: usize) -> Option<T> {
        self.cells.get(index).map(|c| T::load(c, Ordering::SeqCst))
    }

    /// Writes element `index`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] when `index >= len()`.
    #[inline]
    pub fn set(&self, index: usize, value: T) -> Result<(), Error> {
        match self.cells.get(index) {
            Some(c) => {
                T::store(c, value, Ordering::SeqCst);
                Ok(())
            }
            None => Err(Error::IndexOutOfRange {
                index,
                len: self.len(),
            }),
        }
    }

    /// All elements, copied out (see the type's note on bulk copies).
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = Vec::with_capacity(self.len());
        // SAFETY: `v` has capacity for `len` elements; `copy_out` writes exactly that many
        // initialised `T`s (any bits copied from a `T::Atomic` of an Element are a valid `T`:
        // the elements are integers and floats).
        unsafe {
            self.copy_out(v.as_mut_ptr());
            v.set_len(self.len());
        }
        v
    }

    /// Copies `src` into the array.
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] when `src.len() != len()`.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<(), Error> {
        if src.len() != self.len() {
            return Err(Error::LengthMismatch {
                expected: self.len(),
                got: src.len(),
            });
        }
        // SAFETY: both ranges hold `len * size_of::<T>()` bytes (T and T::Atomic have the same
        // size: an integer and its atomic, a float and the atomic of its bits); the
        // destination is shared memory kept alive by `self`, the source private memory.
        unsafe {
            copy_bytes(
                src.as_ptr().cast(),
                self.cells.as_ptr() as *mut u8,
                core::mem::size_of_val(src),
            )
        };
        Ok(())
    }

    /// Copies the array into `dst`.
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] when `dst.len() != len()`.
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<(), Error> {
        if dst.len() != self.len() {
            return Err(Error::LengthMismatch {
                expected: self.len(),
                got: dst.len(),
            });
        }
        // SAFETY: `dst` holds `len` elements.
        unsafe { self.copy_out(dst.as_mut_ptr()) };
        Ok(())
    }

    /// # Safety
    ///
    /// `dst` must be valid for writing `len()` elements.
    unsafe fn copy_out(&self, dst: *mut T) {
        // SAFETY: the caller guarantees `dst`; the source is `len` elements of shared memory
        // kept alive by `self`, of the same size as `T`.
        unsafe {
            copy_bytes(
                self.cells.as_ptr() as *const u8,
                dst.cast(),
                self.len() * size_of::<T>(),
            )
        }
    }

    /// Do `a` and `b` designate the same shared array?
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        ShmSlice::ptr_eq(&a.cells, &b.cells)
    }
}

impl<T: IntElement> RawArray<T> {
    /// Adds `delta` to element `index` (wrapping) and returns its previous value, atomically.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] when `index >= len()`.
    pub fn fetch_add(&self, index: usize, delta: T) -> Result<T, Error> {
        match self.cells.get(index) {
            Some(c) => Ok(T::fetch_add(c, delta, Ordering::SeqCst)),
            None => Err(Error::IndexOutOfRange {
                index,
                len: self.len(),
            }),
        }
    }
}

/// Copies `n` bytes from `src` to `dst` (non-overlapping, one of them shared memory that other
/// processes and threads may access concurrently).
///
/// A plain `memcpy` racing with another thread's atomic store is a data race in Rust's memory
/// model. On x86-64 the copy is one `rep movsb` in inline assembly, which the compiler treats
/// as opaque and the hardware performs as byte-sized (hence atomic) accesses; elsewhere it is a
/// loop of relaxed atomic byte loads and stores.
///
/// # Safety
///
/// `src` must be valid for reading and `dst` for writing `n` bytes, and the ranges must not
/// overlap.
#[inline]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `rep movsb` copies rcx bytes from [rsi] to [rdi] upwards (the ABI guarantees the
    // direction flag is clear); the caller guarantees both ranges.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    for i in 0..n {
        use core::sync::atomic::AtomicU8;
        // SAFETY: in bounds per the caller; AtomicU8 has the alignment and size of u8.
        unsafe {
            let b = (*(src.add(i) as *const AtomicU8)).load(Ordering::Relaxed);
            (*(dst.add(i) as *const AtomicU8)).store(b, Ordering::Relaxed);
        }
    }
}

impl<T: Element> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Element> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawArray<{}>({:?})", T::TYPECODE, self.to_vec())
    }
}

impl<T: Element> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.cells.serialize(s)
    }
}

impl<'de, T: Element> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RawArray {
            cells: ShmSlice::deserialize(d)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_copies_round_trip() {
        let src: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
        let a = RawArray::from_slice(&src).unwrap();
        assert_eq!(a.to_vec(), src);
        let mut out = vec![0.0; 1000];
        a.copy_to_slice(&mut out).unwrap();
        assert_eq!(out, src);
        assert!(matches!(
            a.copy_to_slice(&mut [0.0; 3]),
            Err(Error::LengthMismatch {
                expected: 1000,
                got: 3
            })
        ));
        assert!(a.copy_from_slice(&[1.0]).is_err());
        assert_eq!(a.get(999), Some(499.5));
    }

    #[test]
    fn empty_and_fetch_add() {
        let e = RawArray::<u16>::zeroed(0).unwrap();
        assert!(e.is_empty());
        assert_eq!(e.to_vec(), Vec::<u16>::new());
        assert_eq!(e.get(0), None);
        let a = RawArray::<u8>::zeroed(3).unwrap();
        assert_eq!(a.fetch_add(1, 255).unwrap(), 0);
        assert_eq!(a.fetch_add(1, 2).unwrap(), 255);
        assert_eq!(a.to_vec(), [0, 1, 0]);
        assert!(matches!(
            a.fetch_add(3, 1),
            Err(Error::IndexOutOfRange { index: 3, len: 3 })
        ));
    }
}
