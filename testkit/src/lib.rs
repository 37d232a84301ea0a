//! Test support for the lower layers of multiproc: run a test case in a real child process, by
//! `fork` or by re-executing the test binary, and a `harness = false` runner for such tests.
//!
//! The crates below `proc-spawn` cannot use `Process` to test themselves across processes, so
//! their cross-process tests (`tests/xproc_*.rs`) are `harness = false` binaries whose `main` is
//! [`main`]. It runs each test sequentially on the main thread, so `fork` happens in a
//! single-threaded process; a case is started in a child with [`start`]:
//!
//! - [`Method::Fork`] forks the test binary and runs the case function in the copy;
//! - [`Method::Spawn`] re-executes the test binary, which recognises the case by an environment
//!   variable and receives the payload bytes and the descriptors by inheritance.
//!
//! Either way the child dies with its parent (`PR_SET_PDEATHSIG`) and exits 0 when the case
//! returns, 101 when it panics. `IPC_START_METHOD=fork|spawn|forkserver` narrows
//! [`methods`] to one method (`forkserver` maps to [`Method::Spawn`] at this layer), which is
//! how `cargo xtask matrix` runs the lower layers under each start method.
//!
//! Each test has a hard wall-clock limit ([`TEST_TIMEOUT_SECS`]): a test that hangs kills its
//! binary with a message instead of hanging the suite.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A test case body run in a child: the payload bytes and the descriptors passed to [`start`].
pub type CaseFn = fn(&[u8], Vec<OwnedFd>);
/// A test run by [`main`] in the parent.
pub type TestFn = fn();

/// Seconds a single test may run before its binary is killed.
pub const TEST_TIMEOUT_SECS: u32 = 120;

const ENV_CASE: &str = "TESTKIT_CASE";
const ENV_PAYLOAD: &str = "TESTKIT_PAYLOAD";
const ENV_NFDS: &str = "TESTKIT_NFDS";
/// The first descriptor number a re-executed child finds its descriptors at.
const FIRST_FD: RawFd = 3;

static CASES: OnceLock<Vec<(&'static str, CaseFn)>> = OnceLock::new();

/// How [`start`] creates the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `fork()` the test binary and run the case in the copy.
    Fork,
    /// Re-execute the test binary (`current_exe()`), passing payload and descriptors.
    Spawn,
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status (0: the case returned; 101: it panicked).
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

/// The start methods to test with: the one `IPC_START_METHOD` names, or all of them.
///
/// # Panics
/// When `IPC_START_METHOD` holds an unknown name (a misconfigured matrix should not pass).
pub fn methods() -> Vec<Method> {
    match std::env::var("IPC_START_METHOD").ok().as_deref() {
        None | Some("") => vec![Method::Fork, Method::Spawn],
        Some("fork") => vec![Method::Fork],
        Some("spawn") | Some("forkserver") => vec![Method::Spawn],
        Some(other) => panic!("IPC_START_METHOD={other}: expected fork, spawn or forkserver"),
    }
}

/// A started child process. Dropping it without waiting kills and reaps it, so a failing test
/// leaves neither a stray process nor a zombie.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    exit: Option<Exit>,
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the child to end.
    pub fn wait(&mut self) -> io::Result<Exit> {
        if let Some(e) = self.exit {
            return Ok(e);
        }
        let e = waitpid(self.pid, 0)?.expect("blocking waitpid returned no status");
        self.exit = Some(e);
        Ok(e)
    }

    /// Waits at most `timeout` for the child to end; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<Exit>> {
        if let Some(e) = self.exit {
            return Ok(Some(e));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = waitpid(self.pid, libc::WNOHANG)? {
                self.exit = Some(e);
                return Ok(Some(e));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
        }
    }

    /// Sends `signal` to the child (no effect once it has been reaped).
    pub fn kill(&self, signal: i32) -> io::Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child,
        // so it cannot have been reused by another process.
        if unsafe { libc::kill(self.pid, signal) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.kill(libc::SIGKILL);
            let _ = self.wait();
        }
    }
}

fn waitpid(pid: libc::pid_t, flags: i32) -> io::Result<Option<Exit>> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(Exit::Code(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(Exit::Signal(libc::WTERMSIG(status))));
        }
    }
}

/// Starts the case named `case` in a child process by `method`, handing it `payload` and
/// duplicates of `fds` (in order).
///
/// # Errors
/// When the process cannot be created, or (for [`Method::Fork`]) when no case of that name was
/// registered with [`main`].
pub fn start(
    method: Method,
    case: &str,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<Child> {
    match method {
        Method::Fork => start_fork(case, payload, fds),
        Method::Spawn => start_spawn(case, payload, fds),
    }
}

fn find_case(name: &str) -> Option<CaseFn> {
    CASES
        .get()
        .and_then(|cases| cases.iter().find(|(n, _)| *n == name).map(|(_, f)| *f))
}

fn start_fork(case: &str, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<Child> {
    let f = find_case(case).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no case named {case:?} registered with testkit::main"),
        )
    })?;
    // Owned duplicates made before the fork: the child owns them, the parent drops its copies.
    let owned: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| fd.try_clone_to_owned())
        .collect::<io::Result<_>>()?;
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork(2) in a test binary run by `main`, which runs tests on its only thread; the
    // child runs the case (ordinary Rust, as the parent would) and leaves with `_exit`, so it
    // never returns into the caller's frames nor runs the parent's exit handlers.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            // The parent died before the death signal was armed.
            // SAFETY: _exit ends the process without running any Rust code.
            unsafe { libc::_exit(1) };
        }
        let code = run_case(f, payload, owned);
        // SAFETY: as above; the case's output was flushed by run_case.
        unsafe { libc::_exit(code) };
    }
    drop(owned);
    Ok(Child { pid, exit: None })
}

