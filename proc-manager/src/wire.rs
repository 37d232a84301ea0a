//! The protocol between proxies and the server: one [`Request`] frame, one [`Response`] frame.
//!
//! Values inside requests are postcard bytes the server never decodes (it stores and compares
//! them); only user types registered with the server ([`crate::Shared`]) are decoded there.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What kind of object an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Namespace,
    Value,
    Queue,
    Lock,
    RLock,
    Semaphore,
    Event,
    Condition,
    Barrier,
    User,
}

/// How long a blocking operation may wait in the server.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum Wait {
    /// As long as it takes.
    Forever,
    /// Not at all (`try_` forms).
    No,
    /// At most this long.
    For(Duration),
}

/// Construction arguments of a new object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Init {
    Empty,
    Bytes(Vec<u8>),
    Queue { maxsize: Option<u64> },
    Semaphore { value: u64, bound: Option<u64> },
    Barrier { parties: u64 },
    Condition { lock: Option<u64> },
}

/// One request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Make an object (or, with a name, find the one of that name, making it if there is none).
    Create {
        kind: Kind,
        tag: String,
        name: Option<String>,
        init: Init,
    },
    /// Find an existing object by name.
    Open {
        kind: Kind,
        tag: String,
        name: String,
    },
    /// Remove an object (and its name).
    Destroy { id: u64 },
    /// Operate on an object.
    Call { id: u64, op: Op },
    /// The server's pid and how many objects it holds.
    Ping,
}

/// What the owner and its server say on the private pipe made at start: the server's address
/// (or why it cannot listen), then the owner's order to stop and the server's acknowledgement.
/// The end of the pipe (the owner gone) stops the server too.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum OwnerMsg {
    Listening(Result<ipc_channel_core::Address, String>),
    Shutdown,
    Stopping,
}

/// An operation on one object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    // dict
    DictGet(Vec<u8>),
    DictInsert(Vec<u8>, Vec<u8>),
    DictRemove(Vec<u8>),
    DictContains(Vec<u8>),
    DictKeys,
    DictValues,
    DictItems,
    DictUpdate(Vec<(Vec<u8>, Vec<u8>)>),
    DictCas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
    // list
    ListPush(Vec<u8>),
    ListPop,
    ListGet(u64),
    ListSet(u64, Vec<u8>),
    ListExtend(Vec<Vec<u8>>),
    ListAll,
    ListInsert(u64, Vec<u8>),
    ListRemove(u64),
    ListCas {
        index: u64,
        expected: Vec<u8>,
        new: Vec<u8>,
    },
    // namespace: (field, type tag, bytes)
    NsGet(String, String),
    NsSet(String, String, Vec<u8>),
    NsRemove(String),
    NsFields,
    NsCas {
        field: String,
        tag: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
    // value
    ValueGet,
    ValueSet(Vec<u8>),
    ValueCas {
        expected: Vec<u8>,
        new: Vec<u8>,
    },
    // shared by containers
    Len,
    Clear,
    // queue
    QueuePut(Vec<u8>, Wait),
    QueueGet(Wait),
    QueueSize,
    QueueMaxsize,
    QueueTaskDone,
    QueueJoin,
    // lock, rlock (and a condition's lock)
    Acquire(Wait),
    Release,
    Locked,
    // semaphore
    SemAcquire(Wait),
    SemRelease,
    SemValue,
    // event
    EventSet,
    EventClear,
    EventIsSet,
    EventWait(Wait),
    // condition
    CondWait(Wait),
    CondNotify(u64),
    CondNotifyAll,
    CondLock,
    // barrier
    BarrierWait(Wait),
    BarrierAbort,
    BarrierReset,
    BarrierState,
    // user types
    UserCall(Vec<u8>),
    UserGet,
}

/// A successful answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Unit,
    Bool(bool),
    Count(u64),
    Id(u64),
    Bytes(Vec<u8>),
    MaybeBytes(Option<Vec<u8>>),
    List(Vec<Vec<u8>>),
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    Names(Vec<String>),
    /// A compare-and-set: whether it swapped, and the current value when it did not.
    Swapped(bool, Option<Vec<u8>>),
    /// A lock was acquired; whether its previous holder died holding it.
    Acquired {
        owner_died: bool,
    },
    NotAcquired,
    /// Barrier: parties, waiting, broken.
    Barrier(u64, u64, bool),
    /// Ping: server pid, number of objects.
    Pong(u32, u64),
}

/// An error raised in the server.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireError {
    KeyNotFound,
    IndexOutOfRange { index: u64, len: u64 },
    WrongType { expected: String, found: String },
    NoSuchObject(String),
    Empty,
    Full,
    Timeout,
    BrokenBarrier,
    NotOwner(String),
    OverReleased,
    TaskDoneTooManyTimes,
    Unregistered(String),
    Remote(String),
    BadRequest(String),
}

/// The answer to a request.
pub(crate) type Response = Result<Reply, WireError>;
