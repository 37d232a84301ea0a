//! Starting children (one module per start method) and watching them: [`ChildHandle`], shared
//! by the [`Process`](crate::Process) that started a child and this process's registry of
//! children.

pub(crate) mod fork;
pub(crate) mod forkserver;
pub(crate) mod spawn;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::bootstrap::{self, Wire};
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::process::ProcessInfo;
use crate::sys;

/// The exit code reported for a fork-server child whose status was lost (the server died
/// before it could relay it), as CPython reports 255 in that case.
pub(crate) const LOST_STATUS: i32 = 255;

/// What a start method needs to know about the child to create.
pub(crate) struct ChildSpec {
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) id_path: Vec<u32>,
    pub(crate) want_result: bool,
}

/// A started child, as seen by the process that started it.
pub(crate) struct ChildHandle {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// Readable once the child has ended; under `Fork`/`Spawn` also the handle to reap it.
    pidfd: OwnedFd,
    /// `ForkServer`: the OS parent is the server, which relays the exit status over `chan`.
    relayed: bool,
    state: Mutex<State>,
}

struct State {
    /// The socket the child's result (and, when relayed, its status) arrives on (shared with
    /// waiters that poll it without holding the state lock).
    chan: Option<Arc<OwnedFd>>,
    status: Option<i32>,
    result: Option<(Vec<u8>, Vec<OwnedFd>)>,
}

impl ChildHandle {
    pub(crate) fn new(
        pid: u32,
        spec: &ChildSpec,
        pidfd: OwnedFd,
        relayed: bool,
        chan: Option<OwnedFd>,
    ) -> ChildHandle {
        ChildHandle {
            pid,
            name: spec.name.clone(),
            daemon: spec.daemon,
            pidfd,
            relayed,
            state: Mutex::new(State {
                chan: chan.map(Arc::new),
                status: None,
                result: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn info(&self) -> ProcessInfo {
        ProcessInfo::new(self.name.clone(), self.pid, self.daemon)
    }

    /// A descriptor readable once the child has ended (its pidfd).
    pub(crate) fn sentinel(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The exit code if the child has ended (reaping it), without blocking.
    pub(crate) fn try_status(&self) -> Result<Option<i32>> {
        self.wait(Some(Duration::ZERO))
    }

    /// Waits for the child to end, at most `timeout` (`None`: forever); its exit code, or
    /// `None` if it is still running.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            {
                let mut st = self.state();
                if let Some(s) = st.status {
                    return Ok(Some(s));
                }
                if self.relayed {
                    drain(&mut st, true)?;
                    if st.status.is_none() && st.chan.is_none() {
                        st.status = Some(LOST_STATUS);
                    }
                } else {
                    // Read what the child wrote before reaping: a large result must not leave
                    // it blocked in a write while we wait for it to exit.
                    drain(&mut st, false)?;
                    if let Some(code) =
                        sys::reap(self.pidfd.as_fd(), false).map_err(|e| Error::io("waitid", e))?
                    {
                        drain(&mut st, false)?;
                        st.chan = None;
                        st.status = Some(code);
                    }
                }
                if let Some(s) = st.status {
                    return Ok(Some(s));
                }
            }
            let left = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    Some(d - now)
                }
                None => None,
            };
            // Wait with the state unlocked (other threads may look at the child meanwhile);
            // the channel is kept alive by its `Arc` even if another waiter drops it.
            let chan = self.state().chan.clone();
            let mut borrowed: Vec<BorrowedFd<'_>> = Vec::with_capacity(2);
            if !self.relayed {
                borrowed.push(self.pidfd.as_fd());
            }
            if let Some(c) = chan.as_ref() {
                borrowed.push(c.as_fd());
            }
            if borrowed.is_empty() {
                continue;
            }
            sys::poll_readable(&borrowed, left).map_err(|e| Error::io("poll", e))?;
        }
    }

    /// Sends `sig` unless the child is known to have ended.
    pub(crate) fn signal(&self, sig: Signal) -> Result<()> {
        let st = self.state();
        if st.status.is_some() {
            return Ok(());
        }
        sys::pidfd_signal(self.pidfd.as_fd(), sig).map_err(|e| Error::io("pidfd_send_signal", e))
    }

    /// The result frame the child sent, if any (taken once).
    pub(crate) fn take_result(&self) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
        self.state().result.take()
    }
}

/// Reads the complete frames waiting on `chan` (blocking only inside a frame). `relayed`: a
/// `STATUS` frame carries the exit code; the end of the stream closes `chan`.
fn drain(st: &mut State, relayed: bool) -> Result<()> {
    loop {
        let Some(chan) = st.chan.as_ref() else {
            return Ok(());
        };
        if !sys::readable_now(chan.as_fd()).map_err(|e| Error::io("poll", e))? {
            return Ok(());
        }
        match bootstrap::recv_frame(chan.as_fd()) {
            Ok(Some((bootstrap::RESULT, payload, fds))) => st.result = Some((payload, fds)),
            Ok(Some((bootstrap::STATUS, payload, _))) if relayed && payload.len() == 4 => {
                st.status = Some(i32::from_le_bytes(payload[..4].try_into().expect("4")));
                st.chan = None;
            }
            Ok(Some(_)) => {} // nothing else is expected after the acknowledgement
            Ok(None) | Err(_) => st.chan = None,
        }
    }
}

