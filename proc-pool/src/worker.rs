//! The worker process: its boot arguments, its loop, and how it runs one task.
//!
//! A worker is a daemon [`proc_spawn::Process`] running [`worker_main`] with a [`WorkerBoot`]:
//! its end of the duplex connection to the pool, the initializer, the task limit. It ignores
//! `SIGINT` (a Ctrl-C in the terminal reaches the whole process group; the parent decides what
//! to do, PP12), runs the initializer, then runs chunks in arrival order, answering each before
//! starting the next, until told to stop, until its task limit, or until the pool goes away.
//!
//! A panicking task is caught and reported as data (its message and location); the worker's
//! panic hook stays quiet for task panics (Python prints nothing in the worker either: the
//! exception goes to the parent) and goes on with the next task.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::Instant;

use ipc_channel_core::Connection;
use serde::{Deserialize, Serialize};

use crate::fnref::FnRef;
use crate::wire::{unwrap_fds, Fd, FromWorker, ItemError, ToWorker, WireChunk};

/// What a worker is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerBoot {
    pub(crate) conn: Connection,
    pub(crate) init: Option<InitCall>,
    /// Exit after this many chunks (Python's `maxtasksperchild`).
    pub(crate) max_tasks: Option<u64>,
}

/// The initializer: a `fn(A)` and its encoded argument (as a one-item chunk).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitCall {
    pub(crate) func: FnRef,
    pub(crate) args: Vec<u8>,
    pub(crate) fds: Vec<Fd>,
}

thread_local! {
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    static LAST_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_TASK.try_with(|t| t.get()).unwrap_or(false) {
                let loc = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                let _ = LAST_LOCATION.try_with(|l| *l.borrow_mut() = loc);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs one task, turning a panic into an [`ItemError`] (quietly: the hook records where).
pub(crate) fn catch_task<R>(f: impl FnOnce() -> R) -> Result<R, ItemError> {
    install_hook();
    IN_TASK.with(|t| t.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    IN_TASK.with(|t| t.set(false));
    r.map_err(|payload| {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_string()
        };
        let location = LAST_LOCATION.with(|l| l.borrow_mut().take());
        ItemError::Panicked { message, location }
    })
}

/// The body of every worker process.
pub(crate) fn worker_main(boot: WorkerBoot) {
    crate::sys::ignore_sigint();
    install_hook();
    let WorkerBoot {
        conn,
        init,
        max_tasks,
    } = boot;
    if let Some(init) = init {
        if let Err(message) = run_init(init) {
            let _ = conn.send(&FromWorker::InitFailed { message });
            return;
        }
    }
    let mut queue: VecDeque<WireChunk> = VecDeque::new();
    let mut done: u64 = 0;
    loop {
        if max_tasks.is_some_and(|k| done >= k) {
            return;
        }
        let chunk = match queue.pop_front() {
            Some(c) => c,
            None => match conn.recv::<ToWorker>() {
                Ok(ToWorker::Tasks(chunks)) => {
                    queue.extend(chunks);
                    continue;
                }
                Ok(ToWorker::Stop) => return,
                Err(ipc_channel_core::Error::Eof) => return,
                Err(e) => {
                    eprintln!(
                        "proc-pool worker {}: cannot read its tasks: {e}",
                        std::process::id()
                    );
                    return;
                }
            },
        };
        let started = Instant::now();
        let outcome = chunk.func.call(&chunk.args, unwrap_fds(chunk.fds));
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let reply = match outcome {
            Ok((results, fds)) => FromWorker::Done {
                id: chunk.id,
                nanos,
                results,
                fds: crate::wire::wrap_fds(fds),
            },
            Err(error) => FromWorker::Failed {
                id: chunk.id,
                error,
            },
        };
        if conn.send(&reply).is_err() {
            // The pool is gone (or terminated us): nothing to answer to.
            return;
        }
        done += 1;
    }
}

fn run_init(init: InitCall) -> Result<(), String> {
    let (bytes, fds) = init
        .func
        .call(&init.args, unwrap_fds(init.fds))
        .map_err(|e| crate::Error::from(e).to_string())?;
    let out: Vec<Result<(), ItemError>> = ipc_shm::transfer::decode(&bytes, fds)
        .map_err(|e| format!("cannot decode the initializer's outcome: {e}"))?;
    match out.into_iter().next() {
        Some(Ok(())) => Ok(()),
        Some(Err(ItemError::Panicked { message, .. })) => Err(message),
        None => Err("the initializer did not run".into()),
    }
}
