//! The Linux backend: memfd, POSIX shm, getrandom, fork, signals, sockets.
//!
//! Everything here is a thin wrapper over one system call (rustix where it has it, libc for
//! `fork`, `pthread_atfork`, `sigaction` and `close_range`). Functions marked "async-signal-safe"
//! make a raw system call and nothing else: they may run in a child between `fork` and exit.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;

/// The system page size.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// A new memfd of exactly `len` bytes (zero-filled), close-on-exec, sealed against shrinking
/// and growing so no holder can truncate it under another's mapping (which would make accesses
/// fault with SIGBUS).
pub(crate) fn memfd_sealed(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// Checks that `fd` is a regular file (memfd and POSIX shm objects are) of at least `min_len`
/// bytes, and, when `sealed`, that it cannot shrink. Returns its size, or what is wrong.
pub(crate) fn check_shm_fd(fd: BorrowedFd<'_>, min_len: u64, sealed: bool) -> Result<u64, String> {
    let st = rustix::fs::fstat(fd).map_err(|e| format!("fstat failed: {e}"))?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if kind != rustix::fs::FileType::RegularFile {
        return Err(format!("it is a {kind:?}, not a shared memory file"));
    }
    let size = st.st_size as u64;
    if size < min_len {
        return Err(format!(
            "it holds {size} bytes, the message announced {min_len}"
        ));
    }
    if sealed {
        let seals = rustix::fs::fcntl_get_seals(fd).map_err(|e| format!("not a memfd: {e}"))?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err("it is not sealed against shrinking".to_string());
        }
    }
    Ok(size)
}

/// Do `a` and `b` refer to the same file?
pub(crate) fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

