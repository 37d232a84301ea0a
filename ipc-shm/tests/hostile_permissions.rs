//! Permissions of named shared memory (issue #9): every `/dev/shm` entry multiproc creates is
//! mode 0600 and owned by its creator, with an unguessable name; anonymous segments (memfd)
//! have no name at all; and a second user cannot open a named one (`EACCES`).
//!
//! The second-user checks need root (to create the user with `useradd` and become it); not
//! root, they print that they are skipped.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;

use ipc_shm::{RawArray, RawValue, Segment, SharedMemory};

// Shared with ipc-channel-core's permission tests; not every helper is used here.
#[allow(dead_code)]
#[path = "hostile_support/second_user.rs"]
mod second_user;

use second_user::{as_second_user, open_probe, second_user, DENIED};

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

#[test]
fn named_segments_are_0600_owned_by_their_creator_and_unguessable() {
    let a = SharedMemory::create(None, 4096).unwrap();
    let b = SharedMemory::create(None, 4096).unwrap();
    let chosen = format!("mp_hostile_perm_{}", std::process::id());
    let c = SharedMemory::create(Some(&chosen), 100).unwrap();
    assert_ne!(a.name(), b.name());
    for shm in [&a, &b, &c] {
        let meta = std::fs::metadata(format!("/dev/shm/{}", shm.name())).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600, "{}", shm.name());
        assert_eq!(meta.uid(), euid());
    }
    // Random names: a prefix and 128 random bits.
    assert!(
        a.name().starts_with("psm_") && a.name().len() == 4 + 32,
        "{}",
        a.name()
    );
    for shm in [a, b, c] {
        shm.unlink().unwrap();
    }
}

#[test]
fn an_existing_name_is_never_reused() {
    // A name planted in advance (by anyone) is refused, not opened: O_EXCL.
    let name = format!("mp_hostile_planted_{}", std::process::id());
    let planted = SharedMemory::create(Some(&name), 4096).unwrap();
    assert!(matches!(
        SharedMemory::create(Some(&name), 4096),
        Err(ipc_shm::Error::NameExists { .. })
    ));
    planted.unlink().unwrap();
}

#[test]
fn anonymous_segments_have_no_name_anywhere() {
    // Segments and the shared heap (values, arrays) live in memfds: nothing in /dev/shm or
    // any other directory another user could open.
    let seg = Segment::new(4096).unwrap();
    let v = RawValue::new(1u64).unwrap();
    let arr = RawArray::from_slice(&[1u8; 10_000]).unwrap();
    let (bytes, fds) = ipc_shm::transfer::encode(&(&v, &arr)).unwrap();
    let mut targets = vec![std::os::fd::AsRawFd::as_raw_fd(&seg.as_fd())];
    targets.extend(fds.iter().map(std::os::fd::AsRawFd::as_raw_fd));
    for fd in targets {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let link = link.to_string_lossy();
        assert!(link.starts_with("/memfd:"), "fd {fd} is {link}");
    }
    // Decode the message once, giving its counts back.
    drop(ipc_shm::transfer::decode::<(RawValue<u64>, RawArray<u8>)>(&bytes, fds).unwrap());
}

#[test]
fn a_second_user_cannot_open_a_named_segment() {
    let Some(user) = second_user("a_second_user_cannot_open_a_named_segment") else {
        return;
    };
    let shm = SharedMemory::create(None, 4096).unwrap();
    let named = format!("mp_hostile_named_{}", std::process::id());
    let chosen = SharedMemory::create(Some(&named), 4096).unwrap();
    for s in [&shm, &chosen] {
        let path = CString::new(format!("/dev/shm/{}", s.name())).unwrap();
        for flags in [libc::O_RDWR, libc::O_RDONLY] {
            let Some(code) = as_second_user("named segment", user, open_probe(&path, flags)) else {
                return;
            };
            assert_eq!(
                code, DENIED,
                "uid {} opening {:?} (flags {flags}): expected EACCES",
                user.uid, path
            );
        }
    }
    // The probe can tell the difference: the second user does open a file whose mode lets
    // it, so the refusals above come from the 0600 mode.
    use std::os::unix::fs::OpenOptionsExt;
    let open_file = format!("/dev/shm/mp_hostile_readable_{}", std::process::id());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&open_file)
        .unwrap();
    std::fs::set_permissions(
        &open_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let c = CString::new(open_file.clone()).unwrap();
    let code = as_second_user("readable control", user, open_probe(&c, libc::O_RDONLY));
    std::fs::remove_file(&open_file).unwrap();
    assert_eq!(code, Some(second_user::ALLOWED));
    shm.unlink().unwrap();
    chosen.unlink().unwrap();
}
