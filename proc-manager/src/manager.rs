//! [`Manager`]: starting a server process (or reaching one elsewhere) and making objects in it.

use std::fmt;
use std::io::Read;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc_channel_core::{Address, Connection, Pipe};
use proc_spawn::{Context, Process};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{enc, map_channel, unexpected, Endpoint, Handle};
use crate::error::{Error, Result};
use crate::proxies::{DictProxy, ListProxy, NamespaceProxy, ValueProxy};
use crate::shared::{Proxy, Registered, Registry, Shared, Types};
use crate::sync::{
    BarrierProxy, ConditionProxy, EventProxy, LockProxy, QueueProxy, RLockProxy, SemaphoreProxy,
};
use crate::wire::{Init, Kind, OwnerMsg, Reply, Request};

/// How long [`Manager::start`] waits for the server to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a shutdown waits for the server to exit before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server process is started with.
#[derive(Serialize, Deserialize)]
struct Boot {
    owner: Connection,
    address: Option<Address>,
    authkey: Vec<u8>,
}

/// The server process's body, monomorphised for the registered user types.
fn server_main<R: Registry>(boot: Boot) {
    let mut types = Types::default();
    R::install(&mut types);
    crate::server::run_owned(boot.owner, boot.address, boot.authkey, types.0);
}

fn random_key() -> Result<Vec<u8>> {
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| {
            Error::InvalidArgument(format!("cannot read /dev/urandom for an authkey: {e}"))
        })?;
    Ok(key)
}

/// Configures and starts a manager's server: start method, address, authkey, user types.
///
/// # Examples
///
/// ```
/// use proc_manager::Manager;
/// use proc_spawn::{get_context, StartMethod};
///
/// let manager = Manager::builder()
///     .context(get_context(StartMethod::Spawn))
///     .address("127.0.0.1:0")
///     .authkey(b"secret")
///     .start()?;
/// assert!(matches!(manager.address(), ipc_channel_core::Address::Tcp(_)));
/// # Ok::<(), proc_manager::Error>(())
/// ```
pub struct ManagerBuilder<R = ()> {
    ctx: Option<Context>,
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for ManagerBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("context", &self.ctx)
            .field("address", &self.address)
            .field("registry", &std::any::type_name::<R>())
            .finish()
    }
}

impl ManagerBuilder<()> {
    fn new() -> Self {
        ManagerBuilder {
            ctx: None,
            address: None,
            authkey: None,
            _r: PhantomData,
        }
    }
}

impl<R: Registry> ManagerBuilder<R> {
    /// The start method of the server process (default: the program's,
    /// [`Context::default_context`]).
    pub fn context(mut self, ctx: Context) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// Where the server listens: a TCP address (`"127.0.0.1:0"`: a free port, see
    /// [`Manager::address`]) for remote use, or a Unix socket path. Default: a private Unix
    /// socket in a fresh 0700 directory under the temporary directory.
    pub fn address(mut self, address: impl Into<Address>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The key every client must prove it holds (HMAC-SHA256 challenge, both ways). Default:
    /// 32 random bytes, which the proxies carry to the processes they are sent to.
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }

    /// Makes the server host objects of type `T` ([`Manager::create`]), Python's
    /// `BaseManager.register(typeid, T)`.
    pub fn register<T: Shared>(self) -> ManagerBuilder<(Registered<T>, R)> {
        ManagerBuilder {
            ctx: self.ctx,
            address: self.address,
            authkey: self.authkey,
            _r: PhantomData,
        }
    }

    fn key(&mut self) -> Result<Vec<u8>> {
        match self.authkey.take() {
            Some(k) if k.is_empty() => Err(Error::InvalidArgument(
                "an empty authkey is not a key".into(),
            )),
            Some(k) => Ok(k),
            None => random_key(),
        }
    }