/// The size of the file behind `fd`.
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600)` and `ftruncate(size)`; on a failing
/// `ftruncate` the name is unlinked again. `name` starts with '/'.
pub(crate) fn shm_create(name: &str, size: usize) -> io::Result<OwnedFd> {
    use rustix::shm::{Mode, OFlags};
    let fd = rustix::shm::open(
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL,
        Mode::RUSR | Mode::WUSR,
    )?;
    if let Err(e) = rustix::fs::ftruncate(&fd, size as u64) {
        let _ = rustix::shm::unlink(name);
        return Err(e.into());
    }
    Ok(fd)
}

/// `shm_open(name, O_RDWR)`. `name` starts with '/'.
pub(crate) fn shm_open(name: &str) -> io::Result<OwnedFd> {
    use rustix::shm::{Mode, OFlags};
    Ok(rustix::shm::open(name, OFlags::RDWR, Mode::empty())?)
}

/// `shm_unlink(name)`. `name` starts with '/'. Async-signal-safe when `name` is a `&CStr`
/// (rustix builds the `/dev/shm/` path in a stack buffer).
pub(crate) fn shm_unlink<P: rustix::path::Arg>(name: P) -> io::Result<()> {
    Ok(rustix::shm::unlink(name)?)
}

/// Fills `buf` from the kernel's random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The calling thread's id (system-wide unique while it lives).
pub(crate) fn gettid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// The calling process's id.
pub(crate) fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Does the thread or process `id` still exist? (`kill(id, 0)`, which Linux accepts for thread
/// ids too.) A permission error means it exists.
pub(crate) fn id_alive(id: u32) -> bool {
    if id == 0 || id > i32::MAX as u32 {
        return false;
    }
    match rustix::process::Pid::from_raw(id as i32) {
        None => false,
        Some(pid) => !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH)),
    }
}

/// Is the thread `tid` still running? Unlike [`id_alive`], a thread that has exited but whose
/// process has not been reaped yet (a zombie: `kill` still succeeds on it) counts as dead, so a
/// lock it held can be taken over before its parent waits for it (the parent may be the one
/// waiting for the lock). Not async-signal-safe (reads `/proc`).
pub(crate) fn thread_alive(tid: u32) -> bool {
    if !id_alive(tid) {
        return false;
    }
    // `/proc/<tid>/stat` exists for every thread id, listed or not; the state letter follows
    // the parenthesised command name, which may itself contain ')'.
    match std::fs::read(format!("/proc/{tid}/stat")) {
        Ok(stat) => match stat.iter().rposition(|b| *b == b')') {
            Some(i) => !matches!(stat.get(i + 2), Some(b'Z' | b'X' | b'x')),
            None => true,
        },
        // Gone between the two checks, or no /proc: trust `kill`.
        Err(e) => e.kind() != io::ErrorKind::NotFound || id_alive(tid),
    }
}

/// Registers fork handlers (`pthread_atfork`).
pub(crate) fn atfork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> io::Result<()> {
    // SAFETY: the three are valid `extern "C" fn()` pointers that live for the whole program.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// A connected `AF_UNIX` `SOCK_SEQPACKET` pair, both ends close-on-exec.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends one record without raising SIGPIPE; retries on EINTR.
pub(crate) fn send_record(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<()> {
    loop {
        match rustix::net::send(fd, bytes, rustix::net::SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one record; `Ok(0)` at end of stream. Retries on EINTR. Async-signal-safe.
pub(crate) fn recv_record(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match rustix::net::recv(fd, &mut *buf, rustix::net::RecvFlags::empty()) {
            Ok((n, _)) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A duplicate of `fd` numbered `min` or above, close-on-exec.
pub(crate) fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, min)?)
}

/// Opens `/dev/null` read-write, close-on-exec.
pub(crate) fn open_devnull() -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(
        "/dev/null",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `fork()`. Returns 0 in the child, the child's pid in the parent.
///
/// # Safety
///
/// In a multi-threaded process the child may only make async-signal-safe calls until it exits
/// (with [`exit_now`]) — no allocation, no locks. The `pthread_atfork` handlers run.
pub(crate) unsafe fn fork() -> io::Result<i32> {
    // SAFETY: the caller upholds the post-fork contract above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    }
}

/// `_exit(code)`: ends the process at once, running no destructors or atexit handlers.
/// Async-signal-safe.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Waits for the child `pid` (ignoring an error: with SIGCHLD ignored it may already be reaped).
pub(crate) fn reap(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        loop {
            match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()) {
                Err(Errno::INTR) => continue,
                _ => return,
            }
        }
    }
}

/// Makes this process a daemon-like helper: a new session (no terminal's Ctrl-C), SIGINT,
/// SIGTERM, SIGHUP and SIGPIPE ignored, `devnull` on descriptors 0-2, `keep` moved to
/// descriptor 3 and every other descriptor closed. Returns descriptor 3.
/// Async-signal-safe: only system calls on values prepared before the fork.
///
/// `devnull` and `keep` must both be numbered 3 or above.
pub(crate) fn detach_keeping(devnull: RawFd, keep: RawFd) -> RawFd {
    let _ = rustix::process::setsid();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: installing SIG_IGN is async-signal-safe (sigaction) and touches no memory.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    for target in 0..3 {
        // SAFETY: raw dup2 on descriptors this process holds; no Rust object owns 0-2 here.
        unsafe { libc::dup2(devnull, target) };
    }
    if keep != 3 {
        // SAFETY: as above; descriptor 3 is replaced (it may be `devnull`, no longer needed).
        unsafe { libc::dup2(keep, 3) };
    }
    // SAFETY: raw close_range system call; closes descriptors no Rust object in this process
    // will touch again (this branch of the fork only runs the tracker loop and exits).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) };
    if rc != 0 {
        // Kernels before 5.9: close one by one, up to a generous limit.
        for fd in 4..65536 {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
    3
}

/// The raw number of `fd` (for code that must not touch owned wrappers after a fork).
pub(crate) fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// An anonymous private mapping of `len` bytes that reserves no swap, for the tracker's table.
/// Returns null on failure. Async-signal-safe (one `mmap` system call).
pub(crate) fn map_anonymous_noreserve(len: usize) -> *mut u8 {
    use rustix::mm::{MapFlags, ProtFlags};
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses; it aliases nothing.
    match unsafe {
        rustix::mm::mmap_anonymous(
            core::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    } {
        Ok(p) => p.cast(),
        Err(_) => core::ptr::null_mut(),
    }
}
