//! Linux: `fork`, `posix_spawn` of `/proc/self/exe`, pidfds (`pidfd_open`, `pidfd_send_signal`,
//! `waitid(P_PIDFD)`), the executable's identity (GNU build id) and text segments from the
//! auxiliary vector, the CPU affinity mask, `atexit`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::{Errno, FdFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

/// What [`fork`] returned in this process.
pub(crate) enum Forked {
    /// We are the new child.
    Child,
    /// We are the parent; the child has this pid.
    Parent(u32),
}

/// `fork()`, running the `pthread_atfork` handlers (the shared heap of `ipc-shm` relies on them).
///
/// # Safety
///
/// In the child only the forking thread exists: until it execs or exits it must not rely on a
/// lock another thread may have held at the time of the fork. The caller (`start::fork`)
/// documents how it keeps to that.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the contract above; `fork` itself has no preconditions.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// `_exit(code)`: ends the process at once, without atexit handlers or destructors.
/// Async-signal-safe.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// Flushes nothing and runs nothing: sends `sig` to this very process (used by a daemon child
/// whose parent died).
pub(crate) fn kill_self(sig: Signal) {
    let _ = rustix::process::kill_process(rustix::process::getpid(), sig);
}

/// The kernel's `AT_SECURE` flag of this process (set-user-ID, set-group-ID, file
/// capabilities): non-zero when the environment of the program must not be trusted.
pub(crate) fn at_secure() -> u64 {
    // SAFETY: `getauxval` has no preconditions; it returns 0 for an absent entry.
    unsafe { libc::getauxval(libc::AT_SECURE) as u64 }
}

/// Whether descriptor number `fd` is open in this process.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: `F_GETFD` only reads the descriptor's flags; on a closed number it fails with
    // `EBADF` and touches nothing.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Replaces standard input (descriptor 0) with `/dev/null`, as Python gives its children: a
/// child does not compete with its parent for the terminal's input, and reading gets the end.
/// Left as it is if `/dev/null` cannot be opened.
pub(crate) fn stdin_to_null() {
    // A child forked by the fork server finds it done already (see `stdin_to_null_for_forks`); the
    // first call consumes the mark, so that a later child of that child (user code may have
    // put something else on descriptor 0 meanwhile) gets it done again.
    if !STDIN_IS_NULL.swap(false, Ordering::Relaxed) {
        redirect_stdin();
    }
}

/// Puts `/dev/null` on descriptor 0; whether it could.
fn redirect_stdin() -> bool {
    let Ok(null) = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) else {
        return false;
    };
    if null.as_raw_fd() != 0 {
        // SAFETY: descriptor 0 is replaced atomically by `dup2`; the standard library does not
        // own it (its `Stdin` only reads whatever number 0 is).
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    } else {
        // 0 was closed and `open` took its place: keep it, without close-on-exec.
        let _ = rustix::io::fcntl_setfd(&null, FdFlags::empty());
        std::mem::forget(null);
    }
    true
}

/// Set by the fork server once its own standard input is `/dev/null`: the children it forks
/// inherit both the descriptor and this mark, and skip [`stdin_to_null`]'s three system calls.
static STDIN_IS_NULL: AtomicBool = AtomicBool::new(false);

/// Makes standard input `/dev/null` now and marks it so, for the children this process forks
/// (the fork server, which never reads its standard input).
pub(crate) fn stdin_to_null_for_forks() {
    STDIN_IS_NULL.store(redirect_stdin(), Ordering::Relaxed);
}

/// This process's pid.
pub(crate) fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// A connected pair of stream sockets, close-on-exec.
pub(crate) fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A connected pair of sequenced-packet sockets (message boundaries kept; each `sendmsg` is
/// delivered whole, so several processes may share one end), close-on-exec.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Marks `fd` close-on-exec.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::fcntl_setfd(fd, FdFlags::CLOEXEC)?)
}

/// Ignores `SIGPIPE` as the Rust runtime does before `main` (a spawned child runs before
/// `main`, so the runtime has not done it yet).
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installing `SIG_IGN` has no preconditions; no handler code runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Ignores (`true`) or restores the default action of (`false`) `SIGINT`: the fork server
/// ignores the terminal's Ctrl-C (its client handles it); the children it forks do not.
pub(crate) fn ignore_sigint(ignore: bool) {
    let action = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: installing `SIG_IGN`/`SIG_DFL` has no preconditions; no handler code runs.
    unsafe { libc::signal(libc::SIGINT, action) };
}

