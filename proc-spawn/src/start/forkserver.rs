//! `ForkServer`: one single-threaded server process per client program, started by spawn on
//! first use, forks a child per request.
//!
//! # Protocol
//!
//! - The client holds one end of a `SOCK_SEQPACKET` pair (the *control* socket); the server
//!   the other. A request is one packet carrying one descriptor: the server's end of a fresh
//!   stream socket pair made for this request. Packets are delivered whole, so threads and
//!   forked copies of the client may share the control socket.
//! - Over the request socket the client sends the same `BOOT` frame as `Spawn` (arguments'
//!   descriptors and the client's pidfd included). The server reads it, forks; the child
//!   checks and acknowledges it (`ACK` with its pid and its own pidfd), runs, maybe sends its
//!   `RESULT`, exits. The server reaps it and relays the exit code (`STATUS`) on the same
//!   socket, then closes its end.
//! - The server exits when the control socket reports the end of the stream (every client is
//!   gone). A client whose server died starts a new one on its next request.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rustix::process::Signal;

use super::{await_ack, boot_message, ChildHandle, ChildSpec};
use crate::bootstrap::{self, BOOT, MARKER, REFUSED, STATUS};
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::process::TargetJob;
use crate::sys::{self, Forked};

const READY: &[u8] = b"ready";
const REQUEST: &[u8] = b"fork";

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

/// A descriptor for the control socket of this process's fork server, starting the server if
/// it is not running.
///
/// # Errors
///
/// As [`Error::ForkServer`] / [`Error::NotInitialized`] when the server cannot be started.
pub(crate) fn ensure_running() -> Result<OwnedFd> {
    let mut g = lock_client();
    if let Some(s) = g.as_ref() {
        if !sys::readable_now(s.pidfd.as_fd()).unwrap_or(true) {
            return s.control.try_clone().map_err(|e| Error::io("dup", e));
        }
    }
    if let Some(old) = g.take() {
        retire(old);
    }
    let server = launch()?;
    let control = server
        .control
        .try_clone()
        .map_err(|e| Error::io("dup", e))?;
    *g = Some(server);
    Ok(control)
}

/// Forgets a dead (or misbehaving) server, reaping it if it is ours.
fn retire(old: Server) {
    if old.owner == sys::getpid() {
        let _ = sys::pidfd_signal(old.pidfd.as_fd(), Signal::KILL);
        let _ = sys::reap(old.pidfd.as_fd(), true);
    }
}

/// Forgets the current server if it has died.
fn server_failed() {
    let mut g = lock_client();
    let dead = g
        .as_ref()
        .is_some_and(|s| sys::readable_now(s.pidfd.as_fd()).unwrap_or(true));
    if dead {
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

/// Asks the fork server for a child running `job`; returns once the child has acknowledged.
pub(crate) fn start(job: &dyn TargetJob, spec: &ChildSpec) -> Result<ChildHandle> {
    let (payload, fds) = boot_message(job, spec, StartMethod::ForkServer)?;
    for _attempt in 0..3 {
        let control = ensure_running()?;
        let (mine, theirs) = sys::stream_pair().map_err(|e| Error::io("socketpair", e))?;
        if let Err(e) =
            ipc_shm::transfer::send_with_fds(control.as_fd(), REQUEST, &[theirs.as_fd()])
        {
            if is_disconnect(&e) {
                server_failed();
                continue;
            }
            return Err(Error::io("fork server request", e));
        }
        drop(theirs);
        if let Err(e) = bootstrap::send_frame(mine.as_fd(), BOOT, &payload, &fds) {
            if is_disconnect(&e) {
                server_failed();
                continue;
            }
            return Err(Error::io("fork server request", e));
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
                // Hung up without an answer: the server died with our request.
                let before = lock_client().is_some();
                server_failed();
                if before && lock_client().is_none() {
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

/// The fork server's life: it runs before `main` of a freshly spawned copy of the program, so
/// it is single-threaded and forks safely.
pub(crate) fn serve(control: OwnedFd) -> ! {
    sys::ignore_sigint(true);
    if ipc_shm::transfer::send_with_fds(control.as_fd(), READY, &[]).is_err() {
        sys::exit_now(0)
    }
    let mut kids: Vec<Kid> = Vec::new();
    loop {
        let ready = {
            let mut fds = vec![control.as_fd()];
            fds.extend(kids.iter().map(|k| k.pidfd.as_fd()));
            match sys::poll_readable(&fds, None) {
                Ok(r) => r,
                Err(_) => sys::exit_now(1),
            }
        };
        // Relay the statuses of the children that ended (back to front: indices stay valid).
        for i in (0..kids.len()).rev() {
            if !ready[i + 1] {
                continue;
            }
            if let Ok(Some(code)) = sys::reap(kids[i].pidfd.as_fd(), false) {
                let kid = kids.swap_remove(i);
                let _ = bootstrap::send_frame(kid.sock.as_fd(), STATUS, &code.to_le_bytes(), &[]);
            }
        }
        if !ready[0] {
            continue;
        }
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        match ipc_shm::transfer::recv_with_fds(control.as_fd(), &mut buf, &mut got, 1) {
            Ok(0) => break, // every client is gone
            Ok(n) if &buf[..n] == REQUEST && got.len() == 1 => {}
            Ok(_) | Err(_) => continue, // malformed packet: ignore it
        }
        let sock = got.pop().expect("one descriptor");
        // A client that stalls must not stall the others for long.
        let _ = rustix::net::sockopt::set_socket_timeout(
            &sock,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(10)),
        );
        let (msg, fds) = match bootstrap::read_boot(sock.as_fd()) {
            Ok(x) => x,
            Err(e) => {
                let _ = bootstrap::send_frame(sock.as_fd(), REFUSED, e.as_bytes(), &[]);
                continue;
            }
        };
        let _ = rustix::net::sockopt::set_socket_timeout(
            &sock,
            rustix::net::sockopt::Timeout::Recv,
            None,
        );
        // SAFETY: the server is single-threaded (it runs before main and starts no thread), so
        // the child may run any code.
        match unsafe { sys::fork() } {
            Ok(Forked::Child) => {
                drop(control);
                drop(kids);
                sys::ignore_sigint(false);
                bootstrap::become_child(sock, msg, fds, StartMethod::ForkServer)
            }
            Ok(Forked::Parent(pid)) => {
                drop(fds);
                match sys::pidfd_open(pid) {
                    Ok(pidfd) => kids.push(Kid { pidfd, sock }),
                    Err(_) => {
                        // Cannot watch it: reap it the blocking way is not possible without
                        // stalling; tell the client its status is unknown.
                        let _ = bootstrap::send_frame(
                            sock.as_fd(),
                            STATUS,
                            &super::LOST_STATUS.to_le_bytes(),
                            &[],
                        );
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
