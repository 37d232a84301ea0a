//! A second, unprivileged user for the permission tests (issue #9), shared by
//! `ipc-shm/tests/hostile_permissions.rs` and `ipc-channel-core/tests/hostile_permissions.rs`.
//!
//! Running as root (CI runs as root on a fresh machine), the user `mp-hostile` is created with
//! `useradd` if it does not exist yet; [`as_second_user`] forks, drops to that user with raw
//! `setgroups`/`setgid`/`setuid` system calls, and runs a probe there. Not root: the tests skip
//! with a printed message, never silently.

use std::ffi::CString;

/// The uid and gid of the second user.
#[derive(Clone, Copy, Debug)]
pub(crate) struct User {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

const NAME: &str = "mp-hostile";

/// What a probe run as the second user reports through its exit code.
pub(crate) const DENIED: i32 = 0;
pub(crate) const ALLOWED: i32 = 1;
pub(crate) const OTHER_ERROR: i32 = 2;
const CANNOT_DROP: i32 = 77;

fn lookup() -> Option<User> {
    let name = CString::new(NAME).unwrap();
    // SAFETY: getpwnam with a valid C string; the result (static storage) is read at once,
    // before any other passwd call in this thread. Tests that call it hold no other pointer
    // into that storage.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null result of getpwnam, read at once.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some(User { uid, gid })
}

/// The second user, created if needed; `None` (after printing why) when this process is not
/// root and so cannot create one or become one.
pub(crate) fn second_user(test: &str) -> Option<User> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let msg = format!(
            "SKIPPED {test}: not running as root, so no second user can be created or \
             become (run as root to check that another user is refused)"
        );
        println!("{msg}");
        eprintln!("{msg}");
        return None;
    }
    if let Some(u) = lookup() {
        return Some(u);
    }
    let out = std::process::Command::new("useradd")
        .args(["--system", "--no-create-home", "--user-group"])
        .args(["--shell", "/usr/sbin/nologin", NAME])
        .output();
    match out {
        Err(e) => panic!(
            "{test}: running as root but `useradd` cannot run ({e}): install it (Debian/Ubuntu \
             package `passwd`) so the permission tests can create a second user"
        ),
        Ok(o) => {
            // Another test binary may have created it meanwhile (exit code 9): fine.
            if let Some(u) = lookup() {
                return Some(u);
            }
            panic!(
                "{test}: useradd {NAME} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// Forks, becomes `user` (no supplementary groups), runs `probe` and exits with its code.
/// `probe` runs in a child of a possibly multi-threaded process: it must only make system
/// calls on values prepared before (no allocation, no locks). Returns the probe's code, or
/// `None` (after printing why) when the child could not drop to the user (no CAP_SETUID).
pub(crate) fn as_second_user(test: &str, user: User, probe: impl FnOnce() -> i32) -> Option<i32> {
    // SAFETY: the child makes only raw system calls (setgroups, setgid, setuid, what `probe`
    // does as documented) and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: raw system calls on plain integers, then `_exit`.
        unsafe {
            let ok = libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>())
                == 0
                && libc::syscall(libc::SYS_setgid, user.gid as libc::c_long) == 0
                && libc::syscall(libc::SYS_setuid, user.uid as libc::c_long) == 0;
            if !ok {
                libc::_exit(CANNOT_DROP);
            }
        }
        let code = probe();
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status),
        "the probe died: status {status:#x}"
    );
    match libc::WEXITSTATUS(status) {
        CANNOT_DROP => {
            let msg = format!(
                "SKIPPED {test}: running as root but cannot become uid {} (no CAP_SETUID here?)",
                user.uid
            );
            println!("{msg}");
            eprintln!("{msg}");
            None
        }
        code => Some(code),
    }
}

/// A probe: `open(path, flags)` as the second user; DENIED on EACCES.
pub(crate) fn open_probe(path: &CString, flags: libc::c_int) -> impl FnOnce() -> i32 + '_ {
    move || {
        // SAFETY: a raw open of a NUL-terminated path prepared before the fork.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd >= 0 {
            return ALLOWED;
        }
        // SAFETY: reads this thread's errno.
        if unsafe { *libc::__errno_location() } == libc::EACCES {
            DENIED
        } else {
            OTHER_ERROR
        }
    }
}