/// Registers `f` to run at `exit` (after `main` returns, or at `std::process::exit`).
pub(crate) fn atexit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `f` is a plain function with the C ABI that stays valid for the whole program.
    if unsafe { libc::atexit(f) } == 0 {
        Ok(())
    } else {
        Err(io::Error::other("atexit failed"))
    }
}

/// `posix_spawn`s `/proc/self/exe` (this very executable, even if its file was replaced since)
/// with `argv` and `env` plus the variable `marker(fd)` built from the descriptor number under
/// which the child finds `boot`. The signal mask of the child is empty.
pub(crate) fn spawn_self(
    argv: &[CString],
    mut env: Vec<CString>,
    boot: BorrowedFd<'_>,
    marker: impl FnOnce(RawFd) -> CString,
) -> io::Result<u32> {
    // The child finds the socket at the number of a close-on-exec duplicate: that number is in
    // use in this process, so no descriptor meant for inheritance is overwritten, and `dup2`
    // onto it in the child clears close-on-exec.
    let target: OwnedFd = rustix::io::fcntl_dupfd_cloexec(boot, 3)?;
    env.push(marker(target.as_raw_fd()));

    let mut argv_ptrs: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut env_ptrs: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr() as *mut _).collect();
    env_ptrs.push(std::ptr::null_mut());

    struct Actions(libc::posix_spawn_file_actions_t);
    impl Drop for Actions {
        fn drop(&mut self) {
            // SAFETY: initialised by `posix_spawn_file_actions_init` below before this value
            // exists.
            unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
        }
    }
    struct Attr(libc::posix_spawnattr_t);
    impl Drop for Attr {
        fn drop(&mut self) {
            // SAFETY: initialised by `posix_spawnattr_init` below before this value exists.
            unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
        }
    }
    fn check(r: libc::c_int) -> io::Result<()> {
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(r))
        }
    }

    // SAFETY: the structures are plain C data that the `_init` functions fill in before any
    // other use; zeroed memory is only a placeholder.
    let mut actions = unsafe {
        let mut a: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut a))?;
        Actions(a)
    };
    // SAFETY: as above.
    let mut attr = unsafe {
        let mut a: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawnattr_init(&mut a))?;
        Attr(a)
    };
    // SAFETY: `actions` and `attr` are initialised; the descriptors are open for the duration of
    // the call; the mask is initialised by `sigemptyset`.
    unsafe {
        check(libc::posix_spawn_file_actions_adddup2(
            &mut actions.0,
            boot.as_raw_fd(),
            target.as_raw_fd(),
        ))?;
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        check(libc::posix_spawnattr_setsigmask(&mut attr.0, &mask))?;
        check(libc::posix_spawnattr_setflags(
            &mut attr.0,
            libc::POSIX_SPAWN_SETSIGMASK as libc::c_short,
        ))?;
    }
    let mut pid: libc::pid_t = 0;
    let path: &CStr = c"/proc/self/exe";
    // SAFETY: every pointer is valid for the call: `path` is a C string, the argument and
    // environment vectors are NULL-terminated arrays of C strings that outlive the call, and
    // `actions`/`attr` are initialised.
    let r = unsafe {
        libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            &actions.0,
            &attr.0,
            argv_ptrs.as_ptr(),
            env_ptrs.as_ptr(),
        )
    };
    check(r)?;
    drop(target);
    Ok(pid as u32)
}

/// `pidfd_open(pid)`: a descriptor for process `pid`, readable once it has exited.
///
/// Only race-free for a child that has not been reaped yet (or for this process).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("invalid pid 0"))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Kills the (unreaped) child `pid` and reaps it; its exit code the Python way.
pub(crate) fn kill_and_reap(pid: u32) -> i32 {
    let Some(p) = Pid::from_raw(pid as i32) else {
        return -9;
    };
    let _ = rustix::process::kill_process(p, Signal::KILL);
    loop {
        match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, st))) => {
                return st
                    .exit_status()
                    .or(st.terminating_signal().map(|s| -s))
                    .unwrap_or(-9)
            }
            Err(Errno::INTR) => continue,
            _ => return -9,
        }
    }
}

