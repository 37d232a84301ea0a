//! `Fork`: the child is a copy of this process and runs the job directly.
//!
//! This file holds the code that runs in the child between `fork()` and the job. It touches
//! only what the forking thread holds locked across the fork (this process's state, the fork
//! server's client state), closes descriptors, and allocates (glibc's `fork` leaves `malloc`
//! usable in the child). Everything else a child might need from another thread's locks is
//! the documented danger of forking a multithreaded process.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use super::{ChildHandle, ChildSpec};
use crate::bootstrap;
use crate::context::{self, StartMethod};
use crate::error::Error;
use crate::process::{self, Job, ProcessInfo};
use crate::sys::{self, Forked};

/// Forks a child running `job`. On failure the job is handed back (nothing ran it).
pub(crate) fn start(
    job: Job,
    spec: &ChildSpec,
) -> std::result::Result<ChildHandle, (Error, Option<Job>)> {
    let (mine, theirs) = if spec.want_result {
        match sys::stream_pair() {
            Ok((a, b)) => (Some(a), Some(b)),
            Err(e) => return Err((Error::io("socketpair", e), Some(job))),
        }
    } else {
        (None, None)
    };
    let parent = process::current_process();
    // The standard streams' locks are held across the fork (as Python holds its own locks), so
    // that a thread printing at that moment cannot leave them locked forever in the child; the
    // buffered output is flushed, or it would be written twice, once by each process.
    let mut out = std::io::stdout().lock();
    let _ = out.flush();
    let err = std::io::stderr().lock();
    let server_state = super::forkserver::lock_client();
    let mut global = process::global();
    // Only a daemon watches its parent's pidfd (to die with it).
    let parent_pidfd = if spec.daemon {
        match global.self_pidfd() {
            Ok(fd) => Some(fd),
            Err(e) => return Err((e, Some(job))),
        }
    } else {
        None
    };
    // SAFETY: in the child only this thread exists. It uses the state guarded by the four locks
    // this thread holds (consistent, since their holder is this thread), `malloc` (made
    // fork-safe by glibc), and then runs the job: the documented contract of `Fork`.
    match unsafe { sys::fork() } {
        Err(e) => Err((Error::io("fork", e), Some(job))),
        Ok(Forked::Child) => {
            drop(mine);
            let me = ProcessInfo::new(spec.name.clone(), sys::getpid(), spec.daemon);
            global.set_child(me, parent, spec.id_path.clone());
            drop(global);
            drop(server_state);
            drop(err);
            drop(out);
            context::set_child_method(StartMethod::Fork);
            if let Some(fd) = parent_pidfd {
                process::watch_parent(fd);
            }
            child(job, theirs)
        }
        Ok(Forked::Parent(pid)) => {
            drop(global);
            drop(server_state);
            drop(err);
            drop(out);
            drop(theirs);
            drop(parent_pidfd);
            // Our child, not reaped yet: its pid cannot have been reused.
            match sys::pidfd_open(pid) {
                Ok(pidfd) => Ok(ChildHandle::new(pid, spec, pidfd, false, mine)),
                Err(e) => {
                    // Cannot watch it: stop it and reap it rather than leave it unmanaged.
                    sys::kill_and_reap(pid);
                    Err((Error::io("pidfd_open", e), None))
                }
            }
        }
    }
}

/// The child's life after the fork: run the job, exit. Nothing unwinds out of here: that would
/// run the rest of the parent's program (the copy of its stack) in the child.
fn child(job: Job, reply: Option<OwnedFd>) -> ! {
    sys::stdin_to_null();
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        job.run_here(reply.as_ref().map(|r| r.as_fd()))
    }))
    .unwrap_or(1);
    drop(reply);
    bootstrap::finish_child(code)
}
