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
//! names at once (a lazily committed table of 16 MiB of address space); further names are
//! not cleaned up after a crash.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::Error;
use crate::heap;
use crate::spin::SpinLock;
use crate::sys;

/// The longest name (without the leading slash) that POSIX shm accepts on Linux.
pub(crate) const NAME_MAX: usize = 254;
const SLOT: usize = 256;
const SLOTS: usize = 65_536;

struct State {
    /// Our end of the tracker socket, -1 when there is none.
    sock: RawFd,
    /// The process the state belongs to (a forked child inherits a copy it must not use).
    owner: u32,
    /// The tracker's pid.
    tracker: u32,
    /// Names registered by this process and not yet forgotten.
    names: Vec<String>,
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

fn record(op: u8, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(name.len() + 1);
    m.push(op);
    m.extend_from_slice(name.as_bytes());
    m
}

fn send(st: &State, op: u8, name: &str) -> std::io::Result<()> {
    // SAFETY: `sock` is a descriptor this state owns, open while the lock is held.
    let fd = unsafe { BorrowedFd::borrow_raw(st.sock) };
    sys::send_record(fd, &record(op, name))
}

/// Registers `name` (without the leading slash) with this process's tracker, starting one if
/// needed.
pub(crate) fn register(name: &str) -> Result<(), Error> {
    ensure_atfork();
    for _ in 0..3 {
        {
            let mut st = STATE.lock();
            own(&mut st);
            if st.sock >= 0 {
                if send(&st, b'R', name).is_ok() {
                    st.names.push(name.to_string());
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
            for n in st.names.iter() {
                let _ = send(&st, b'R', n);
            }
        }
        // else another thread started one meanwhile: ours sees end-of-stream and exits.
    }
    Err(Error::io(
        "resource tracker",
        std::io::Error::other("the tracker process keeps dying"),
    ))
}

/// Forgets `name`: it will not be unlinked when this process dies.
pub(crate) fn unregister(name: &str) {
    let mut st = STATE.lock();
    own(&mut st);
    if let Some(i) = st.names.iter().position(|n| n == name) {
        st.names.swap_remove(i);
        if st.sock >= 0 {
            let _ = send(&st, b'U', name);
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

/// The tracker process. Only system calls from here on.
fn tracker_main(sock: RawFd, devnull: RawFd) -> ! {
    let fd = sys::detach_keeping(devnull, sock);
    // SAFETY: descriptor 3 is the tracker's socket for the rest of this process's life.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = sys::send_record(fd, &sys::getpid().to_ne_bytes());
    let table = sys::map_anonymous_noreserve(SLOT * SLOTS);
    let mut used = 0usize; // slots [0, used) have been touched
    let mut buf = [0u8; SLOT + 16];
    loop {
        let n = match sys::recv_record(fd, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if table.is_null() || !(2..=NAME_MAX + 1).contains(&n) {
            continue;
        }
        let (op, name) = (buf[0], &buf[1..n]);
        // SAFETY: `table` is a private mapping of SLOTS * SLOT bytes owned by this process.
        let slots = unsafe { core::slice::from_raw_parts_mut(table, SLOT * SLOTS) };
        let find = |slots: &[u8], used: usize| {
            (0..used).find(|i| {
                let s = &slots[i * SLOT..(i + 1) * SLOT];
                s[0] as usize == name.len() && &s[1..1 + name.len()] == name
            })
        };
        match op {
            b'R' => {
                let free = (0..used).find(|i| slots[i * SLOT] == 0);
                let i = match free {
                    Some(i) => i,
                    None if used < SLOTS => {
                        used += 1;
                        used - 1
                    }
                    None => continue,
                };
                let s = &mut slots[i * SLOT..(i + 1) * SLOT];
                s[0] = name.len() as u8;
                s[1..1 + name.len()].copy_from_slice(name);
            }
            b'U' => {
                if let Some(i) = find(slots, used) {
                    slots[i * SLOT] = 0;
                }
            }
            _ => {}
        }
    }
    if !table.is_null() {
        // SAFETY: as above.
        let slots = unsafe { core::slice::from_raw_parts(table, SLOT * SLOTS) };
        let mut path = [0u8; SLOT + 2];
        for i in 0..used {
            let s = &slots[i * SLOT..(i + 1) * SLOT];
            let len = s[0] as usize;
            if len == 0 {
                continue;
            }
            path[0] = b'/';
            path[1..1 + len].copy_from_slice(&s[1..1 + len]);
            path[1 + len] = 0;
            if let Ok(c) = core::ffi::CStr::from_bytes_with_nul(&path[..len + 2]) {
                let _ = sys::shm_unlink(c);
            }
        }
    }
    sys::exit_now(0)
}
