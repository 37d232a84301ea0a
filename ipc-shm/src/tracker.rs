//! The resource tracker: unlinks the named shared memory a process created and left behind
//! when that process dies, whatever the cause (SIGKILL included) — Python's `resource_tracker`,
//! without its over-eagerness (gh-82300: only the creating side registers, never an attacher).
//!
//! # Design
//!
//! On its first tracked [`SharedMemory::create`](crate::SharedMemory::create), a process
//! starts a tracker: a helper process that holds one end of an `AF_UNIX` `SOCK_SEQPACKET` pair
//! and reads records from it (`R<name>` registers a name, `U<name>` forgets it). The creating
//! process holds the other end, close-on-exec, and a `pthread_atfork` child handler closes it
//! in forked children, so **only the creating process** holds it. When that process ends, by
//! any means, the kernel closes its end, the tracker reads end-of-stream, unlinks every name
//! still registered and exits. [`SharedMemory::unlink`](crate::SharedMemory::unlink) and
//! [`SharedMemory::keep`](crate::SharedMemory::keep) send `U`.
//!
//! The tracker is started safely from a multi-threaded process: everything it needs (the
//! socket, `/dev/null`) is opened before `fork`; after `fork` it makes only raw system calls on
//! memory prepared before the fork or mapped by itself with `mmap` (no allocation, no locks).
//! It is double-forked (the creator reaps the short-lived middle process at once, so it never
//! sees the tracker as a child), starts a new session, ignores SIGINT, SIGTERM, SIGHUP and
//! SIGPIPE, puts `/dev/null` on descriptors 0-2 and closes every other inherited descriptor
//! (`close_range`), so it holds no one's pipe or socket open. If the tracker is killed, the
//! next registration starts a new one and registers again every name still tracked.
//!
//! Each creating process has its own tracker (a forked child that creates named segments
//! starts one of its own; Python shares one per process tree). A tracker records up to 65,536
//! names at once (a lazily committed table of address space); creating one more tracked name
//! fails with [`Error::TooManyTracked`] (unlink or [`keep`](crate::SharedMemory::keep) some
//! first), so no name is silently left untracked.
//!
//! Each record carries the object's device and inode besides its name, and the tracker unlinks
//! a name only if it still designates that very object: when another process unlinked the
//! name and created a new object under it, the newcomer is spared (Python's tracker would
//! remove it).

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::Error;
use crate::heap;
use crate::spin::SpinLock;
use crate::sys;

/// The longest name (without the leading slash) that POSIX shm accepts on Linux.
pub(crate) const NAME_MAX: usize = 254;
/// A record: the operation (`R`/`U`), the object's device and inode (native-endian `u64`s),
/// then the name.
const RECORD_HEAD: usize = 1 + 16;
/// A table slot: the name's length (0: free), device and inode, the name.
const SLOT: usize = 1 + 16 + NAME_MAX + 1;
/// The most names one tracker records (a small number in unit tests, so the limit is tested).
#[cfg(not(test))]
pub(crate) const MAX_TRACKED: usize = 65_536;
#[cfg(test)]
pub(crate) const MAX_TRACKED: usize = 16;
const SHM_DIR: &[u8] = b"/dev/shm/";

/// The object a tracked name was created for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjectId {
    dev: u64,
    ino: u64,
}

impl ObjectId {
    /// The object behind `fd`.
    #[allow(clippy::unnecessary_cast)] // `st_dev`/`st_ino` are not `u64` on every target
    pub(crate) fn of(fd: BorrowedFd<'_>) -> std::io::Result<ObjectId> {
        let st = rustix::fs::fstat(fd)?;
        Ok(ObjectId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        })
    }
}

struct State {
    /// Our end of the tracker socket, -1 when there is none.
    sock: RawFd,
    /// The process the state belongs to (a forked child inherits a copy it must not use).
    owner: u32,
    /// The tracker's pid.
    tracker: u32,
    /// Names registered by this process and not yet forgotten, with their objects.
    names: Vec<(String, ObjectId)>,
}