    /// Starts the server process (a daemon child: it dies with this process, whatever kills
    /// it) and waits until it listens.
    ///
    /// # Errors
    ///
    /// [`Error::Start`] when the process cannot be started (for example from a daemon process
    /// such as a pool worker), [`Error::Bind`] when it cannot listen at the address.
    pub fn start(mut self) -> Result<Manager> {
        let authkey = self.key()?;
        let temp_dir = self.address.is_none();
        let (mine, theirs) = Pipe::new().map_err(map_channel)?;
        let ctx = self.ctx.unwrap_or_else(Context::default_context);
        let boot = Boot {
            owner: theirs,
            address: self.address.take(),
            authkey: authkey.clone(),
        };
        let mut process = ctx
            .process(server_main::<R>, boot)
            .name("SyncManager")
            .daemon(true);
        process.start()?;
        let deadline = Instant::now() + START_TIMEOUT;
        let address = loop {
            match mine.recv_timeout::<OwnerMsg>(Duration::from_millis(100)) {
                Ok(OwnerMsg::Listening(Ok(a))) => break a,
                Ok(OwnerMsg::Listening(Err(e))) => {
                    let _ = process.join_timeout(STOP_TIMEOUT);
                    return Err(Error::Bind(e));
                }
                Ok(other) => {
                    let _ = process.kill();
                    return Err(Error::Protocol(format!(
                        "unexpected {other:?} from the server"
                    )));
                }
                Err(ipc_channel_core::Error::Timeout)
                    if process.is_alive() && Instant::now() < deadline => {}
                Err(e) => {
                    let _ = process.kill();
                    let _ = process.join_timeout(STOP_TIMEOUT);
                    return Err(Error::ManagerGone(format!(
                        "the server process ended before listening ({e}, exit code {:?})",
                        process.exitcode()
                    )));
                }
            }
        };
        Ok(Manager {
            inner: Arc::new(Inner {
                ep: Endpoint { address, authkey },
                owned: Some(Mutex::new(Owned {
                    pipe: Some(mine),
                    process,
                    pid: std::process::id(),
                    temp_dir,
                })),
            }),
        })
    }
}

struct Owned {
    pipe: Option<Connection>,
    process: Process,
    /// The process that started the server: a copy of the manager in a forked child does not
    /// stop it when dropped.
    pid: u32,
    /// The server listens in a private directory made for it (removed with the socket).
    temp_dir: bool,
}

struct Inner {
    ep: Endpoint,
    owned: Option<Mutex<Owned>>,
}

impl Inner {
    fn stop(&self) -> Result<()> {
        let Some(owned) = &self.owned else {
            return Err(Error::NotServerOwner);
        };
        let mut o = owned.lock().unwrap_or_else(|e| e.into_inner());
        if o.pid != std::process::id() {
            return Err(Error::NotServerOwner);
        }
        if let Some(pipe) = o.pipe.take() {
            // Ask, then wait for the acknowledgement (or the end of the pipe).
            if pipe.send(&OwnerMsg::Shutdown).is_ok() {
                let _ = pipe.recv_timeout::<OwnerMsg>(STOP_TIMEOUT);
            }
        }
        let r = match o.process.join_timeout(STOP_TIMEOUT) {
            Ok(Some(_)) => Ok(()),
            _ => {
                let _ = o.process.kill();
                o.process.join().map_err(Error::Start)
            }
        };
        // A server that was killed could not remove its socket: do it for it.
        if let Address::Unix(path) = &self.ep.address {
            if path.exists() {
                let _ = std::fs::remove_file(path);
            }
            if o.temp_dir {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
        r
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.owned.is_some() {
            let _ = self.stop();
        }
    }
}

/// A manager: a server process holding shared objects (or a connection to one started
/// elsewhere), and the factory of proxies to them (Python's `multiprocessing.Manager()`,
/// `SyncManager`, `BaseManager`).
///
/// `Clone` shares the same manager; when the last clone of a manager made by
/// [`start`](Manager::start) is dropped, the server shuts down (and it dies with this process
/// if this process is killed). Proxies do not keep the server alive: after shutdown they get
/// [`Error::ManagerGone`]. A manager from [`connect`](Manager::connect) never stops the server.
///
/// # Examples
///
/// ```
/// use proc_manager::Manager;
///
/// fn worker((d, i): (proc_manager::DictProxy<u32, String>, u32)) {
///     d.insert(i, format!("done by {}", std::process::id())).unwrap();
/// }
///
/// proc_spawn::init();
/// let manager = Manager::start()?;
/// let d = manager.dict::<u32, String>()?;
/// let mut children: Vec<proc_spawn::Process> =
///     (0..3).map(|i| proc_spawn::Process::new(worker, (d.clone(), i))).collect();
/// for c in &mut children { c.start()?; }
/// for c in &mut children { c.join()?; }
/// assert_eq!(d.len()?, 3);
/// manager.shutdown()?;
/// assert!(matches!(d.len(), Err(proc_manager::Error::ManagerGone(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.inner.ep.address)
            .field("pid", &self.pid())
            .finish()
    }
}

