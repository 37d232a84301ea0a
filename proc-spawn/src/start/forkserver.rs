//! `ForkServer`: one single-threaded server process per client program, started by spawn on
//! first use, forks a child per request.
//!
//! # Protocol
//!
//! - The client holds one end of a `SOCK_SEQPACKET` pair (the *control* socket); the server
//!   the other. A request is one packet: its first descriptor is the server's end of a fresh
//!   stream socket pair made for this request; packets are delivered whole, so threads and
//!   forked copies of the client may share the control socket.
//! - The packet also carries the same `BOOT` frame as `Spawn` (with the arguments'
//!   descriptors and the client's pidfd) when it fits (48 KiB); a larger one follows on the
//!   request socket. The server forks; the child checks and acknowledges the request (`ACK`
//!   with its pid and its own pidfd), runs, maybe sends its `RESULT`, exits. The server reaps
//!   it and relays the exit code (`STATUS`) on the request socket, then closes its end.
//! - The server exits when the control socket reports the end of the stream (every client is
//!   gone). A client whose server died starts a new one on its next request.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rustix::process::Signal;

use super::{await_ack, boot_message, ChildHandle, ChildSpec};
use crate::bootstrap::{self, ACK, BOOT, MARKER, REFUSED, STATUS};
use crate::context::{self, StartMethod};
use crate::error::{Error, Result};
use crate::process::{self, ProcessInfo, TargetJob};
use crate::sys::{self, Forked};
use ipc_shm::transfer::MAX_FDS_PER_MESSAGE;

const READY: &[u8] = b"ready";

/// A running fork server, as its client sees it.
pub(crate) struct Server {
    control: OwnedFd,
    pidfd: OwnedFd,
    pid: u32,
    /// The process that started the server (and so may reap it).
    owner: u32,
}

static CLIENT: Mutex<Option<Server>> = Mutex::new(None);

/// Locks the client state. `start::fork` holds it across `fork()` (a forked child may use its
/// parent's server).
pub(crate) fn lock_client() -> MutexGuard<'static, Option<Server>> {
    CLIENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The control socket of this process's fork server, starting the server if there is none.
/// A dead server is noticed when a request to it fails ([`server_failed`]).
fn ensure_running(g: &mut Option<Server>) -> Result<&Server> {
    if g.is_none() {
        *g = Some(launch()?);
    }
    Ok(g.as_ref().expect("set above"))
}

/// Forgets a dead (or misbehaving) server, reaping it if it is ours.
fn retire(old: Server) {
    if old.owner == sys::getpid() {
        let _ = sys::pidfd_signal(old.pidfd.as_fd(), Signal::KILL);
        let _ = sys::reap(old.pidfd.as_fd(), true);
    }
}

/// Forgets the server with pid `pid` after a request to it failed (unless another thread
/// already replaced it).
fn server_failed(pid: u32) {
    let mut g = lock_client();
    if g.as_ref().is_some_and(|s| s.pid == pid) {
        if let Some(old) = g.take() {
            retire(old);
        }
    }
}

/// The pid of this process's fork server, if one runs.
pub(crate) fn server_pid() -> Option<u32> {
    let g = lock_client();
    let s = g.as_ref()?;
    if sys::readable_now(s.pidfd.as_fd()).unwrap_or(true) {
        return None;
    }
    Some(s.pid)
}

fn launch() -> Result<Server> {
    let (client, server) = sys::seqpacket_pair().map_err(|e| Error::io("socketpair", e))?;
    let pid = sys::spawn_self(
        &bootstrap::child_argv(),
        bootstrap::child_env(),
        server.as_fd(),
        |fd| CString::new(format!("{MARKER}=server:{fd}")).expect("no NUL"),
    )
    .map_err(|e| Error::io("posix_spawn (fork server)", e))?;
    drop(server);
    let pidfd = sys::pidfd_open(pid).map_err(|e| Error::io("pidfd_open", e))?;
    let srv = Server {
        control: client,
        pidfd,
        pid,
        owner: sys::getpid(),
    };
    let ready = sys::poll_readable(&[srv.control.as_fd()], Some(bootstrap::BOOT_TIMEOUT))
        .map_err(|e| Error::io("poll", e))?;
    let mut buf = [0u8; 16];
    let mut fds = Vec::new();
    let n = if ready[0] {
        ipc_shm::transfer::recv_with_fds(srv.control.as_fd(), &mut buf, &mut fds, 1).unwrap_or(0)
    } else {
        0
    };
    if &buf[..n] == READY {
        return Ok(srv);
    }
    // The server never reached the hook nor init(): reap it and say so.
    let code = match sys::poll_readable(&[srv.pidfd.as_fd()], Some(Duration::from_secs(5))) {
        Ok(r) if r[0] => sys::reap(srv.pidfd.as_fd(), true).ok().flatten(),
        _ => {
            retire(srv);
            None
        }
    };
    Err(Error::NotInitialized {
        detail: match code {
            Some(c) => format!(" (the fork server ended with exit code {c})"),
            None => " (the fork server did not answer)".to_string(),
        },
    })
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ECONNREFUSED)
    )
}

