//! The names a multiprocessing program uses all the time, for a glob import:
//!
//! ```
//! use multiproc::prelude::*;
//! ```
//!
//! Processes and their start methods, the pool, the queues and the pipe, the locks and the other
//! synchronization primitives, the shared values and arrays. Error types and the rarer items stay
//! at the crate root (`multiproc::ChannelError`, `multiproc::SharedMemory`, ...). Nothing here is
//! called `Result` or `Error`, so the glob shadows nothing of `std`.

#[cfg(feature = "shm")]
pub use ipc_shm::{RawArray, RawValue};

#[cfg(feature = "sync")]
pub use ipc_sync::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, Value,
};

#[cfg(feature = "channel")]
pub use ipc_channel_core::{Connection, JoinableQueue, Pipe, Queue, SimpleQueue};

#[cfg(feature = "spawn")]
pub use proc_spawn::{
    active_children, cpu_count, current_process, get_all_start_methods, get_context,
    get_start_method, parent_process, set_start_method, Context, JoinHandle, Process, ProcessInfo,
    Run, StartMethod,
};

#[cfg(feature = "pool")]
pub use proc_pool::{AsyncResult, Pool, ThreadPool};

#[cfg(feature = "manager")]
pub use proc_manager::{DictProxy, ListProxy, Manager, NamespaceProxy, ValueProxy};
