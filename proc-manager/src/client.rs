//! The client side: where a server is, one connection per thread per server (made lazily,
//! remade after a fork or a failure), and the call itself.

use std::cell::RefCell;
use std::fmt;

use ipc_channel_core::{Address, Client, Connection};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::wire::{Op, Reply, Request, Response};

/// Where a manager's server listens and the key it wants: everything a proxy needs to reach
/// it from any process. Serializing it writes the authkey: treat a serialized proxy like a
/// password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Endpoint {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        write!(f, "{}", self.address)
    }
}

struct Cached {
    address: Address,
    authkey: Vec<u8>,
    pid: u32,
    conn: Connection,
}

thread_local! {
    /// This thread's connections, one per server. A server serves each connection on its own
    /// thread, so one thread blocked in the server (a lock, a queue) never delays another, and
    /// the connection is the identity that owns a manager lock.
    static CONNS: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn map_channel(e: ipc_channel_core::Error) -> Error {
    use ipc_channel_core::Error as C;
    match e {
        C::Authentication(m) => Error::Authentication(m),
        C::Handshake(m) => Error::Authentication(format!("handshake: {m}")),
        C::Eof | C::Broken | C::Closed | C::TruncatedFrame { .. } => {
            Error::ManagerGone(format!("connection lost ({e})"))
        }
        C::Io(io) => Error::ManagerGone(io.to_string()),
        C::Decode(m) => Error::Protocol(format!("undecodable reply: {m}")),
        C::Encode(m) => Error::Codec(m),
        other => Error::Protocol(other.to_string()),
    }
}

impl Endpoint {
    /// A new, dedicated connection.
    pub(crate) fn connect(&self) -> Result<Connection> {
        Client::connect(self.address.clone(), Some(&self.authkey)).map_err(map_channel)
    }

    /// This thread's connection to the server, made if needed.
    fn connection(&self) -> Result<Connection> {
        let pid = std::process::id();
        let found = CONNS
            .try_with(|c| {
                let mut c = c.borrow_mut();
                // Connections inherited through fork belong to the parent: forget them.
                c.retain(|x| x.pid == pid);
                c.iter()
                    .find(|x| x.address == self.address && x.authkey == self.authkey)
                    .map(|x| x.conn.clone())
            })
            .ok()
            .flatten();
        if let Some(conn) = found {
            return Ok(conn);
        }
        let conn = self.connect()?;
        let _ = CONNS.try_with(|c| {
            c.borrow_mut().push(Cached {
                address: self.address.clone(),
                authkey: self.authkey.clone(),
                pid,
                conn: conn.clone(),
            })
        });
        Ok(conn)
    }

    fn forget(&self) {
        let _ = CONNS.try_with(|c| {
            c.borrow_mut()
                .retain(|x| x.address != self.address || x.authkey != self.authkey)
        });
    }

    /// One round trip: send `req` on this thread's connection, read the answer.
    pub(crate) fn request(&self, req: &Request) -> Result<Reply> {
        let conn = self.connection()?;
        let r = conn
            .send(req)
            .and_then(|()| conn.recv::<Response>())
            .map_err(map_channel);
        match r {
            Ok(resp) => resp.map_err(Error::from),
            Err(e) => {
                // The stream may be mid-frame or dead: start afresh next time.
                self.forget();
                Err(e)
            }
        }
    }

    pub(crate) fn call(&self, id: u64, op: Op) -> Result<Reply> {
        self.request(&Request::Call { id, op })
    }
}

/// A reply of an unexpected shape.
pub(crate) fn unexpected(r: Reply) -> Error {
    Error::Protocol(format!("unexpected reply {r:?}"))
}

pub(crate) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| Error::Codec(e.to_string()))
}

pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(|e| Error::WrongType {
        expected: std::any::type_name::<T>().to_string(),
        found: format!("bytes that do not decode as it ({e})"),
    })
}

/// The handle every proxy holds: the server and the object's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Handle {
    pub(crate) ep: Endpoint,
    pub(crate) id: u64,
}

impl Handle {
    pub(crate) fn call(&self, op: Op) -> Result<Reply> {
        self.ep.call(self.id, op)
    }

    pub(crate) fn unit(&self, op: Op) -> Result<()> {
        match self.call(op)? {
            Reply::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) fn boolean(&self, op: Op) -> Result<bool> {
        match self.call(op)? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) fn count(&self, op: Op) -> Result<u64> {
        match self.call(op)? {
            Reply::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) fn bytes(&self, op: Op) -> Result<Vec<u8>> {
        match self.call(op)? {
            Reply::Bytes(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) fn maybe<T: DeserializeOwned>(&self, op: Op) -> Result<Option<T>> {
        match self.call(op)? {
            Reply::MaybeBytes(b) => b.map(|b| dec(&b)).transpose(),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) fn list<T: DeserializeOwned>(&self, op: Op) -> Result<Vec<T>> {
        match self.call(op)? {
            Reply::List(items) => items.iter().map(|b| dec(b)).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// Removes the object from the server.
    pub(crate) fn destroy(&self) -> Result<()> {
        match self.ep.request(&Request::Destroy { id: self.id })? {
            Reply::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }
}
