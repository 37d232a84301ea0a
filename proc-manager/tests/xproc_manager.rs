//! Cross-process tests of managers, under every start method (`IPC_START_METHOD` narrows a run
//! to one): the server is started with the method under test, and so are the children that use
//! the proxies. Nothing here depends on timing to pass: where an order matters, processes wait
//! on manager events or queues; deadlines are generous upper bounds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ipc_channel_core::{Connection, Pipe};
use proc_manager::{
    BarrierProxy, ConditionProxy, DictProxy, Error, EventProxy, ListProxy, LockProxy, Manager,
    NamespaceProxy, QueueProxy, RLockProxy, SemaphoreProxy, Shared,
};
use proc_spawn::{get_context, Context, Process, StartMethod};
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Helpers

fn methods() -> Vec<StartMethod> {
    match std::env::var("IPC_START_METHOD") {
        Ok(v) if !v.is_empty() => vec![v.parse().unwrap_or_else(|_| {
            panic!("IPC_START_METHOD={v}: expected fork, spawn or forkserver")
        })],
        _ => proc_spawn::get_all_start_methods(),
    }
}

fn manager(m: StartMethod) -> Manager {
    Manager::builder()
        .context(get_context(m))
        .start()
        .unwrap_or_else(|e| panic!("Manager under {m}: {e}"))
}

fn run_all(ctx: Context, mut procs: Vec<Process>) {
    let _ = ctx;
    for p in &mut procs {
        p.start().unwrap();
    }
    for p in &mut procs {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0), "{p:?}");
    }
}

fn kill(pid: u32, sig: Signal) {
    let pid = Pid::from_raw(pid as i32).expect("a pid");
    rustix::process::kill_process(pid, sig).expect("kill");
}

