//! The operating-system backend: who the calling thread is, and whether a recorded owner still lives.
//!
//! Linux is implemented; another platform needs a backend here (and in [`crate::futex`]) and fails
//! to compile until it has one.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::{current_owner, owner_alive};

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ipc-sync: this platform has no backend yet; Linux is implemented (futex, /proc), \
     macOS and FreeBSD need a `sys` backend (ulock/umtx and a liveness check)"
);