static STATE: SpinLock<State> = SpinLock::new(State {
    sock: -1,
    owner: 0,
    tracker: 0,
    names: Vec::new(),
});

static ATFORK: std::sync::Once = std::sync::Once::new();

unsafe extern "C" fn atfork_prepare() {
    STATE.raw_lock();
}

unsafe extern "C" fn atfork_parent() {
    // SAFETY: `atfork_prepare` took the lock on this thread.
    unsafe { STATE.raw_unlock() };
}

unsafe extern "C" fn atfork_child() {
    if !heap::forking_helper() {
        // SAFETY: the prepare handler holds the lock on this (the only) thread; closing a raw
        // descriptor and storing integers are async-signal-safe. The names are left for the
        // next user in this process to discard (freeing memory here would not be).
        unsafe {
            let st = &mut *STATE.data_ptr();
            if st.sock >= 0 {
                libc::close(st.sock);
                st.sock = -1;
            }
        }
    }
    // SAFETY: the prepare handler took the lock in the forking thread, which this thread is.
    unsafe { STATE.raw_unlock() };
}

fn ensure_atfork() {
    ATFORK.call_once(|| {
        // A failure leaves forked children holding the socket: they delay the clean-up until
        // they exit too, nothing worse.
        let _ = sys::atfork(atfork_prepare, atfork_parent, atfork_child);
    });
}

/// Resets the state when it was inherited from the parent through `fork`.
fn own(st: &mut State) {
    let me = sys::getpid();
    if st.owner != me {
        if st.sock >= 0 {
            // SAFETY: the descriptor is the inherited copy of the parent's socket, owned by
            // this state and used by nothing else.
            drop(unsafe { OwnedFd::from_raw_fd(st.sock) });
        }
        st.sock = -1;
        st.tracker = 0;
        st.names.clear();
        st.owner = me;
    }
}

fn record(op: u8, name: &str, id: ObjectId) -> Vec<u8> {
    let mut m = Vec::with_capacity(RECORD_HEAD + name.len());
    m.push(op);
    m.extend_from_slice(&id.dev.to_ne_bytes());
    m.extend_from_slice(&id.ino.to_ne_bytes());
    m.extend_from_slice(name.as_bytes());
    m
}

fn send(st: &State, op: u8, name: &str, id: ObjectId) -> std::io::Result<()> {
    // SAFETY: `sock` is a descriptor this state owns, open while the lock is held.
    let fd = unsafe { BorrowedFd::borrow_raw(st.sock) };
    sys::send_record(fd, &record(op, name, id))
}

/// Registers `name` (without the leading slash), created as the object `id`, with this
/// process's tracker, starting one if needed.
///
/// # Errors
///
/// [`Error::TooManyTracked`] when this process already tracks the most names a tracker holds;
/// [`Error::Io`] when no tracker can be started.
pub(crate) fn register(name: &str, id: ObjectId) -> Result<(), Error> {
    debug_assert!(!name.is_empty() && name.len() <= NAME_MAX);
    ensure_atfork();
    for _ in 0..3 {
        {
            let mut st = STATE.lock();
            own(&mut st);
            if st.names.len() >= MAX_TRACKED {
                return Err(Error::TooManyTracked { max: MAX_TRACKED });
            }
            if st.sock >= 0 {
                if send(&st, b'R', name, id).is_ok() {
                    st.names.push((name.to_string(), id));
                    return Ok(());
                }
                // The tracker is gone (killed): start another one below.
                // SAFETY: our descriptor, closed once and forgotten.
                drop(unsafe { OwnedFd::from_raw_fd(st.sock) });
                st.sock = -1;
                st.tracker = 0;
            }
        }
        let (sock, pid) = start()?;
        let mut st = STATE.lock();
        own(&mut st);
        if st.sock < 0 {
            st.sock = std::os::fd::IntoRawFd::into_raw_fd(sock);
            st.tracker = pid;
            for (n, id) in st.names.iter() {
                let _ = send(&st, b'R', n, *id);
            }
        }
        // else another thread started one meanwhile: ours sees end-of-stream and exits.
    }
    Err(Error::io(
        "resource tracker",
        std::io::Error::other("the tracker process keeps dying"),
    ))
}

