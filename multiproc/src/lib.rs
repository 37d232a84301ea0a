//! Python's `multiprocessing`, in Rust: processes with the `fork`, `spawn` and `forkserver`
//! start methods, process pools, queues and pipes, process-shared locks, semaphores, events,
//! conditions and barriers, shared values and arrays, and named shared memory — one import.
//!
//! This crate holds no code of its own: it re-exports the five layers of the workspace under one
//! name (and each layer as a module: [`shm`], [`sync`], [`channel`], [`mod@spawn`], [`pool`]), so a
//! program written from a Python tutorial reads the same here. Everything is real: children are
//! processes, locks are futexes in shared memory, queues are shared-memory rings or sockets.
//!
#![cfg_attr(feature = "pool", doc = include_str!("side_by_side.md"))]
#![cfg_attr(
    not(feature = "pool"),
    doc = "# Python and Rust, side by side\n\n(Shown with the default features, which this \
           build of the docs lacks.)\n\n"
)]
//! The differences are few and always the same:
//!
//! - `multiproc::init()` is the first line of `main` — Rust's `if __name__ == "__main__"`.
//!   A child started with `spawn` or `forkserver` runs this very executable; `init` (or the
//!   hook that runs before `main`) recognises it and runs the target instead of your program.
//! - A target is a plain function `fn(A) -> R` (a non-capturing closure also coerces to one)
//!   taking **one** argument; several travel as a tuple, destructured in the signature.
//!   Arguments and results are serde values. Under `fork`, [`Process::from_closure`] also runs
//!   any `FnOnce() + Send` closure.
//! - Every OS-backed object (queue, lock, value, array, connection, shared memory) is a handle:
//!   `clone()` gives another handle to the same object, as cheap as an `Arc`, and a handle
//!   passed to a child arrives there whatever the start method.
//! - Constructors that ask the OS for something return `Result`; blocking calls come in three
//!   forms: `get` / `get_timeout(d)` / `try_get` (Python's `block=False` is `try_`).
//! - Errors instead of hangs: a worker killed in a pool fails its task with `WorkerLost`, a lock
//!   whose holder died is handed over with `owner_died()` set, a peer that closed is `Eof`.
//!
//! # From Python names to ours
//!
//! | Python (`multiprocessing.…`) | multiproc | layer |
//! |---|---|---|
//! | `Process(target=f, args=(a, b))` | [`Process::new`]`(f, (a, b))` | spawn |
//! | `Process(..., name="x", daemon=True)` | `Process::new(f, a).name("x").daemon(true)` | spawn |
//! | `p.start()`, `p.join()`, `p.join(t)` | [`Process::start`], [`Process::join`], [`Process::join_timeout`] | spawn |
//! | `p.is_alive()`, `p.exitcode`, `p.pid` | [`Process::is_alive`], [`Process::exitcode`], [`Process::pid`] | spawn |
//! | `p.terminate()`, `p.kill()`, `p.sentinel` | [`Process::terminate`], [`Process::kill`], [`Process::sentinel`] | spawn |
//! | subclass of `Process` with `run()` | `impl` [`Run`], [`Process::from_run`] | spawn |
//! | (a child that returns a value) | [`spawn()`] → [`JoinHandle::join`] | spawn |
//! | `current_process()`, `parent_process()` | [`current_process`], [`parent_process`] → [`ProcessInfo`] | spawn |
//! | `active_children()`, `cpu_count()` | [`active_children`], [`cpu_count`] | spawn |
//! | `get_context("spawn")`, `ctx.Process(...)` | [`get_context`]`(`[`StartMethod::Spawn`]`)`, [`Context::process`] | spawn |
//! | `set_start_method(m)`, `get_start_method()`, `get_all_start_methods()` | [`set_start_method`], [`get_start_method`], [`get_all_start_methods`] | spawn |
//! | `if __name__ == "__main__":` | [`init`] | spawn |
//! | `Pool(n)`, `Pool()` | [`Pool::new`]`(n)`, `Pool::builder().build()` (one worker per CPU) | pool |
//! | `Pool(n, initializer, initargs, maxtasksperchild)` | [`Pool::builder`]`().processes(n).initializer(f, args).max_tasks_per_child(k).build()` | pool |
//! | `pool.map(f, xs)`, `pool.map(f, xs, chunksize)` | [`Pool::map`], [`Pool::map_chunked`] | pool |
//! | `pool.imap`, `imap_unordered` | [`Pool::imap`], [`Pool::imap_unordered`] (lazy iterators of `Result`) | pool |
//! | `pool.starmap(f, [(a, b), ...])` | [`Pool::starmap`] with `f: fn(A, B) -> R` | pool |
//! | `pool.apply(f, (x,))`, `apply_async`, `map_async`, `starmap_async` | [`Pool::apply`], [`Pool::apply_async`], [`Pool::map_async`], [`Pool::starmap_async`] | pool |
//! | `callback=`, `error_callback=` | the `_with` forms, taking [`Callbacks`] | pool |
//! | `AsyncResult.get(t)`, `wait`, `ready`, `successful` | [`AsyncResult::get_timeout`], [`AsyncResult::wait`], [`AsyncResult::ready`], [`AsyncResult::successful`] | pool |
//! | `pool.close()`, `terminate()`, `join()`, `with Pool() as pool:` | [`Pool::close`], [`Pool::terminate`], [`Pool::join`], dropping the pool | pool |
//! | `multiprocessing.dummy.Pool` | [`ThreadPool`] (any closure) | pool |
//! | `Pipe()`, `Pipe(duplex=False)` | [`Pipe::new`], [`Pipe::simplex`] | channel |
//! | `conn.send(obj)`, `conn.recv()`, `send_bytes`, `recv_bytes`, `poll(t)` | [`Connection::send`], [`Connection::recv`], [`Connection::send_bytes`], [`Connection::recv_bytes`], [`Connection::poll`] | channel |
//! | `Queue()`, `Queue(maxsize)` | [`Queue::new`], [`Queue::bounded`] | channel |
//! | `q.put(x)`, `q.get()`, `q.get(timeout=t)`, `q.get_nowait()` | [`Queue::put`], [`Queue::get`], [`Queue::get_timeout`], [`Queue::try_get`] | channel |
//! | `queue.Empty`, `queue.Full` | [`ChannelError::Empty`], [`ChannelError::Full`] | channel |
//! | `SimpleQueue()`, `JoinableQueue()` | [`SimpleQueue`], [`JoinableQueue`] | channel |
//! | `connection.Listener`, `connection.Client` | [`Listener`], [`Client`] | channel |
//! | `Lock()`, `RLock()` (`with lock:`) | [`Lock`], [`RLock`] (`let _g = lock.acquire();`) | sync |
//! | `Semaphore(n)`, `BoundedSemaphore(n)` | [`Semaphore`], [`BoundedSemaphore`] | sync |
//! | `Event()`, `Condition()`, `Barrier(n)` | [`Event`], [`Condition`], [`Barrier`] | sync |
//! | `Value("i", 0)` with `get_lock()` | [`Value::new`]`(0i32)`, `*v.lock() += 1` | sync |
//! | `Array("i", [1, 2, 3])`, `arr[:]` | [`Array::from_slice`]`(&[1i32, 2, 3])`, [`Array::to_vec`] | sync |
//! | `RawValue`, `RawArray` | [`RawValue`], [`RawArray`] (atomic element access) | shm |
//! | `shared_memory.SharedMemory(name, create, size)` | [`SharedMemory::create`], [`SharedMemory::open`] | shm |
//! | typecodes `b B h H i I q Q f d` | `i8 u8 i16 u16 i32 u32 i64 u64 f32 f64` ([`Element`]) | shm |
//! | `Manager()`, `m.dict()`, `m.list()`, `m.Namespace()`, `m.Value(t, v)`, `m.Queue()`, `m.Lock()`, ... | [`Manager::start`], [`Manager::dict`], [`Manager::list`], [`Manager::namespace`], [`Manager::value`], [`Manager::queue`], [`Manager::lock`], ... (typed proxies: [`DictProxy`], [`ListProxy`], ...) | manager |
//! | `BaseManager(address, authkey)`, `register(typeid, T)`, `connect()` | [`Manager::builder`]`().address(a).authkey(k).register::<T>()` ([`Shared`]), [`Manager::connect`] | manager |
//!
//! The types and functions of every layer are at the crate root; the rarer items (tuning knobs
//! such as [`sync::set_spin_limit`], diagnostics such as [`shm::heap_stats`], the layers'
//! constants and low-level modules such as [`sync::raw`]) are reached through the layer modules.
//! Each layer's error type is re-exported under its layer's name: [`ShmError`], [`SyncError`],
//! [`ChannelError`], [`SpawnError`], [`PoolError`] and [`ManagerError`]; they all implement
//! [`std::error::Error`], so `Box<dyn std::error::Error>` (as above) collects any of them.
//!
//! # Start methods
//!
//! [`StartMethod::ForkServer`] is the default on Linux: a single-threaded server, started once,
//! forks each child — fast, and safe in a multithreaded program. [`StartMethod::Spawn`]
//! re-executes the program for every child (the slowest, the most isolated).
//! [`StartMethod::Fork`] copies the calling process (the fastest, and the only one that runs
//! capturing closures, but unsafe when other threads hold locks at the time of the fork). The
//! environment variable `IPC_START_METHOD=fork|spawn|forkserver` changes the default of a
//! program that does not choose.
//!
//! # Platform support
//!
//! Linux (5.4 or later for pidfds): memfd shared memory, POSIX shared memory in `/dev/shm`,
//! futexes, `SCM_RIGHTS`, pidfds, `PR_SET_PDEATHSIG`. Other platforms fail to compile with a
//! message naming the missing backend.
//!
//! # Cargo features
//!
//! One per layer, all on by default; each turns on the layers below it:
//!
//! | feature | adds | depends on |
//! |---|---|---|
//! | `shm` | [`shm`]: `SharedMemory`, `RawValue`, `RawArray`, the shared heap, handle transfer | — |
//! | `sync` | [`sync`]: `Lock`, `RLock`, `Semaphore`, `Event`, `Condition`, `Barrier`, `Value`, `Array` | `shm` |
//! | `channel` | [`channel`]: `Pipe`, `Connection`, `Queue`, `SimpleQueue`, `JoinableQueue`, `Listener` | `sync` |
//! | `spawn` | [`mod@spawn`]: `Process`, start methods, contexts, [`init`] | `channel` |
//! | `pool` | [`pool`]: `Pool`, `AsyncResult`, `ThreadPool` | `spawn` |
//! | `manager` | [`manager`]: `Manager`, the proxies (`DictProxy`, `ListProxy`, `QueueProxy`, ...), `Shared` | `spawn` |
//!
//! For example `multiproc = { version = "0.1", default-features = false, features = ["sync"] }`
//! gives the locks and shared values alone (starting processes is then up to you).
//!
//! # Safety model
//!
//! This crate contains no code, safe or unsafe: see the layers' own "Safety model" sections.
//! In short, shared memory holds only plain atomics and numbers (never pointers); bytes from
//! another process are untrusted (a malformed message is an error, never undefined behaviour);
//! a function crosses processes only as an offset checked against the same executable.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod prelude;