/// Decodes a `RESULT` frame into the value or the panic message.
pub(crate) fn decode_result<R: serde::de::DeserializeOwned>(
    payload: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<std::result::Result<R, String>> {
    let wire: Wire = postcard::from_bytes(payload).map_err(|e| Error::Transfer {
        what: "result",
        source: ipc_shm::TransferError::Codec(e.to_string()),
    })?;
    match wire {
        Wire::Value(bytes) => ipc_shm::transfer::decode(&bytes, fds)
            .map(Ok)
            .map_err(|source| Error::Transfer {
                what: "result",
                source,
            }),
        Wire::Panic(msg) => Ok(Err(msg)),
    }
}

/// Waits for the child's acknowledgement on `sock`: its pid (and, from a fork-server child, its
/// pidfd). `exited` tells, after a failure, how the child ended if that can be known.
pub(crate) fn await_ack(sock: BorrowedFd<'_>) -> Result<(u32, Option<OwnedFd>)> {
    let ready = sys::poll_readable(&[sock], Some(bootstrap::BOOT_TIMEOUT))
        .map_err(|e| Error::io("poll", e))?;
    if !ready[0] {
        return Err(Error::NotInitialized {
            detail: format!(
                " (no answer within {} s)",
                bootstrap::BOOT_TIMEOUT.as_secs()
            ),
        });
    }
    match bootstrap::recv_frame(sock) {
        Ok(Some((bootstrap::ACK, payload, mut fds))) if payload.len() == 4 => {
            let pid = u32::from_le_bytes(payload[..4].try_into().expect("4"));
            Ok((pid, fds.pop()))
        }
        Ok(Some((bootstrap::REFUSED, payload, _))) => Err(Error::Refused(
            String::from_utf8_lossy(&payload).into_owned(),
        )),
        Ok(Some((bootstrap::STATUS, payload, _))) if payload.len() == 4 => {
            let code = i32::from_le_bytes(payload[..4].try_into().expect("4"));
            Err(Error::NotInitialized {
                detail: format!(" (it ended with exit code {code})"),
            })
        }
        Ok(Some((kind, _, _))) => Err(Error::Refused(format!(
            "unexpected message kind {kind} instead of an acknowledgement"
        ))),
        Ok(None) | Err(_) => Err(Error::NotInitialized {
            detail: String::new(),
        }),
    }
}

/// Starts a child running `job` with `method`.
pub(crate) fn start(
    method: StartMethod,
    job: crate::process::Job,
    spec: &ChildSpec,
) -> std::result::Result<ChildHandle, (Error, Option<crate::process::Job>)> {
    use crate::process::Job;
    match (method, job) {
        (StartMethod::Fork, job) => fork::start(job, spec),
        (m, Job::Closure(c)) => Err((Error::ClosureNeedsFork(m), Some(Job::Closure(c)))),
        (StartMethod::Spawn, Job::Target(t)) => match spawn::start(&*t, spec) {
            Ok(h) => Ok(h),
            Err(e) => Err((e, Some(Job::Target(t)))),
        },
        (StartMethod::ForkServer, Job::Target(t)) => match forkserver::start(&*t, spec) {
            Ok(h) => Ok(h),
            Err(e) => Err((e, Some(Job::Target(t)))),
        },
    }
}

/// The `BOOT` message for `job` and the descriptors to send with it (the arguments' handles,
/// then, for a daemon, this process's pidfd: a daemon watches it to die with its parent; the
/// others never use it, so it is not sent).
pub(crate) fn boot_message(
    job: &dyn crate::process::TargetJob,
    spec: &ChildSpec,
    method: StartMethod,
) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let (args, mut fds) = job.encode().map_err(|source| Error::Transfer {
        what: "arguments",
        source,
    })?;
    let (target, tramp) = job.addresses();
    let arg_fds = fds.len() as u32;
    if spec.daemon {
        fds.push(crate::process::self_pidfd()?);
    }
    let msg = bootstrap::BootMsg {
        version: bootstrap::VERSION,
        identity: sys::exe_info().identity.clone(),
        target: bootstrap::offset_of(target),
        trampoline: bootstrap::offset_of(tramp),
        args,
        arg_fds,
        parent_pidfd: spec.daemon,
        name: spec.name.clone(),
        daemon: spec.daemon,
        id_path: spec.id_path.clone(),
        parent: crate::process::current_process(),
        method: method.to_u8(),
    };
    let bytes = postcard::to_allocvec(&msg).map_err(|e| Error::Transfer {
        what: "arguments",
        source: ipc_shm::TransferError::Codec(e.to_string()),
    })?;
    Ok((bytes, fds))
}
