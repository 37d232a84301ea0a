//! [`ShmSafe`]: the types that may live in memory shared between processes.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32,
    AtomicU64, AtomicU8, AtomicUsize,
};

/// Types that may live in shared memory.
///
/// A value of such a type is placed in a mapping that other processes see at other addresses,
/// that starts out zero-filled, and that other processes may change at any time. So:
///
/// # Safety
///
/// Implementing this trait promises that the type
/// - holds no pointers or references (they mean nothing in another address space), nor
///   anything that owns process-local resources (a `Box`, a file descriptor, a `Vec`);
/// - has a fixed, fully defined layout: a primitive, or `#[repr(C)]`/`#[repr(transparent)]`
///   built only of `ShmSafe` fields;
/// - is valid when all of its bytes are zero (shared memory starts zeroed and
///   [`ShmSlice::zeroed`](crate::ShmSlice::zeroed) relies on it);
/// - is only mutated through shared references by atomics or `UnsafeCell` (other processes
///   hold `&T` at the same time, so plain `&mut` access would be a data race), and its safe
///   methods are sound when called from several processes at once, as a `Sync` type's are
///   from several threads: a handle sent to another process shares the value whether or not
///   the type is `Sync`;
/// - needs no `Drop`: the shared heap never runs destructors of values it frees.
///
/// The primitives, the atomics, arrays, `UnsafeCell` and `MaybeUninit` of `ShmSafe` types
/// implement it. A `#[repr(C)]` struct of `ShmSafe` fields can implement it by hand.
///
/// A peer that shares memory with you can write any bytes into it. Most `ShmSafe` types accept
/// any bit pattern; `bool` and `AtomicBool` do not, so do not share those with a process you
/// do not trust.
///
/// # Examples
///
/// ```
/// use ipc_shm::{ShmBox, ShmSafe};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// #[repr(C)]
/// struct Counters {
///     hits: AtomicU32,
///     misses: AtomicU32,
/// }
/// // SAFETY: repr(C), only atomics (no pointers, zero is valid, mutated through atomics,
/// // no Drop).
/// unsafe impl ShmSafe for Counters {}
///
/// let c = ShmBox::new(Counters { hits: AtomicU32::new(1), misses: AtomicU32::new(0) }).unwrap();
/// c.hits.fetch_add(1, Ordering::SeqCst);
/// assert_eq!(c.hits.load(Ordering::SeqCst), 2);
/// ```
pub unsafe trait ShmSafe: Sized + 'static {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: a primitive or an atomic of one: no pointers, fixed layout, all-zero
            // is a valid value, atomics mutate through `&self`, no Drop.
            unsafe impl ShmSafe for $t {}
        )*
    };
}

shm_safe!(
    u8,
    u16,
    u32,
    u64,
    i8,
    i16,
    i32,
    i64,
    usize,
    isize,
    f32,
    f64,
    bool,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicUsize,
    AtomicIsize,
    AtomicBool,
);

// SAFETY: an array has the layout of N consecutive `T`s, each of which is ShmSafe.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
// SAFETY: `UnsafeCell<T>` has the layout of `T` (repr(transparent)); mutation through it is
// what the trait allows.
unsafe impl<T: ShmSafe> ShmSafe for UnsafeCell<T> {}
// SAFETY: `MaybeUninit<T>` has the layout of `T`, any bytes (zero included) are valid for it.
unsafe impl<T: ShmSafe> ShmSafe for MaybeUninit<T> {}
