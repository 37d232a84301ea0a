//! The crate's error type: what a task, a result or a pool operation can fail with.

use std::fmt;

/// Everything that can go wrong in a pool, as plain data (PP3: an error always reaches the
/// parent, and nothing is re-constructed by running user code).
///
/// The issue and Python's vocabulary call the task errors `TaskError`; that name is an alias
/// of this type ([`TaskError`]).
///
/// `Error` is `Clone + Eq`, so one failure (a broken pool, say) can be handed to every result
/// it concerns, and tests can compare errors directly.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked; `message` is its panic message (Python re-raises the worker's
    /// exception). The worker survives and goes on with other tasks.
    Panicked {
        /// The panic message (`"Box<dyn Any>"` when the payload was not a string).
        message: String,
        /// Where it panicked (`file:line:column`), when known.
        location: Option<String>,
    },
    /// The worker process running the task died (killed by a signal, `abort`, a segfault,
    /// `std::process::exit`) before returning its result. Python's pool hangs here (PP1); this
    /// pool fails the task(s) the worker held, replaces it and goes on.
    WorkerLost {
        /// The pid of the worker that died.
        pid: u32,
        /// Its exit code as [`proc_spawn::Process::exitcode`] reports it: `-N` when killed by
        /// signal `N`, `None` when it could not be learnt.
        exitcode: Option<i32>,
    },
    /// The pool's initializer panicked in a worker: the pool is broken, and every pending and
    /// future task fails with this error (Python respawns workers forever, PP2).
    InitializerFailed {
        /// The initializer's panic message.
        message: String,
    },
    /// The result was not ready in time (Python's `multiprocessing.TimeoutError`). The result
    /// stays retrievable: ask again later.
    Timeout,
    /// `SIGINT` (Ctrl-C) arrived while this thread was blocked waiting on the pool (Python's
    /// `KeyboardInterrupt`). Nothing was cancelled: the results stay retrievable, and the pool
    /// can be terminated or used again.
    Interrupted,
    /// The pool was closed or terminated: it takes no new work (Python's
    /// `ValueError('Pool not running')`).
    NotRunning,
    /// `join()` on a pool that was neither closed nor terminated (Python's
    /// `ValueError('Pool is still running')`).
    StillRunning,
    /// The pool was terminated (or dropped) before the task completed; its result will never
    /// come. Python leaves such results unresolved forever (PP13).
    Terminated,
    /// The value of a successful result was already taken by an earlier `get`.
    AlreadyTaken,
    /// An argument is invalid: a chunksize of 0, say.
    InvalidArgument(String),
    /// The arguments or the result could not be encoded (Python's pickling errors and
    /// `MaybeEncodingError`), or a handle inside them could not travel.
    Encode(String),
    /// The arguments or the result could not be decoded.
    Decode(String),
    /// A worker refused to run the function (it does not lie in this executable's code).
    Refused(String),
    /// A worker process could not be started.
    Spawn(String),
    /// The channel to a worker failed in an unexpected way.
    Channel(String),
}

/// The name the issue and Python's vocabulary use for the errors of tasks: the same type as
/// [`Error`].
pub type TaskError = Error;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Panicked { message, location } => match location {
                Some(l) => write!(f, "task panicked at {l}: {message}"),
                None => write!(f, "task panicked: {message}"),
            },
            Error::WorkerLost { pid, exitcode } => match exitcode {
                Some(c) if *c < 0 => write!(
                    f,
                    "worker process {pid} died (killed by signal {}) while running the task",
                    -c
                ),
                Some(c) => write!(
                    f,
                    "worker process {pid} died (exit code {c}) while running the task"
                ),
                None => write!(f, "worker process {pid} died while running the task"),
            },
            Error::InitializerFailed { message } => {
                write!(f, "pool is broken: its initializer panicked: {message}")
            }
            Error::Timeout => f.write_str("timed out waiting for the result"),
            Error::Interrupted => f.write_str("interrupted by SIGINT while waiting"),
            Error::NotRunning => f.write_str("pool not running"),
            Error::StillRunning => {
                f.write_str("pool is still running (close or terminate it first)")
            }
            Error::Terminated => f.write_str("pool was terminated before the task completed"),
            Error::AlreadyTaken => f.write_str("the result was already taken by an earlier get"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Encode(m) => write!(f, "cannot encode: {m}"),
            Error::Decode(m) => write!(f, "cannot decode: {m}"),
            Error::Refused(m) => write!(f, "worker refused the task: {m}"),
            Error::Spawn(m) => write!(f, "cannot start a worker process: {m}"),
            Error::Channel(m) => write!(f, "worker channel failed: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<proc_spawn::Error> for Error {
    fn from(e: proc_spawn::Error) -> Self {
        Error::Spawn(e.to_string())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
