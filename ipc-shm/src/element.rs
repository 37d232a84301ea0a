//! [`Element`]: the scalar types of `RawValue`/`RawArray`, with Python's typecodes.

use core::fmt::Debug;
use core::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering,
};

use crate::shm_safe::ShmSafe;

mod sealed {
    pub trait Sealed {}
}

/// The element types of [`RawValue`](crate::RawValue) and [`RawArray`](crate::RawArray): `i8
/// u8 i16 u16 i32 u32 i64 u64 f32 f64`, each with Python's `array`/`ctypes` typecode.
///
/// Elements live in shared memory as their atomic counterpart (`f32`/`f64` as the atomic of
/// their bits), so every access is atomic. The trait is sealed.
///
/// # Examples
///
/// ```
/// use ipc_shm::Element;
/// assert_eq!(<i32 as Element>::TYPECODE, 'i');
/// assert_eq!(<f64 as Element>::TYPECODE, 'd');
/// ```
pub trait Element: sealed::Sealed + Copy + PartialEq + Debug + Send + Sync + 'static {
    /// Python's typecode: `b B h H i I q Q f d`.
    const TYPECODE: char;
    /// The atomic stored in shared memory.
    type Atomic: ShmSafe + Send + Sync;
    /// Atomically reads `cell`.
    fn load(cell: &Self::Atomic, order: Ordering) -> Self;
    /// Atomically writes `value` into `cell`.
    fn store(cell: &Self::Atomic, value: Self, order: Ordering);
}

/// The integer [`Element`]s, which also have an atomic, wrapping `fetch_add`.
pub trait IntElement: Element {
    /// Atomically adds `value` to `cell` (wrapping on overflow) and returns the previous value.
    fn fetch_add(cell: &Self::Atomic, value: Self, order: Ordering) -> Self;
}

macro_rules! int_element {
    ($($t:ty, $a:ty, $code:literal;)*) => {
        $(
            impl sealed::Sealed for $t {}
            impl Element for $t {
                const TYPECODE: char = $code;
                type Atomic = $a;
                #[inline]
                fn load(cell: &$a, order: Ordering) -> $t {
                    cell.load(order)
                }
                #[inline]
                fn store(cell: &$a, value: $t, order: Ordering) {
                    cell.store(value, order)
                }
            }
            impl IntElement for $t {
                #[inline]
                fn fetch_add(cell: &$a, value: $t, order: Ordering) -> $t {
                    cell.fetch_add(value, order)
                }
            }
        )*
    };
}

int_element! {
    i8, AtomicI8, 'b';
    u8, AtomicU8, 'B';
    i16, AtomicI16, 'h';
    u16, AtomicU16, 'H';
    i32, AtomicI32, 'i';
    u32, AtomicU32, 'I';
    i64, AtomicI64, 'q';
    u64, AtomicU64, 'Q';
}

macro_rules! float_element {
    ($($t:ty, $a:ty, $code:literal;)*) => {
        $(
            impl sealed::Sealed for $t {}
            impl Element for $t {
                const TYPECODE: char = $code;
                type Atomic = $a;
                #[inline]
                fn load(cell: &$a, order: Ordering) -> $t {
                    <$t>::from_bits(cell.load(order))
                }
                #[inline]
                fn store(cell: &$a, value: $t, order: Ordering) {
                    cell.store(value.to_bits(), order)
                }
            }
        )*
    };
}

float_element! {
    f32, AtomicU32, 'f';
    f64, AtomicU64, 'd';
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typecodes() {
        let codes = [
            i8::TYPECODE,
            u8::TYPECODE,
            i16::TYPECODE,
            u16::TYPECODE,
            i32::TYPECODE,
            u32::TYPECODE,
            i64::TYPECODE,
            u64::TYPECODE,
            f32::TYPECODE,
            f64::TYPECODE,
        ];
        assert_eq!(String::from_iter(codes), "bBhHiIqQfd");
    }

    #[test]
    fn floats_round_trip_through_bits() {
        let c = AtomicU64::new(0);
        f64::store(&c, -2.5, Ordering::SeqCst);
        assert_eq!(f64::load(&c, Ordering::SeqCst), -2.5);
        let c = AtomicU32::new(0);
        f32::store(&c, f32::INFINITY, Ordering::SeqCst);
        assert_eq!(f32::load(&c, Ordering::SeqCst), f32::INFINITY);
    }

    #[test]
    fn fetch_add_wraps() {
        let c = AtomicU8::new(250);
        assert_eq!(u8::fetch_add(&c, 10, Ordering::SeqCst), 250);
        assert_eq!(u8::load(&c, Ordering::SeqCst), 4);
    }
}