/// Is `pid` gone (no such process, or a zombie)?
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Waits (at most 30 s) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kind(e: &Error) -> String {
    format!("{e:?}")
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Child bodies

fn fill_dict((d, p): (DictProxy<u32, String>, u32)) {
    for i in 0..1000 {
        d.insert(p * 1000 + i, format!("{p}:{i}")).unwrap();
    }
}

fn append_list((l, p): (ListProxy<u32>, u32)) {
    for i in 0..250 {
        l.push(p * 250 + i).unwrap();
    }
}

fn count_under_lock((ns, lock, n): (NamespaceProxy, LockProxy, u32)) {
    for _ in 0..n {
        let g = lock.acquire().unwrap();
        let c: u64 = ns.get("count").unwrap();
        ns.set("count", &(c + 1)).unwrap();
        g.release().unwrap();
        ns.update_with("hits", |h: Option<u64>| h.unwrap_or(0) + 1)
            .unwrap();
    }
}

fn remote_client((address, key): (String, Vec<u8>)) -> String {
    match Manager::connect(address.as_str(), &key) {
        Err(e) => kind(&e),
        Ok(m) => {
            let d = m.named("remote").dict::<String, u32>().unwrap();
            d.insert("from child".into(), std::process::id()).unwrap();
            "ok".into()
        }
    }
}

fn blocked_get((q, ready): (QueueProxy<u32>, EventProxy)) -> String {
    ready.set().unwrap();
    match q.get() {
        Ok(v) => format!("got {v}"),
        Err(e) => kind(&e),
    }
}

fn own_manager((method, report): (String, Connection)) {
    let m = Manager::builder()
        .context(get_context(method.parse().unwrap()))
        .start()
        .unwrap();
    report.send(&m.pid().unwrap()).unwrap();
    // Wait to be killed.
    std::thread::sleep(Duration::from_secs(120));
}

fn hold_and_die((lock, held): (LockProxy, EventProxy)) {
    let g = lock.acquire().unwrap();
    held.set().unwrap();
    std::mem::forget(g);
    kill(std::process::id(), Signal::KILL);
}

fn barrier_party(b: BarrierProxy) -> usize {
    b.wait_timeout(Duration::from_secs(60)).unwrap()
}

fn producer(q: QueueProxy<Option<u32>>) {
    for i in 0..100 {
        q.put(Some(i)).unwrap();
    }
    q.put(None).unwrap();
}

fn event_then_put((e, q): (EventProxy, QueueProxy<Option<u32>>)) {
    e.wait().unwrap();
    q.put(Some(777)).unwrap();
}

fn cond_waiter((c, ns): (ConditionProxy, NamespaceProxy)) -> bool {
    let mut g = c.acquire().unwrap();
    ns.set("waiting", &true).unwrap();
    // The lock is released only inside the wait, so the parent's notify comes after it.
    let notified = c.wait_timeout(&mut g, Duration::from_secs(60)).unwrap();
    drop(g);
    notified
}

fn sem_release_twice(s: SemaphoreProxy) {
    s.release().unwrap();
    s.release().unwrap();
}

fn try_rlock(l: RLockProxy) -> bool {
    l.try_acquire().unwrap().is_some()
}

fn push_nested((d, key): (DictProxy<String, ListProxy<u32>>, String)) {
    let inner = d.get(&key).unwrap().expect("the nested list");
    inner.push(42).unwrap();
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Counter {
    n: i64,
    log: Vec<String>,
}

#[derive(Serialize, Deserialize)]
enum CounterReq {
    Add(i64),
    Note(String),
    Get,
    Explode,
}

impl Shared for Counter {
    const TYPEID: &'static str = "Counter";
    type Request = CounterReq;
    type Response = i64;
    fn handle(&mut self, req: CounterReq) -> i64 {
        match req {
            CounterReq::Add(k) => {
                self.n += k;
                self.n
            }
            CounterReq::Note(s) => {
                self.log.push(s);
                self.log.len() as i64
            }
            CounterReq::Get => self.n,
            CounterReq::Explode => panic!("counter exploded"),
        }
    }
}

fn bump_counter(c: proc_manager::Proxy<Counter>) {
    for _ in 0..100 {
        c.call(CounterReq::Add(1)).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

fn test_dict_filled_by_four_processes() {
    for m in methods() {
        let mgr = manager(m);
        let d = mgr.dict::<u32, String>().unwrap();
        let ctx = get_context(m);
        run_all(
            ctx,
            (0..4)
                .map(|p| ctx.process(fill_dict, (d.clone(), p)))
                .collect(),
        );
        assert_eq!(d.len().unwrap(), 4000, "{m}");
        let keys: BTreeSet<u32> = d.keys().unwrap().into_iter().collect();
        assert_eq!(keys, (0..4000).collect::<BTreeSet<u32>>(), "{m}");
        assert_eq!(d.get(&2345).unwrap().as_deref(), Some("2:345"));
        let items = d.items().unwrap();
        assert!(items
            .iter()
            .all(|(k, v)| *v == format!("{}:{}", k / 1000, k % 1000)));
    }
}

fn test_list_appended_by_four_processes() {
    for m in methods() {
        let mgr = manager(m);
        let l = mgr.list::<u32>().unwrap();
        let ctx = get_context(m);
        run_all(
            ctx,
            (0..4)
                .map(|p| ctx.process(append_list, (l.clone(), p)))
                .collect(),
        );
        let mut all = l.to_vec().unwrap();
        assert_eq!(all.len(), 1000, "{m}");
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<u32>>(), "{m}: every item once");
    }
}

fn test_namespace_counter_under_a_manager_lock() {
    for m in methods() {
        let mgr = manager(m);
        let ns = mgr.namespace().unwrap();
        let lock = mgr.lock().unwrap();
        ns.set("count", &0u64).unwrap();
        let ctx = get_context(m);
        run_all(
            ctx,
            (0..4)
                .map(|_| ctx.process(count_under_lock, (ns.clone(), lock.clone(), 100)))
                .collect(),
        );
        assert_eq!(
            ns.get::<u64>("count").unwrap(),
            400,
            "{m}: lock-guarded counter"
        );
        assert_eq!(
            ns.get::<u64>("hits").unwrap(),
            400,
            "{m}: update_with counter"
        );
        assert!(!lock.locked().unwrap());
    }
}

fn test_tcp_remote_right_key_works_wrong_key_refused() {
    for m in methods() {
        let mgr = Manager::builder()
            .context(get_context(m))
            .address("127.0.0.1:0")
            .authkey(b"the right key")
            .start()
            .unwrap();
        let address = mgr.address().to_string();
        assert!(address.starts_with("127.0.0.1:"), "{address}");
        let ctx = get_context(m);
        let ok = ctx
            .spawn(remote_client, (address.clone(), b"the right key".to_vec()))
            .join()
            .unwrap();
        assert_eq!(ok, "ok", "{m}");
        let d = mgr.named("remote").dict::<String, u32>().unwrap();
        assert!(d.get(&"from child".into()).unwrap().is_some(), "{m}");
        let refused = ctx
            .spawn(remote_client, (address.clone(), b"a wrong key".to_vec()))
            .join()
            .unwrap();
        assert_eq!(refused, "Authentication", "{m}");
        // And here, directly: refused at connect, before any call.
        match Manager::connect(address.as_str(), b"wrong") {
            Err(Error::Authentication(_)) => {}
            other => panic!("{m}: {other:?}"),
        }
        assert_eq!(d.len().unwrap(), 1);
    }
}

fn test_server_killed_mid_call_is_an_error_not_a_hang() {
    for m in methods() {
        let mgr = manager(m);
        let q = mgr.queue::<u32>().unwrap();
        let ready = mgr.event().unwrap();
        let ctx = get_context(m);
        let child = ctx.spawn(blocked_get, (q.clone(), ready.clone()));
        ready.wait_timeout(Duration::from_secs(60)).unwrap();
        // And a call blocked in this process, on a thread.
        let e = mgr.event().unwrap();
        let waiter = std::thread::spawn(move || e.wait());
        std::thread::sleep(Duration::from_millis(100));
        kill(mgr.pid().unwrap(), Signal::KILL);
        let start = Instant::now();
        assert_eq!(child.join().unwrap(), "ManagerGone", "{m}");
        match waiter.join().unwrap() {
            Err(Error::ManagerGone(_)) => {}
            other => panic!("{m}: {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(matches!(q.qsize(), Err(Error::ManagerGone(_))));
        // Shutting down a dead server is fine.
        mgr.shutdown().unwrap();
    }
}

fn test_server_errors_come_back_as_errors() {
    for m in methods() {
        let mgr = Manager::builder()
            .context(get_context(m))
            .register::<Counter>()
            .start()
            .unwrap();
        let d = mgr.dict::<String, u32>().unwrap();
        assert!(matches!(
            d.get_item(&"nope".into()),
            Err(Error::KeyNotFound)
        ));
        assert!(matches!(d.pop(&"nope".into()), Err(Error::KeyNotFound)));
        assert_eq!(d.get(&"nope".into()).unwrap(), None);
        let l = mgr.list::<u32>().unwrap();
        l.push(1).unwrap();
        assert!(matches!(
            l.set(5, 0),
            Err(Error::IndexOutOfRange { index: 5, len: 1 })
        ));
        assert!(matches!(l.remove(1), Err(Error::IndexOutOfRange { .. })));
        assert!(matches!(l.insert(2, 0), Err(Error::IndexOutOfRange { .. })));
        assert!(matches!(
            l.update_with(3, |x| x),
            Err(Error::IndexOutOfRange { .. })
        ));
        assert_eq!(l.get(7).unwrap(), None);
        let ns = mgr.namespace().unwrap();
        ns.set("x", &1i32).unwrap();
        assert!(matches!(
            ns.get::<String>("x"),
            Err(Error::WrongType { .. })
        ));
        assert!(matches!(ns.get::<i32>("y"), Err(Error::KeyNotFound)));
        // A name holding another kind or other type parameters.
        mgr.named("thing").dict::<String, u32>().unwrap();
        assert!(matches!(
            mgr.named("thing").list::<u32>(),
            Err(Error::WrongType { .. })
        ));
        assert!(matches!(
            mgr.named("thing").dict::<String, i64>(),
            Err(Error::WrongType { .. })
        ));
        // Destroyed objects.
        let gone_list = mgr.list::<u8>().unwrap();
        gone_list.destroy().unwrap();
        assert!(matches!(gone_list.len(), Err(Error::NoSuchObject(_))));
        // Queues, semaphores, barriers, locks.
        let q = mgr.queue_bounded::<u8>(1).unwrap();
        assert!(matches!(q.try_get(), Err(Error::Empty)));
        q.put(1).unwrap();
        assert!(q.full().unwrap());
        assert!(matches!(q.try_put(2), Err(Error::Full)));
        assert!(matches!(
            q.put_timeout(2, Duration::from_millis(20)),
            Err(Error::Full)
        ));
        assert_eq!(q.get().unwrap(), 1);
        q.task_done().unwrap();
        assert!(matches!(q.task_done(), Err(Error::TaskDoneTooManyTimes)));
        q.join().unwrap();
        let s = mgr.bounded_semaphore(1).unwrap();
        assert!(matches!(s.release(), Err(Error::OverReleased)));
        assert!(s.try_acquire().unwrap());
        assert!(!s.acquire_timeout(Duration::from_millis(10)).unwrap());
        let b = mgr.barrier(2).unwrap();
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(10)),
            Err(Error::BrokenBarrier)
        ));
        assert!(b.broken().unwrap());
        b.reset().unwrap();
        assert!(!b.broken().unwrap());
        b.abort().unwrap();
        assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
        let lock = mgr.lock().unwrap();
        let cond = mgr.condition_with_lock(&lock).unwrap();
        assert!(matches!(cond.notify(1), Err(Error::NotOwner(_))));
        let g = lock.acquire().unwrap();
        assert!(lock.try_acquire().unwrap().is_none(), "not re-entrant");
        cond.notify_all().unwrap();
        g.release().unwrap();
        assert!(matches!(
            lock.try_acquire().unwrap().map(|g| g.release()),
            Some(Ok(()))
        ));
        assert!(mgr.condition_with_lock(&lock).is_ok());
        // User types: not registered, and a panicking handler.
        let c = mgr.create(Counter { n: 0, log: vec![] }).unwrap();
        assert!(
            matches!(c.call(CounterReq::Explode), Err(Error::Remote(m)) if m.contains("exploded"))
        );
        assert_eq!(
            c.call(CounterReq::Add(2)).unwrap(),
            2,
            "the object survives"
        );
        let plain = Manager::builder().context(get_context(m)).start().unwrap();
        assert!(matches!(
            plain.create(Counter { n: 0, log: vec![] }),
            Err(Error::Unregistered(n)) if n == "Counter"
        ));
        // A connected manager cannot stop the server.
        let other = Manager::connect(mgr.address(), mgr.authkey()).unwrap();
        assert!(matches!(other.shutdown(), Err(Error::NotServerOwner)));
        assert!(mgr.ping().is_ok());
    }
}

fn test_drop_shuts_down_and_owner_death_kills_the_server() {
    for m in methods() {
        let mgr = manager(m);
        let pid = mgr.pid().unwrap();
        let d = mgr.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let clone = mgr.clone();
        drop(mgr);
        assert_eq!(d.len().unwrap(), 1, "{m}: a clone keeps it running");
        drop(clone);
        assert!(gone(pid), "{m}: the last owner's drop stopped the server");
        assert!(matches!(d.len(), Err(Error::ManagerGone(_))), "{m}");

        // An owner killed with SIGKILL leaves no orphan server.
        let (mine, theirs) = Pipe::new().unwrap();
        let mut owner = get_context(m).process(own_manager, (m.name().to_string(), theirs));
        owner.start().unwrap();
        let server: u32 = mine.recv_timeout(Duration::from_secs(60)).unwrap();
        assert!(!gone(server));
        owner.kill().unwrap();
        owner.join().unwrap();
        eventually("the orphaned server to die", || gone(server));
    }
}

fn test_dead_lock_holder_is_reported() {
    for m in methods() {
        let mgr = manager(m);
        let lock = mgr.lock().unwrap();
        let held = mgr.event().unwrap();
        let mut p = get_context(m).process(hold_and_die, (lock.clone(), held.clone()));
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(-9), "{m}");
        assert!(held.is_set().unwrap());
        let g = lock
            .acquire_timeout(Duration::from_secs(60))
            .unwrap()
            .expect("the dead holder's lock is released");
        assert!(g.owner_died(), "{m}");
        g.release().unwrap();
        let g = lock.acquire().unwrap();
        assert!(!g.owner_died(), "{m}: reported once");
    }
}

fn test_sync_objects_across_processes() {
    for m in methods() {
        let mgr = manager(m);
        let ctx = get_context(m);
        // Barrier of three: two children and this process.
        let b = mgr.barrier(3).unwrap();
        let hs: Vec<_> = (0..2)
            .map(|_| ctx.spawn(barrier_party, b.clone()))
            .collect();
        let mine = b.wait_timeout(Duration::from_secs(60)).unwrap();
        let mut idx: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        idx.push(mine);
        idx.sort_unstable();
        assert_eq!(idx, vec![0, 1, 2], "{m}");
        // Producer and consumer, FIFO.
        let q = mgr.queue::<Option<u32>>().unwrap();
        let mut p = ctx.process(producer, q.clone());
        p.start().unwrap();
        let mut got = Vec::new();
        while let Some(i) = q.get().unwrap() {
            got.push(i);
        }
        p.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<u32>>(), "{m}");
        // Event.
        let e = mgr.event().unwrap();
        let mut p = ctx.process(event_then_put, (e.clone(), q.clone()));
        p.start().unwrap();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(50)),
            Err(Error::Empty)
        ));
        e.set().unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), Some(777));
        p.join().unwrap();
        // Condition: the child waits, this process notifies.
        let c = mgr.condition().unwrap();
        let ns = mgr.namespace().unwrap();
        let h = ctx.spawn(cond_waiter, (c.clone(), ns.clone()));
        eventually("the child to wait", || ns.get::<bool>("waiting").is_ok());
        let g = c.acquire().unwrap();
        c.notify(1).unwrap();
        drop(g);
        assert!(h.join().unwrap(), "{m}: notified, not timed out");
        // Semaphore released by a child.
        let s = mgr.semaphore(0).unwrap();
        let mut p = ctx.process(sem_release_twice, s.clone());
        p.start().unwrap();
        s.acquire().unwrap();
        s.acquire().unwrap();
        p.join().unwrap();
        assert_eq!(s.value().unwrap(), 0);
        // RLock: re-entrant here, closed to a child.
        let r = mgr.rlock().unwrap();
        let g1 = r.acquire().unwrap();
        let g2 = r.acquire().unwrap();
        assert!(!ctx.spawn(try_rlock, r.clone()).join().unwrap(), "{m}");
        drop(g2);
        assert!(!ctx.spawn(try_rlock, r.clone()).join().unwrap(), "{m}");
        drop(g1);
        assert!(ctx.spawn(try_rlock, r.clone()).join().unwrap(), "{m}");
    }
}

