//! Permissions of the socket paths a `Listener` makes for itself (issue #9):
//! `Listener::bind_temp` creates a fresh private directory (mode 0700, owned by the caller,
//! unguessable name) holding the socket (mode 0600), and a second user can neither connect to
//! the socket nor list the directory (`EACCES`).
//!
//! Python's `Listener()` does less: the socket sits in `tempfile.mkdtemp(prefix='pymp-')` (a
//! 0700 directory) with the mode the umask leaves (usually 0755); here the directory is 0700
//! too and the socket is 0600 whatever the umask.
//!
//! The second-user checks need root (to create the user with `useradd` and become it); not
//! root, they print that they are skipped.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;

use ipc_channel_core::{Address, Listener};

#[allow(dead_code)]
#[path = "../../ipc-shm/tests/hostile_support/second_user.rs"]
mod second_user;

use second_user::{as_second_user, open_probe, second_user, ALLOWED, DENIED, OTHER_ERROR};

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn socket_path(l: &Listener) -> std::path::PathBuf {
    match l.address() {
        Address::Unix(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn bind_temp_makes_a_private_directory_and_a_0600_socket() {
    let a = Listener::bind_temp(None).unwrap();
    let b = Listener::bind_temp(Some(b"k")).unwrap();
    let (pa, pb) = (socket_path(&a), socket_path(&b));
    assert_ne!(pa.parent(), pb.parent(), "two listeners share a directory");
    for p in [&pa, &pb] {
        let dir = p.parent().unwrap();
        assert!(dir.starts_with(std::env::temp_dir()), "{dir:?}");
        let d = std::fs::symlink_metadata(dir).unwrap();
        assert!(d.is_dir());
        assert_eq!(d.mode() & 0o7777, 0o700, "{dir:?}");
        assert_eq!(d.uid(), euid());
        let s = std::fs::symlink_metadata(p).unwrap();
        assert_eq!(s.mode() & 0o7777, 0o600, "{p:?}");
        assert_eq!(s.uid(), euid());
        // Nothing else in the directory.
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
    }
    drop(a);
    assert!(!pa.exists() && !pa.parent().unwrap().exists());
}

/// A probe: connect a Unix stream socket to `addr` as the second user; DENIED on EACCES.
fn connect_probe(addr: &libc::sockaddr_un) -> impl FnOnce() -> i32 + '_ {
    move || {
        // SAFETY: raw socket and connect system calls on a sockaddr prepared before the fork.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return OTHER_ERROR;
            }
            let r = libc::connect(
                fd,
                (addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            );
            if r == 0 {
                return ALLOWED;
            }
            if *libc::__errno_location() == libc::EACCES {
                DENIED
            } else {
                OTHER_ERROR
            }
        }
    }
}

fn sockaddr(path: &std::path::Path) -> libc::sockaddr_un {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < a.sun_path.len());
    for (d, s) in a.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    a
}

#[test]
fn a_second_user_cannot_connect_or_look_inside() {
    let test = "a_second_user_cannot_connect_or_look_inside";
    let Some(user) = second_user(test) else {
        return;
    };
    let l = Listener::bind_temp(Some(b"secret")).unwrap();
    let path = socket_path(&l);
    let addr = sockaddr(&path);
    let Some(code) = as_second_user(test, user, connect_probe(&addr)) else {
        return;
    };
    assert_eq!(code, DENIED, "uid {} connecting to {path:?}", user.uid);
    let dir = CString::new(path.parent().unwrap().to_str().unwrap()).unwrap();
    let code = as_second_user(
        test,
        user,
        open_probe(&dir, libc::O_RDONLY | libc::O_DIRECTORY),
    );
    assert_eq!(code, Some(DENIED), "uid {} listing {dir:?}", user.uid);
    // The same connect as the owner succeeds: the probe can tell the difference.
    assert_eq!(connect_probe(&addr)(), ALLOWED);
}
