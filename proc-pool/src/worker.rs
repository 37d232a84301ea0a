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
    r.map_err(item_error)
}

/// The [`ItemError`] of a caught panic.
fn item_error(payload: Box<dyn std::any::Any + Send>) -> ItemError {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    };
    let location = LAST_LOCATION.with(|l| l.borrow_mut().take());
    ItemError::Panicked { message, location }
}

/// Runs `f` over `items` in order: all values when none panics, each item's outcome otherwise.
///
/// The whole chunk runs under one `catch_unwind` (the common case costs nothing per item);
/// after a panic, the item that panicked is the one after the values collected so far, and the
/// rest run one by one, each caught.
pub(crate) fn run_chunk<A, R>(items: Vec<A>, mut f: impl FnMut(A) -> R) -> ChunkResults<R> {
    install_hook();
    let n = items.len();
    let mut it = items.into_iter();
    let mut oks: Vec<R> = Vec::with_capacity(n);
    IN_TASK.with(|t| t.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        for a in it.by_ref() {
            oks.push(f(a));
        }
    }));
    IN_TASK.with(|t| t.set(false));
    match r {
        Ok(()) => ChunkResults::All(oks),
        Err(payload) => {
            let mut each: Vec<Result<R, ItemError>> = Vec::with_capacity(n);
            each.extend(oks.into_iter().map(Ok));
            each.push(Err(item_error(payload)));
            each.extend(it.map(|a| catch_task(|| f(a))));
            ChunkResults::Each(each)
        }
    }
}

/// Answers wait at most this long for company before they are sent.
const FLUSH_AFTER: Duration = Duration::from_micros(200);
/// At most this many answers per message.
const FLUSH_COUNT: usize = 256;

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
    // The time the last chunk ended, while nothing else (a receive, a send) happened since:
    // one clock read per chunk instead of three.
    let mut last: Option<Instant> = None;
    let mut done: u64 = 0;
    loop {
        let limit_reached = max_tasks.is_some_and(|k| done >= k);
        let must_flush = queue.is_empty()
            || limit_reached
            || outbox.len() >= FLUSH_COUNT
            || oldest.is_some_and(|t| {
                last.unwrap_or_else(Instant::now)
                    .saturating_duration_since(t)
                    >= FLUSH_AFTER
            });
        if must_flush && !outbox.is_empty() {
            if conn.send(&outbox).is_err() {
                // The pool is gone (or terminated us): nothing to answer to.
                return;
            }
            outbox.clear();
            oldest = None;
            last = None;
        }
        if limit_reached {
            return;
        }
        let chunk = match queue.pop_front() {
            Some(c) => c,
            None => match conn.recv::<ToWorker>() {
                Ok(ToWorker::Tasks(chunks)) => {
                    queue.extend(chunks);
                    last = None;
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
        let t0 = last.unwrap_or_else(Instant::now);
        let outcome = chunk.func.call(&chunk.args, unwrap_fds(chunk.fds));
        let t1 = Instant::now();
        last = Some(t1);
        let nanos = u64::try_from(t1.saturating_duration_since(t0).as_nanos()).unwrap_or(u64::MAX);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn twelve_over(x: u32) -> u32 {
        if x == 0 {
            panic!("division of 12 by zero");
        }
        12 / x
    }

    #[test]
    fn a_chunk_without_panics_gives_all_values() {
        assert_eq!(
            run_chunk(vec![1, 2, 3], twelve_over),
            ChunkResults::All(vec![12, 6, 4])
        );
        assert_eq!(
            run_chunk(Vec::<u32>::new(), twelve_over),
            ChunkResults::All(vec![])
        );
    }

    #[test]
    fn each_panic_fails_only_its_item() {
        let out = run_chunk(vec![1, 2, 0, 4, 0, 6], twelve_over);
        let ChunkResults::Each(each) = out else {
            panic!("expected each item's outcome, got {out:?}");
        };
        assert_eq!(each.len(), 6);
        let values: Vec<Option<u32>> = each.iter().map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(
            values,
            vec![Some(12), Some(6), None, Some(3), None, Some(2)]
        );
        for i in [2, 4] {
            match &each[i] {
                Err(ItemError::Panicked { message, location }) => {
                    assert_eq!(message, "division of 12 by zero");
                    assert!(location.as_deref().is_some_and(|l| l.contains("worker.rs")));
                }
                other => panic!("item {i}: {other:?}"),
            }
        }
    }
}