/// `pidfd_send_signal`: signals the process behind `pidfd`. A process that has already exited is
/// not an error (nothing to signal).
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: Signal) -> io::Result<()> {
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reaps the child behind `pidfd` (`waitid(P_PIDFD)`), blocking when `block`; returns its exit
/// code the Python way (the status, or `-N` for signal N), or `None` when it is still running.
pub(crate) fn reap(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<i32>> {
    let mut opts = WaitIdOptions::EXITED;
    if !block {
        opts |= WaitIdOptions::NOHANG;
    }
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), opts) {
            Ok(None) => return Ok(None),
            Ok(Some(st)) => {
                if let Some(code) = st.exit_status() {
                    return Ok(Some(code));
                }
                if let Some(sig) = st.terminating_signal() {
                    return Ok(Some(-sig));
                }
                return Err(io::Error::other(
                    "waitid returned a status that is not an exit",
                ));
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes (`None`: forever).
/// Returns which ones are ready; all `false` on timeout. Retries on `EINTR`.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            }
        });
        match rustix::event::poll(&mut pfds, ts.as_ref()) {
            Ok(_) => return Ok(pfds.iter().map(|p| !p.revents().is_empty()).collect()),
            Err(Errno::INTR) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(vec![false; fds.len()]);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A reusable set of descriptors to wait on (the fork server's loop): no allocation once its
/// capacity suffices.
pub(crate) struct PollSet {
    fds: Vec<libc::pollfd>,
}

impl PollSet {
    pub(crate) fn with_capacity(n: usize) -> PollSet {
        PollSet {
            fds: Vec::with_capacity(n),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.fds.clear();
    }

    /// Adds `fd`, to wait until it is readable (or hung up). The set keeps only its number: the
    /// caller keeps it open until the next [`clear`](PollSet::clear).
    pub(crate) fn push(&mut self, fd: BorrowedFd<'_>) {
        self.fds.push(libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }

    /// Waits until at least one descriptor is ready (retrying on `EINTR`).
    pub(crate) fn wait(&mut self) -> io::Result<()> {
        loop {
            // SAFETY: `fds` is a valid array of `len` initialised `pollfd`s, which the kernel
            // only writes the `revents` of.
            let r =
                unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, -1) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Whether the `i`-th descriptor was found readable (or hung up) by the last wait.
    pub(crate) fn ready(&self, i: usize) -> bool {
        self.fds.get(i).is_some_and(|p| p.revents != 0)
    }
}

/// Writes all of `bytes` to the stream socket `sock` (no `SIGPIPE`).
pub(crate) fn send_all(sock: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::net::send(sock, bytes, rustix::net::SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sends `bytes` with the descriptor `fd` attached to their first byte (`SCM_RIGHTS`), without
/// allocating (a fork-server child acknowledges this way); the rest of `bytes`, if the socket
/// took only part, follows without it.
pub(crate) fn send_with_fd(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fd: BorrowedFd<'_>,
) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::mem::MaybeUninit;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let fds = [fd];
    let sent = loop {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other(
                "control buffer too small for a descriptor",
            ));
        }
        match rustix::net::sendmsg(
            sock,
            &[io::IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if sent == 0 && !bytes.is_empty() {
        return Err(io::ErrorKind::WriteZero.into());
    }
    send_all(sock, &bytes[sent..])
}

/// Is `fd` readable right now?
pub(crate) fn readable_now(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(poll_readable(&[fd], Some(Duration::ZERO))?[0])
}

/// The number of CPUs this process may run on (its affinity mask), at least 1.
pub(crate) fn cpu_count() -> usize {
    // SAFETY: `cpu_set_t` is plain data, zero is a valid (empty) set, and the kernel writes at
    // most `size_of::<cpu_set_t>()` bytes into it.
    let n = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            libc::CPU_COUNT(&set) as usize
        } else {
            0
        }
    };
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// What identifies this executable, and where its code lies.
pub(crate) struct ExeInfo {
    /// `b"gnu-build-id:"` + the build id, or (no build id) `b"file:"` + device, inode, size
    /// and modification time of `/proc/self/exe`.
    pub(crate) identity: Vec<u8>,
    /// The executable segments of the main program, `[start, end)` in this process.
    pub(crate) text: Vec<(usize, usize)>,
}

/// This executable's identity and text segments (computed once).
pub(crate) fn exe_info() -> &'static ExeInfo {
    static INFO: OnceLock<ExeInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        let (build_id, text) = read_program_headers();
        let identity = match build_id {
            Some(id) => [b"gnu-build-id:".as_slice(), &id].concat(),
            None => file_identity(),
        };
        ExeInfo { identity, text }
    })
}

fn file_identity() -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    let mut v = b"file:".to_vec();
    if let Ok(m) = std::fs::metadata("/proc/self/exe") {
        for x in [
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    v
}

/// Reads the main program's headers from the auxiliary vector: its GNU build id (from a
/// `PT_NOTE` segment) and its executable `PT_LOAD` segments.
fn read_program_headers() -> (Option<Vec<u8>>, Vec<(usize, usize)>) {
    // SAFETY: `getauxval` has no preconditions; it returns 0 for absent entries.
    let (phdr, phnum) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR) as usize,
            libc::getauxval(libc::AT_PHNUM) as usize,
        )
    };
    if phdr == 0 || phnum == 0 {
        return (None, Vec::new());
    }
    // SAFETY: the kernel put the address and count of the main program's program headers,
    // mapped and readable for the process's whole life, in the auxiliary vector.
    let headers: &[libc::Elf64_Phdr] =
        unsafe { std::slice::from_raw_parts(phdr as *const libc::Elf64_Phdr, phnum) };
    // The load bias: where the headers are minus where the file says they are.
    let bias = headers
        .iter()
        .find(|h| h.p_type == libc::PT_PHDR)
        .map(|h| phdr.wrapping_sub(h.p_vaddr as usize))
        .unwrap_or(0);
    let mut text = Vec::new();
    let mut build_id = None;
    for h in headers {
        let start = bias.wrapping_add(h.p_vaddr as usize);
        if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 {
            text.push((start, start + h.p_memsz as usize));
        }
        if h.p_type == libc::PT_NOTE && build_id.is_none() {
            // SAFETY: a PT_NOTE segment of the loaded main program is mapped readable at
            // `start` for `p_memsz` bytes (notes live inside a loaded, read-only segment).
            let notes =
                unsafe { std::slice::from_raw_parts(start as *const u8, h.p_memsz as usize) };
            build_id = find_build_id(notes);
        }
    }
    (build_id, text)
}

/// Walks ELF notes (`namesz`, `descsz`, `type`, name, desc; 4-byte aligned) for
/// `NT_GNU_BUILD_ID` owned by `"GNU"`.
fn find_build_id(mut notes: &[u8]) -> Option<Vec<u8>> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let word = |i: usize| u32::from_ne_bytes(notes[i..i + 4].try_into().unwrap()) as usize;
        let (namesz, descsz, kind) = (word(0), word(4), word(8) as u32);
        let name_end = 12 + align4(namesz);
        let desc_end = name_end.checked_add(align4(descsz))?;
        if desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" {
            return Some(notes[name_end..name_end + descsz].to_vec());
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exe_info_has_identity_and_text() {
        let info = exe_info();
        assert!(info.identity.len() > 5);
        let here = exe_info_has_identity_and_text as fn() as usize;
        assert!(
            info.text.iter().any(|(a, b)| (*a..*b).contains(&here)),
            "{here:#x} not in {:x?}",
            info.text
        );
    }

    #[test]
    fn build_id_parser_walks_notes() {
        let mut notes = Vec::new();
        // an ABI tag note first
        notes.extend_from_slice(&4u32.to_ne_bytes());
        notes.extend_from_slice(&16u32.to_ne_bytes());
        notes.extend_from_slice(&1u32.to_ne_bytes());
        notes.extend_from_slice(b"GNU\0");
        notes.extend_from_slice(&[0; 16]);
        // then a build id
        notes.extend_from_slice(&4u32.to_ne_bytes());
        notes.extend_from_slice(&3u32.to_ne_bytes());
        notes.extend_from_slice(&3u32.to_ne_bytes());
        notes.extend_from_slice(b"GNU\0");
        notes.extend_from_slice(&[7, 8, 9, 0]);
        assert_eq!(find_build_id(&notes), Some(vec![7, 8, 9]));
        assert_eq!(find_build_id(&notes[..30]), None);
        assert_eq!(find_build_id(&[]), None);
    }

    #[test]
    fn cpu_count_is_positive() {
        assert!(cpu_count() >= 1);
    }
}
