//! Shared memory for multiproc (bottom layer). Helper A fills this in.

#![deny(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ipc-shm: this platform has no backend yet; Linux is implemented (memfd, SCM_RIGHTS), \
     macOS and FreeBSD need a `sys` backend (shm_open, SCM_RIGHTS)"
);

mod boxed;
mod error;
mod heap;
mod segment;
mod shm_safe;
mod spin;
mod sys;
pub mod transfer;

pub use boxed::{ShmBox, ShmSlice};
pub use error::Error;
pub use heap::stats as heap_stats;
pub use segment::Segment;
pub use shm_safe::ShmSafe;
pub use transfer::TransferError;