/// A request whose `BOOT` frame fits in one packet travels inline (one message, one system
/// call on each side); a larger one is streamed over the request socket.
const INLINE_MAX: usize = 48 * 1024;
const REQ_INLINE: u8 = b'I';
const REQ_STREAM: u8 = b'S';

/// Asks the fork server for a child running `job`; returns once the child has acknowledged.
pub(crate) fn start(job: &dyn TargetJob, spec: &ChildSpec) -> Result<ChildHandle> {
    let (payload, fds) = boot_message(job, spec, StartMethod::ForkServer)?;
    let inline = payload.len() <= INLINE_MAX && fds.len() < MAX_FDS_PER_MESSAGE;
    let packet = if inline {
        let mut p = vec![REQ_INLINE];
        p.extend_from_slice(&bootstrap::frame(BOOT, &payload));
        p
    } else {
        vec![REQ_STREAM]
    };
    for _attempt in 0..3 {
        let (mine, theirs) = sys::stream_pair().map_err(|e| Error::io("socketpair", e))?;
        let (server, sent) = {
            let mut g = lock_client();
            let server = ensure_running(&mut g)?;
            let mut all = vec![theirs.as_fd()];
            if inline {
                all.extend(fds.iter().map(|f| f.as_fd()));
            }
            (
                server.pid,
                ipc_shm::transfer::send_with_fds(server.control.as_fd(), &packet, &all),
            )
        };
        if let Err(e) = sent {
            if is_disconnect(&e) {
                server_failed(server);
                continue;
            }
            return Err(Error::io("fork server request", e));
        }
        drop(theirs);
        if !inline {
            if let Err(e) = bootstrap::send_frame(mine.as_fd(), BOOT, &payload, &fds) {
                if is_disconnect(&e) {
                    server_failed(server);
                    continue;
                }
                return Err(Error::io("fork server request", e));
            }
        }
        match await_ack(mine.as_fd()) {
            Ok((pid, Some(pidfd))) => {
                return Ok(ChildHandle::new(pid, spec, pidfd, true, Some(mine)))
            }
            Ok((_, None)) => {
                return Err(Error::ForkServer(
                    "the child acknowledged without its pidfd".into(),
                ))
            }
            Err(Error::NotInitialized { detail }) => {
                // Hung up without an answer: the server always answers (or forks a child
                // that does, or relays its status), so it is dying with our request. Its
                // descriptors close before its pidfd becomes readable: wait for the latter,
                // then ask its successor.
                let watch = {
                    let g = lock_client();
                    g.as_ref()
                        .filter(|s| s.pid == server)
                        .and_then(|s| s.pidfd.try_clone().ok())
                };
                let dead = match watch {
                    // another thread already replaced it
                    None => true,
                    Some(fd) => sys::poll_readable(&[fd.as_fd()], Some(Duration::from_secs(10)))
                        .map_or(true, |r| r[0]),
                };
                if dead {
                    server_failed(server);
                    continue;
                }
                return Err(Error::ForkServer(format!(
                    "the request was dropped without an answer{detail}"
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::ForkServer(
        "the fork server died three times in a row".into(),
    ))
}

/// A child of the server, until its status is relayed.
struct Kid {
    pidfd: OwnedFd,
    sock: OwnedFd,
}

/// Does once, in the server, the work every child would otherwise do for itself after the
/// fork: a child is a copy-on-write image of the server, so whatever is initialised here is
/// inherited for free, while the first use in a child costs page faults (each page written is
/// copied, each page of code or read-only data touched for the first time is mapped) and, for
/// some, a lazy symbol lookup by the dynamic linker.
fn prepare_for_children() {
    // The start method every child reports (the server itself starts no process).
    context::set_child_method(StartMethod::ForkServer);
    // The executable's identity and code ranges, which every request is checked against.
    let _ = sys::exe_info();
    // Standard input: `/dev/null` for every child (Python's `os.devnull`), opened once.
    sys::stdin_to_null_for_forks();
    // The panic hook that prefixes a child's panic message with its name.
    let _ = bootstrap::call_caught(|| ());
    // The thread-local tables of the handle transfer: their first use registers their
    // destructors with the C library, whose first call resolves two symbols lazily.
    let _ = ipc_shm::transfer::decode::<()>(&[], Vec::new());
    // The standard output's buffer, flushed by every child at its end.
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// The 13 bytes of a frame carrying a `u32`/`i32` (an `ACK`'s pid, a `STATUS`'s exit code).
fn small_frame(kind: u8, value: [u8; 4]) -> [u8; 13] {
    let mut b = [0u8; 13];
    b[0] = kind;
    b[1..9].copy_from_slice(&4u64.to_le_bytes());
    b[9..].copy_from_slice(&value);
    b
}

/// The fork server's life: it runs before `main` of a freshly spawned copy of the program, so
/// it is single-threaded and forks safely.
///
/// Every page the server writes after a fork is copied while the child lives, and every page
/// of code a child runs for the first time is mapped by a page fault: the loop therefore reuses
/// its poll set, receive buffer and descriptor vector (what it still allocates per request is
/// the decoded request, and the receive call's control buffer), requests are checked before
/// the fork (a refused one forks nothing), and the child's own path ([`child`]) allocates
/// nothing before its target runs.
pub(crate) fn serve(control: OwnedFd) -> ! {
    sys::ignore_sigint(true);
    prepare_for_children();
    if ipc_shm::transfer::send_with_fds(control.as_fd(), READY, &[]).is_err() {
        sys::exit_now(0)
    }
    let mut kids: Vec<Kid> = Vec::with_capacity(16);
    let mut set = sys::PollSet::with_capacity(17);
    let mut buf = vec![0u8; INLINE_MAX + 64];
    let mut got: Vec<OwnedFd> = Vec::with_capacity(MAX_FDS_PER_MESSAGE);
    loop {
        set.clear();
        set.push(control.as_fd());
        for k in &kids {
            set.push(k.pidfd.as_fd());
        }
        if set.wait().is_err() {
            sys::exit_now(1)
        }
        // Relay the statuses of the children that ended (back to front: indices stay valid).
        for i in (0..kids.len()).rev() {
            if !set.ready(i + 1) {
                continue;
            }
            if let Ok(Some(code)) = sys::reap(kids[i].pidfd.as_fd(), false) {
                let kid = kids.swap_remove(i);
                let _ = sys::send_all(kid.sock.as_fd(), &small_frame(STATUS, code.to_le_bytes()));
            }
        }
        if !set.ready(0) {
            continue;
        }
        got.clear();
        let n = match ipc_shm::transfer::recv_with_fds(
            control.as_fd(),
            &mut buf,
            &mut got,
            MAX_FDS_PER_MESSAGE,
        ) {
            Ok(0) => break, // every client is gone
            Ok(n) if !got.is_empty() => n,
            Ok(_) | Err(_) => continue, // malformed packet: ignore it
        };
        let sock = got.remove(0);
        let request = match (buf[0], bootstrap::unframe(&buf[1..n])) {
            (REQ_INLINE, Some((BOOT, payload))) => {
                bootstrap::parse_boot(payload, std::mem::take(&mut got))
            }
            (REQ_STREAM, _) if n == 1 && got.is_empty() => {
                // A client that stalls must not stall the others for long.
                let _ = rustix::net::sockopt::set_socket_timeout(
                    &sock,
                    rustix::net::sockopt::Timeout::Recv,
                    Some(Duration::from_secs(10)),
                );
                let r = bootstrap::read_boot(sock.as_fd());
                let _ = rustix::net::sockopt::set_socket_timeout(
                    &sock,
                    rustix::net::sockopt::Timeout::Recv,
                    None,
                );
                r
            }
            _ => Err("malformed fork server request".to_string()),
        };
        if got.capacity() == 0 {
            got.reserve(MAX_FDS_PER_MESSAGE);
        }
        let checked = request.and_then(|(msg, fds)| {
            let (target, tramp) = bootstrap::verify(&msg)?;
            Ok((msg, fds, target, tramp))
        });
        let (msg, mut fds, target, tramp) = match checked {
            Ok(x) => x,
            Err(e) => {
                let _ = bootstrap::send_frame(sock.as_fd(), REFUSED, e.as_bytes(), &[]);
                continue;
            }
        };
        // Freed here, before the fork, rather than by the child (which would copy the pages
        // of the allocator's state to do it).
        fds.shrink_to_fit();
        // SAFETY: the server is single-threaded (it runs before main and starts no thread), so
        // the child may run any code.
        match unsafe { sys::fork() } {
            Ok(Forked::Child) => {
                drop(control);
                // Other children's descriptors are closed; the vectors are left to `_exit`.
                kids.drain(..).for_each(drop);
                std::mem::forget((kids, set, buf, got));
                sys::ignore_sigint(false);
                child(sock, msg, fds, target, tramp)
            }
            Ok(Forked::Parent(pid)) => {
                drop(fds);
                match sys::pidfd_open(pid) {
                    Ok(pidfd) => kids.push(Kid { pidfd, sock }),
                    Err(_) => {
                        // Cannot watch it without blocking the others: stop it, reap it, and
                        // relay that status (the client sees the child killed).
                        let code = sys::kill_and_reap(pid);
                        let _ =
                            sys::send_all(sock.as_fd(), &small_frame(STATUS, code.to_le_bytes()));
                    }
                }
            }
            Err(e) => {
                let m = format!("the fork server cannot fork: {e}");
                let _ = bootstrap::send_frame(sock.as_fd(), REFUSED, m.as_bytes(), &[]);
            }
        }
    }
    sys::exit_now(0)
}

/// A child of the fork server, from the fork to `_exit`: [`bootstrap::become_child`] for a
/// request the server has checked already, without a memory allocation before the target
/// runs (the allocator's state would be copied page by page), except a daemon's thread that
/// watches its parent.
fn child(
    sock: OwnedFd,
    msg: bootstrap::BootMsg,
    mut fds: Vec<OwnedFd>,
    target: usize,
    tramp: bootstrap::Trampoline,
) -> ! {
    let parent_pidfd = if msg.parent_pidfd { fds.pop() } else { None };
    let bootstrap::BootMsg {
        name,
        daemon,
        id_path,
        parent,
        args,
        ..
    } = msg;
    let pid = sys::getpid();
    context::set_child_method(StartMethod::ForkServer);
    process::become_child(ProcessInfo::new(name, pid, daemon), parent, id_path);
    match parent_pidfd {
        Some(pfd) if daemon => process::watch_parent(pfd),
        other => drop(other),
    }
    // Acknowledge with our pid and a pidfd of us (race-free: we are alive): the client is not
    // our OS parent.
    let acked = match sys::pidfd_open(pid) {
        Ok(me) => sys::send_with_fd(
            sock.as_fd(),
            &small_frame(ACK, pid.to_le_bytes()),
            me.as_fd(),
        ),
        Err(e) => {
            let m = format!("pidfd_open of itself failed: {e}");
            let _ = bootstrap::send_frame(sock.as_fd(), REFUSED, m.as_bytes(), &[]);
            sys::exit_now(1)
        }
    };
    if acked.is_err() {
        // The client is gone: nobody wants this child any more.
        sys::exit_now(1)
    }
    // Standard input is `/dev/null` already (the server's): this only consumes the mark, so
    // that a child this child forks redirects its own.
    sys::stdin_to_null();
    let code = tramp(target, &args, fds, Some(sock.as_fd()));
    drop(sock);
    bootstrap::finish_child(code)
}

#[cfg(test)]
mod tests {
    use crate::{get_context, StartMethod};
    use std::os::fd::AsRawFd;

    fn stdin_target() -> String {
        std::fs::read_link("/proc/self/fd/0")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("unreadable: {e}"))
    }

    /// In a fork-server child: put a pipe on descriptor 0, then fork a grandchild, which must
    /// still get `/dev/null` (the server's mark that spares its own children the redirection
    /// must not leak to theirs). Returns what the child and the grandchild see.
    fn child_then_grandchild(_: ()) -> (String, String, String) {
        let mine = stdin_target();
        let (r, _w) = rustix::pipe::pipe().unwrap();
        // SAFETY: `r` is open; descriptor 0 is replaced atomically and owned by nothing in this
        // test process but the standard library's `Stdin`, which reads whatever number 0 is.
        assert_eq!(unsafe { libc::dup2(r.as_raw_fd(), 0) }, 0);
        let replaced = stdin_target();
        let grandchild = get_context(StartMethod::Fork)
            .spawn(|()| stdin_target(), ())
            .join()
            .unwrap();
        (mine, replaced, grandchild)
    }

    #[test]
    fn grandchild_of_a_fork_server_child_gets_dev_null_stdin() {
        let (mine, replaced, grandchild) = get_context(StartMethod::ForkServer)
            .spawn(child_then_grandchild, ())
            .join()
            .unwrap();
        assert_eq!(mine, "/dev/null");
        assert!(replaced.starts_with("pipe:"), "{replaced}");
        assert_eq!(grandchild, "/dev/null");
    }
}
