//! The worker process: its boot arguments, its loop, and how it runs one task.
//!
//! A worker is a daemon [`proc_spawn::Process`] running [`worker_main`] with a [`WorkerBoot`]:
//! its end of the duplex connection to the pool, the initializer, the task limit. It ignores
//! `SIGINT` (a Ctrl-C in the terminal reaches the whole process group; the parent decides what
//! to do, PP12), runs the initializer, then runs chunks in arrival order (counting each one it
//! starts in shared memory, and sending answers in small batches: see the `wire` module), until
//! told to stop, until its task limit, or until the pool goes away.
//!
//! A panicking task is caught and reported as data (its message and location); the worker's
//! panic hook stays quiet for task panics (Python prints nothing in the worker either: the
//! exception goes to the parent) and goes on with the next task.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

use ipc_channel_core::Connection;
use ipc_shm::RawValue;
use serde::{Deserialize, Serialize};

use crate::fnref::FnRef;
use crate::wire::{unwrap_fds, ChunkResults, Fd, FromWorker, ItemError, ToWorker, WireChunk};

/// What a worker is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerBoot {
    pub(crate) conn: Connection,
    pub(crate) init: Option<InitCall>,
    /// Exit after this many chunks (Python's `maxtasksperchild`).
    pub(crate) max_tasks: Option<u64>,
    /// How many chunks this worker has started (bumped before each one, read by the pool
    /// when the worker dies).
    pub(crate) started: RawValue<u64>,
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

/// Answers wait at most this long for company before they are sent.
const FLUSH_AFTER: Duration = Duration::from_micros(200);
/// At most this many answers per message.
const FLUSH_COUNT: usize = 64;

/// The body of every worker process.
pub(crate) fn worker_main(boot: WorkerBoot) {
    let _ = proc_spawn::ignore_sigint();
    install_hook();
    let WorkerBoot {
        conn,
        init,
        max_tasks,
        started,
    } = boot;
    if let Some(init) = init {
        if let Err(message) = run_init(init) {
            let _ = conn.send(&vec![FromWorker::InitFailed { message }]);
            return;
        }
    }
    let mut queue: VecDeque<WireChunk> = VecDeque::new();
    let mut outbox: Vec<FromWorker> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let mut done: u64 = 0;
    loop {
        let limit_reached = max_tasks.is_some_and(|k| done >= k);
        let must_flush = queue.is_empty()
            || limit_reached
            || outbox.len() >= FLUSH_COUNT
            || oldest.is_some_and(|t| t.elapsed() >= FLUSH_AFTER);
        if must_flush && !outbox.is_empty() {
            if conn.send(&outbox).is_err() {
                // The pool is gone (or terminated us): nothing to answer to.
                return;
            }
            outbox.clear();
            oldest = None;
        }
        if limit_reached {
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
        // Before anything of the chunk is decoded: from now on the pool will not send it to
        // another worker.
        started.store(done + 1);
        let t0 = Instant::now();
        let outcome = chunk.func.call(&chunk.args, unwrap_fds(chunk.fds));
        let nanos = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        outbox.push(match outcome {
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
        });
        oldest.get_or_insert(t0);
        done += 1;
    }
}

fn run_init(init: InitCall) -> Result<(), String> {
    let (bytes, fds) = init
        .func
        .call(&init.args, unwrap_fds(init.fds))
        .map_err(|e| crate::Error::from(e).to_string())?;
    let out: ChunkResults<()> = ipc_shm::transfer::decode(&bytes, fds)
        .map_err(|e| format!("cannot decode the initializer's outcome: {e}"))?;
    match out {
        ChunkResults::All(v) if v.len() == 1 => Ok(()),
        ChunkResults::Each(v) => match v.into_iter().next() {
            Some(Err(ItemError::Panicked { message, .. })) => Err(message),
            _ => Err("the initializer did not run".into()),
        },
        ChunkResults::All(_) => Err("the initializer did not run".into()),
    }
}
