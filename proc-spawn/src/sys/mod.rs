//! Operating-system calls, isolated per platform. Only Linux is implemented (`lib.rs` refuses to
//! compile elsewhere); a macOS or FreeBSD backend is another file here with the same functions
//! (`kqueue`'s `EVFILT_PROC` or `pdfork` where Linux has pidfds, `dladdr`/`LC_UUID` where Linux has
//! the GNU build id).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
