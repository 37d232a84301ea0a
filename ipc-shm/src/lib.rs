//! Shared memory for multiproc (bottom layer). Helper A fills this in.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ipc-shm: this platform has no backend yet; Linux is implemented (memfd, SCM_RIGHTS), \
     macOS and FreeBSD need a `sys` backend (shm_open, SCM_RIGHTS)"
);

pub mod transfer;
