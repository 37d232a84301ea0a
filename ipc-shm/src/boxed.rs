//! [`ShmBox`] and [`ShmSlice`]: values and zero-filled slices in the shared heap.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ops::Deref;
use core::ptr::NonNull;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::heap::{self, BlockInner};
use crate::shm_safe::ShmSafe;

/// A `T` in the process-shared heap.
///
/// `Clone` gives another handle to the same memory (like `Arc`); so does sending the handle to
/// another process, by inheritance (`fork`) or by handle transfer (it is `Serialize +
/// Deserialize` through [`transfer`](crate::transfer)). The memory stays valid while any
/// process holds a handle (see the [`heap`](crate#the-shared-heap) design). The value is shared,
/// so it is reached through `&T` only: mutate it through atomics or `UnsafeCell`, which
/// [`ShmSafe`] requires.
///
/// # Examples
///
/// ```
/// use ipc_shm::ShmBox;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let a = ShmBox::new(AtomicU64::new(5)).unwrap();
/// let b = a.clone();
/// b.fetch_add(1, Ordering::SeqCst);
/// assert_eq!(a.load(Ordering::SeqCst), 6);
/// assert!(ShmBox::ptr_eq(&a, &b));
/// ```
pub struct ShmBox<T: ShmSafe> {
    ptr: NonNull<T>,
    block: Arc<BlockInner>,
    _marker: PhantomData<T>,
}

// SAFETY: the handle is an `Arc` of a mapping plus a pointer into it; sharing or sending it
// gives other threads `&T`, which is sound when `T: Sync` (and `Send`, as for `Arc<T>`).
unsafe impl<T: ShmSafe + Send + Sync> Send for ShmBox<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe + Send + Sync> Sync for ShmBox<T> {}

impl<T: ShmSafe> ShmBox<T> {
    /// Moves `value` into the shared heap.
    ///
    /// # Errors
    ///
    /// [`Error::Alignment`] when `align_of::<T>()` exceeds 4096; [`Error::Io`] when a new
    /// arena cannot be created (out of memory or descriptors).
    pub fn new(value: T) -> Result<Self, Error> {
        let block = heap::alloc(size_of::<T>(), align_of::<T>())?;
        let ptr = block.ptr().cast::<T>();
        // SAFETY: the block has room for a `T` at an address aligned for it, and no one else
        // can reach it yet (the handle has not been cloned or sent).
        unsafe { ptr.as_ptr().write(value) };
        Ok(ShmBox {
            ptr,
            block,
            _marker: PhantomData,
        })
    }

    /// The value's address in this process.
    pub fn as_ptr(&self) -> *const T {
        self.ptr.as_ptr()
    }

    /// Do `a` and `b` designate the same shared value?
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr
    }
}

impl<T: ShmSafe> Deref for ShmBox<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the pointer is aligned, inside a mapping kept alive by `self.block`, and
        // holds a valid `T` (initialised at `new`, or received from a process that did);
        // `ShmSafe` types are only mutated through shared references (atomics/UnsafeCell),
        // so handing out `&T` while others do the same is sound.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmSafe> Clone for ShmBox<T> {
    fn clone(&self) -> Self {
        ShmBox {
            ptr: self.ptr,
            block: self.block.clone(),
            _marker: PhantomData,
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ShmBox").field(&**self).finish()
    }
}

impl<T: ShmSafe> Serialize for ShmBox<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        heap::serialize_block(&self.block, "ShmBox", s)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for ShmBox<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let block = heap::deserialize_block(d, "ShmBox", size_of::<T>(), align_of::<T>())?;
        Ok(ShmBox {
            ptr: block.ptr().cast(),
            block,
            _marker: PhantomData,
        })
    }
}

