//! Your own shared objects (Python's `BaseManager.register`): a serde type whose methods are
//! requests handled in the server, reached through a typed [`Proxy`].

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{dec, enc, Handle};
use crate::error::Result;
use crate::wire::{Op, WireError};

/// A type a manager can host: its state is a serde value that lives in the server, and its
/// methods are the variants of [`Request`](Shared::Request), answered by
/// [`handle`](Shared::handle) in the server with a [`Response`](Shared::Response).
///
/// Register the type with the server before it starts
/// ([`ManagerBuilder::register`](crate::ManagerBuilder::register)), make an object with
/// [`Manager::create`](crate::Manager::create) and call it with [`Proxy::call`]. Calls on one
/// object run one at a time (under the object's mutex), so `handle` sees a consistent `self`;
/// it should not block (it holds that mutex). A panic in `handle` comes back to the caller
/// as [`Error::Remote`](crate::Error::Remote) and the object stays as the panic left it.
///
/// # Examples
///
/// ```
/// use proc_manager::{Manager, Shared};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Tally { counts: Vec<u32> }
///
/// #[derive(Serialize, Deserialize)]
/// enum TallyReq { Add(usize), Total }
///
/// impl Shared for Tally {
///     const TYPEID: &'static str = "Tally";
///     type Request = TallyReq;
///     type Response = u64;
///     fn handle(&mut self, req: TallyReq) -> u64 {
///         match req {
///             TallyReq::Add(i) => { self.counts[i] += 1; u64::from(self.counts[i]) }
///             TallyReq::Total => self.counts.iter().map(|&c| u64::from(c)).sum(),
///         }
///     }
/// }
///
/// let manager = Manager::builder().register::<Tally>().start()?;
/// let tally = manager.create(Tally { counts: vec![0; 3] })?;
/// assert_eq!(tally.call(TallyReq::Add(1))?, 1);
/// assert_eq!(tally.call(TallyReq::Add(1))?, 2);
/// assert_eq!(tally.call(TallyReq::Total)?, 2);
/// assert_eq!(tally.get()?.counts, vec![0, 2, 0]);
/// # Ok::<(), proc_manager::Error>(())
/// ```
pub trait Shared: Serialize + DeserializeOwned + Send + 'static {
    /// The name the server knows the type by (Python's `typeid`). Unique per manager.
    const TYPEID: &'static str;
    /// A method call: usually an enum with a variant per method.
    type Request: Serialize + DeserializeOwned;
    /// The answer to a call.
    type Response: Serialize + DeserializeOwned;
    /// Runs one call in the server.
    fn handle(&mut self, request: Self::Request) -> Self::Response;
}

/// The set of user types a server knows, as a type-level list: `()` for none,
/// `(Registered<T>, Rest)` for `T` and the rest. Built by
/// [`ManagerBuilder::register`](crate::ManagerBuilder::register); because it is a type, the
/// server function monomorphised for it runs in the child under every start method.
pub trait Registry: 'static {
    /// Adds this list's types to `table`.
    #[doc(hidden)]
    fn install(table: &mut Types);
}

/// One entry of a [`Registry`] list.
pub struct Registered<T>(PhantomData<fn() -> T>);

impl Registry for () {
    fn install(_: &mut Types) {}
}

impl<T: Shared, Rest: Registry> Registry for (Registered<T>, Rest) {
    fn install(table: &mut Types) {
        table.0.insert(T::TYPEID, construct::<T>);
        Rest::install(table);
    }
}

/// The user types a server knows (filled by a [`Registry`]; opaque).
#[doc(hidden)]
#[derive(Default)]
pub struct Types(pub(crate) Table);

/// The server's constructors of user types, by type id.
pub(crate) type Table = HashMap<&'static str, Ctor>;

pub(crate) type Ctor = fn(&[u8]) -> std::result::Result<Box<dyn Erased>, WireError>;

/// A hosted user object, with its type erased.
pub(crate) trait Erased: Send {
    fn call(&mut self, request: &[u8]) -> std::result::Result<Vec<u8>, WireError>;
    fn get(&self) -> std::result::Result<Vec<u8>, WireError>;
}

struct Hosted<T>(T);

thread_local! {
    static IN_HANDLER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps the server's standard error quiet about panics in user handlers: they are reported
/// to the caller as [`Error::Remote`](crate::Error::Remote) instead.
pub(crate) fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_HANDLER.try_with(|h| h.get()).unwrap_or(false) {
                previous(info);
            }
        }));
    });
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

impl<T: Shared> Erased for Hosted<T> {
    fn call(&mut self, request: &[u8]) -> std::result::Result<Vec<u8>, WireError> {
        let req: T::Request = postcard::from_bytes(request).map_err(|e| WireError::WrongType {
            expected: std::any::type_name::<T::Request>().into(),
            found: format!("a request that does not decode ({e})"),
        })?;
        IN_HANDLER.with(|h| h.set(true));
        let resp = catch_unwind(AssertUnwindSafe(|| self.0.handle(req)));
        IN_HANDLER.with(|h| h.set(false));
        let resp = resp.map_err(|p| WireError::Remote(panic_message(p)))?;
        postcard::to_allocvec(&resp).map_err(|e| WireError::Remote(e.to_string()))
    }

    fn get(&self) -> std::result::Result<Vec<u8>, WireError> {
        postcard::to_allocvec(&self.0).map_err(|e| WireError::Remote(e.to_string()))
    }
}

fn construct<T: Shared>(init: &[u8]) -> std::result::Result<Box<dyn Erased>, WireError> {
    let v: T = postcard::from_bytes(init).map_err(|e| WireError::WrongType {
        expected: std::any::type_name::<T>().into(),
        found: format!("an initial value that does not decode ({e})"),
    })?;
    Ok(Box::new(Hosted(v)))
}

/// A proxy to a user object of type `T` hosted by a manager: [`call`](Proxy::call) runs one
/// of its methods in the server (one round trip). `Clone`, and serde: it travels to children
/// under every start method and reconnects there.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Proxy<T> {
    pub(crate) h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Proxy<T> {
    fn clone(&self) -> Self {
        Proxy::from_handle(self.h.clone())
    }
}

impl<T> fmt::Debug for Proxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Proxy<{}>({:?}, id {})",
            std::any::type_name::<T>(),
            self.h.ep,
            self.h.id
        )
    }
}

impl<T> Proxy<T> {
    pub(crate) fn from_handle(h: Handle) -> Self {
        Proxy { h, _t: PhantomData }
    }
}

impl<T: Shared> Proxy<T> {
    /// Runs `request` on the object in the server and returns its answer.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`](crate::Error::Remote) when the handler panicked,
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) when the server is unreachable.
    pub fn call(&self, request: T::Request) -> Result<T::Response> {
        let b = self.h.bytes(Op::UserCall(enc(&request)?))?;
        dec(&b)
    }

    /// A copy of the whole object as it is now.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`](crate::Error::ManagerGone) when the server is unreachable.
    pub fn get(&self) -> Result<T> {
        dec(&self.h.bytes(Op::UserGet)?)
    }

    /// Removes the object from the server; every proxy to it then gets
    /// [`Error::NoSuchObject`](crate::Error::NoSuchObject).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchObject`](crate::Error::NoSuchObject) when it was already removed.
    pub fn destroy(&self) -> Result<()> {
        self.h.destroy()
    }
}
