//! [`Pool`] and [`PoolBuilder`]: worker processes, the dispatcher and result threads, and the
//! bookkeeping that knows which chunk each worker holds.
//!
//! # How work flows
//!
//! A submission (`map`, `apply`, an `imap` step) encodes its chunks at once, in the caller's
//! thread (an argument that cannot be encoded is an error there, as in Python), and queues
//! them. Chunks are assigned to the least-loaded workers, at most `window` chunks in flight per
//! worker; the window adapts to how long chunks take (about 2 ms of queued work per worker, from
//! 1 to 1024 chunks), so trivial tasks are sent in batches and slow ones one at a time. Each
//! worker has its own duplex connection; the caller's thread sends directly (no thread hop on
//! the `apply_async` path); refills after results go through a dispatcher thread, so the result
//! thread never blocks on a send (which could deadlock with a worker blocked sending a result).
//! Sends to one worker are ordered by tickets taken under the pool's lock, so a worker receives
//! its chunks in the order the pool recorded them.
//!
//! The result thread waits in `epoll` on every worker's connection and every worker's pidfd
//! (sentinel), registered once (the set changes only when the workers do), and reads one
//! message per wake-up. A result completes its chunk; a worker whose pidfd becomes readable has died: its remaining
//! results are read, the chunks it had started and not answered (the one it was running, and
//! any whose answers it had not sent yet: the worker counts the chunks it starts in shared
//! memory) fail with [`Error::WorkerLost`], the chunks it never started go back to the front of
//! the queue, and the dispatcher starts a replacement. The dispatcher also replaces workers that retire after
//! `max_tasks_per_child` chunks.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use ipc_channel_core::{Connection, Pipe};
use ipc_shm::{transfer, RawValue};
use proc_spawn::{Context, Process, StartMethod};
use rustix::event::{PollFd, PollFlags};
use serde::de::DeserializeOwned;
use serde::ser::SerializeTupleVariant;
use serde::{Serialize, Serializer};

use crate::async_result::{
    ApplyDeliver, AsyncResult, Callbacks, Cell, ChunkOutcome, Decoding, Deliver, Items, MapDeliver,
    Sink,
};
use crate::error::{Error, Result};
use crate::fnref::FnRef;
use crate::imap::{IMap, ImapDeliver, ImapState};
use crate::waiting::{wait_until, Waited};
use crate::wire::{wrap_fds, FromWorker, ToWorker};
use crate::worker::{worker_main, InitCall, WorkerBoot};

/// The most chunks in flight to one worker.
const MAX_WINDOW: usize = 1024;
/// The work (in nanoseconds of chunk run time) the window aims to keep queued per worker.
const WINDOW_TARGET_NANOS: f64 = 2_000_000.0;
/// A batch message stops growing past this many bytes of arguments.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// The largest encoded chunk accepted (the connections' message limit is 1 GiB).
const MAX_CHUNK_BYTES: usize = (1 << 30) - (1 << 20);
/// `map` submits its chunks in groups of at most this many...
const SUBMIT_GROUP_CHUNKS: usize = 256;
/// ...or this many bytes of arguments, so that the workers start while the rest is encoded.
const SUBMIT_GROUP_BYTES: usize = 16 << 10;
/// `imap` keeps at most this many chunks per worker in flight.
const IMAP_CHUNKS_PER_WORKER: usize = 4;

// ---------------------------------------------------------------------------------------------
// Chunks

/// One chunk's encoded arguments; shared between the queue, the worker's in-flight list and a
/// send in progress, so a chunk can be sent again to another worker after a death.
struct ChunkData {
    id: u64,
    func: FnRef,
    args: Vec<u8>,
    fds: Vec<OwnedFd>,
    n_items: usize,
    /// Decodes and drops the arguments (see [`ChunkData::discard`]).
    discard: fn(&[u8], Vec<OwnedFd>),
}

/// Decodes a chunk's arguments as `Vec<T>` and drops them.
fn discard_as<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) {
    let _ = transfer::decode::<Vec<T>>(bytes, fds);
}

impl ChunkData {
    /// Releases what the encoded arguments hold: encoding a shared-memory handle takes a
    /// reference on its block for the message in flight, which the receiver adopts when it
    /// decodes. A chunk failed before any worker decoded it is decoded here instead, so the
    /// reference is not leaked. Only for chunks certainly never decoded elsewhere.
    fn discard(&self) {
        let fds: Vec<OwnedFd> = self.fds.iter().filter_map(|f| f.try_clone().ok()).collect();
        if fds.len() == self.fds.len() {
            (self.discard)(&self.args, fds);
        }
    }
}

/// A chunk with where its results go.
struct Job {
    data: Arc<ChunkData>,
    sink: Arc<dyn Sink>,
    /// Its position in its submission.
    chunk: usize,
}

/// An encoded chunk before it gets an id.
struct Encoded {
    args: Vec<u8>,
    fds: Vec<OwnedFd>,
    n_items: usize,
    discard: fn(&[u8], Vec<OwnedFd>),
}

fn encode_chunk<T: Serialize + DeserializeOwned>(items: &[T]) -> Result<Encoded> {
    // Sized up front (postcard needs at most about the in-memory size for plain data), so
    // the buffer is not grown and copied as it fills.
    let mut args = Vec::with_capacity(
        std::mem::size_of_val(items)
            .saturating_add(16)
            .min(MAX_CHUNK_BYTES),
    );
    let fds = transfer::encode_into(items, &mut args)
        .map_err(|e| Error::Encode(format!("the arguments: {e}")))?;
    if args.len() > MAX_CHUNK_BYTES {
        return Err(Error::Encode(format!(
            "the arguments of one chunk take {} bytes, more than the {MAX_CHUNK_BYTES} a message may carry",
            args.len()
        )));
    }
    Ok(Encoded {
        args,
        fds,
        n_items: items.len(),
        discard: discard_as::<T>,
    })
}

/// Serializes exactly like `ToWorker::Tasks(Vec<WireChunk>)`, from borrowed chunks.
struct TasksRef<'a>(&'a [Arc<ChunkData>]);

/// A byte string (as `wire::bytes` writes it).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Serialize for TasksRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct ChunkRef<'a>(&'a ChunkData);
        impl Serialize for ChunkRef<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                struct Fds<'a>(&'a [OwnedFd]);
                impl Serialize for Fds<'_> {
                    fn serialize<S: Serializer>(
                        &self,
                        s: S,
                    ) -> std::result::Result<S::Ok, S::Error> {
                        use serde::ser::SerializeSeq;
                        let mut seq = s.serialize_seq(Some(self.0.len()))?;
                        for fd in self.0 {
                            seq.serialize_element(&FdRef(fd.as_fd()))?;
                        }
                        seq.end()
                    }
                }
                struct FdRef<'a>(BorrowedFd<'a>);
                impl Serialize for FdRef<'_> {
                    fn serialize<S: Serializer>(
                        &self,
                        s: S,
                    ) -> std::result::Result<S::Ok, S::Error> {
                        transfer::serialize_fd(self.0, "proc-pool argument descriptor", s)
                    }
                }
                let c = self.0;
                let mut st = s.serialize_struct("WireChunk", 4)?;
                st.serialize_field("id", &c.id)?;
                st.serialize_field("func", &c.func)?;
                st.serialize_field("args", &Bytes(&c.args))?;
                st.serialize_field("fds", &Fds(&c.fds))?;
                st.end()
            }
        }
        let chunks: Vec<ChunkRef<'_>> = self.0.iter().map(|c| ChunkRef(c)).collect();
        let mut tv = s.serialize_tuple_variant("ToWorker", 0, "Tasks", 1)?;
        tv.serialize_field(&chunks)?;
        tv.end()
    }
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Run,
    Closed,
    Terminated,
}