impl Manager {
    /// Starts a server process with the program's start method and a private Unix socket
    /// (Python's `Manager()`); see [`builder`](Manager::builder) for the options.
    ///
    /// # Errors
    ///
    /// As [`ManagerBuilder::start`].
    pub fn start() -> Result<Manager> {
        Manager::builder().start()
    }

    /// A [`ManagerBuilder`].
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::new()
    }

    /// Reaches a server started elsewhere (Python's `BaseManager(address, authkey).connect()`).
    /// Connects once to check the key: a wrong key is refused here, before any call.
    ///
    /// # Errors
    ///
    /// [`Error::Authentication`] for a wrong key, [`Error::ManagerGone`] when nothing
    /// listens at `address`, [`Error::InvalidArgument`] for an empty key.
    pub fn connect(address: impl Into<Address>, authkey: &[u8]) -> Result<Manager> {
        if authkey.is_empty() {
            return Err(Error::InvalidArgument(
                "an empty authkey is not a key".into(),
            ));
        }
        let m = Manager {
            inner: Arc::new(Inner {
                ep: Endpoint {
                    address: address.into(),
                    authkey: authkey.to_vec(),
                },
                owned: None,
            }),
        };
        // A dedicated connection: the key is checked now, whatever this thread has cached.
        let conn = m.inner.ep.connect()?;
        conn.send(&Request::Ping)
            .and_then(|()| conn.recv::<crate::wire::Response>())
            .map_err(map_channel)?
            .map_err(Error::from)?;
        Ok(m)
    }

    /// Where the server listens (with the real port after binding port 0).
    pub fn address(&self) -> Address {
        self.inner.ep.address.clone()
    }

    /// The key clients must hold.
    pub fn authkey(&self) -> &[u8] {
        &self.inner.ep.authkey
    }

    /// The server's pid, for a manager made by [`start`](Manager::start).
    pub fn pid(&self) -> Option<u32> {
        let owned = self.inner.owned.as_ref()?;
        owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .process
            .pid()
    }

    /// Asks the server for its pid and the number of objects it holds (a health check).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when it does not answer.
    pub fn ping(&self) -> Result<(u32, usize)> {
        match self.inner.ep.request(&Request::Ping)? {
            Reply::Pong(pid, n) => Ok((pid, n as usize)),
            r => Err(unexpected(r)),
        }
    }

    /// Stops the server now (Python's `manager.shutdown()`): it exits, and every proxy gets
    /// [`Error::ManagerGone`] from then on; calls blocked in the server return that error too.
    /// Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::NotServerOwner`] on a manager from [`connect`](Manager::connect).
    pub fn shutdown(&self) -> Result<()> {
        self.inner.stop()
    }

    fn make(&self, kind: Kind, tag: String, name: Option<String>, init: Init) -> Result<Handle> {
        match self.inner.ep.request(&Request::Create {
            kind,
            tag,
            name,
            init,
        })? {
            Reply::Id(id) => Ok(Handle {
                ep: self.inner.ep.clone(),
                id,
            }),
            r => Err(unexpected(r)),
        }
    }

    /// Objects with a name, found by any process that reaches the server: see [`Named`].
    pub fn named(&self, name: &str) -> Named<'_> {
        Named {
            m: self,
            name: Some(name.to_string()),
        }
    }

    fn anon(&self) -> Named<'_> {
        Named {
            m: self,
            name: None,
        }
    }

    /// A new empty dict (Python's `manager.dict()`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] (so every constructor).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        self.anon().dict()
    }

    /// A new empty list (Python's `manager.list()`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        self.anon().list()
    }

    /// A new empty namespace (Python's `manager.Namespace()`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        self.anon().namespace()
    }

    /// A new value (Python's `manager.Value(typecode, v)`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`], [`Error::Codec`].
    pub fn value<T: Serialize>(&self, initial: T) -> Result<ValueProxy<T>> {
        self.anon().value(initial)
    }

    /// A new unbounded queue (Python's `manager.Queue()`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        self.anon().queue()
    }

    /// A new queue holding at most `maxsize` items (Python's `manager.Queue(maxsize)`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`], [`Error::InvalidArgument`] for 0.
    pub fn queue_bounded<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        self.anon().queue_bounded(maxsize)
    }

    /// A new lock (Python's `manager.Lock()`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn lock(&self) -> Result<LockProxy> {
        self.anon().lock()
    }

    /// A new re-entrant lock (Python's `manager.RLock()`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn rlock(&self) -> Result<RLockProxy> {
        self.anon().rlock()
    }

    /// A new semaphore holding `value` units (Python's `manager.Semaphore(value)`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        self.anon().semaphore(value)
    }

    /// A new bounded semaphore (Python's `manager.BoundedSemaphore(value)`): releasing above
    /// `value` is [`Error::OverReleased`].
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn bounded_semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        self.anon().bounded_semaphore(value)
    }

    /// A new event (Python's `manager.Event()`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn event(&self) -> Result<EventProxy> {
        self.anon().event()
    }

    /// A new condition with its own re-entrant lock (Python's `manager.Condition()`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`].
    pub fn condition(&self) -> Result<ConditionProxy> {
        self.anon().condition()
    }

    /// A new condition using `lock` (a [`LockProxy`] or [`RLockProxy`] of this manager).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`], [`Error::NoSuchObject`] for a lock of another manager.
    pub fn condition_with_lock(&self, lock: &impl AsLock) -> Result<ConditionProxy> {
        self.anon().condition_with_lock(lock)
    }

    /// A new barrier for `parties` callers (Python's `manager.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`], [`Error::InvalidArgument`] for 0.
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy> {
        self.anon().barrier(parties)
    }

    /// A new object of a registered user type `T`, starting as `initial`.
    ///
    /// # Errors
    ///
    /// [`Error::Unregistered`] when the server does not know `T`
    /// ([`ManagerBuilder::register`]), [`Error::ManagerGone`].
    pub fn create<T: Shared>(&self, initial: T) -> Result<Proxy<T>> {
        self.anon().create(initial)
    }
}

