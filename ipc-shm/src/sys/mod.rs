//! Operating-system calls, isolated per platform. Only Linux is implemented; `lib.rs` refuses
//! to compile anywhere else, so another backend (macOS, FreeBSD: `shm_open` instead of memfd)
//! is a new file here with the same functions.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