/// `len` elements of `T` in the shared heap, zero-filled: `Deref<Target = [T]>`.
///
/// Same properties as [`ShmBox`]: `Clone` is another handle, handles travel to other processes,
/// the elements are reached through `&[T]` only.
///
/// # Examples
///
/// ```
/// use ipc_shm::ShmSlice;
/// use std::sync::atomic::{AtomicI32, Ordering};
///
/// let s = ShmSlice::<AtomicI32>::zeroed(4).unwrap();
/// assert_eq!(s.len(), 4);
/// s[2].store(7, Ordering::SeqCst);
/// let all: Vec<i32> = s.iter().map(|x| x.load(Ordering::SeqCst)).collect();
/// assert_eq!(all, [0, 0, 7, 0]);
/// ```
pub struct ShmSlice<T: ShmSafe> {
    ptr: NonNull<T>,
    len: usize,
    block: Arc<BlockInner>,
    _marker: PhantomData<T>,
}

// SAFETY: as for ShmBox.
unsafe impl<T: ShmSafe + Send + Sync> Send for ShmSlice<T> {}
// SAFETY: as for ShmBox.
unsafe impl<T: ShmSafe + Send + Sync> Sync for ShmSlice<T> {}

impl<T: ShmSafe> ShmSlice<T> {
    /// `len` zero-filled elements (zero is a valid `T`: [`ShmSafe`] requires it).
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] when `len * size_of::<T>()` overflows, [`Error::Alignment`],
    /// [`Error::Io`] as for [`ShmBox::new`].
    pub fn zeroed(len: usize) -> Result<Self, Error> {
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or(Error::TooLarge { size: usize::MAX })?;
        if bytes > isize::MAX as usize {
            return Err(Error::TooLarge { size: bytes });
        }
        let block = heap::alloc(bytes, align_of::<T>())?;
        Ok(ShmSlice {
            ptr: block.ptr().cast(),
            len,
            block,
            _marker: PhantomData,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Is the slice empty?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first element's address in this process.
    pub fn as_ptr(&self) -> *const T {
        self.ptr.as_ptr()
    }

    /// Do `a` and `b` designate the same shared slice?
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr && a.len == b.len
    }
}

impl<T: ShmSafe> Deref for ShmSlice<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements, aligned, inside a mapping kept alive by `self.block`, all
        // valid (zero-filled at allocation, zero is a valid `T`); shared access only, as for
        // ShmBox.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ShmSafe> Clone for ShmSlice<T> {
    fn clone(&self) -> Self {
        ShmSlice {
            ptr: self.ptr,
            len: self.len,
            block: self.block.clone(),
            _marker: PhantomData,
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ShmSlice").field(&&**self).finish()
    }
}

struct BlockRef<'a>(&'a BlockInner);

impl Serialize for BlockRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        heap::serialize_block(self.0, "ShmSlice", s)
    }
}

impl<T: ShmSafe> Serialize for ShmSlice<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The length first, so the receiver can check the block against it.
        (self.len as u64, BlockRef(&self.block)).serialize(s)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for ShmSlice<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error as _, SeqAccess, Visitor};
        struct V<T>(PhantomData<T>);
        impl<'de, T: ShmSafe> Visitor<'de> for V<T> {
            type Value = ShmSlice<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a shared slice handle")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ShmSlice<T>, A::Error> {
                // The length comes first so the block can be checked against it.
                let len: u64 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let len = usize::try_from(len).map_err(A::Error::custom)?;
                let bytes = len
                    .checked_mul(size_of::<T>())
                    .ok_or_else(|| A::Error::custom("slice length overflows"))?;
                let block = seq
                    .next_element_seed(BlockSeed {
                        need: bytes,
                        align: align_of::<T>(),
                    })?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                Ok(ShmSlice {
                    ptr: block.ptr().cast(),
                    len,
                    block,
                    _marker: PhantomData,
                })
            }
        }
        d.deserialize_tuple(2, V(PhantomData))
    }
}

struct BlockSeed {
    need: usize,
    align: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for BlockSeed {
    type Value = Arc<BlockInner>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        heap::deserialize_block(d, "ShmSlice", self.need, self.align)
    }
}