/// A lock a condition can use: [`LockProxy`] or [`RLockProxy`].
pub trait AsLock {
    /// The lock's object id in its server.
    #[doc(hidden)]
    fn lock_id(&self) -> u64;
}

impl AsLock for LockProxy {
    fn lock_id(&self) -> u64 {
        self.id()
    }
}

impl AsLock for RLockProxy {
    fn lock_id(&self) -> u64 {
        self.id()
    }
}

/// Makes objects with a name, or finds the object of that name if it exists ("get or create",
/// how processes that share nothing but the address find the same queue: Python's
/// `BaseManager.register('get_queue', callable=lambda: queue)`). From
/// [`Manager::named`]. Asking for a name that holds another kind of object, or the same kind
/// with other type parameters, is [`Error::WrongType`]; [`Named::open`] finds without making, and an absent name is
/// then [`Error::NoSuchObject`].
///
/// # Examples
///
/// ```
/// use proc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let a = manager.named("results").dict::<String, u32>()?;
/// a.insert("x".into(), 1)?;
/// // Another process, knowing only the address, the key and the name:
/// let elsewhere = Manager::connect(manager.address(), manager.authkey())?;
/// let b = elsewhere.named("results").dict::<String, u32>()?;
/// assert_eq!(b.get(&"x".into())?, Some(1));
/// assert!(elsewhere.named("results").list::<u32>().is_err());
/// # Ok::<(), proc_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct Named<'m> {
    m: &'m Manager,
    name: Option<String>,
}

fn tag2<A, B>() -> String {
    format!(
        "{}, {}",
        std::any::type_name::<A>(),
        std::any::type_name::<B>()
    )
}

fn tag1<A>() -> String {
    std::any::type_name::<A>().to_string()
}