// ---- the layers, as modules ------------------------------------------------------------------

/// Layer 1, `ipc-shm`: shared memory segments, named shared memory, the shared heap,
/// `RawValue`/`RawArray`, handle transfer.
#[cfg(feature = "shm")]
pub use ipc_shm as shm;

/// Layer 2, `ipc-sync`: process-shared futex primitives and the synchronized `Value`/`Array`.
#[cfg(feature = "sync")]
pub use ipc_sync as sync;

/// Layer 3, `ipc-channel-core`: `Pipe`/`Connection`, `Queue`, `SimpleQueue`, `JoinableQueue`,
/// `Listener`/`Client`.
#[cfg(feature = "channel")]
pub use ipc_channel_core as channel;

/// Layer 4, `proc-spawn`: `Process`, start methods, contexts, `init()`.
#[cfg(feature = "spawn")]
pub use proc_spawn as spawn;

/// Layer 5, `proc-pool`: `Pool`, `AsyncResult`, `ThreadPool`.
#[cfg(feature = "pool")]
pub use proc_pool as pool;

/// Layer 5, `proc-manager`: `Manager`, proxies to the objects its server process holds, local
/// and remote.
#[cfg(feature = "manager")]
pub use proc_manager as manager;

// ---- ipc-shm ---------------------------------------------------------------------------------