/// Orders the sends to one worker by ticket.
struct Gate {
    /// The next ticket to send, and how many senders wait for their turn.
    next: Mutex<(u64, usize)>,
    cv: Condvar,
}

struct Worker {
    pid: u32,
    process: Process,
    conn: Connection,
    sentinel: Arc<OwnedFd>,
    /// Chunks sent (or being sent) and not answered, in the order the worker runs them.
    outstanding: VecDeque<Job>,
    /// Chunks ever assigned (for `max_tasks_per_child`).
    assigned: u64,
    /// Chunks answered: the first of `outstanding` is the worker's chunk number `answered`.
    answered: u64,
    /// How many chunks the worker has started (it writes, the pool reads after its death).
    started: RawValue<u64>,
    gate: Arc<Gate>,
    tickets: u64,
}

struct State {
    phase: Phase,
    /// Set when an initializer failed: the error every pending and future task gets.
    broken: Option<Error>,
    pending: VecDeque<Job>,
    workers: Vec<Worker>,
    /// Workers being started by the dispatcher.
    starting: usize,
    next_id: u64,
    /// Chunks submitted and not yet completed (queued or in flight).
    unfinished: usize,
    ewma_nanos: Option<f64>,
    window: usize,
    need_dispatch: bool,
    /// Threads waiting in `join` (on `idle_cv`).
    joiners: usize,
    stop_threads: bool,
    worker_counter: u64,
}

/// The initializer: its function and its argument, encoded anew for each worker (an encoded
/// shared-memory handle may be decoded only once).
struct InitSpec {
    func: FnRef,
    encode: Box<dyn Fn() -> Result<Encoded> + Send + Sync>,
}

struct Config {
    processes: usize,
    ctx: Context,
    max_tasks: Option<u64>,
    init: Option<InitSpec>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// The dispatcher waits here.
    dispatch_cv: Condvar,
    /// `join` waits here for `unfinished == 0`.
    idle_cv: Condvar,
    wake_tx: UnixStream,
    config: Config,
    result_thread: OnceLock<ThreadId>,
}

/// A batch of chunks for one worker, sent outside the lock.
struct Batch {
    pid: u32,
    conn: Connection,
    gate: Arc<Gate>,
    ticket: u64,
    chunks: Vec<Arc<ChunkData>>,
}

/// Results to hand to their sinks outside the lock, in order.
type Deliveries = Vec<(Arc<dyn Sink>, usize, usize, ChunkOutcome)>;

fn deliver_all(d: Deliveries) {
    for (sink, chunk, n, outcome) in d {
        sink.chunk_done(chunk, n, outcome);
    }
}