fn test_user_type_shared_by_processes() {
    for m in methods() {
        let mgr = Manager::builder()
            .context(get_context(m))
            .register::<Counter>()
            .start()
            .unwrap();
        let c = mgr
            .named("counter")
            .create(Counter { n: 0, log: vec![] })
            .unwrap();
        let ctx = get_context(m);
        run_all(
            ctx,
            (0..4)
                .map(|_| ctx.process(bump_counter, c.clone()))
                .collect(),
        );
        assert_eq!(c.call(CounterReq::Get).unwrap(), 400, "{m}");
        assert_eq!(c.call(CounterReq::Note("hi".into())).unwrap(), 1);
        let again = mgr.named("counter").open::<Counter>().unwrap();
        assert_eq!(
            again.get().unwrap(),
            Counter {
                n: 400,
                log: vec!["hi".into()]
            }
        );
        assert!(matches!(
            mgr.named("nobody").open::<Counter>(),
            Err(Error::NoSuchObject(_))
        ));
    }
}

fn test_nested_proxies_and_blocked_callers() {
    for m in methods() {
        let mgr = manager(m);
        let d = mgr.dict::<String, ListProxy<u32>>().unwrap();
        let inner = mgr.list::<u32>().unwrap();
        d.insert("inner".into(), inner.clone()).unwrap();
        let mut p = get_context(m).process(push_nested, (d.clone(), "inner".to_string()));
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(
            inner.to_vec().unwrap(),
            vec![42],
            "{m}: a nested proxy is live"
        );
        // A copy is a copy: changing a value got from the dict changes nothing there.
        let plain = mgr.dict::<u8, Vec<u8>>().unwrap();
        plain.insert(1, vec![1]).unwrap();
        plain.get(&1).unwrap().unwrap().push(2);
        assert_eq!(plain.get(&1).unwrap(), Some(vec![1]));
        plain
            .update_with(&1, |v| {
                v.map(|mut v| {
                    v.push(2);
                    v
                })
            })
            .unwrap();
        assert_eq!(plain.get(&1).unwrap(), Some(vec![1, 2]));
        // A thread blocked in the server does not block this one.
        let q = mgr.queue::<u32>().unwrap();
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.get());
        for i in 0..50u8 {
            plain.insert(i, vec![i]).unwrap();
        }
        assert_eq!(plain.len().unwrap(), 50);
        q.put(5).unwrap();
        assert_eq!(t.join().unwrap().unwrap(), 5);
    }
}

