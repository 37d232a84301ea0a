//! Shared memory for multiproc, the bottom layer: memory segments, named shared memory with
//! crash clean-up, a cross-process heap, lock-free shared scalars and arrays, and the handle
//! transfer that lets all of them (and every OS-backed object above) travel between processes.
//!
//! - [`Segment`]: an anonymous shared mapping backed by a memfd.
//! - [`SharedMemory`]: a named POSIX shared memory object (Python's
//!   `shared_memory.SharedMemory`), unlinked by a resource tracker when its creator dies.
//! - [`ShmBox`], [`ShmSlice`]: a [`ShmSafe`] value or slice in the shared heap, the building
//!   block of `RawValue`, `RawArray` and, one layer up, every lock and semaphore.
//! - [`RawValue`], [`RawArray`]: Python's `RawValue`/`RawArray` for the [`Element`] types,
//!   with atomic element access.
//! - [`transfer`]: serialize handles with their file descriptors, send them with `SCM_RIGHTS`.
//!
//! # Example
//!
//! A value and an array shared with a forked child (one layer up, `proc-spawn` does the
//! forking and sending for you):
//!
//! ```
//! use ipc_shm::{RawArray, RawValue};
//!
//! let counter = RawValue::new(0i64).unwrap();
//! let data = RawArray::from_slice(&[1i32, 2, 3, 4, 5]).unwrap();
//!
//! // SAFETY: the child only touches shared memory and leaves with `_exit`.
//! let pid = unsafe { libc::fork() };
//! if pid == 0 {
//!     for i in 0..data.len() {
//!         data.set(i, data.get(i).unwrap() * 2).unwrap();
//!     }
//!     counter.fetch_add(1);
//!     // SAFETY: ends the child at once.
//!     unsafe { libc::_exit(0) };
//! }
//! let mut status = 0;
//! // SAFETY: waits for the child just forked.
//! unsafe { libc::waitpid(pid, &mut status, 0) };
//! assert_eq!(data.to_vec(), [2, 4, 6, 8, 10]);
//! assert_eq!(counter.load(), 1);
//! ```
//!
//! Handles also travel over a socket, descriptors included:
//!
//! ```
//! use ipc_shm::{transfer, Segment};
//! use std::os::fd::AsFd;
//! use std::os::unix::net::UnixStream;
//!
//! let (a, b) = UnixStream::pair().unwrap();
//! let seg = Segment::new(4096).unwrap();
//! let (bytes, fds) = transfer::encode(&seg).unwrap();
//! let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
//! transfer::send_with_fds(a.as_fd(), &bytes, &borrowed).unwrap();
//!
//! let mut buf = [0u8; 64];
//! let mut got = Vec::new();
//! let n = transfer::recv_with_fds(b.as_fd(), &mut buf, &mut got, 4).unwrap();
//! let received: Segment = transfer::decode(&buf[..n], got).unwrap();
//! seg.write_at(0, b"hi").unwrap();
//! let mut two = [0u8; 2];
//! received.read_at(0, &mut two).unwrap();
//! assert_eq!(&two, b"hi");
//! ```
//!
//! # Platform support
//!
//! Linux only for now (other targets fail to compile with a clear message; the system calls
//! are isolated in a private `sys` module, so a macOS/FreeBSD backend is one file). Relied on:
//! `memfd_create` with file seals (Linux 3.17), POSIX shm in `/dev/shm`, `SCM_RIGHTS`,
//! `getrandom` (3.17), `close_range` (5.9; older kernels fall back to closing descriptors one
//! by one), `pthread_atfork`. Bulk copies of [`RawArray`] use `rep movsb` on x86-64 and
//! relaxed atomic byte copies elsewhere.
//!
//! # Cargo features
//!
//! None.
//!
//! # Safety model
//!
//! - Shared memory holds only [`ShmSafe`] types: no pointers, zero is a valid value, mutation
//!   only through atomics or `UnsafeCell`. Handles give out `&T`, never `&mut T`, because
//!   another process may be looking at the same bytes.
//! - Byte access to [`Segment`] and [`SharedMemory`] is bounds-checked and copies; raw slices
//!   are `unsafe fn`s whose contract is "no concurrent writer".
//! - Memory segments are sealed against resizing, so no holder can shrink one under another's
//!   mapping (which would turn accesses into SIGBUS). A received descriptor is checked
//!   (regular file, large enough, sealed, the expected arena header) before it is mapped:
//!   a wrong one is [`TransferError::WrongKind`], never a mapping of garbage.
//! - Handle lifetimes across processes are counted in shared memory; see
//!   [the shared heap](#the-shared-heap).
//! - System calls live in `sys`; the code that runs after `fork` in the resource tracker makes
//!   only system calls on memory prepared before the fork.
//!
//! ## The shared heap
//!
#![doc = include_str!("heap_doc.md")]
//!
//! ## The resource tracker
//!
//! A named [`SharedMemory`] is registered, at creation, with a tracker process that unlinks it
//! when the creating process dies without unlinking it (normal exit, panic or SIGKILL), unless
//! the creator called [`SharedMemory::keep`]. Attaching processes never register. Each
//! creating process has its own tracker, fed over a socket only that process holds; the
//! tracker sees end-of-stream when the creator dies, cleans up and exits.

#![deny(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ipc-shm: this platform has no backend yet; Linux is implemented (memfd, SCM_RIGHTS), \
     macOS and FreeBSD need a `sys` backend (shm_open, SCM_RIGHTS)"
);

mod array;
mod boxed;
mod element;
mod error;
mod heap;
mod segment;
mod shared_memory;
mod shm_safe;
mod spin;
mod sys;
mod tracker;
pub mod transfer;
mod value;

pub use array::RawArray;
pub use boxed::{ShmBox, ShmSlice};
pub use element::{Element, IntElement};
pub use error::Error;
pub use heap::{spawning, stats as heap_stats};
pub use segment::Segment;
pub use shared_memory::{tracker_pid, SharedMemory};
pub use shm_safe::ShmSafe;
pub use transfer::TransferError;
pub use value::RawValue;