/// Fails `job` with `e`; `unread` says no worker can have decoded its arguments (it was never
/// sent, or sent to a worker that died or stopped before running it), so they are released.
fn fail_job(d: &mut Deliveries, job: Job, e: &Error, unread: bool) {
    if unread {
        job.data.discard();
    }
    d.push((
        job.sink,
        job.chunk,
        job.data.n_items,
        ChunkOutcome::Failed(e.clone()),
    ));
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_result_thread(&self) {
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// How many workers the pool should have now.
    fn target(&self, st: &State) -> usize {
        let stopping = st.stop_threads || st.phase == Phase::Terminated || st.broken.is_some();
        let drained = st.phase == Phase::Closed && st.unfinished == 0;
        if stopping || drained {
            0
        } else {
            self.config.processes
        }
    }

    /// Starts one worker process.
    fn start_worker(&self, n: u64) -> Result<Worker> {
        let (mine, theirs) = Pipe::new().map_err(|e| Error::Channel(e.to_string()))?;
        let init = match &self.config.init {
            None => None,
            Some(i) => {
                let enc = (i.encode)()?;
                Some(InitCall {
                    func: i.func,
                    args: enc.args,
                    fds: wrap_fds(enc.fds),
                })
            }
        };
        let started =
            RawValue::new(0u64).map_err(|e| Error::Spawn(format!("shared counter: {e}")))?;
        let boot = WorkerBoot {
            conn: theirs,
            init,
            max_tasks: self.config.max_tasks,
            started: started.clone(),
        };
        let prefix = match self.config.ctx.start_method() {
            StartMethod::Fork => "Fork",
            StartMethod::Spawn => "Spawn",
            StartMethod::ForkServer => "ForkServer",
        };
        let mut process = self
            .config
            .ctx
            .process(worker_main, boot)
            .name(format!("{prefix}PoolWorker-{n}"))
            .daemon(true);
        process.start()?;
        let pid = process.pid().unwrap_or(0);
        let sentinel = process
            .sentinel()?
            .try_clone_to_owned()
            .map_err(|e| Error::Spawn(format!("dup of the sentinel: {e}")))?;
        Ok(Worker {
            pid,
            process,
            conn: mine,
            sentinel: Arc::new(sentinel),
            outstanding: VecDeque::new(),
            assigned: 0,
            answered: 0,
            started,
            gate: Arc::new(Gate {
                next: Mutex::new((0, 0)),
                cv: Condvar::new(),
            }),
            tickets: 0,
        })
    }

    /// Assigns queued chunks to workers with room in their window; the batches to send.
    fn assign(&self, st: &mut State) -> Vec<Batch> {
        let mut out: Vec<Batch> = Vec::new();
        if st.pending.is_empty() || st.phase == Phase::Terminated {
            return out;
        }
        let max_tasks = self.config.max_tasks;
        // Per worker: chunks taken now, and bytes.
        let mut taken: Vec<Vec<Arc<ChunkData>>> = vec![Vec::new(); st.workers.len()];
        let mut bytes: Vec<usize> = vec![0; st.workers.len()];
        while !st.pending.is_empty() {
            // While more chunks wait than there are workers, each worker may hold one more
            // than its window: the next chunk is already there when one ends (no idle gap
            // waiting for a refill, however long chunks take). The last chunks go only where
            // the window has room, to whichever worker frees up first (no worker left idle
            // at the end while another still has work queued).
            let window = if st.pending.len() > st.workers.len() {
                st.window.max(2)
            } else {
                st.window
            };
            // The least-loaded worker; with a task limit, the one closest to its limit first,
            // so that every worker runs exactly `max_tasks_per_child` chunks (a fresh worker
            // does not take work a half-used one could do).
            let key = |w: &Worker| match max_tasks {
                None => (0, w.outstanding.len()),
                Some(_) => (u64::MAX - w.assigned, w.outstanding.len()),
            };
            let mut best: Option<usize> = None;
            for (i, w) in st.workers.iter().enumerate() {
                let room = w.outstanding.len() < window
                    && max_tasks.is_none_or(|k| w.assigned < k)
                    && bytes[i] < MAX_BATCH_BYTES;
                if room && best.is_none_or(|b| key(w) < key(&st.workers[b])) {
                    best = Some(i);
                }
            }
            let Some(i) = best else { break };
            let job = st.pending.pop_front().expect("not empty");
            bytes[i] += job.data.args.len();
            taken[i].push(job.data.clone());
            let w = &mut st.workers[i];
            w.assigned += 1;
            w.outstanding.push_back(job);
        }
        for (i, chunks) in taken.into_iter().enumerate() {
            if chunks.is_empty() {
                continue;
            }
            let w = &mut st.workers[i];
            let ticket = w.tickets;
            w.tickets += 1;
            out.push(Batch {
                pid: w.pid,
                conn: w.conn.clone(),
                gate: w.gate.clone(),
                ticket,
                chunks,
            });
        }
        out
    }

    /// Sends batches in ticket order per worker; a failed send kills the worker (its death
    /// is then handled like any other).
    fn send_batches(&self, batches: Vec<Batch>) {
        for b in batches {
            let mut g = b.gate.next.lock().unwrap_or_else(|e| e.into_inner());
            while g.0 != b.ticket {
                g.1 += 1;
                g = b.gate.cv.wait(g).unwrap_or_else(|e| e.into_inner());
                g.1 -= 1;
            }
            let r = b.conn.send(&TasksRef(&b.chunks));
            g.0 += 1;
            // A notification is a system call: only when a sender waits for its turn.
            let waiting = g.1 > 0;
            drop(g);
            if waiting {
                b.gate.cv.notify_all();
            }
            if let Err(e) = r {
                if !matches!(
                    e,
                    ipc_channel_core::Error::Eof | ipc_channel_core::Error::Broken
                ) {
                    eprintln!("proc-pool: cannot send tasks to worker {}: {e}", b.pid);
                }
                self.kill_worker(b.pid);
            }
        }
    }

    fn kill_worker(&self, pid: u32) {
        let st = self.lock();
        if let Some(w) = st.workers.iter().find(|w| w.pid == pid) {
            let _ = w.process.kill();
        }
    }

    /// Queues the chunks of one submission (their positions start at `first_chunk`) and sends
    /// what the workers have room for.
    fn submit(
        &self,
        func: FnRef,
        chunks: Vec<Encoded>,
        first_chunk: usize,
        sink: Arc<dyn Sink>,
    ) -> Result<()> {
        let mut st = self.lock();
        if st.phase != Phase::Run {
            return Err(Error::NotRunning);
        }
        if let Some(e) = &st.broken {
            return Err(e.clone());
        }
        for (k, c) in chunks.into_iter().enumerate() {
            let id = st.next_id;
            st.next_id += 1;
            st.pending.push_back(Job {
                data: Arc::new(ChunkData {
                    id,
                    func,
                    args: c.args,
                    fds: c.fds,
                    n_items: c.n_items,
                    discard: c.discard,
                }),
                sink: sink.clone(),
                chunk: first_chunk + k,
            });
            st.unfinished += 1;
        }
        if self.result_thread.get() == Some(&std::thread::current().id()) {
            // A callback submitting from the result thread: never block it on a send.
            self.request_dispatch(&mut st);
            return Ok(());
        }
        let batches = self.assign(&mut st);
        if !st.pending.is_empty() {
            self.request_dispatch(&mut st);
        }
        drop(st);
        self.send_batches(batches);
        Ok(())
    }

    /// Processes results that came from worker `pid`.
    fn handle_replies(&self, pid: u32, replies: Vec<FromWorker>) -> Deliveries {
        let mut d: Deliveries = Vec::new();
        if replies.is_empty() {
            return d;
        }
        let mut st = self.lock();
        let st = &mut *st;
        let Some(wi) = st.workers.iter().position(|w| w.pid == pid) else {
            return d;
        };
        for reply in replies {
            match reply {
                FromWorker::Done {
                    id,
                    nanos,
                    results,
                    fds,
                } => {
                    let Some(job) = self.pop_answered(st, wi, id) else {
                        continue;
                    };
                    let sample = nanos as f64;
                    let e = match st.ewma_nanos {
                        None => sample,
                        Some(prev) => 0.7 * prev + 0.3 * sample,
                    };
                    st.ewma_nanos = Some(e);
                    st.window =
                        ((WINDOW_TARGET_NANOS / e.max(1.0)).ceil() as usize).clamp(1, MAX_WINDOW);
                    d.push((
                        job.sink,
                        job.chunk,
                        job.data.n_items,
                        ChunkOutcome::Encoded(results, crate::wire::unwrap_fds(fds)),
                    ));
                }
                FromWorker::Failed { id, error } => {
                    if let Some(job) = self.pop_answered(st, wi, id) {
                        // A refused chunk was not decoded; the others (partly) were.
                        let unread = matches!(error, crate::wire::ChunkError::Refused(_));
                        fail_job(&mut d, job, &Error::from(error), unread);
                    }
                }
                FromWorker::InitFailed { message } => {
                    let e = Error::InitializerFailed { message };
                    if st.broken.is_none() {
                        st.broken = Some(e.clone());
                    }
                    let jobs: Vec<Job> = st.workers[wi]
                        .outstanding
                        .drain(..)
                        .chain(st.pending.drain(..))
                        .collect();
                    st.unfinished -= jobs.len();
                    // The worker ran none of its chunks; the queued ones were never sent.
                    for job in jobs {
                        fail_job(&mut d, job, &e, true);
                    }
                }
            }
        }
        self.after_progress(st);
        d
    }

    /// The job worker `wi` just answered: the first in its list (it runs them in order).
    fn pop_answered(&self, st: &mut State, wi: usize, id: u64) -> Option<Job> {
        let terminated = st.phase == Phase::Terminated;
        let w = &mut st.workers[wi];
        if w.outstanding.front().map(|j| j.data.id) != Some(id) {
            if terminated {
                // Its chunks were already failed by `terminate`.
                return None;
            }
            eprintln!(
                "proc-pool: worker {} answered chunk {id} out of order; killing it",
                w.pid
            );
            let _ = w.process.kill();
            return None;
        }
        st.unfinished -= 1;
        w.answered += 1;
        w.outstanding.pop_front()
    }

    /// Asks the dispatcher to assign queued work (and to check the number of workers); wakes it
    /// only if it was not asked already (it clears the flag when it starts).
    fn request_dispatch(&self, st: &mut State) {
        if !st.need_dispatch {
            st.need_dispatch = true;
            self.dispatch_cv.notify_all();
        }
    }

    /// Wakes the dispatcher when a worker's window is half empty and work is queued, and
    /// `join` when everything is done.
    fn after_progress(&self, st: &mut State) {
        // The window `assign` uses (see there).
        let window = if st.pending.len() > st.workers.len() {
            st.window.max(2)
        } else {
            st.window
        };
        if !st.pending.is_empty() && st.workers.iter().any(|w| w.outstanding.len() <= window / 2) {
            self.request_dispatch(st);
        }
        self.notify_idle(st);
    }

    /// Wakes `join` when everything is done (only when someone joins: a notification is a
    /// system call).
    fn notify_idle(&self, st: &State) {
        if st.unfinished == 0 && st.joiners > 0 {
            self.idle_cv.notify_all();
        }
    }

    /// Worker `pid` is dead: fail the chunks it held, queue the others again, let the
    /// dispatcher replace it.
    fn handle_death(&self, pid: u32) -> Deliveries {
        let mut d: Deliveries = Vec::new();
        let worker = {
            let mut st = self.lock();
            match st.workers.iter().position(|w| w.pid == pid) {
                Some(i) => st.workers.remove(i),
                None => return d,
            }
        };
        let Worker {
            mut process,
            mut outstanding,
            answered,
            started,
            ..
        } = worker;
        // Chunks it started and did not answer: the one it was running, and any whose answers
        // it had not sent yet. The others it never touched.
        let held = usize::try_from(started.load().saturating_sub(answered))
            .unwrap_or(usize::MAX)
            .min(outstanding.len());
        let exitcode = match process.join_timeout(Duration::from_secs(5)) {
            Ok(Some(c)) => Some(c),
            _ => process.exitcode(),
        };
        let mut st = self.lock();
        let stop_error = if st.phase == Phase::Terminated {
            Some(Error::Terminated)
        } else {
            st.broken.clone()
        };
        if let Some(e) = stop_error {
            st.unfinished -= outstanding.len();
            for (k, job) in outstanding.drain(..).enumerate() {
                fail_job(&mut d, job, &e, k >= held);
            }
        } else {
            let lost = Error::WorkerLost { pid, exitcode };
            for job in outstanding.drain(..held) {
                st.unfinished -= 1;
                fail_job(&mut d, job, &lost, false);
            }
            while let Some(job) = outstanding.pop_back() {
                st.pending.push_front(job);
            }
        }
        self.request_dispatch(&mut st);
        self.notify_idle(&st);
        d
    }

    /// Fails everything queued and in flight with `e` (terminate). The chunks sent to live
    /// workers are returned with what tells, once the worker is dead, which of them it never
    /// started (their arguments must then be released: see [`SentChunks::release_unread`]).
    fn fail_everything(&self, st: &mut State, e: &Error) -> (Deliveries, Vec<SentChunks>) {
        let mut d: Deliveries = Vec::new();
        let queued: Vec<Job> = st.pending.drain(..).collect();
        st.unfinished -= queued.len();
        for job in queued {
            fail_job(&mut d, job, e, true);
        }
        // Chunks sent to live workers may be decoded there (or not): their arguments are
        // released only after the worker's death, for those it never started.
        let mut sent: Vec<SentChunks> = Vec::new();
        for w in &mut st.workers {
            let jobs: Vec<Job> = w.outstanding.drain(..).collect();
            st.unfinished -= jobs.len();
            let mut chunks = Vec::with_capacity(jobs.len());
            for job in jobs {
                chunks.push(job.data.clone());
                fail_job(&mut d, job, e, false);
            }
            sent.push(SentChunks {
                pid: w.pid,
                started: w.started.clone(),
                answered: w.answered,
                chunks,
            });
        }
        self.idle_cv.notify_all();
        (d, sent)
    }
}

/// The chunks a worker held when the pool was terminated, in the order it runs them.
struct SentChunks {
    pid: u32,
    started: RawValue<u64>,
    answered: u64,
    chunks: Vec<Arc<ChunkData>>,
}

impl SentChunks {
    /// Once the worker is known dead: releases the arguments of the chunks it never started
    /// (it counts each chunk in `started` before decoding anything of it), so handles inside
    /// them do not keep their shared-memory blocks alive.
    fn release_unread(self) {
        let held = usize::try_from(self.started.load().saturating_sub(self.answered))
            .unwrap_or(usize::MAX)
            .min(self.chunks.len());
        for c in &self.chunks[held..] {
            c.discard();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Threads

fn dispatcher_loop(sh: Arc<Shared>) {
    let mut st = sh.lock();
    loop {
        if st.stop_threads {
            return;
        }
        if st.workers.len() + st.starting < sh.target(&st) {
            st.starting += 1;
            st.worker_counter += 1;
            let n = st.worker_counter;
            drop(st);
            let r = sh.start_worker(n);
            st = sh.lock();
            st.starting -= 1;
            match r {
                Ok(w) => {
                    if st.stop_threads || st.phase == Phase::Terminated {
                        let _ = w.process.kill();
                        let mut p = w.process;
                        drop(st);
                        let _ = p.join_timeout(Duration::from_secs(5));
                        st = sh.lock();
                    } else {
                        st.workers.push(w);
                        st.need_dispatch = true;
                        sh.wake_result_thread();
                    }
                }
                Err(e) => {
                    eprintln!("proc-pool: cannot start a replacement worker: {e}");
                    if st.workers.is_empty() {
                        let d = {
                            let mut d: Deliveries = Vec::new();
                            let jobs: Vec<Job> = st.pending.drain(..).collect();
                            st.unfinished -= jobs.len();
                            for job in jobs {
                                fail_job(&mut d, job, &e, true);
                            }
                            sh.notify_idle(&st);
                            d
                        };
                        drop(st);
                        deliver_all(d);
                        st = sh.lock();
                    }
                    // Try again a little later (or when told to stop).
                    st = sh
                        .dispatch_cv
                        .wait_timeout(st, Duration::from_millis(200))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            continue;
        }
        if st.need_dispatch {
            st.need_dispatch = false;
            let batches = sh.assign(&mut st);
            drop(st);
            sh.send_batches(batches);
            st = sh.lock();
            continue;
        }
        st = sh.dispatch_cv.wait(st).unwrap_or_else(|e| e.into_inner());
    }
}

/// Reads one message of results from `conn` if one is there (`Ok(false)` when none is);
/// `Err(())` when the peer has closed or sent something unreadable.
fn read_one(conn: &Connection, out: &mut Vec<FromWorker>) -> std::result::Result<bool, ()> {
    match conn.try_recv::<Vec<FromWorker>>() {
        Ok(m) => {
            out.extend(m);
            Ok(true)
        }
        Err(ipc_channel_core::Error::Timeout) => Ok(false),
        Err(ipc_channel_core::Error::Eof) => Err(()),
        Err(e) => {
            eprintln!("proc-pool: a worker sent a bad message: {e}");
            Err(())
        }
    }
}

/// Reads every result available on `conn` now; whether the peer has closed.
fn drain(conn: &Connection, out: &mut Vec<FromWorker>) -> bool {
    loop {
        match read_one(conn, out) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(()) => return true,
        }
    }
}

/// The epoll data of the wake socket (a worker's connection is `2 * index`, its sentinel
/// `2 * index + 1`, in the result thread's list of workers).
const WAKE_TOKEN: u64 = u64::MAX;

/// A worker as the result thread watches it.
struct Watched {
    pid: u32,
    conn: Connection,
    sentinel: Arc<OwnedFd>,
    /// Whether its connection is in the epoll set (not after end of stream).
    conn_watched: bool,
}

/// The result thread: waits in `epoll` for results, deaths and wake-ups. The set of
/// descriptors is registered once and changed only when the workers change (each change
/// writes to the wake socket, or is a death this thread handles), so a result costs one
/// `epoll_wait` and one receive. If `epoll` is unavailable, [`result_loop_poll`] does the
/// same with `poll`.
fn result_loop(sh: Arc<Shared>, wake_rx: UnixStream) {
    let _ = sh.result_thread.set(std::thread::current().id());
    use rustix::event::epoll;
    let ep = match epoll::create(epoll::CreateFlags::CLOEXEC).and_then(|ep| {
        epoll::add(
            &ep,
            &wake_rx,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN,
        )
        .map(|()| ep)
    }) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("proc-pool: epoll unavailable ({e}); the result thread uses poll");
            return result_loop_poll(sh, wake_rx);
        }
    };
    let mut watched: Vec<Watched> = Vec::new();
    let mut at_eof: Vec<u32> = Vec::new();
    let mut events: Vec<epoll::Event> = Vec::with_capacity(2 * sh.config.processes + 8);
    let mut refresh = true;
    loop {
        if refresh {
            refresh = false;
            let fresh: Vec<Watched> = {
                let st = sh.lock();
                if st.stop_threads {
                    return;
                }
                st.workers
                    .iter()
                    .map(|w| Watched {
                        pid: w.pid,
                        conn: w.conn.clone(),
                        sentinel: w.sentinel.clone(),
                        conn_watched: false,
                    })
                    .collect()
            };
            // The old set out (its descriptors are still open: `watched` holds them), the
            // new one in.
            for w in &watched {
                if w.conn_watched {
                    if let Ok(fd) = w.conn.fd() {
                        let _ = epoll::delete(&ep, fd);
                    }
                }
                let _ = epoll::delete(&ep, &*w.sentinel);
            }
            watched = fresh;
            at_eof.retain(|p| watched.iter().any(|w| w.pid == *p));
            let mut failed = None;
            for (i, w) in watched.iter_mut().enumerate() {
                let token = 2 * i as u64;
                if !at_eof.contains(&w.pid) {
                    if let Ok(fd) = w.conn.fd() {
                        match epoll::add(
                            &ep,
                            fd,
                            epoll::EventData::new_u64(token),
                            epoll::EventFlags::IN,
                        ) {
                            Ok(()) => w.conn_watched = true,
                            Err(e) => failed = Some(e),
                        }
                    }
                }
                if let Err(e) = epoll::add(
                    &ep,
                    &*w.sentinel,
                    epoll::EventData::new_u64(token + 1),
                    epoll::EventFlags::IN,
                ) {
                    failed = Some(e);
                }
            }
            if let Some(e) = failed {
                eprintln!("proc-pool: epoll_ctl failed ({e}); the result thread uses poll");
                drop(ep);
                return result_loop_poll(sh, wake_rx);
            }
        }
        events.clear();
        match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                eprintln!("proc-pool: epoll_wait failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        // Results first, then deaths (a dead worker's last results are read before its
        // death is handled, in both cases).
        let mut deaths: Vec<usize> = Vec::new();
        for ev in &events {
            let data = ev.data;
            let token = data.u64();
            if token == WAKE_TOKEN {
                let mut buf = [0u8; 64];
                while matches!((&wake_rx).read(&mut buf), Ok(n) if n > 0) {}
                refresh = true;
                continue;
            }
            let Some(w) = watched.get_mut((token / 2) as usize) else {
                continue;
            };
            if token % 2 == 1 {
                deaths.push((token / 2) as usize);
                continue;
            }
            let mut replies = Vec::new();
            // One message per wake-up: epoll is level-triggered, so more is read on the next
            // turn (without the two system calls of a receive that finds nothing, on the
            // usual path of one message per wake-up).
            if read_one(&w.conn, &mut replies).is_err() {
                at_eof.push(w.pid);
                if let Ok(fd) = w.conn.fd() {
                    let _ = epoll::delete(&ep, fd);
                }
                w.conn_watched = false;
            }
            deliver_all(sh.handle_replies(w.pid, replies));
        }
        for i in deaths {
            let w = &watched[i];
            let mut replies = Vec::new();
            drain(&w.conn, &mut replies);
            deliver_all(sh.handle_replies(w.pid, replies));
            deliver_all(sh.handle_death(w.pid));
            refresh = true;
        }
    }
}

/// [`result_loop`] with `poll`, which needs no descriptor of its own: the set is rebuilt on
/// every turn.
fn result_loop_poll(sh: Arc<Shared>, wake_rx: UnixStream) {
    let mut at_eof: Vec<u32> = Vec::new();
    loop {
        let snapshot: Vec<(u32, Connection, Arc<OwnedFd>)> = {
            let st = sh.lock();
            if st.stop_threads {
                return;
            }
            st.workers
                .iter()
                .map(|w| (w.pid, w.conn.clone(), w.sentinel.clone()))
                .collect()
        };
        at_eof.retain(|p| snapshot.iter().any(|s| s.0 == *p));
        // Poll: the wake socket, each connection (unless at EOF), each sentinel.
        let mut kinds: Vec<(usize, bool)> = Vec::new(); // (worker index, is_sentinel)
        let mut fds: Vec<PollFd<'_>> = vec![PollFd::new(&wake_rx, PollFlags::IN)];
        for (i, (pid, conn, sentinel)) in snapshot.iter().enumerate() {
            if !at_eof.contains(pid) {
                if let Ok(fd) = conn.fd() {
                    fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
                    kinds.push((i, false));
                }
            }
            fds.push(PollFd::new(&**sentinel, PollFlags::IN));
            kinds.push((i, true));
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                eprintln!("proc-pool: poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let ready = |f: &PollFd<'_>| !f.revents().is_empty();
        if ready(&fds[0]) {
            let mut buf = [0u8; 64];
            while matches!((&wake_rx).read(&mut buf), Ok(n) if n > 0) {}
        }
        let fired: Vec<(usize, bool)> = fds[1..]
            .iter()
            .zip(kinds.iter())
            .filter(|(f, _)| ready(f))
            .map(|(_, k)| *k)
            .collect();
        drop(fds);
        for &(i, is_sentinel) in &fired {
            if is_sentinel {
                continue;
            }
            let (pid, conn, _) = &snapshot[i];
            let mut replies = Vec::new();
            // One message per wake-up: the poll is level-triggered, so more is read on the
            // next turn (without the two system calls of a receive that finds nothing, on
            // the usual path of one message per wake-up).
            if read_one(conn, &mut replies).is_err() {
                at_eof.push(*pid);
            }
            deliver_all(sh.handle_replies(*pid, replies));
        }
        for &(i, is_sentinel) in &fired {
            if !is_sentinel {
                continue;
            }
            let (pid, conn, _) = &snapshot[i];
            let mut replies = Vec::new();
            drain(conn, &mut replies);
            deliver_all(sh.handle_replies(*pid, replies));
            deliver_all(sh.handle_death(*pid));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Builder

/// Configures a [`Pool`]: `Pool::builder().processes(4).initializer(f, args)
/// .max_tasks_per_child(k).context(ctx).build()`.
///
/// # Examples
///
/// ```
/// use proc_pool::Pool;
/// use proc_spawn::{get_context, StartMethod};
///
/// fn setup(greeting: String) {
///     assert_eq!(greeting, "hello");
/// }
///
/// fn pid(_: ()) -> u32 {
///     std::process::id()
/// }
///
/// proc_pool::init();
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(setup, "hello".to_string())
///     .max_tasks_per_child(1)
///     .context(get_context(StartMethod::ForkServer))
///     .build()?;
/// let a = pool.apply(pid, ())?;
/// let b = pool.apply(pid, ())?;
/// assert_ne!(a, b); // one task per worker process
/// # Ok::<(), proc_pool::Error>(())
/// ```
pub struct PoolBuilder {
    processes: usize,
    init: Option<InitSpec>,
    max_tasks: Option<usize>,
    ctx: Option<Context>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.init.is_some())
            .field("max_tasks_per_child", &self.max_tasks)
            .field("context", &self.ctx)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of worker processes (0, the default, means [`proc_spawn::cpu_count`]).
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = n;
        self
    }

    /// Runs `f(args)` once in each worker when it starts, before any task (Python's
    /// `initializer`/`initargs`). If it panics, the pool is broken: every pending and future
    /// task fails with [`Error::InitializerFailed`] and no worker is started again.
    ///
    /// `args` is encoded for each worker when it starts (it may hold handles: a queue, a
    /// lock); an argument that cannot be encoded makes [`build`](PoolBuilder::build) fail.
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> PoolBuilder
    where
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.init = Some(InitSpec {
            func: FnRef::unary(f),
            encode: Box::new(move || encode_chunk(std::slice::from_ref(&args))),
        });
        self
    }

    /// Replaces each worker after it has run `k` chunks (Python's `maxtasksperchild`; a
    /// `map` chunk counts as one task).
    pub fn max_tasks_per_child(mut self, k: usize) -> PoolBuilder {
        self.max_tasks = Some(k);
        self
    }

    /// The start method's context for the workers (default: the program's default method,
    /// [`proc_spawn::get_start_method`]).
    pub fn context(mut self, ctx: Context) -> PoolBuilder {
        self.ctx = Some(ctx);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for `max_tasks_per_child(0)`; [`Error::Encode`] when the
    /// initializer's argument cannot be encoded; [`Error::Spawn`] when a worker cannot be
    /// started (the ones already started are stopped).
    pub fn build(self) -> Result<Pool> {
        if self.max_tasks == Some(0) {
            return Err(Error::InvalidArgument(
                "max_tasks_per_child must be at least 1".into(),
            ));
        }
        let init = self.init;
        let processes = if self.processes == 0 {
            proc_spawn::cpu_count().max(1)
        } else {
            self.processes
        };
        let ctx = self.ctx.unwrap_or_else(Context::default_context);
        let (wake_tx, wake_rx) =
            UnixStream::pair().map_err(|e| Error::Spawn(format!("socketpair: {e}")))?;
        for s in [&wake_tx, &wake_rx] {
            s.set_nonblocking(true)
                .map_err(|e| Error::Spawn(format!("socketpair: {e}")))?;
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                phase: Phase::Run,
                broken: None,
                pending: VecDeque::new(),
                workers: Vec::new(),
                starting: 0,
                next_id: 0,
                unfinished: 0,
                ewma_nanos: None,
                window: 2,
                need_dispatch: false,
                joiners: 0,
                stop_threads: false,
                worker_counter: 0,
            }),
            dispatch_cv: Condvar::new(),
            idle_cv: Condvar::new(),
            wake_tx,
            config: Config {
                processes,
                ctx,
                max_tasks: self.max_tasks.map(|k| k as u64),
                init,
            },
            result_thread: OnceLock::new(),
        });
        let mut workers = Vec::with_capacity(processes);
        for n in 1..=processes as u64 {
            match shared.start_worker(n) {
                Ok(w) => workers.push(w),
                Err(e) => {
                    for w in &mut workers {
                        let _ = w.process.kill();
                        let _ = w.process.join_timeout(Duration::from_secs(5));
                    }
                    return Err(e);
                }
            }
        }
        {
            let mut st = shared.lock();
            st.workers = workers;
            st.worker_counter = processes as u64;
        }
        let mut threads = Vec::new();
        let sh = shared.clone();
        let spawn_err =
            |e: std::io::Error| Error::Spawn(format!("cannot start a pool thread: {e}"));
        threads.push(
            std::thread::Builder::new()
                .name("proc-pool-results".into())
                .spawn(move || result_loop(sh, wake_rx))
                .map_err(spawn_err)?,
        );
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("proc-pool-dispatch".into())
                .spawn(move || dispatcher_loop(sh))
                .map_err(spawn_err)?,
        );
        Ok(Pool {
            shared,
            threads: Mutex::new(threads),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Pool

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Tasks are function pointers `fn(A) -> R` (a `fn` item, or a closure that captures nothing)
/// with serde arguments and results; arguments and results may contain multiproc handles
/// (queues, locks, shared values, connections), which travel with their descriptors. Several
/// arguments travel as a tuple, or use [`starmap`](Pool::starmap) with a function of 2 to 4
/// arguments.
///
/// Errors are values: a panicking task gives [`Error::Panicked`] with its message and the
/// worker goes on; a worker that dies fails only the chunk it was running with
/// [`Error::WorkerLost`] and is replaced. Dropping the pool terminates it, and every result
/// still pending resolves to [`Error::Terminated`].
///
/// # Examples
///
/// ```
/// use proc_pool::Pool;
///
/// fn square(x: i64) -> i64 {
///     x * x
/// }
///
/// fn main() -> Result<(), proc_pool::Error> {
///     proc_pool::init(); // first line of main: a worker process runs its loop from here
///     let pool = Pool::new(4)?;
///     assert_eq!(pool.map(square, 0..10)?, vec![0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
///     let lazy: Vec<i64> = pool.imap(square, 0..5).collect::<Result<_, _>>()?;
///     assert_eq!(lazy, vec![0, 1, 4, 9, 16]);
///     assert_eq!(pool.apply_async(square, 7).get()?, 49);
///     pool.close();
///     pool.join()
/// }
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Pool")
            .field("state", &st.phase)
            .field("pool_size", &self.shared.config.processes)
            .field("start_method", &self.shared.config.ctx.start_method())
            .finish()
    }
}

/// Python's default chunksize for `map`: `ceil(n / (4 * workers))`.
pub(crate) fn default_chunksize(n: usize, workers: usize) -> usize {
    n.div_ceil(4 * workers.max(1)).max(1)
}

impl Pool {
    /// A pool of `n` workers (0 means [`proc_spawn::cpu_count`], Python's `processes=None`),
    /// with the program's default start method.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] when a worker cannot be started.
    pub fn new(n: usize) -> Result<Pool> {
        Pool::builder().processes(n).build()
    }

    /// A [`PoolBuilder`] for the other options.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: 0,
            init: None,
            max_tasks: None,
            ctx: None,
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// The start method of the workers.
    pub fn start_method(&self) -> StartMethod {
        self.shared.config.ctx.start_method()
    }

    /// The pids of the workers alive now (Python's `[p.pid for p in pool._pool]`).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.lock().workers.iter().map(|w| w.pid).collect()
    }

    // --- map -----------------------------------------------------------------------------

    fn map_impl<T, R>(
        &self,
        func: FnRef,
        items: Vec<T>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> AsyncResult<Vec<R>>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        let n = items.len();
        let cs = match chunksize {
            Some(0) => {
                return AsyncResult::failed(
                    Error::InvalidArgument("chunksize must be 1 or more, not 0".into()),
                    callbacks,
                )
            }
            Some(c) => c,
            None => default_chunksize(n, self.processes()),
        };
        let cell = Cell::new(callbacks);
        let deliver = MapDeliver::new(n, cs, cell.clone());
        if n == 0 {
            let st = self.shared.lock();
            let refused = if st.phase != Phase::Run {
                Some(Error::NotRunning)
            } else {
                st.broken.clone()
            };
            drop(st);
            match refused {
                Some(e) => cell.complete(Err(e)),
                None => deliver.finish_if_empty(),
            }
            return AsyncResult::from_cell(cell);
        }
        let sink: Arc<dyn Sink> = Arc::new(Decoding::<R, _>::new(deliver));
        // Encode and submit in groups, so the workers start while the rest is encoded.
        let mut group: Vec<Encoded> = Vec::new();
        let mut group_bytes = 0usize;
        let mut first = 0usize;
        let total = n.div_ceil(cs);
        for (k, part) in items.chunks(cs).enumerate() {
            match encode_chunk(part) {
                Ok(e) => {
                    group_bytes += e.args.len();
                    group.push(e);
                }
                Err(e) => {
                    // Chunks already submitted still run; their results are ignored.
                    cell.complete(Err(e));
                    return AsyncResult::from_cell(cell);
                }
            }
            if group_bytes >= SUBMIT_GROUP_BYTES
                || group.len() >= SUBMIT_GROUP_CHUNKS
                || k + 1 == total
            {
                let chunks = std::mem::take(&mut group);
                let len = chunks.len();
                if let Err(e) = self.shared.submit(func, chunks, first, sink.clone()) {
                    cell.complete(Err(e));
                    return AsyncResult::from_cell(cell);
                }
                first += len;
                group_bytes = 0;
            }
        }
        AsyncResult::from_cell(cell)
    }

    /// `[f(x) for x in items]`, computed by the workers; waits for all of them.
    ///
    /// The input is collected first (its length sets the chunksize: `ceil(n / (4 *
    /// workers))`, Python's rule); use [`imap`](Pool::imap) for long or endless inputs.
    ///
    /// # Errors
    ///
    /// When tasks failed, the error of the lowest-indexed failed item, after every chunk has
    /// finished (Python does not fail fast either); [`Error::Encode`] when an argument cannot
    /// be encoded; [`Error::NotRunning`] on a closed pool; [`Error::Interrupted`] on `SIGINT`
    /// while waiting (the tasks go on).
    pub fn map<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items).get()
    }

    /// [`map`](Pool::map) with an explicit chunksize (items per task sent to a worker).
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map); [`Error::InvalidArgument`] for a chunksize of 0.
    pub fn map_chunked<A, R, I>(&self, f: fn(A) -> R, items: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_chunked(f, items, chunksize).get()
    }

    /// [`map`](Pool::map) without waiting: the [`AsyncResult`] of the whole list.
    pub fn map_async<A, R, I>(&self, f: fn(A) -> R, items: I) -> AsyncResult<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, items, None, Callbacks::new())
    }

    /// [`map_async`](Pool::map_async) with an explicit chunksize.
    pub fn map_async_chunked<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> AsyncResult<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, items, Some(chunksize), Callbacks::new())
    }

    /// [`map_async`](Pool::map_async) with an optional chunksize and callbacks (Python's
    /// `callback=`/`error_callback=`).
    pub fn map_async_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> AsyncResult<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        self.map_impl(FnRef::unary(f), items, chunksize, callbacks)
    }

    // --- starmap -------------------------------------------------------------------------

    /// `[f(a, b) for (a, b) in items]` (Python's `starmap`). Functions of 3 and 4 arguments:
    /// [`starmap3`](Pool::starmap3), [`starmap4`](Pool::starmap4).
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<A, B, R, I>(&self, f: fn(A, B) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        self.starmap_async(f, items).get()
    }

    /// [`starmap`](Pool::starmap) with an explicit chunksize.
    ///
    /// # Errors
    ///
    /// As [`map_chunked`](Pool::map_chunked).
    pub fn starmap_chunked<A, B, R, I>(
        &self,
        f: fn(A, B) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        let items: Vec<(A, B)> = items.into_iter().collect();
        self.map_impl(FnRef::binary(f), items, Some(chunksize), Callbacks::new())
            .get()
    }

    /// [`starmap`](Pool::starmap) without waiting.
    pub fn starmap_async<A, B, R, I>(&self, f: fn(A, B) -> R, items: I) -> AsyncResult<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        self.starmap_async_with(f, items, None, Callbacks::new())
    }

    /// [`starmap_async`](Pool::starmap_async) with an optional chunksize and callbacks.
    pub fn starmap_async_with<A, B, R, I>(
        &self,
        f: fn(A, B) -> R,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> AsyncResult<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        let items: Vec<(A, B)> = items.into_iter().collect();
        self.map_impl(FnRef::binary(f), items, chunksize, callbacks)
    }

    /// `[f(a, b, c) for (a, b, c) in items]`.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap3<A, B, C, R, I>(&self, f: fn(A, B, C) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        C: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B, C)>,
    {
        self.starmap3_async(f, items, None).get()
    }

    /// [`starmap3`](Pool::starmap3) without waiting, with an optional chunksize.
    pub fn starmap3_async<A, B, C, R, I>(
        &self,
        f: fn(A, B, C) -> R,
        items: I,
        chunksize: Option<usize>,
    ) -> AsyncResult<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        C: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B, C)>,
    {
        let items: Vec<(A, B, C)> = items.into_iter().collect();
        self.map_impl(FnRef::ternary(f), items, chunksize, Callbacks::new())
    }

    /// `[f(a, b, c, d) for (a, b, c, d) in items]`.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap4<A, B, C, D, R, I>(&self, f: fn(A, B, C, D) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        C: Serialize + DeserializeOwned + 'static,
        D: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B, C, D)>,
    {
        self.starmap4_async(f, items, None).get()
    }

    /// [`starmap4`](Pool::starmap4) without waiting, with an optional chunksize.
    pub fn starmap4_async<A, B, C, D, R, I>(
        &self,
        f: fn(A, B, C, D) -> R,
        items: I,
        chunksize: Option<usize>,
    ) -> AsyncResult<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        C: Serialize + DeserializeOwned + 'static,
        D: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B, C, D)>,
    {
        let items: Vec<(A, B, C, D)> = items.into_iter().collect();
        self.map_impl(FnRef::quaternary(f), items, chunksize, Callbacks::new())
    }

    // --- apply ---------------------------------------------------------------------------

    /// `f(arg)` in a worker; waits for it (Python's `apply`; several arguments travel as a
    /// tuple).
    ///
    /// # Errors
    ///
    /// The task's error; [`Error::NotRunning`] on a closed pool; [`Error::Interrupted`].
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, arg).get()
    }

    /// `f(arg)` in a worker, without waiting.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> AsyncResult<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, arg, Callbacks::new())
    }

    /// [`apply_async`](Pool::apply_async) with callbacks.
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callbacks: Callbacks<R>,
    ) -> AsyncResult<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let chunk = match encode_chunk(std::slice::from_ref(&arg)) {
            Ok(c) => c,
            Err(e) => return AsyncResult::failed(e, callbacks),
        };
        drop(arg);
        let cell = Cell::new(callbacks);
        let sink: Arc<dyn Sink> =
            Arc::new(Decoding::<R, _>::new(ApplyDeliver { cell: cell.clone() }));
        if let Err(e) = self.shared.submit(FnRef::unary(f), vec![chunk], 0, sink) {
            cell.complete(Err(e));
        }
        AsyncResult::from_cell(cell)
    }

    // --- imap ----------------------------------------------------------------------------

    fn imap_impl<'a, A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> IMap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        let state = ImapState::new(ordered, chunksize.max(1));
        if chunksize == 0 {
            return IMap::failed(
                Error::InvalidArgument("chunksize must be 1 or more, not 0".into()),
                state,
            );
        }
        let func = FnRef::unary(f);
        let shared = self.shared.clone();
        let deliver = Arc::new(ImapDeliver(state.clone()));
        let sink: Arc<dyn Sink> = Arc::new(Decoding::<R, _>::new(ImapDeliver(state.clone())));
        let mut input = items.into_iter();
        let mut buf: Vec<A> = Vec::with_capacity(chunksize);
        let feed = Box::new(move |chunk: usize| -> Option<Result<usize>> {
            buf.clear();
            buf.extend(input.by_ref().take(chunksize));
            if buf.is_empty() {
                return None;
            }
            let n = buf.len();
            match encode_chunk(&buf) {
                Ok(enc) => match shared.submit(func, vec![enc], chunk, sink.clone()) {
                    Ok(()) => Some(Ok(n)),
                    Err(e) => Some(Err(e)),
                },
                Err(e) => {
                    // This chunk's items fail; the iteration goes on.
                    deliver.deliver(chunk, Items::failed(n, &e));
                    Some(Ok(n))
                }
            }
        });
        IMap::new(state, feed, IMAP_CHUNKS_PER_WORKER * self.processes())
    }

    /// A lazy `map`: results one at a time, in input order, as an iterator of `Result<R>`.
    ///
    /// The input is pulled lazily with at most `4 × processes` tasks in flight (chunksize
    /// 1, Python's default for `imap`), so an endless iterator works and memory stays flat;
    /// each item's result (or error) is yielded in its place.
    pub fn imap<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> IMap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_impl(f, items, 1, true)
    }

    /// [`imap`](Pool::imap) sending `chunksize` items per task (at most `4 × processes`
    /// chunks in flight). A chunksize of 0 yields one [`Error::InvalidArgument`].
    pub fn imap_chunked<'a, A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_impl(f, items, chunksize, true)
    }

    /// As [`imap`](Pool::imap), yielding results in completion order.
    pub fn imap_unordered<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> IMap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_impl(f, items, 1, false)
    }

    /// As [`imap_chunked`](Pool::imap_chunked), yielding results in completion order.
    pub fn imap_unordered_chunked<'a, A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_impl(f, items, chunksize, false)
    }

    // --- lifecycle -----------------------------------------------------------------------

    /// Takes no more work; what was submitted still runs (Python's `close`). Idempotent.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        if st.phase == Phase::Run {
            st.phase = Phase::Closed;
        }
        drop(st);
        self.shared.dispatch_cv.notify_all();
    }

    /// Stops the workers at once (`SIGKILL`): every task not finished fails with
    /// [`Error::Terminated`] (Python leaves them pending forever). Idempotent.
    pub fn terminate(&self) {
        let (d, sent) = {
            let mut st = self.shared.lock();
            st.phase = Phase::Terminated;
            self.shared.fail_everything(&mut st, &Error::Terminated)
        };
        deliver_all(d);
        let dead = self.shutdown(false);
        for s in sent {
            // A worker that could not be confirmed dead might still decode its chunks: leave
            // them (a leak, never a double release).
            if dead.contains(&s.pid) {
                s.release_unread();
            }
        }
    }

    /// Waits for the workers to finish everything submitted and exit, after
    /// [`close`](Pool::close) (or [`terminate`](Pool::terminate)).
    ///
    /// # Errors
    ///
    /// [`Error::StillRunning`] when the pool was neither closed nor terminated;
    /// [`Error::Interrupted`] on `SIGINT` while waiting (the pool stays as it was).
    pub fn join(&self) -> Result<()> {
        let st = self.shared.lock();
        match st.phase {
            Phase::Run => return Err(Error::StillRunning),
            Phase::Terminated => {
                drop(st);
                let _ = self.shutdown(false);
                return Ok(());
            }
            Phase::Closed => {}
        }
        let mut st = st;
        st.joiners += 1;
        let (mut st, how) = wait_until(st, &self.shared.idle_cv, None, |s| s.unfinished == 0);
        st.joiners -= 1;
        drop(st);
        if how == Waited::Interrupted {
            return Err(Error::Interrupted);
        }
        let _ = self.shutdown(true);
        Ok(())
    }

    /// Stops the threads and the workers (gracefully: a `Stop` message and a wait; or with
    /// `SIGKILL`), and joins them.
    fn shutdown(&self, graceful: bool) -> Vec<u32> {
        let workers: Vec<Worker> = {
            let mut st = self.shared.lock();
            st.stop_threads = true;
            std::mem::take(&mut st.workers)
        };
        self.shared.dispatch_cv.notify_all();
        self.shared.wake_result_thread();
        for w in &workers {
            if graceful {
                if w.conn.send(&ToWorker::Stop).is_err() {
                    let _ = w.process.kill();
                }
            } else {
                let _ = w.process.kill();
            }
        }
        let mut dead = Vec::with_capacity(workers.len());
        for mut w in workers {
            let mut joined = matches!(w.process.join_timeout(Duration::from_secs(10)), Ok(Some(_)));
            if !joined {
                let _ = w.process.kill();
                joined = matches!(w.process.join_timeout(Duration::from_secs(5)), Ok(Some(_)));
            }
            if joined {
                dead.push(w.pid);
            }
        }
        let threads: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        dead
    }
}

