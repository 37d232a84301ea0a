//! The server: the objects, one thread per connection, and the operations.
//!
//! Every object has its own mutex and condition variable; a blocking operation (a lock
//! acquire, a queue get, an event or barrier wait) waits on its object's condition variable in
//! the thread that serves the caller's connection, so one blocked caller never blocks another.
//! While it waits, that thread looks at its connection every [`CHECK_EVERY`]: a caller that
//! died (its process was killed) ends the wait and the connection. When a connection ends,
//! every lock it holds is released and marked so that the next acquirer's guard reports
//! `owner_died()`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipc_channel_core::{Address, Connection, Listener};

use crate::shared::{Erased, Table};
use crate::wire::{Init, Kind, Op, OwnerMsg, Reply, Request, Response, Wait, WireError};

/// How many threads accept connections.
const ACCEPTORS: usize = 4;
/// How long a connecting peer may take to authenticate.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a waiting server thread checks that its caller is still there.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(50);

type R = Result<Reply, WireError>;

/// The caller went away while the server waited for it.
struct Gone;

fn bad(what: &str) -> WireError {
    WireError::BadRequest(what.to_string())
}

fn describe(kind: Kind, tag: &str) -> String {
    if tag.is_empty() {
        format!("{kind:?}")
    } else {
        format!("{kind:?}<{tag}>")
    }
}

// ---------------------------------------------------------------------------------------------
// Object state

/// A dict that keeps insertion order (as Python's does).
#[derive(Default)]
struct Dict {
    index: HashMap<Vec<u8>, u64>,
    order: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
    next: u64,
}

impl Dict {
    fn get(&self, k: &[u8]) -> Option<&Vec<u8>> {
        self.index
            .get(k)
            .and_then(|s| self.order.get(s))
            .map(|(_, v)| v)
    }
    fn insert(&mut self, k: Vec<u8>, v: Vec<u8>) -> Option<Vec<u8>> {
        if let Some(seq) = self.index.get(&k) {
            if let Some(e) = self.order.get_mut(seq) {
                return Some(std::mem::replace(&mut e.1, v));
            }
        }
        let seq = self.next;
        self.next += 1;
        self.index.insert(k.clone(), seq);
        self.order.insert(seq, (k, v));
        None
    }
    fn remove(&mut self, k: &[u8]) -> Option<Vec<u8>> {
        let seq = self.index.remove(k)?;
        self.order.remove(&seq).map(|(_, v)| v)
    }
    fn clear(&mut self) {
        self.index.clear();
        self.order.clear();
    }
}

struct LockState {
    reentrant: bool,
    /// The connection that holds it.
    owner: Option<u64>,
    count: u64,
    /// The last holder's connection ended while holding it.
    owner_died: bool,
    /// Condition waiters: (condition id, ticket, notified).
    waiters: Vec<(u64, u64, bool)>,
    next_ticket: u64,
}

struct QueueState {
    items: VecDeque<Vec<u8>>,
    maxsize: Option<u64>,
    unfinished: u64,
}

struct BarrierState {
    parties: u64,
    count: u64,
    generation: u64,
    resets: u64,
    broken: bool,
}

enum State {
    Dict(Dict),
    List(Vec<Vec<u8>>),
    Namespace(BTreeMap<String, (String, Vec<u8>)>),
    Value(Vec<u8>),
    Queue(QueueState),
    Lock(LockState),
    Semaphore { value: u64, bound: Option<u64> },
    Event(bool),
    Barrier(BarrierState),
    Condition { lock: Arc<Obj>, cond: u64 },
    User(Box<dyn Erased>),
}

pub(crate) struct Obj {
    kind: Kind,
    tag: String,
    state: Mutex<State>,
    cv: Condvar,
}

