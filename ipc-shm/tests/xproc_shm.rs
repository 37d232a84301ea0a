//! Cross-process tests of ipc-shm: real children (fork and re-exec), real shared memory,
//! descriptors passed with SCM_RIGHTS, the resource tracker cleaning up after a SIGKILLed
//! creator, and the shared heap's descriptor use and block lifetimes.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_shm::{transfer, Error, RawArray, RawValue, Segment, SharedMemory, ShmBox, TransferError};
use testkit::{Exit, Method};

/// Starts a case; a re-executed child is forked inside [`ipc_shm::spawning`], as a start
/// method that forks to exec does, so that it takes no shared-heap counts.
fn start(
    method: Method,
    case: &str,
    payload: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> testkit::Child {
    match method {
        Method::Fork => testkit::start(method, case, payload, fds).unwrap(),
        Method::Spawn => ipc_shm::spawning(|| testkit::start(method, case, payload, fds)).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

fn unique_name(tag: &str) -> String {
    let mut r = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut r)
        .unwrap();
    format!(
        "ipcshm_test_{tag}_{}_{:016x}",
        std::process::id(),
        u64::from_le_bytes(r)
    )
}

fn exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// Waits until process `pid` (not necessarily our child) has exited; false on timeout.
fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return true;
    };
    let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return true,
        Err(e) => panic!("pidfd_open: {e}"),
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(1) => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

fn send_u32(s: &mut UnixStream, v: u32) {
    s.write_all(&v.to_le_bytes()).unwrap();
}

fn recv_u32(s: &mut UnixStream) -> u32 {
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    u32::from_le_bytes(b)
}

fn stream(fd: OwnedFd) -> UnixStream {
    UnixStream::from(fd)
}

// ---------------------------------------------------------------------------------------------
// child cases

fn case_double(payload: &[u8], fds: Vec<OwnedFd>) {
    let arr: RawArray<i32> = transfer::decode(payload, fds).unwrap();
    for i in 0..arr.len() {
        arr.set(i, arr.get(i).unwrap() * 2).unwrap();
    }
}

fn case_add_million(payload: &[u8], fds: Vec<OwnedFd>) {
    let v: RawValue<i64> = transfer::decode(payload, fds).unwrap();
    for _ in 0..1_000_000 {
        v.fetch_add(1);
    }
}

fn case_segment_receiver(_payload: &[u8], mut fds: Vec<OwnedFd>) {
    let sock = fds.remove(0);
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    let n = transfer::recv_with_fds(sock.as_fd(), &mut buf, &mut got, 4).unwrap();
    let seg: Segment = transfer::decode(&buf[..n], got).unwrap();
    let mut seen = [0u8; 6];
    seg.read_at(0, &mut seen).unwrap();
    assert_eq!(&seen, b"parent");
    seg.write_at(100, b"child").unwrap();
    stream(sock).write_all(b"k").unwrap();
}

fn case_shm_attach(payload: &[u8], _fds: Vec<OwnedFd>) {
    let name = std::str::from_utf8(payload).unwrap();
    let shm = SharedMemory::open(name).unwrap();
    assert!(!shm.is_creator());
    let mut buf = [0u8; 5];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"howdy");
    shm.write_at(10, b"HELLO").unwrap();
    // An attacher starts no tracker and registers nothing.
    assert_eq!(ipc_shm::tracker_pid(), None);
}