#[cfg(feature = "shm")]
pub use ipc_shm::{
    transfer, Element, IntElement, RawArray, RawValue, Segment, SharedMemory, ShmBox, ShmSafe,
    ShmSlice, TransferError,
};

/// The error of the shared-memory layer ([`shm::Error`]).
#[cfg(feature = "shm")]
pub use ipc_shm::Error as ShmError;

// ---- ipc-sync --------------------------------------------------------------------------------

#[cfg(feature = "sync")]
pub use ipc_sync::{
    Array, ArrayGuard, Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock,
    LockGuard, RLock, RLockGuard, Semaphore, Value, ValueGuard,
};

/// The error of the synchronization layer ([`sync::Error`]).
#[cfg(feature = "sync")]
pub use ipc_sync::Error as SyncError;

// ---- ipc-channel-core ------------------------------------------------------------------------

#[cfg(feature = "channel")]
pub use ipc_channel_core::{
    Address, Backend, Bytes, Client, Connection, JoinableQueue, Listener, Pipe, Queue,
    QueueBuilder, Record, SimpleQueue,
};

/// The error of the messaging layer ([`channel::Error`]): `Empty`, `Full`, `Eof`, ...
#[cfg(feature = "channel")]
pub use ipc_channel_core::Error as ChannelError;