impl Drop for Pool {
    /// Terminates the pool (Python's `with Pool() as p:` does the same): pending results
    /// resolve to [`Error::Terminated`].
    fn drop(&mut self) {
        let done = {
            let st = self.shared.lock();
            st.stop_threads && st.workers.is_empty()
        };
        if !done {
            self.terminate();
        } else {
            let _ = self.shutdown(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pythons_default_chunksize() {
        // Python: Pool(4): n = 100 -> 7, n = 10 -> 1, n = 1000 -> 63.
        assert_eq!(default_chunksize(100, 4), 7);
        assert_eq!(default_chunksize(10, 4), 1);
        assert_eq!(default_chunksize(1000, 4), 63);
        assert_eq!(default_chunksize(0, 4), 1);
        assert_eq!(100usize.div_ceil(7), 15);
    }

    #[test]
    fn borrowed_tasks_serialize_like_owned_ones() {
        use crate::wire::WireChunk;
        let func = FnRef::unary(|x: u8| x);
        let data = Arc::new(ChunkData {
            id: 7,
            func,
            args: vec![1, 2, 3],
            fds: Vec::new(),
            n_items: 1,
            discard: discard_as::<u8>,
        });
        let (a, _) = transfer::encode(&TasksRef(&[data.clone(), data])).unwrap();
        let owned = ToWorker::Tasks(vec![
            WireChunk {
                id: 7,
                func,
                args: vec![1, 2, 3],
                fds: Vec::new(),
            },
            WireChunk {
                id: 7,
                func,
                args: vec![1, 2, 3],
                fds: Vec::new(),
            },
        ]);
        let (b, _) = transfer::encode(&owned).unwrap();
        assert_eq!(a, b);
    }
}
