//! [`Segment`]: an anonymous shared mapping backed by a memfd.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::sys;
use crate::transfer::{self, TransferError};

/// An anonymous shared mapping backed by a memfd: page-rounded, zero-filled, close-on-exec,
/// sealed against resizing.
///
/// A `Segment` has no name: it reaches another process by inheritance (`fork`) or by handle
/// transfer (serialize it inside [`transfer::encode`] and send the descriptors with
/// [`transfer::send_with_fds`]). The memory lives as long as some process maps it or holds its
/// descriptor. `Clone` gives another handle to the same mapping (like `Arc`).
///
/// The bytes may change at any time (another process writes them), so safe access copies in
/// and out ([`write_at`](Segment::write_at), [`read_at`](Segment::read_at)); slices are
/// `unsafe` and meant for callers who synchronise themselves.
///
/// # Examples
///
/// ```
/// use ipc_shm::Segment;
///
/// let seg = Segment::new(100).unwrap();
/// assert!(seg.len() >= 100); // rounded up to whole pages
/// seg.write_at(10, b"hello").unwrap();
/// let mut buf = [0u8; 5];
/// seg.clone().read_at(10, &mut buf).unwrap();
/// assert_eq!(&buf, b"hello");
/// assert!(seg.write_at(seg.len() - 2, b"abc").is_err());
/// ```
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

struct Inner {
    map: MmapRaw,
    fd: OwnedFd,
}

impl Segment {
    /// Creates a zero-filled segment of at least `size` bytes (rounded up to whole pages).
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`] for `size == 0`, [`Error::TooLarge`] when the rounded size overflows,
    /// [`Error::Io`] when the system refuses (out of memory or descriptors).
    pub fn new(size: usize) -> Result<Segment, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let page = sys::page_size();
        let len = size
            .checked_add(page - 1)
            .map(|n| n & !(page - 1))
            .filter(|n| *n <= isize::MAX as usize)
            .ok_or(Error::TooLarge { size })?;
        let fd = sys::memfd_sealed("multiproc-segment", len)
            .map_err(|e| Error::io("memfd_create", e))?;
        Segment::map(fd, len).map_err(|e| Error::io("mmap", e))
    }

    fn map(fd: OwnedFd, len: usize) -> std::io::Result<Segment> {
        let map = MmapOptions::new().len(len).map_raw(&fd)?;
        Ok(Segment {
            inner: Arc::new(Inner { map, fd }),
        })
    }

    /// Rebuilds a segment from a received descriptor after checking it: a sealed memfd of at
    /// least `len` bytes.
    pub(crate) fn from_received(
        fd: OwnedFd,
        len: usize,
        what: &'static str,
    ) -> Result<Segment, TransferError> {
        // Every segment is a whole number of pages (users such as the shared heap rely on
        // at least one page being mapped), so any other announced length is refused before
        // anything is mapped.
        if len == 0 || len > isize::MAX as usize || len % sys::page_size() != 0 {
            return Err(TransferError::WrongKind {
                what,
                detail: format!("announced length {len} is not a mappable number of pages"),
            });
        }
        sys::check_shm_fd(fd.as_fd(), len as u64, true)
            .map_err(|detail| TransferError::WrongKind { what, detail })?;
        Segment::map(fd, len).map_err(TransferError::Io)
    }

    /// The mapped length in bytes (a whole number of pages).
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Always `false`: a segment holds at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first byte of the mapping. Valid for [`len`](Segment::len) bytes as long as any
    /// clone of this handle lives. Other processes may write through their own mappings at any
    /// time: access it through atomics, or synchronise.
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.map.as_mut_ptr()
    }

    /// The memfd behind the mapping.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] when `offset + data.len()` exceeds the segment.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        check_range(offset, data.len(), self.len())?;
        // SAFETY: the range is inside the mapping (checked above), which lives while `self`
        // does. `data` is a shared borrow, so nothing may write it during the copy; it could
        // only point into this mapping through the `unsafe` `as_slice`, whose contract forbids
        // writes such as this one while it lives, so the ranges do not overlap. Concurrent
        // writers in other processes are outside this process's memory model; the copy is a
        // plain byte copy, as `pwrite` on the memfd would be.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(offset), data.len())
        };
        Ok(())
    }

    /// Copies `buf.len()` bytes from the segment at `offset` into `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] when `offset + buf.len()` exceeds the segment.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.len())?;
        // SAFETY: as in `write_at`, with source and destination swapped.
        unsafe {
            core::ptr::copy_nonoverlapping(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// The whole mapping as a byte slice.
    ///
    /// # Safety
    ///
    /// No one (in this or another process) may write the bytes while the slice is in use, or
    /// the caller reads a data race.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is valid for `len` bytes while `self` lives; the caller promises
        // no concurrent writes.
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The whole mapping as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// No one else (no other slice from this segment or its clones, no other process) may read
    /// or write the bytes while the slice is in use.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping is valid for `len` bytes while `self` lives; the caller promises
        // exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }
}

pub(crate) fn check_range(offset: usize, len: usize, size: usize) -> Result<(), Error> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfBounds { offset, len, size }),
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("len", &self.len())
            .field("fd", &self.inner.fd)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    fd: u32,
    len: u64,
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fd = transfer::push_fd(self.as_fd(), "Segment").map_err(transfer::ser_error)?;
        Wire {
            fd,
            len: self.len() as u64,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let fd = transfer::take_fd(w.fd, "Segment").map_err(transfer::de_error)?;
        let len = usize::try_from(w.len).map_err(serde::de::Error::custom)?;
        Segment::from_received(fd, len, "Segment").map_err(transfer::de_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_length_that_is_not_whole_pages_is_refused() {
        let seg = Segment::new(8192).unwrap();
        for len in [1u64, 100, 4097, 0] {
            let (bytes, fds) = transfer::collect_fds(|| {
                let fd = transfer::push_fd(seg.as_fd(), "Segment").unwrap();
                postcard::to_allocvec(&Wire { fd, len }).unwrap()
            });
            let err = transfer::decode::<Segment>(&bytes, fds).unwrap_err();
            assert!(
                matches!(err, TransferError::WrongKind { .. }),
                "{len}: {err}"
            );
        }
        let (bytes, fds) = transfer::encode(&seg).unwrap();
        let back: Segment = transfer::decode(&bytes, fds).unwrap();
        assert_eq!(back.len(), 8192);
    }

    #[test]
    fn sizes_that_overflow_are_errors() {
        for size in [usize::MAX, usize::MAX - 4095, isize::MAX as usize] {
            assert!(
                matches!(Segment::new(size), Err(Error::TooLarge { .. })),
                "{size}"
            );
        }
        assert!(matches!(Segment::new(0), Err(Error::ZeroSize)));
        let seg = Segment::new(1).unwrap();
        let mut buf = [0u8; 2];
        for (off, n) in [(usize::MAX, 2), (seg.len() - 1, 2), (seg.len() + 1, 0)] {
            assert!(matches!(
                seg.read_at(off, &mut buf[..n]),
                Err(Error::OutOfBounds { .. })
            ));
            assert!(matches!(
                seg.write_at(off, &buf[..n]),
                Err(Error::OutOfBounds { .. })
            ));
        }
        assert!(seg.read_at(seg.len(), &mut []).is_ok());
    }
}