/// Forgets `name` as the object `id`: it will not be unlinked when this process dies.
pub(crate) fn unregister(name: &str, id: ObjectId) {
    let mut st = STATE.lock();
    own(&mut st);
    if let Some(i) = st.names.iter().position(|(n, i)| n == name && *i == id) {
        st.names.swap_remove(i);
        if st.sock >= 0 {
            let _ = send(&st, b'U', name, id);
        }
    }
}

/// The pid of this process's tracker, if it has started one.
pub(crate) fn tracker_pid() -> Option<u32> {
    let mut st = STATE.lock();
    own(&mut st);
    (st.tracker != 0).then_some(st.tracker)
}

/// Starts a tracker. Returns our end of its socket and its pid.
fn start() -> Result<(OwnedFd, u32), Error> {
    let io = |e| Error::io("starting the resource tracker", e);
    let (mine, theirs) = sys::seqpacket_pair().map_err(io)?;
    // Both numbered 3 or above, so that the tracker can put /dev/null on 0-2 first.
    let theirs = sys::dup_at_least(theirs.as_fd(), 3).map_err(io)?;
    let devnull = sys::open_devnull().map_err(io)?;
    let devnull = sys::dup_at_least(devnull.as_fd(), 3).map_err(io)?;
    let (theirs_raw, devnull_raw) = (sys::raw(&theirs), sys::raw(&devnull));
    // SAFETY: the child branch below only calls async-signal-safe functions on integers
    // prepared before the fork, then exits with `_exit`.
    let pid = heap::spawning(|| unsafe { sys::fork() }).map_err(io)?;
    if pid == 0 {
        // The middle process: fork the tracker and leave at once.
        // SAFETY: as above.
        match unsafe { sys::fork() } {
            Ok(0) => tracker_main(theirs_raw, devnull_raw),
            Ok(_) => sys::exit_now(0),
            Err(_) => sys::exit_now(1),
        }
    }
    sys::reap(pid);
    drop(theirs);
    drop(devnull);
    // The tracker announces itself with its pid: it is running before we register anything.
    let mut buf = [0u8; 4];
    match sys::recv_record(mine.as_fd(), &mut buf) {
        Ok(4) => Ok((mine, u32::from_ne_bytes(buf))),
        Ok(_) => Err(io(std::io::Error::other("the tracker did not start"))),
        Err(e) => Err(io(e.into())),
    }
}