fn test_silent_peers_do_not_hold_up_other_clients() {
    for m in methods() {
        let mgr = Manager::builder()
            .context(get_context(m))
            .address("127.0.0.1:0")
            .authkey(b"k")
            .start()
            .unwrap();
        let addr = match mgr.address() {
            ipc_channel_core::Address::Tcp(a) => a,
            other => panic!("{other:?}"),
        };
        // Three peers connect and never say a word (each holds an acceptor in its handshake
        // until the 5 s handshake timeout).
        let silent: Vec<std::net::TcpStream> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        let other = Manager::connect(mgr.address(), b"k").unwrap();
        assert!(other.ping().is_ok());
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{m}: a client waited for silent peers' handshakes ({:?})",
            start.elapsed()
        );
        drop(silent);
    }
}

fn main() {
    testkit::main(
        &[],
        &[
            (
                "dict_filled_by_four_processes",
                test_dict_filled_by_four_processes,
            ),
            (
                "list_appended_by_four_processes",
                test_list_appended_by_four_processes,
            ),
            (
                "namespace_counter_under_a_manager_lock",
                test_namespace_counter_under_a_manager_lock,
            ),
            (
                "tcp_remote_right_key_works_wrong_key_refused",
                test_tcp_remote_right_key_works_wrong_key_refused,
            ),
            (
                "server_killed_mid_call_is_an_error_not_a_hang",
                test_server_killed_mid_call_is_an_error_not_a_hang,
            ),
            (
                "server_errors_come_back_as_errors",
                test_server_errors_come_back_as_errors,
            ),
            (
                "drop_shuts_down_and_owner_death_kills_the_server",
                test_drop_shuts_down_and_owner_death_kills_the_server,
            ),
            (
                "dead_lock_holder_is_reported",
                test_dead_lock_holder_is_reported,
            ),
            (
                "sync_objects_across_processes",
                test_sync_objects_across_processes,
            ),
            (
                "user_type_shared_by_processes",
                test_user_type_shared_by_processes,
            ),
            (
                "nested_proxies_and_blocked_callers",
                test_nested_proxies_and_blocked_callers,
            ),
            (
                "silent_peers_do_not_hold_up_other_clients",
                test_silent_peers_do_not_hold_up_other_clients,
            ),
        ],
    );
}
