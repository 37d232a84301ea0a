//! The crate's error type.

use std::io;

use ipc_shm::TransferError;

/// What can go wrong starting, watching or joining a process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The arguments, or a result, could not be encoded or decoded (including their handles).
    #[error("cannot transfer the {what}: {source}")]
    Transfer {
        /// `"arguments"` or `"result"`.
        what: &'static str,
        /// Why.
        #[source]
        source: TransferError,
    },
    /// `start()` was called on a process that was already started (Python's
    /// `AssertionError('cannot start a process twice')`).
    #[error("cannot start a process twice")]
    AlreadyStarted,
    /// The operation needs a started process (`join` before `start`, Python's
    /// `AssertionError('can only join a started process')`).
    #[error("process not started")]
    NotStarted,
    /// A daemon process tried to start a child (Python's
    /// `AssertionError('daemonic processes are not allowed to have children')`).
    #[error("daemonic processes are not allowed to have children")]
    DaemonChildren,
    /// The start method was already chosen (by `set_start_method` or by a first use).
    #[error("context has already been set (start method {0})")]
    ContextAlreadySet(crate::StartMethod),
    /// A start method name that is not `fork`, `spawn` or `forkserver`.
    #[error("cannot find context for {0:?} (expected fork, spawn or forkserver)")]
    UnknownStartMethod(String),
    /// A closure target (only possible under `Fork`) was started with another start method.
    #[error("a closure can only be started with the fork start method, not {0}")]
    ClosureNeedsFork(crate::StartMethod),
    /// The child process ended (or hung up) before it reached `proc_spawn::init()`: the program
    /// neither has the life-before-main hook nor calls `init()` first thing in `main`.
    #[error(
        "the child process exited before it reached proc_spawn::init(): call proc_spawn::init() \
         (or multiproc::init()) on the first line of main, before anything that may start a \
         process{detail}"
    )]
    NotInitialized {
        /// Extra detail (the child's exit code, when known).
        detail: String,
    },
    /// The child refused to run the request (a different executable, an address outside its
    /// code, a malformed bootstrap message).
    #[error("the child refused to start: {0}")]
    Refused(String),
    /// A [`RemoteFn`](crate::RemoteFn) names an address outside this executable's code:
    /// nothing was called.
    #[error("refusing to call a remote function: {0}")]
    CallRefused(String),
    /// The fork server could not be started or did not answer.
    #[error("fork server: {0}")]
    ForkServer(String),
    /// The child panicked; the message is the panic's.
    #[error("child process {name} panicked: {message}")]
    Panicked {
        /// The child's name.
        name: String,
        /// The panic message.
        message: String,
    },
    /// The child was killed by a signal before it produced its result.
    #[error("child process {name} was killed by signal {signal}")]
    Signaled {
        /// The child's name.
        name: String,
        /// The signal number.
        signal: i32,
    },
    /// The child exited without producing its result (it called `std::process::exit`, say).
    #[error("child process {name} exited with code {code} without a result")]
    Exited {
        /// The child's name.
        name: String,
        /// Its exit code.
        code: i32,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, source: io::Error) -> Error {
        Error::Io { op, source }
    }
}

/// `Result` with this crate's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