fn case_shm_permission(payload: &[u8], _fds: Vec<OwnedFd>) {
    let name = std::str::from_utf8(payload).unwrap();
    // SAFETY: plain system calls in a single-threaded child.
    if unsafe { libc::getuid() } == 0 {
        // SAFETY: as above; drop root so that mode 0600 applies.
        unsafe {
            assert_eq!(libc::setgid(65534), 0);
            assert_eq!(libc::setuid(65534), 0);
        }
    }
    match SharedMemory::open(name) {
        Err(Error::PermissionDenied { name: n }) => assert_eq!(n, name),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

/// Creates the named segment, reports its tracker's pid, then waits to be killed.
fn case_create_and_wait(payload: &[u8], mut fds: Vec<OwnedFd>) {
    let name = std::str::from_utf8(payload).unwrap();
    let shm = SharedMemory::create(Some(name), 4096).unwrap();
    shm.write_at(0, b"alive").unwrap();
    let mut s = stream(fds.remove(0));
    send_u32(&mut s, ipc_shm::tracker_pid().unwrap());
    let mut b = [0u8; 1];
    let _ = s.read(&mut b); // blocks until the parent kills us
    std::thread::sleep(Duration::from_secs(120));
}

/// Creates two named segments, keeps the second, reports the tracker pid and exits normally.
fn case_create_keep_exit(payload: &[u8], mut fds: Vec<OwnedFd>) {
    let names = std::str::from_utf8(payload).unwrap();
    let (a, b) = names.split_once(' ').unwrap();
    let sa = SharedMemory::create(Some(a), 100).unwrap();
    let sb = SharedMemory::create(Some(b), 100).unwrap();
    sb.keep();
    sa.write_at(0, b"a").unwrap();
    sb.write_at(0, b"b").unwrap();
    send_u32(&mut stream(fds.remove(0)), ipc_shm::tracker_pid().unwrap());
}

/// Creates the named segment (tracked), reports its tracker's pid, waits for a byte, exits.
fn case_create_then_exit_on_cue(payload: &[u8], mut fds: Vec<OwnedFd>) {
    let name = std::str::from_utf8(payload).unwrap();
    let shm = SharedMemory::create(Some(name), 64).unwrap();
    let mut s = stream(fds.remove(0));
    send_u32(&mut s, ipc_shm::tracker_pid().unwrap());
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    drop(shm); // exits without unlinking: the tracker cleans up
}

/// Holds a shared block while the parent drops its handle and allocates more.
fn case_hold_block(payload: &[u8], mut fds: Vec<OwnedFd>) {
    let mut s = stream(fds.remove(0));
    let b: ShmBox<AtomicU64> = transfer::decode(payload, fds).unwrap();
    assert_eq!(b.load(Ordering::SeqCst), 777);
    s.write_all(b"r").unwrap();
    let mut go = [0u8; 1];
    s.read_exact(&mut go).unwrap();
    // The parent dropped its handle and allocated many blocks of the same size meanwhile.
    assert_eq!(
        b.load(Ordering::SeqCst),
        777,
        "the block was reused under us"
    );
    b.store(778, Ordering::SeqCst);
    s.write_all(b"d").unwrap();
}

// ---------------------------------------------------------------------------------------------
// tests

fn test_child_doubles_array() {
    for method in testkit::methods() {
        let arr = RawArray::from_slice(&[1i32, 2, 3, 4, 5]).unwrap();
        let (bytes, fds) = transfer::encode(&arr).unwrap();
        let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let mut child = start(method, "double", &bytes, &fds);
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
        assert_eq!(arr.to_vec(), [2, 4, 6, 8, 10], "{method:?}");
    }
}

fn test_two_processes_fetch_add() {
    for method in testkit::methods() {
        let v = RawValue::new(0i64).unwrap();
        let (bytes, fds) = transfer::encode(&v).unwrap();
        let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let mut child = start(method, "add_million", &bytes, &fds);
        for _ in 0..1_000_000 {
            v.fetch_add(1);
        }
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
        assert_eq!(v.load(), 2_000_000, "{method:?}");
    }
}

fn test_segment_after_start_travels_by_scm_rights() {
    for method in testkit::methods() {
        let (mine, theirs) = UnixStream::pair().unwrap();
        let mut child = start(method, "segment_receiver", &[], &[theirs.as_fd()]);
        drop(theirs);
        // Created after the child exists: it can only arrive with the message.
        let seg = Segment::new(4096).unwrap();
        seg.write_at(0, b"parent").unwrap();
        let (bytes, fds) = transfer::encode(&seg).unwrap();
        let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        transfer::send_with_fds(mine.as_fd(), &bytes, &fds).unwrap();
        let mut ack = [0u8; 1];
        (&mine).read_exact(&mut ack).unwrap();
        let mut seen = [0u8; 5];
        seg.read_at(100, &mut seen).unwrap();
        assert_eq!(&seen, b"child", "{method:?}");
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
    }
}

fn test_shared_memory_attach_by_name_and_unlink() {
    for method in testkit::methods() {
        let shm = SharedMemory::create(None, 4096).unwrap();
        assert!(shm.name().starts_with("psm_") && shm.name().len() == 36);
        assert!(exists(shm.name()));
        shm.write_at(0, b"howdy").unwrap();
        let mut child = start(method, "shm_attach", shm.name().as_bytes(), &[]);
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
        let mut buf = [0u8; 5];
        shm.read_at(10, &mut buf).unwrap();
        assert_eq!(&buf, b"HELLO");
        // The attacher's exit left the name alone.
        let again = SharedMemory::open(shm.name()).unwrap();
        assert_eq!(again.size(), 4096);
        shm.unlink().unwrap();
        assert!(!exists(shm.name()));
        assert!(matches!(shm.unlink(), Err(Error::NotFound { .. })));
        assert!(matches!(
            SharedMemory::open(shm.name()),
            Err(Error::NotFound { .. })
        ));
        // The mapping outlives the name.
        again.read_at(10, &mut buf).unwrap();
        assert_eq!(&buf, b"HELLO");
    }
}

fn test_shared_memory_errors() {
    let name = unique_name("err");
    let shm = SharedMemory::create(Some(&name), 100).unwrap();
    assert_eq!(shm.size(), 100);
    assert_eq!(
        format!("{shm:?}"),
        format!("SharedMemory({name:?}, size=100)")
    );
    assert!(matches!(
        SharedMemory::create(Some(&name), 100),
        Err(Error::NameExists { name: n }) if n == name
    ));
    // a leading slash names the same object
    assert!(matches!(
        SharedMemory::create(Some(&format!("/{name}")), 100),
        Err(Error::NameExists { .. })
    ));
    assert!(matches!(
        SharedMemory::create(None, 0),
        Err(Error::ZeroSize)
    ));
    assert!(matches!(
        SharedMemory::create(Some(&unique_name("zero")), 0),
        Err(Error::ZeroSize)
    ));
    assert!(matches!(
        SharedMemory::open(&unique_name("missing")),
        Err(Error::NotFound { .. })
    ));
    // Mode 0600 exactly (the umask can only take bits away).
    let mode = rustix::fs::fstat(shm.as_fd()).unwrap().st_mode & 0o7777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    // The longest name accepted, and sizes beyond the address space: errors, not panics.
    let longest = unique_name("max") + &"y".repeat(254);
    let longest = &longest[..254];
    let at_limit = SharedMemory::create(Some(longest), 1).unwrap();
    assert_eq!(at_limit.name(), longest);
    at_limit.unlink().unwrap();
    for size in [usize::MAX, isize::MAX as usize + 1] {
        assert!(matches!(
            SharedMemory::create(None, size),
            Err(Error::TooLarge { .. })
        ));
    }
    assert!(SharedMemory::create(None, isize::MAX as usize).is_err());
    let long = "x".repeat(255);
    assert!(matches!(
        SharedMemory::create(Some(&long), 10),
        Err(Error::NameTooLong { max: 254, .. })
    ));
    assert!(matches!(
        SharedMemory::open(&long),
        Err(Error::NameTooLong { .. })
    ));
    for bad in ["a/b", "", "/", "..", "nul\0byte"] {
        assert!(
            matches!(
                SharedMemory::create(Some(bad), 10),
                Err(Error::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        shm.write_at(99, b"xy"),
        Err(Error::OutOfBounds {
            offset: 99,
            len: 2,
            size: 100
        })
    ));
    assert!(matches!(
        shm.read_at(usize::MAX, &mut [0u8; 2]),
        Err(Error::OutOfBounds { .. })
    ));
    // Permission denied: a process without rights on the 0600 object.
    // SAFETY: a plain system call.
    if unsafe { libc::getuid() } != 0 {
        rustix::fs::fchmod(shm.as_fd(), rustix::fs::Mode::empty()).unwrap();
    }
    for method in testkit::methods() {
        let mut child = start(method, "shm_permission", name.as_bytes(), &[]);
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
    }
    shm.unlink().unwrap();
}

fn test_sigkilled_creator_is_cleaned_up() {
    for method in testkit::methods() {
        let name = unique_name("kill");
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        let mut child = start(
            method,
            "create_and_wait",
            name.as_bytes(),
            &[theirs.as_fd()],
        );
        drop(theirs);
        let tracker = recv_u32(&mut mine);
        assert!(exists(&name), "{method:?}: the child created {name}");
        let seen = SharedMemory::open(&name).unwrap();
        let mut b = [0u8; 5];
        seen.read_at(0, &mut b).unwrap();
        assert_eq!(&b, b"alive");
        child.kill(libc::SIGKILL).unwrap();
        assert_eq!(
            child.wait().unwrap(),
            Exit::Signal(libc::SIGKILL),
            "{method:?}"
        );
        // The tracker unlinks the name, then exits.
        assert!(
            wait_gone(tracker, Duration::from_secs(30)),
            "{method:?}: the tracker did not finish"
        );
        assert!(!exists(&name), "{method:?}: {name} was not unlinked");
        assert!(matches!(
            SharedMemory::open(&name),
            Err(Error::NotFound { .. })
        ));
        // Our mapping still works after the unlink.
        seen.read_at(0, &mut b).unwrap();
        assert_eq!(&b, b"alive");
    }
}

fn test_normal_exit_cleans_up_unless_kept() {
    for method in testkit::methods() {
        let (a, b) = (unique_name("exit"), unique_name("keep"));
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        let payload = format!("{a} {b}");
        let mut child = start(
            method,
            "create_keep_exit",
            payload.as_bytes(),
            &[theirs.as_fd()],
        );
        drop(theirs);
        let tracker = recv_u32(&mut mine);
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
        assert!(wait_gone(tracker, Duration::from_secs(30)), "{method:?}");
        assert!(!exists(&a), "{method:?}: the tracked segment is gone");
        assert!(exists(&b), "{method:?}: the kept segment stays");
        let kept = SharedMemory::open(&b).unwrap();
        let mut x = [0u8; 1];
        kept.read_at(0, &mut x).unwrap();
        assert_eq!(&x, b"b");
        kept.unlink().unwrap();
    }
}

fn test_tracker_spares_a_name_recreated_by_someone_else() {
    // The creator's name is unlinked by another process, which then creates an object of the
    // same name: when the first creator dies, its tracker must not remove the newcomer's.
    for method in testkit::methods() {
        let name = unique_name("reuse");
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        let mut child = start(
            method,
            "create_then_exit_on_cue",
            name.as_bytes(),
            &[theirs.as_fd()],
        );
        drop(theirs);
        let tracker = recv_u32(&mut mine);
        SharedMemory::open(&name).unwrap().unlink().unwrap();
        let ours = SharedMemory::create(Some(&name), 64).unwrap();
        ours.write_at(0, b"ours").unwrap();
        mine.write_all(b"x").unwrap();
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
        assert!(wait_gone(tracker, Duration::from_secs(30)), "{method:?}");
        assert!(
            exists(&name),
            "{method:?}: the child's tracker unlinked our object"
        );
        let mut b = [0u8; 4];
        SharedMemory::open(&name)
            .unwrap()
            .read_at(0, &mut b)
            .unwrap();
        assert_eq!(&b, b"ours");
        ours.unlink().unwrap();
    }
}

fn test_parent_tracker_survives_fork_children() {
    // The parent's tracked segment is not unlinked when a forked child (which inherits a copy
    // of everything) exits, and is unlinked by the parent's explicit unlink.
    let shm = SharedMemory::create(None, 64).unwrap();
    let tracker = ipc_shm::tracker_pid().unwrap();
    for method in testkit::methods() {
        let mut child = start(method, "shm_attach_after_write", shm.name().as_bytes(), &[]);
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
    }
    assert!(exists(shm.name()));
    assert!(
        !wait_gone(tracker, Duration::from_millis(1)),
        "our tracker still runs"
    );
    shm.unlink().unwrap();
}

fn case_shm_attach_after_write(payload: &[u8], _fds: Vec<OwnedFd>) {
    let name = std::str::from_utf8(payload).unwrap();
    let shm = SharedMemory::open(name).unwrap();
    shm.write_at(0, b"x").unwrap();
}

fn test_ten_thousand_values_few_fds() {
    let before = testkit::fd_count();
    let values: Vec<RawValue<i64>> = (0..10_000).map(|i| RawValue::new(i).unwrap()).collect();
    let after = testkit::fd_count();
    assert!(
        after <= before + 3,
        "10,000 values opened {} descriptors",
        after - before
    );
    for (i, v) in values.iter().enumerate() {
        assert_eq!(v.load(), i as i64);
    }
    // They travel together with one descriptor.
    let (bytes, fds) = transfer::encode(&values[..100]).unwrap();
    assert_eq!(fds.len(), 1);
    let back: Vec<RawValue<i64>> = transfer::decode(&bytes, fds).unwrap();
    assert!(RawValue::ptr_eq(&back[7], &values[7]));
    drop(back);
    drop(values);
    assert!(
        testkit::fd_count() <= before,
        "arenas are released with their last handle"
    );
}

fn test_freed_blocks_are_reused() {
    let keep = ShmBox::new(AtomicU64::new(1)).unwrap();
    let a = ShmBox::new(AtomicU64::new(5)).unwrap();
    let pa = a.as_ptr();
    drop(a);
    let b = ShmBox::new(AtomicU64::new(9)).unwrap();
    assert_eq!(b.as_ptr(), pa);
    assert_eq!(b.load(Ordering::SeqCst), 9);
    // A reused block of a slice is zero-filled again.
    let s = ipc_shm::ShmSlice::<AtomicU64>::zeroed(20).unwrap();
    for x in s.iter() {
        x.store(u64::MAX, Ordering::SeqCst);
    }
    let ps = s.as_ptr();
    drop(s);
    let t = ipc_shm::ShmSlice::<AtomicU64>::zeroed(20).unwrap();
    assert_eq!(t.as_ptr(), ps);
    assert!(t.iter().all(|x| x.load(Ordering::SeqCst) == 0));
    drop(keep);
}

fn test_block_outlives_the_parents_handle() {
    for method in testkit::methods() {
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        // Keeps the arena mapped here, so that a wrongly freed block would really be reused
        // (rather than the whole arena being unmapped by the parent).
        let anchor = ShmBox::new(AtomicU64::new(1)).unwrap();
        let b = ShmBox::new(AtomicU64::new(777)).unwrap();
        let (bytes, fds) = transfer::encode(&b).unwrap();
        let mut all = vec![theirs.as_fd()];
        all.extend(fds.iter().map(|f| f.as_fd()));
        let mut child = start(method, "hold_block", &bytes, &all);
        drop((theirs, fds, bytes));
        let mut r = [0u8; 1];
        mine.read_exact(&mut r).unwrap();
        drop(b);
        // Same size class: a wrongly freed block would be handed out (and overwritten) here.
        let others: Vec<_> = (0..1000)
            .map(|_| ShmBox::new(AtomicU64::new(0xdead)).unwrap())
            .collect();
        mine.write_all(b"g").unwrap();
        mine.read_exact(&mut r).unwrap();
        assert_eq!(&r, b"d");
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
        assert!(others.iter().all(|o| o.load(Ordering::SeqCst) == 0xdead));
        assert_eq!(anchor.load(Ordering::SeqCst), 1);
    }
}

fn test_wrong_kind_descriptor_is_refused() {
    let (r, _w) = rustix::pipe::pipe().unwrap();
    // Messages that name a pipe where memory is expected.
    let seg = Segment::new(10).unwrap();
    let v = RawValue::new(1u32).unwrap();
    let shm = SharedMemory::create(None, 10).unwrap();
    let (b1, _) = transfer::encode(&seg).unwrap();
    let (b2, _) = transfer::encode(&v).unwrap();
    let (b3, _) = transfer::encode(&shm).unwrap();
    let pipe = || vec![r.try_clone().unwrap()];
    for err in [
        transfer::decode::<Segment>(&b1, pipe()).unwrap_err(),
        transfer::decode::<RawValue<u32>>(&b2, pipe()).unwrap_err(),
        transfer::decode::<SharedMemory>(&b3, pipe()).unwrap_err(),
    ] {
        assert!(matches!(err, TransferError::WrongKind { .. }), "{err}");
    }
    // A regular file that is not sealed memory, and a memfd smaller than announced.
    let file = OwnedFd::from(std::fs::File::open("/proc/self/exe").unwrap());
    let err = transfer::decode::<Segment>(&b1, vec![file]).unwrap_err();
    assert!(matches!(err, TransferError::WrongKind { .. }), "{err}");
    let small = Segment::new(1).unwrap();
    let big = Segment::new(8192).unwrap();
    let (bb, _) = transfer::encode(&big).unwrap();
    let err = transfer::decode::<Segment>(&bb, vec![small.as_fd().try_clone_to_owned().unwrap()])
        .unwrap_err();
    assert!(matches!(err, TransferError::WrongKind { .. }), "{err}");
    // Outside a transfer, serializing a handle is an error.
    assert!(postcard::to_allocvec(&seg).is_err());
    shm.unlink().unwrap();
}

fn main() {
    testkit::main(
        &[
            ("double", case_double),
            ("add_million", case_add_million),
            ("segment_receiver", case_segment_receiver),
            ("shm_attach", case_shm_attach),
            ("shm_attach_after_write", case_shm_attach_after_write),
            ("shm_permission", case_shm_permission),
            ("create_and_wait", case_create_and_wait),
            ("create_keep_exit", case_create_keep_exit),
            ("hold_block", case_hold_block),
            ("create_then_exit_on_cue", case_create_then_exit_on_cue),
        ],
        &[
            ("child_doubles_array", test_child_doubles_array),
            ("two_processes_fetch_add", test_two_processes_fetch_add),
            (
                "segment_after_start_travels_by_scm_rights",
                test_segment_after_start_travels_by_scm_rights,
            ),
            (
                "shared_memory_attach_by_name_and_unlink",
                test_shared_memory_attach_by_name_and_unlink,
            ),
            ("shared_memory_errors", test_shared_memory_errors),
            (
                "tracker_spares_a_name_recreated_by_someone_else",
                test_tracker_spares_a_name_recreated_by_someone_else,
            ),
            (
                "sigkilled_creator_is_cleaned_up",
                test_sigkilled_creator_is_cleaned_up,
            ),
            (
                "normal_exit_cleans_up_unless_kept",
                test_normal_exit_cleans_up_unless_kept,
            ),
            (
                "parent_tracker_survives_fork_children",
                test_parent_tracker_survives_fork_children,
            ),
            (
                "ten_thousand_values_few_fds",
                test_ten_thousand_values_few_fds,
            ),
            ("freed_blocks_are_reused", test_freed_blocks_are_reused),
            (
                "block_outlives_the_parents_handle",
                test_block_outlives_the_parents_handle,
            ),
            (
                "wrong_kind_descriptor_is_refused",
                test_wrong_kind_descriptor_is_refused,
            ),
        ],
    );
}