fn start_spawn(case: &str, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<Child> {
    let exe = std::env::current_exe()?;
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let n = raw.len() as RawFd;
    let mut cmd = Command::new(exe);
    cmd.env(ENV_CASE, case)
        .env(ENV_PAYLOAD, hex(payload))
        .env(ENV_NFDS, raw.len().to_string());
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe calls (fcntl, dup2, close, prctl) on integers it owns; it allocates
    // nothing (`raw` was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            // First move every source above the target range, so that placing descriptor i at
            // FIRST_FD + i cannot clobber a source that happens to sit there.
            let mut high = [0 as RawFd; 64];
            if raw.len() > high.len() {
                return Err(io::Error::from_raw_os_error(libc::E2BIG));
            }
            for (i, fd) in raw.iter().enumerate() {
                let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, FIRST_FD + n + 64);
                if h == -1 {
                    return Err(io::Error::last_os_error());
                }
                high[i] = h;
            }
            for (i, h) in high.iter().take(raw.len()).enumerate() {
                // dup2 clears CLOEXEC on the target, so it survives the exec.
                if libc::dup2(*h, FIRST_FD + i as RawFd) == -1 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(*h);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(Child {
        pid: child.id() as libc::pid_t,
        exit: None,
    })
}

fn run_case(f: CaseFn, payload: &[u8], fds: Vec<OwnedFd>) -> i32 {
    let r = panic::catch_unwind(AssertUnwindSafe(|| f(payload, fds)));
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    if r.is_ok() {
        0
    } else {
        101
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The number of descriptors this process has open (entries of `/proc/self/fd`, less the one
/// used to read it).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

extern "C" fn on_alarm(_: libc::c_int) {
    let msg = b"\ntestkit: a test ran longer than the limit; killing the test binary\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is a static buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(124);
    }
}

/// Registers `cases` and, in a child re-executed by [`start`] with [`Method::Spawn`], runs the
/// requested case and exits; in any other process it returns at once.
///
/// Call it first in `main` of a program (an example, say) that starts cases in children
/// without being a test binary; [`main`] does the same for test binaries.
pub fn dispatch(cases: &[(&'static str, CaseFn)]) {
    let _ = CASES.set(cases.to_vec());
    if let Some(case) = std::env::var_os(ENV_CASE) {
        std::process::exit(child_main(case));
    }
}

/// The entry point of a `harness = false` cross-process test binary.
///
/// In a re-executed child it runs the requested case and exits. Otherwise it runs every test
/// whose name contains one of the command-line filters (all when none is given; options such
/// as `--nocapture` are accepted and ignored, `--list` lists), each with a hard time limit,
/// prints libtest-style lines, and exits non-zero if any failed.
pub fn main(cases: &[(&'static str, CaseFn)], tests: &[(&'static str, TestFn)]) {
    dispatch(cases);

    let mut filters = Vec::new();
    let mut list = false;
    let mut exact = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--list" => list = true,
            "--exact" => exact = true,
            a if a.starts_with('-') => {}
            a => filters.push(a.to_string()),
        }
    }
    let selected: Vec<&(&str, TestFn)> = tests
        .iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if exact {
                        name == f
                    } else {
                        name.contains(f.as_str())
                    }
                })
        })
        .collect();
    if list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return;
    }
    let names: BTreeSet<&str> = tests.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), tests.len(), "duplicate test names");

    // SAFETY: installing a handler that only calls async-signal-safe functions.
    unsafe { libc::signal(libc::SIGALRM, on_alarm as *const () as libc::sighandler_t) };
    let started = Instant::now();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        print!("test {name} ... ");
        let _ = io::stdout().flush();
        // SAFETY: alarm(2) has no preconditions.
        unsafe { libc::alarm(TEST_TIMEOUT_SECS) };
        let t = Instant::now();
        let r = panic::catch_unwind(test);
        // SAFETY: as above; 0 cancels the alarm.
        unsafe { libc::alarm(0) };
        match r {
            Ok(()) => println!("ok ({:.2}s)", t.elapsed().as_secs_f64()),
            Err(_) => {
                println!("FAILED");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len(),
        tests.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    let _ = io::stdout().flush();
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

fn child_main(case: OsString) -> i32 {
    let case = case.to_string_lossy().into_owned();
    let payload = std::env::var(ENV_PAYLOAD)
        .ok()
        .and_then(|s| unhex(&s))
        .unwrap_or_default();
    let nfds: RawFd = std::env::var(ENV_NFDS)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: the parent placed exactly `nfds` descriptors at FIRST_FD.. in `start_spawn`, and
    // nothing in this process has taken ownership of them yet.
    let fds: Vec<OwnedFd> = (0..nfds)
        .map(|i| unsafe { OwnedFd::from_raw_fd(FIRST_FD + i) })
        .collect();
    for fd in &fds {
        // Descriptors of ours must not leak into processes this child starts.
        // SAFETY: fcntl on a descriptor this process owns.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: the process is single-threaded here (nothing has started a thread yet), so
    // changing the environment races with no reader.
    unsafe {
        std::env::remove_var(ENV_CASE);
        std::env::remove_var(ENV_PAYLOAD);
        std::env::remove_var(ENV_NFDS);
    }
    match find_case(&case) {
        Some(f) => run_case(f, &payload, fds),
        None => {
            eprintln!("testkit: no case named {case:?} in this test binary");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&data)).unwrap(), data);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
