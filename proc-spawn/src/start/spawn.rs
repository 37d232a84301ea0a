//! `Spawn`: `posix_spawn` of this very executable; the child reads its orders from the bootstrap
//! socket before `main` (see [`crate::bootstrap`]).

use std::ffi::CString;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::process::Signal;

use super::{await_ack, boot_message, ChildHandle, ChildSpec};
use crate::bootstrap::{self, BOOT, MARKER};
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::process::TargetJob;
use crate::sys;

/// Spawns a child running `job`; returns once the child has acknowledged its orders.
pub(crate) fn start(job: &dyn TargetJob, spec: &ChildSpec) -> Result<ChildHandle> {
    let (payload, fds) = boot_message(job, spec, StartMethod::Spawn)?;
    let (mine, theirs) = sys::stream_pair().map_err(|e| Error::io("socketpair", e))?;
    let pid = sys::spawn_self(
        &bootstrap::child_argv(),
        bootstrap::child_env(),
        theirs.as_fd(),
        |fd| CString::new(format!("{MARKER}=child:{fd}")).expect("no NUL"),
    )
    .map_err(|e| Error::io("posix_spawn", e))?;
    drop(theirs);
    // The child is ours and not reaped yet: its pid cannot have been reused.
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            sys::kill_and_reap(pid);
            return Err(Error::io("pidfd_open", e));
        }
    };
    // A child that dies early makes this fail (EPIPE); the acknowledgement tells why.
    let _ = bootstrap::send_frame(mine.as_fd(), BOOT, &payload, &fds);
    drop(fds);
    match await_ack(mine.as_fd()) {
        Ok(_) => {
            let chan = if spec.want_result { Some(mine) } else { None };
            Ok(ChildHandle::new(pid, spec, pidfd, false, chan))
        }
        Err(e) => {
            // Reap the failed child (it has hung up: it is exiting, or must be made to).
            let code = match sys::poll_readable(&[pidfd.as_fd()], Some(Duration::from_secs(5))) {
                Ok(r) if r[0] => sys::reap(pidfd.as_fd(), true).ok().flatten(),
                _ => {
                    let _ = sys::pidfd_signal(pidfd.as_fd(), Signal::KILL);
                    sys::reap(pidfd.as_fd(), true).ok().flatten()
                }
            };
            Err(match (e, code) {
                (Error::NotInitialized { detail }, Some(code)) if detail.is_empty() => {
                    Error::NotInitialized {
                        detail: format!(" (it ended with exit code {code})"),
                    }
                }
                (e, _) => e,
            })
        }
    }
}