impl Obj {
    fn new(kind: Kind, tag: String, state: State) -> Arc<Obj> {
        Arc::new(Obj {
            kind,
            tag,
            state: Mutex::new(state),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_lock(reentrant: bool) -> Arc<Obj> {
        Obj::new(
            if reentrant { Kind::RLock } else { Kind::Lock },
            String::new(),
            State::Lock(LockState {
                reentrant,
                owner: None,
                count: 0,
                owner_died: false,
                waiters: Vec::new(),
                next_ticket: 0,
            }),
        )
    }
}

/// Waits on `obj` until `ready` holds (`true`), the wait runs out (`false`), or the caller
/// goes away (`Err(Gone)`).
fn block<'a>(
    obj: &'a Obj,
    mut g: MutexGuard<'a, State>,
    wait: Wait,
    conn: &Connection,
    mut ready: impl FnMut(&mut State) -> bool,
) -> Result<(MutexGuard<'a, State>, bool), Gone> {
    let start = Instant::now();
    let deadline = match wait {
        Wait::Forever => None,
        Wait::No => Some(start),
        Wait::For(d) => start.checked_add(d),
    };
    let mut checked = start;
    loop {
        if ready(&mut g) {
            return Ok((g, true));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok((g, false));
        }
        if now.duration_since(checked) >= CHECK_EVERY {
            checked = now;
            // Nothing may arrive while a call is pending: readable means end of stream.
            if !matches!(conn.poll(Some(Duration::ZERO)), Ok(false)) {
                return Err(Gone);
            }
        }
        let slice = deadline.map_or(CHECK_EVERY, |d| (d - now).min(CHECK_EVERY));
        g = match obj.cv.wait_timeout(g, slice) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
    }
}

// ---------------------------------------------------------------------------------------------
// The server

struct Registry {
    objects: HashMap<u64, Arc<Obj>>,
    names: HashMap<String, u64>,
}

pub(crate) struct Server {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
    table: Table,
}

/// What a connection's thread keeps: its id and the locks it took.
struct Session {
    id: u64,
    held: Vec<Arc<Obj>>,
}

impl Server {
    pub(crate) fn new(table: Table) -> Arc<Server> {
        Arc::new(Server {
            registry: Mutex::new(Registry {
                objects: HashMap::new(),
                names: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            table,
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn object(&self, id: u64) -> Result<Arc<Obj>, WireError> {
        self.registry()
            .objects
            .get(&id)
            .cloned()
            .ok_or_else(|| WireError::NoSuchObject(format!("object {id} (destroyed)")))
    }

    /// Accepts connections forever, each served on its own thread. Several threads accept
    /// (the handshake runs inside `accept`), so a peer that connects and stays silent holds up
    /// one acceptor for the handshake timeout, not every newcomer.
    pub(crate) fn serve(self: &Arc<Server>, mut listener: Listener) -> ! {
        listener.set_handshake_timeout(HANDSHAKE_TIMEOUT);
        let listener = Arc::new(listener);
        for _ in 1..ACCEPTORS {
            let me = self.clone();
            let l = listener.clone();
            let _ = std::thread::Builder::new()
                .name("manager-accept".into())
                .spawn(move || me.accept_loop(&l));
        }
        self.accept_loop(&listener)
    }

    fn accept_loop(self: &Arc<Server>, listener: &Listener) -> ! {
        loop {
            match listener.accept() {
                Ok(conn) => {
                    let me = self.clone();
                    let _ = std::thread::Builder::new()
                        .name("manager-conn".into())
                        .spawn(move || me.serve_connection(conn));
                }
                Err(ipc_channel_core::Error::Io(_)) => {
                    // Out of descriptors or similar: let the load pass.
                    std::thread::sleep(Duration::from_millis(10));
                }
                // A peer that failed the handshake (wrong key): it was refused, go on.
                Err(_) => {}
            }
        }
    }

    fn serve_connection(&self, conn: Connection) {
        let mut session = Session {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            held: Vec::new(),
        };
        loop {
            let resp: Response = match conn.recv::<Request>() {
                Ok(req) => match self.handle(req, &conn, &mut session) {
                    Ok(r) => r,
                    Err(Gone) => break,
                },
                Err(ipc_channel_core::Error::Decode(m)) => Err(bad(&m)),
                Err(_) => break,
            };
            if conn.send(&resp).is_err() {
                break;
            }
        }
        // The caller is gone: release what it held.
        for obj in session.held.drain(..) {
            let mut g = obj.lock();
            if let State::Lock(l) = &mut *g {
                if l.owner == Some(session.id) {
                    l.owner = None;
                    l.count = 0;
                    l.owner_died = true;
                    obj.cv.notify_all();
                }
            }
        }
    }

    fn handle(&self, req: Request, conn: &Connection, s: &mut Session) -> Result<R, Gone> {
        Ok(match req {
            Request::Create {
                kind,
                tag,
                name,
                init,
            } => self.create(kind, tag, name, init),
            Request::Open { kind, tag, name } => {
                let reg = self.registry();
                match reg
                    .names
                    .get(&name)
                    .and_then(|id| reg.objects.get(id).map(|o| (*id, o)))
                {
                    None => Err(WireError::NoSuchObject(format!("no object named {name:?}"))),
                    Some((id, o)) => check_type(o, kind, &tag).map(|()| Reply::Id(id)),
                }
            }
            Request::Destroy { id } => {
                let mut reg = self.registry();
                match reg.objects.remove(&id) {
                    None => Err(WireError::NoSuchObject(format!("object {id}"))),
                    Some(_) => {
                        reg.names.retain(|_, v| *v != id);
                        Ok(Reply::Unit)
                    }
                }
            }
            Request::Ping => Ok(Reply::Pong(
                std::process::id(),
                self.registry().objects.len() as u64,
            )),
            Request::Call { id, op } => match self.object(id) {
                Err(e) => Err(e),
                Ok(obj) => return self.op(&obj, op, conn, s),
            },
        })
    }

    fn create(&self, kind: Kind, tag: String, name: Option<String>, init: Init) -> R {
        if let Some(n) = &name {
            let reg = self.registry();
            if let Some((id, o)) = reg
                .names
                .get(n)
                .and_then(|id| reg.objects.get(id).map(|o| (*id, o)))
            {
                check_type(o, kind, &tag)?;
                return Ok(Reply::Id(id));
            }
        }
        let state = match (kind, init) {
            (Kind::Dict, Init::Empty) => State::Dict(Dict::default()),
            (Kind::List, Init::Empty) => State::List(Vec::new()),
            (Kind::Namespace, Init::Empty) => State::Namespace(BTreeMap::new()),
            (Kind::Value, Init::Bytes(b)) => State::Value(b),
            (Kind::Queue, Init::Queue { maxsize }) => State::Queue(QueueState {
                items: VecDeque::new(),
                maxsize,
                unfinished: 0,
            }),
            (Kind::Lock, Init::Empty) | (Kind::RLock, Init::Empty) => {
                return self.insert(Obj::new_lock(kind == Kind::RLock), name, &tag)
            }
            (Kind::Semaphore, Init::Semaphore { value, bound }) => {
                State::Semaphore { value, bound }
            }
            (Kind::Event, Init::Empty) => State::Event(false),
            (Kind::Barrier, Init::Barrier { parties }) => State::Barrier(BarrierState {
                parties,
                count: 0,
                generation: 0,
                resets: 0,
                broken: false,
            }),
            (Kind::Condition, Init::Condition { lock }) => {
                let lock = match lock {
                    None => Obj::new_lock(true),
                    Some(id) => {
                        let o = self.object(id)?;
                        if !matches!(o.kind, Kind::Lock | Kind::RLock) {
                            return Err(WireError::WrongType {
                                expected: "Lock or RLock".into(),
                                found: describe(o.kind, &o.tag),
                            });
                        }
                        o
                    }
                };
                State::Condition {
                    lock,
                    cond: self.next_id.fetch_add(1, Ordering::Relaxed),
                }
            }
            (Kind::User, Init::Bytes(b)) => match self.table.get(tag.as_str()) {
                None => return Err(WireError::Unregistered(tag)),
                Some(ctor) => State::User(ctor(&b)?),
            },
            (k, i) => return Err(bad(&format!("cannot make a {k:?} from {i:?}"))),
        };
        self.insert(Obj::new(kind, tag.clone(), state), name, &tag)
    }

    fn insert(&self, obj: Arc<Obj>, name: Option<String>, tag: &str) -> R {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut reg = self.registry();
        if let Some(n) = name {
            // Another thread may have made it meanwhile: the first one wins.
            if let Some(&other) = reg.names.get(&n) {
                if let Some(o) = reg.objects.get(&other) {
                    check_type(o, obj.kind, tag)?;
                    return Ok(Reply::Id(other));
                }
            }
            reg.names.insert(n, id);
        }
        reg.objects.insert(id, obj);
        Ok(Reply::Id(id))
    }

    fn op(&self, obj: &Arc<Obj>, op: Op, conn: &Connection, s: &mut Session) -> Result<R, Gone> {
        // Operations on a condition's lock go to the lock object.
        let cond = match &*obj.lock() {
            State::Condition { lock, cond } => Some((lock.clone(), *cond)),
            _ => None,
        };
        if let Some((lock, cond)) = cond {
            return match op {
                Op::Acquire(_) | Op::Release | Op::Locked => self.op(&lock, op, conn, s),
                Op::CondWait(w) => cond_wait(&lock, cond, w, conn, s),
                Op::CondNotify(n) => Ok(cond_notify(&lock, cond, Some(n), s)),
                Op::CondNotifyAll => Ok(cond_notify(&lock, cond, None, s)),
                _ => Ok(Err(wrong_op(obj))),
            };
        }
        match op {
            Op::Acquire(w) => acquire(obj, w, conn, s),
            Op::SemAcquire(w) => {
                let g = obj.lock();
                if !matches!(*g, State::Semaphore { .. }) {
                    return Ok(Err(wrong_op(obj)));
                }
                let (mut g, ok) = block(
                    obj,
                    g,
                    w,
                    conn,
                    |st| matches!(st, State::Semaphore { value, .. } if *value > 0),
                )?;
                if ok {
                    if let State::Semaphore { value, .. } = &mut *g {
                        *value -= 1;
                    }
                }
                Ok(Ok(Reply::Bool(ok)))
            }
            Op::EventWait(w) => {
                let g = obj.lock();
                if !matches!(*g, State::Event(_)) {
                    return Ok(Err(wrong_op(obj)));
                }
                let (_g, ok) = block(obj, g, w, conn, |st| matches!(st, State::Event(true)))?;
                Ok(Ok(Reply::Bool(ok)))
            }
            Op::QueuePut(item, w) => {
                let g = obj.lock();
                if !matches!(*g, State::Queue(_)) {
                    return Ok(Err(wrong_op(obj)));
                }
                let (mut g, ok) = block(obj, g, w, conn, |st| match st {
                    State::Queue(q) => q.maxsize.is_none_or(|m| (q.items.len() as u64) < m),
                    _ => true,
                })?;
                if !ok {
                    return Ok(Err(WireError::Full));
                }
                if let State::Queue(q) = &mut *g {
                    q.items.push_back(item);
                    q.unfinished += 1;
                }
                obj.cv.notify_all();
                Ok(Ok(Reply::Unit))
            }
            Op::QueueGet(w) => {
                let g = obj.lock();
                if !matches!(*g, State::Queue(_)) {
                    return Ok(Err(wrong_op(obj)));
                }
                let (mut g, ok) = block(obj, g, w, conn, |st| match st {
                    State::Queue(q) => !q.items.is_empty(),
                    _ => true,
                })?;
                if !ok {
                    return Ok(Err(WireError::Empty));
                }
                let item = match &mut *g {
                    State::Queue(q) => q.items.pop_front(),
                    _ => None,
                };
                obj.cv.notify_all();
                Ok(item.map(Reply::Bytes).ok_or_else(|| wrong_op(obj)))
            }
            Op::QueueJoin => {
                let g = obj.lock();
                if !matches!(*g, State::Queue(_)) {
                    return Ok(Err(wrong_op(obj)));
                }
                let _ = block(
                    obj,
                    g,
                    Wait::Forever,
                    conn,
                    |st| matches!(st, State::Queue(q) if q.unfinished == 0),
                )?;
                Ok(Ok(Reply::Unit))
            }
            Op::BarrierWait(w) => barrier_wait(obj, w, conn),
            other => Ok(self.simple(obj, other, s)),
        }
    }

    /// The operations that never wait.
    fn simple(&self, obj: &Arc<Obj>, op: Op, s: &mut Session) -> R {
        let mut g = obj.lock();
        let r = match (&mut *g, op) {
            // dict
            (State::Dict(d), Op::DictGet(k)) => Reply::MaybeBytes(d.get(&k).cloned()),
            (State::Dict(d), Op::DictInsert(k, v)) => Reply::MaybeBytes(d.insert(k, v)),
            (State::Dict(d), Op::DictRemove(k)) => Reply::MaybeBytes(d.remove(&k)),
            (State::Dict(d), Op::DictContains(k)) => Reply::Bool(d.index.contains_key(&k)),
            (State::Dict(d), Op::DictKeys) => {
                Reply::List(d.order.values().map(|(k, _)| k.clone()).collect())
            }
            (State::Dict(d), Op::DictValues) => {
                Reply::List(d.order.values().map(|(_, v)| v.clone()).collect())
            }
            (State::Dict(d), Op::DictItems) => Reply::Pairs(d.order.values().cloned().collect()),
            (State::Dict(d), Op::DictUpdate(items)) => {
                for (k, v) in items {
                    d.insert(k, v);
                }
                Reply::Unit
            }
            (State::Dict(d), Op::DictCas { key, expected, new }) => {
                let cur = d.get(&key);
                if cur == expected.as_ref() {
                    match new {
                        Some(v) => {
                            d.insert(key, v);
                        }
                        None => {
                            d.remove(&key);
                        }
                    }
                    Reply::Swapped(true, None)
                } else {
                    Reply::Swapped(false, cur.cloned())
                }
            }
            (State::Dict(d), Op::Len) => Reply::Count(d.index.len() as u64),
            (State::Dict(d), Op::Clear) => {
                d.clear();
                Reply::Unit
            }
            // list
            (State::List(l), Op::ListPush(v)) => {
                l.push(v);
                Reply::Unit
            }
            (State::List(l), Op::ListPop) => Reply::MaybeBytes(l.pop()),
            (State::List(l), Op::ListGet(i)) => {
                Reply::MaybeBytes(usize::try_from(i).ok().and_then(|i| l.get(i)).cloned())
            }
            (State::List(l), Op::ListSet(i, v)) => {
                let len = l.len() as u64;
                match usize::try_from(i).ok().and_then(|i| l.get_mut(i)) {
                    Some(slot) => {
                        *slot = v;
                        Reply::Unit
                    }
                    None => return Err(WireError::IndexOutOfRange { index: i, len }),
                }
            }
            (State::List(l), Op::ListExtend(items)) => {
                l.extend(items);
                Reply::Unit
            }
            (State::List(l), Op::ListAll) => Reply::List(l.clone()),
            (State::List(l), Op::ListInsert(i, v)) => {
                let len = l.len() as u64;
                if i > len {
                    return Err(WireError::IndexOutOfRange { index: i, len });
                }
                l.insert(i as usize, v);
                Reply::Unit
            }
            (State::List(l), Op::ListRemove(i)) => {
                let len = l.len() as u64;
                if i >= len {
                    return Err(WireError::IndexOutOfRange { index: i, len });
                }
                Reply::Bytes(l.remove(i as usize))
            }
            (
                State::List(l),
                Op::ListCas {
                    index,
                    expected,
                    new,
                },
            ) => {
                let len = l.len() as u64;
                match usize::try_from(index).ok().and_then(|i| l.get_mut(i)) {
                    None => return Err(WireError::IndexOutOfRange { index, len }),
                    Some(slot) if *slot == expected => {
                        *slot = new;
                        Reply::Swapped(true, None)
                    }
                    Some(slot) => Reply::Swapped(false, Some(slot.clone())),
                }
            }
            (State::List(l), Op::Len) => Reply::Count(l.len() as u64),
            (State::List(l), Op::Clear) => {
                l.clear();
                Reply::Unit
            }
            // namespace
            (State::Namespace(n), Op::NsGet(field, tag)) => match n.get(&field) {
                None => return Err(WireError::KeyNotFound),
                Some((t, _)) if *t != tag => {
                    return Err(WireError::WrongType {
                        expected: tag,
                        found: t.clone(),
                    })
                }
                Some((_, b)) => Reply::Bytes(b.clone()),
            },
            (State::Namespace(n), Op::NsSet(field, tag, b)) => {
                n.insert(field, (tag, b));
                Reply::Unit
            }
            (State::Namespace(n), Op::NsRemove(field)) => Reply::Bool(n.remove(&field).is_some()),
            (State::Namespace(n), Op::NsFields) => Reply::Names(n.keys().cloned().collect()),
            (
                State::Namespace(n),
                Op::NsCas {
                    field,
                    tag,
                    expected,
                    new,
                },
            ) => {
                let cur = match n.get(&field) {
                    Some((t, _)) if *t != tag => {
                        return Err(WireError::WrongType {
                            expected: tag,
                            found: t.clone(),
                        })
                    }
                    Some((_, b)) => Some(b),
                    None => None,
                };
                if cur == expected.as_ref() {
                    n.insert(field, (tag, new));
                    Reply::Swapped(true, None)
                } else {
                    Reply::Swapped(false, cur.cloned())
                }
            }
            (State::Namespace(n), Op::Len) => Reply::Count(n.len() as u64),
            // value
            (State::Value(v), Op::ValueGet) => Reply::Bytes(v.clone()),
            (State::Value(v), Op::ValueSet(b)) => {
                *v = b;
                Reply::Unit
            }
            (State::Value(v), Op::ValueCas { expected, new }) => {
                if *v == expected {
                    *v = new;
                    Reply::Swapped(true, None)
                } else {
                    Reply::Swapped(false, Some(v.clone()))
                }
            }
            // queue
            (State::Queue(q), Op::QueueSize) => Reply::Count(q.items.len() as u64),
            (State::Queue(q), Op::QueueMaxsize) => Reply::Count(q.maxsize.unwrap_or(0)),
            (State::Queue(q), Op::QueueTaskDone) => {
                if q.unfinished == 0 {
                    return Err(WireError::TaskDoneTooManyTimes);
                }
                q.unfinished -= 1;
                obj.cv.notify_all();
                Reply::Unit
            }
            // lock
            (State::Lock(l), Op::Release) => {
                if l.owner != Some(s.id) {
                    return Err(WireError::NotOwner(if l.owner.is_none() {
                        "release unlocked lock".into()
                    } else {
                        "cannot release a lock held by another thread or process".into()
                    }));
                }
                l.count -= 1;
                if l.count == 0 {
                    l.owner = None;
                    obj.cv.notify_all();
                }
                Reply::Unit
            }
            (State::Lock(l), Op::Locked) => Reply::Bool(l.owner.is_some()),
            // semaphore
            (State::Semaphore { value, bound }, Op::SemRelease) => {
                if bound.is_some_and(|b| *value >= b) {
                    return Err(WireError::OverReleased);
                }
                *value += 1;
                obj.cv.notify_all();
                Reply::Unit
            }
            (State::Semaphore { value, .. }, Op::SemValue) => Reply::Count(*value),
            // event
            (State::Event(e), Op::EventSet) => {
                *e = true;
                obj.cv.notify_all();
                Reply::Unit
            }
            (State::Event(e), Op::EventClear) => {
                *e = false;
                Reply::Unit
            }
            (State::Event(e), Op::EventIsSet) => Reply::Bool(*e),
            // barrier
            (State::Barrier(b), Op::BarrierAbort) => {
                b.broken = true;
                obj.cv.notify_all();
                Reply::Unit
            }
            (State::Barrier(b), Op::BarrierReset) => {
                b.count = 0;
                b.broken = false;
                b.resets += 1;
                obj.cv.notify_all();
                Reply::Unit
            }
            (State::Barrier(b), Op::BarrierState) => Reply::Barrier(b.parties, b.count, b.broken),
            // user types
            (State::User(u), Op::UserCall(req)) => Reply::Bytes(u.call(&req)?),
            (State::User(u), Op::UserGet) => Reply::Bytes(u.get()?),
            _ => return Err(wrong_op(obj)),
        };
        Ok(r)
    }
}

fn check_type(o: &Obj, kind: Kind, tag: &str) -> Result<(), WireError> {
    if o.kind != kind || o.tag != tag {
        return Err(WireError::WrongType {
            expected: describe(kind, tag),
            found: describe(o.kind, &o.tag),
        });
    }
    Ok(())
}

fn wrong_op(obj: &Obj) -> WireError {
    WireError::WrongType {
        expected: "an object that supports this operation".into(),
        found: describe(obj.kind, &obj.tag),
    }
}

fn note_held(s: &mut Session, obj: &Arc<Obj>) {
    if !s.held.iter().any(|o| Arc::ptr_eq(o, obj)) {
        s.held.push(obj.clone());
    }
}

fn acquire(obj: &Arc<Obj>, w: Wait, conn: &Connection, s: &mut Session) -> Result<R, Gone> {
    let g = obj.lock();
    if !matches!(*g, State::Lock(_)) {
        return Ok(Err(wrong_op(obj)));
    }
    let me = s.id;
    let (mut g, ok) = block(obj, g, w, conn, |st| match st {
        State::Lock(l) => l.owner.is_none() || (l.reentrant && l.owner == Some(me)),
        _ => true,
    })?;
    if !ok {
        return Ok(Ok(Reply::NotAcquired));
    }
    let State::Lock(l) = &mut *g else {
        return Ok(Err(wrong_op(obj)));
    };
    if l.owner == Some(me) {
        l.count += 1;
        return Ok(Ok(Reply::Acquired { owner_died: false }));
    }
    l.owner = Some(me);
    l.count = 1;
    let owner_died = std::mem::take(&mut l.owner_died);
    drop(g);
    note_held(s, obj);
    Ok(Ok(Reply::Acquired { owner_died }))
}

fn cond_wait(
    lock: &Arc<Obj>,
    cond: u64,
    w: Wait,
    conn: &Connection,
    s: &mut Session,
) -> Result<R, Gone> {
    let mut g = lock.lock();
    let State::Lock(l) = &mut *g else {
        return Ok(Err(wrong_op(lock)));
    };
    if l.owner != Some(s.id) {
        return Ok(Err(WireError::NotOwner(
            "cannot wait on un-acquired lock".into(),
        )));
    }
    let saved = l.count;
    l.owner = None;
    l.count = 0;
    let ticket = l.next_ticket;
    l.next_ticket += 1;
    l.waiters.push((cond, ticket, false));
    lock.cv.notify_all();
    let notified = |st: &mut State| match st {
        State::Lock(l) => l.waiters.iter().any(|&(_, t, n)| t == ticket && n),
        _ => true,
    };
    let r = block(lock, g, w, conn, notified);
    let (mut g, ok) = match r {
        Ok(x) => x,
        Err(Gone) => {
            // The lock is not held by the waiter: forget its ticket only.
            if let State::Lock(l) = &mut *lock.lock() {
                l.waiters.retain(|&(_, t, _)| t != ticket);
            }
            return Err(Gone);
        }
    };
    if let State::Lock(l) = &mut *g {
        l.waiters.retain(|&(_, t, _)| t != ticket);
    }
    // Take the lock back, however the wait ended (as Python does).
    let me = s.id;
    let r = block(lock, g, Wait::Forever, conn, |st| match st {
        State::Lock(l) => l.owner.is_none(),
        _ => true,
    });
    let (mut g, _) = r?;
    if let State::Lock(l) = &mut *g {
        l.owner = Some(me);
        l.count = saved;
    }
    Ok(Ok(Reply::Bool(ok)))
}

fn cond_notify(lock: &Arc<Obj>, cond: u64, n: Option<u64>, s: &Session) -> R {
    let mut g = lock.lock();
    let State::Lock(l) = &mut *g else {
        return Err(wrong_op(lock));
    };
    if l.owner != Some(s.id) {
        return Err(WireError::NotOwner(
            "cannot notify on un-acquired lock".into(),
        ));
    }
    let mut left = n.unwrap_or(u64::MAX);
    for w in l.waiters.iter_mut() {
        if left == 0 {
            break;
        }
        if w.0 == cond && !w.2 {
            w.2 = true;
            left -= 1;
        }
    }
    lock.cv.notify_all();
    Ok(Reply::Unit)
}

fn barrier_wait(obj: &Arc<Obj>, w: Wait, conn: &Connection) -> Result<R, Gone> {
    let mut g = obj.lock();
    let State::Barrier(b) = &mut *g else {
        return Ok(Err(wrong_op(obj)));
    };
    if b.broken {
        return Ok(Err(WireError::BrokenBarrier));
    }
    let index = b.count;
    b.count += 1;
    if b.count == b.parties {
        b.count = 0;
        b.generation += 1;
        obj.cv.notify_all();
        return Ok(Ok(Reply::Count(index)));
    }
    let (generation, resets) = (b.generation, b.resets);
    let r = block(obj, g, w, conn, |st| match st {
        State::Barrier(b) => b.generation != generation || b.broken || b.resets != resets,
        _ => true,
    });
    let (mut g, ok) = match r {
        Ok(x) => x,
        Err(Gone) => {
            // A party died waiting: nobody can pass any more.
            if let State::Barrier(b) = &mut *obj.lock() {
                if b.generation == generation && b.resets == resets {
                    b.broken = true;
                    obj.cv.notify_all();
                }
            }
            return Err(Gone);
        }
    };
    let State::Barrier(b) = &mut *g else {
        return Ok(Err(wrong_op(obj)));
    };
    if b.generation != generation {
        return Ok(Ok(Reply::Count(index)));
    }
    if !ok && !b.broken && b.resets == resets {
        // A timed-out wait breaks the barrier (Python's semantics).
        b.broken = true;
        obj.cv.notify_all();
    }
    Ok(Err(WireError::BrokenBarrier))
}

// ---------------------------------------------------------------------------------------------
// The server process

/// Removes the socket file (and the private directory `bind_temp` made for it).
fn remove_socket(address: &Address, temp: bool) {
    if let Address::Unix(path) = address {
        let _ = std::fs::remove_file(path);
        if temp {
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Binds where asked (a private temporary Unix socket when `address` is `None`).
pub(crate) fn bind(address: Option<Address>, authkey: &[u8]) -> Result<(Listener, bool), String> {
    match address {
        None => Listener::bind_temp(Some(authkey)).map(|l| (l, true)),
        Some(a) => Listener::bind(a, Some(authkey)).map(|l| (l, false)),
    }
    .map_err(|e| e.to_string())
}

/// The body of a started server: listen, tell the owner where, serve until the owner says
/// stop or goes away.
pub(crate) fn run_owned(
    owner: Connection,
    address: Option<Address>,
    authkey: Vec<u8>,
    table: Table,
) {
    let (listener, temp) = match bind(address, &authkey) {
        Ok(x) => x,
        Err(e) => {
            let _ = owner.send(&OwnerMsg::Listening(Err(e)));
            return;
        }
    };
    let address = listener.address();
    if owner
        .send(&OwnerMsg::Listening(Ok(address.clone())))
        .is_err()
    {
        remove_socket(&address, temp);
        return;
    }
    crate::shared::install_quiet_hook();
    let server = Server::new(table);
    let watcher = std::thread::Builder::new()
        .name("manager-owner".into())
        .spawn(move || {
            // Any message or the end of the pipe: stop.
            let order = owner.recv::<OwnerMsg>();
            remove_socket(&address, temp);
            if matches!(order, Ok(OwnerMsg::Shutdown)) {
                let _ = owner.send(&OwnerMsg::Stopping);
            }
            std::process::exit(0);
        });
    if watcher.is_err() {
        return;
    }
    server.serve(listener)
}

/// A connection id for tests of the wait loop.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_keeps_insertion_order() {
        let mut d = Dict::default();
        d.insert(b"b".to_vec(), b"1".to_vec());
        d.insert(b"a".to_vec(), b"2".to_vec());
        assert_eq!(d.insert(b"b".to_vec(), b"3".to_vec()), Some(b"1".to_vec()));
        let keys: Vec<_> = d.order.values().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"b".to_vec(), b"a".to_vec()]);
        assert_eq!(d.remove(b"b"), Some(b"3".to_vec()));
        assert_eq!(d.get(b"b"), None);
        d.insert(b"b".to_vec(), b"4".to_vec());
        let keys: Vec<_> = d.order.values().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
    }
}
