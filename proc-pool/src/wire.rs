//! The messages between the pool and its workers, one duplex `Connection` per worker.
//!
//! | message | from | meaning |
//! |---|---|---|
//! | [`ToWorker::Tasks`] | pool | one or more chunks to run, in order |
//! | [`ToWorker::Stop`] | pool | finish and exit (after `close` + `join`) |
//! | [`FromWorker::Done`] | worker | the results of one chunk (an encoded `Vec<Result<R, ItemError>>`) |
//! | [`FromWorker::Failed`] | worker | a chunk that could not run at all (undecodable, refused) |
//! | [`FromWorker::InitFailed`] | worker | the initializer panicked; the worker exits |
//!
//! A worker runs its chunks in the order they arrived and answers each before it starts the
//! next, so when it dies the pool knows exactly which chunk it was running: the first one not
//! answered. Each chunk's arguments are encoded once, when submitted, with their descriptors
//! (handles inside the arguments) beside them.

use std::os::fd::{AsFd, OwnedFd};

use ipc_shm::transfer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::fnref::FnRef;

/// A descriptor that travels inside a message (by index, with `SCM_RIGHTS`).
#[derive(Debug)]
pub(crate) struct Fd(pub(crate) OwnedFd);

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        transfer::serialize_fd(self.0.as_fd(), "proc-pool argument descriptor", s)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        transfer::deserialize_fd(d).map(Fd)
    }
}

/// Wraps owned descriptors for a message.
pub(crate) fn wrap_fds(fds: Vec<OwnedFd>) -> Vec<Fd> {
    fds.into_iter().map(Fd).collect()
}

/// Unwraps descriptors received in a message.
pub(crate) fn unwrap_fds(fds: Vec<Fd>) -> Vec<OwnedFd> {
    fds.into_iter().map(|f| f.0).collect()
}

/// One chunk: a function and an encoded `Vec` of its arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireChunk {
    pub(crate) id: u64,
    pub(crate) func: FnRef,
    pub(crate) args: Vec<u8>,
    pub(crate) fds: Vec<Fd>,
}

/// Pool → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    Tasks(Vec<WireChunk>),
    Stop,
}

/// Worker → pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    Done {
        id: u64,
        /// How long the chunk ran, in nanoseconds (the pool sizes its prefetch window with it).
        nanos: u64,
        results: Vec<u8>,
        fds: Vec<Fd>,
    },
    Failed {
        id: u64,
        error: ChunkError,
    },
    InitFailed {
        message: String,
    },
}

/// Why one item failed inside a chunk that ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ItemError {
    Panicked {
        message: String,
        location: Option<String>,
    },
}

impl From<ItemError> for Error {
    fn from(e: ItemError) -> Error {
        match e {
            ItemError::Panicked { message, location } => Error::Panicked { message, location },
        }
    }
}

/// Why a whole chunk failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChunkError {
    Decode(String),
    Encode(String),
    Refused(String),
}

impl From<ChunkError> for Error {
    fn from(e: ChunkError) -> Error {
        match e {
            ChunkError::Decode(m) => Error::Decode(format!("the arguments, in the worker: {m}")),
            ChunkError::Encode(m) => Error::Encode(m),
            ChunkError::Refused(m) => Error::Refused(m),
        }
    }
}