impl Named<'_> {
    fn make(&self, kind: Kind, tag: String, init: Init) -> Result<Handle> {
        self.m.make(kind, tag, self.name.clone(), init)
    }

    /// The dict of this name (made empty if absent).
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`] when the name holds something else, [`Error::ManagerGone`].
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::from_handle(self.make(
            Kind::Dict,
            tag2::<K, V>(),
            Init::Empty,
        )?))
    }

    /// The list of this name (made empty if absent).
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy::from_handle(self.make(
            Kind::List,
            tag1::<T>(),
            Init::Empty,
        )?))
    }

    /// The namespace of this name (made empty if absent).
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy::from_handle(self.make(
            Kind::Namespace,
            String::new(),
            Init::Empty,
        )?))
    }

    /// The value of this name (made with `initial` if absent).
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict), [`Error::Codec`].
    pub fn value<T: Serialize>(&self, initial: T) -> Result<ValueProxy<T>> {
        Ok(ValueProxy::from_handle(self.make(
            Kind::Value,
            tag1::<T>(),
            Init::Bytes(enc(&initial)?),
        )?))
    }

    /// The unbounded queue of this name.
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::from_handle(self.make(
            Kind::Queue,
            tag1::<T>(),
            Init::Queue { maxsize: None },
        )?))
    }

    /// The bounded queue of this name.
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict), [`Error::InvalidArgument`] for 0.
    pub fn queue_bounded<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        if maxsize == 0 {
            return Err(Error::InvalidArgument("a queue bound of 0".into()));
        }
        Ok(QueueProxy::from_handle(self.make(
            Kind::Queue,
            tag1::<T>(),
            Init::Queue {
                maxsize: Some(maxsize as u64),
            },
        )?))
    }

    /// The lock of this name.
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy::from_handle(self.make(
            Kind::Lock,
            String::new(),
            Init::Empty,
        )?))
    }

    /// The re-entrant lock of this name.
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn rlock(&self) -> Result<RLockProxy> {
        Ok(RLockProxy::from_handle(self.make(
            Kind::RLock,
            String::new(),
            Init::Empty,
        )?))
    }

    /// The semaphore of this name.
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy::from_handle(self.make(
            Kind::Semaphore,
            String::new(),
            Init::Semaphore {
                value: value as u64,
                bound: None,
            },
        )?))
    }

    /// The bounded semaphore of this name.
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn bounded_semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy::from_handle(self.make(
            Kind::Semaphore,
            "bounded".into(),
            Init::Semaphore {
                value: value as u64,
                bound: Some(value as u64),
            },
        )?))
    }

    /// The event of this name.
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy::from_handle(self.make(
            Kind::Event,
            String::new(),
            Init::Empty,
        )?))
    }

    /// The condition of this name (with its own re-entrant lock).
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn condition(&self) -> Result<ConditionProxy> {
        Ok(ConditionProxy::from_handle(self.make(
            Kind::Condition,
            String::new(),
            Init::Condition { lock: None },
        )?))
    }

    /// The condition of this name, using `lock`.
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict).
    pub fn condition_with_lock(&self, lock: &impl AsLock) -> Result<ConditionProxy> {
        Ok(ConditionProxy::from_handle(self.make(
            Kind::Condition,
            String::new(),
            Init::Condition {
                lock: Some(lock.lock_id()),
            },
        )?))
    }

    /// The barrier of this name.
    ///
    /// # Errors
    ///
    /// As [`dict`](Self::dict), [`Error::InvalidArgument`] for 0 parties.
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy> {
        if parties == 0 {
            return Err(Error::InvalidArgument("a barrier of 0 parties".into()));
        }
        Ok(BarrierProxy::from_handle(self.make(
            Kind::Barrier,
            String::new(),
            Init::Barrier {
                parties: parties as u64,
            },
        )?))
    }

    /// The user object of this name (made from `initial` if absent).
    ///
    /// # Errors
    ///
    /// As [`Manager::create`].
    pub fn create<T: Shared>(&self, initial: T) -> Result<Proxy<T>> {
        Ok(Proxy::from_handle(self.make(
            Kind::User,
            T::TYPEID.to_string(),
            Init::Bytes(enc(&initial)?),
        )?))
    }

    /// The existing user object of this name, without making one.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchObject`] when no object has this name, [`Error::WrongType`].
    pub fn open<T: Shared>(&self) -> Result<Proxy<T>> {
        let name = self
            .name
            .clone()
            .ok_or_else(|| Error::InvalidArgument("open needs a name".into()))?;
        match self.m.inner.ep.request(&Request::Open {
            kind: Kind::User,
            tag: T::TYPEID.to_string(),
            name,
        })? {
            Reply::Id(id) => Ok(Proxy::from_handle(Handle {
                ep: self.m.inner.ep.clone(),
                id,
            })),
            r => Err(unexpected(r)),
        }
    }
}

#[allow(dead_code)]
fn _assert_traits() {
    fn send_sync<T: Send + Sync + Clone + Serialize + DeserializeOwned>() {}
    send_sync::<DictProxy<String, u32>>();
    send_sync::<ListProxy<u32>>();
    send_sync::<QueueProxy<u32>>();
    send_sync::<LockProxy>();
    fn send_sync_only<T: Send + Sync>() {}
    send_sync_only::<Manager>();
}