// ---- proc-spawn ------------------------------------------------------------------------------

#[cfg(feature = "spawn")]
pub use proc_spawn::{
    active_children, cpu_count, current_process, fork, get_all_start_methods, get_context,
    get_start_method, init, parent_process, set_start_method, spawn, Context, JoinHandle, Process,
    ProcessInfo, Run, StartMethod,
};

/// The error of the process layer ([`mod@spawn`]`::Error`).
#[cfg(feature = "spawn")]
pub use proc_spawn::Error as SpawnError;

// ---- proc-pool -------------------------------------------------------------------------------

#[cfg(feature = "pool")]
pub use proc_pool::{
    AsyncResult, Callbacks, IMap, Pool, PoolBuilder, StarFn, TaskError, ThreadPool,
    ThreadPoolBuilder,
};

/// The error of the pool layer ([`pool::Error`]): a task's panic, a lost worker, a timeout, ...
/// ([`TaskError`] is another name for it).
#[cfg(feature = "pool")]
pub use proc_pool::Error as PoolError;

// ---- proc-manager ----------------------------------------------------------------------------

#[cfg(feature = "manager")]
pub use proc_manager::{
    BarrierProxy, ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy, Manager,
    ManagerBuilder, NamespaceProxy, Proxy, QueueProxy, RLockProxy, SemaphoreProxy, Shared,
    ValueProxy,
};

/// The error of the manager layer ([`manager::Error`]): `ManagerGone`, `KeyNotFound`,
/// `IndexOutOfRange`, `WrongType`, ...
#[cfg(feature = "manager")]
pub use proc_manager::Error as ManagerError;
