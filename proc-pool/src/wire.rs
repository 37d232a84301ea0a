//! The messages between the pool and its workers, one duplex `Connection` per worker.
//!
//! | message | from | meaning |
//! |---|---|---|
//! | [`ToWorker::Tasks`] | pool | one or more chunks to run, in order |
//! | [`ToWorker::Stop`] | pool | finish and exit (after `close` + `join`) |
//! | `Vec<FromWorker>` | worker | answers, in chunk order: |
//! | [`FromWorker::Done`] | | the results of one chunk (an encoded [`ChunkResults<R>`]) |
//! | [`FromWorker::Failed`] | | a chunk that could not run at all (undecodable, refused) |
//! | [`FromWorker::InitFailed`] | | the initializer panicked; the worker exits |
//!
//! A worker runs its chunks in the order they arrived. Before it starts one it bumps a counter
//! in shared memory (`started`); it sends answers in batches (at once when it has nothing else
//! queued or a result waited 200 µs; at most 256 per message), so trivial tasks cost a fraction
//! of a message each. When a worker dies the pool reads the counter: the chunks it started and
//! did not answer (the one it was running, and any whose answers it had not sent yet) fail with
//! `WorkerLost`; the chunks it never started go to other workers — no chunk runs twice.
//!
//! Each chunk's arguments are encoded once, when submitted, with their descriptors (handles
//! inside the arguments) beside them. Byte fields use serde's byte-string form (one copy, not
//! one call per byte).

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

/// `Vec<u8>` fields as serde byte strings (postcard writes the same bytes as for a sequence of
/// `u8`, but in one copy).
pub(crate) mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(V)
    }
}

/// One chunk: a function and an encoded `Vec` of its arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireChunk {
    pub(crate) id: u64,
    pub(crate) func: FnRef,
    #[serde(with = "bytes")]
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
        #[serde(with = "bytes")]
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

/// The results of one chunk: all values when every item succeeded (the common case, and the
/// compact one), each item's outcome otherwise.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChunkResults<R> {
    All(Vec<R>),
    Each(Vec<Result<R, ItemError>>),
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