/// The tracker process. Only system calls from here on, on memory of its own stack or mapped
/// by itself: no allocation, no locks.
fn tracker_main(sock: RawFd, devnull: RawFd) -> ! {
    let fd = sys::detach_keeping(devnull, sock);
    // SAFETY: descriptor 3 is the tracker's socket for the rest of this process's life.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = sys::send_record(fd, &sys::getpid().to_ne_bytes());
    let table = sys::map_anonymous_noreserve(SLOT * MAX_TRACKED);
    let mut used = 0usize; // slots [0, used) have been touched
    let mut buf = [0u8; RECORD_HEAD + NAME_MAX + 16];
    loop {
        let n = match sys::recv_record(fd, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if table.is_null() || !(RECORD_HEAD + 1..=RECORD_HEAD + NAME_MAX).contains(&n) {
            continue;
        }
        let (op, entry) = (buf[0], &buf[1..n]); // device, inode, name: a slot's bytes after the length
                                                // SAFETY: `table` is a private mapping of SLOT * MAX_TRACKED bytes owned by this
                                                // process, and no other reference to it exists while this one lives.
        let slots = unsafe { core::slice::from_raw_parts_mut(table, SLOT * MAX_TRACKED) };
        let len = (n - RECORD_HEAD) as u8;
        match op {
            b'R' => {
                let free = (0..used).find(|i| slots[i * SLOT] == 0);
                let i = match free {
                    Some(i) => i,
                    None if used < MAX_TRACKED => {
                        used += 1;
                        used - 1
                    }
                    // The creator refuses to register more than MAX_TRACKED names, so this
                    // is not reached.
                    None => continue,
                };
                let s = &mut slots[i * SLOT..(i + 1) * SLOT];
                s[0] = len;
                s[1..n].copy_from_slice(entry);
            }
            b'U' => {
                let hit = (0..used).find(|i| {
                    let s = &slots[i * SLOT..(i + 1) * SLOT];
                    s[0] == len && &s[1..n] == entry
                });
                if let Some(i) = hit {
                    slots[i * SLOT] = 0;
                }
            }
            _ => {}
        }
    }
    if !table.is_null() {
        // SAFETY: as above.
        let slots = unsafe { core::slice::from_raw_parts(table, SLOT * MAX_TRACKED) };
        for i in 0..used {
            let s = &slots[i * SLOT..(i + 1) * SLOT];
            let len = s[0] as usize;
            if len != 0 {
                unlink_if_same(&s[RECORD_HEAD..RECORD_HEAD + len], &s[1..RECORD_HEAD]);
            }
        }
    }
    sys::exit_now(0)
}

/// Unlinks the shm object `name` if it is still the object whose device and inode are `id`
/// (16 native-endian bytes). Stack buffers and system calls only.
#[allow(clippy::unnecessary_cast)] // `st_dev`/`st_ino` are not `u64` on every target
fn unlink_if_same(name: &[u8], id: &[u8]) {
    let mut path = [0u8; SHM_DIR.len() + NAME_MAX + 1];
    let end = SHM_DIR.len() + name.len();
    path[..SHM_DIR.len()].copy_from_slice(SHM_DIR);
    path[SHM_DIR.len()..end].copy_from_slice(name);
    let Ok(full) = core::ffi::CStr::from_bytes_with_nul(&path[..end + 1]) else {
        return;
    };
    let Ok(st) = rustix::fs::stat(full) else {
        return; // already gone
    };
    let mut want = [0u8; 16];
    want[..8].copy_from_slice(&(st.st_dev as u64).to_ne_bytes());
    want[8..].copy_from_slice(&(st.st_ino as u64).to_ne_bytes());
    if want != id {
        return; // the name now designates another object: not ours to remove
    }
    // shm_unlink("/<name>"): the same name, from its leading slash.
    if let Ok(c) = core::ffi::CStr::from_bytes_with_nul(&path[SHM_DIR.len() - 1..end + 1]) {
        let _ = sys::shm_unlink(c);
    }
}

#[cfg(test)]
mod tests {
    use crate::{Error, SharedMemory};

    #[test]
    fn creating_more_tracked_names_than_the_limit_is_an_error() {
        let mut made = Vec::new();
        let err = loop {
            match SharedMemory::create(None, 16) {
                Ok(s) => made.push(s),
                Err(e) => break e,
            }
            assert!(made.len() <= super::MAX_TRACKED, "no limit");
        };
        assert!(
            matches!(err, Error::TooManyTracked { max } if max == super::MAX_TRACKED),
            "{err}"
        );
        assert_eq!(made.len(), super::MAX_TRACKED);
        // Untracking one (keep) or unlinking one makes room again.
        made[0].keep();
        made[0].unlink().unwrap();
        made[1].unlink().unwrap();
        let a = SharedMemory::create(None, 16).unwrap();
        let b = SharedMemory::create(None, 16).unwrap();
        assert!(SharedMemory::create(None, 16).is_err());
        for s in made.iter().skip(2).chain([&a, &b]) {
            s.unlink().unwrap();
        }
    }
}
