//! Tests of `ThreadPool`: Pool's API on threads, with closures that capture (Python's
//! `multiprocessing.dummy.Pool`, seed l).

use std::cell::Cell as StdCell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::Duration;

use proc_pool::{Callbacks, Error, ThreadPool};

/// A gate tasks wait on until it is opened.
#[derive(Clone)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn new() -> Gate {
        Gate(Arc::new((Mutex::new(false), Condvar::new())))
    }
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    fn wait(&self) {
        let mut g = self.0 .0.lock().unwrap();
        while !*g {
            g = self.0 .1.wait(g).unwrap();
        }
    }
}

fn test_seed_dummy_pool() {
    let p = ThreadPool::new(4).unwrap();
    assert_eq!(p.processes(), 4);
    assert_eq!(
        p.map(|x: i64| x * x, 0..10).unwrap(),
        vec![0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
    );
    assert_eq!(p.map(|x: i32| x + 1, vec![1, 2, 3]).unwrap(), vec![2, 3, 4]);
    let pids: BTreeSet<u32> = p
        .map(|_: u8| std::process::id(), 0..20)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(pids, BTreeSet::from([std::process::id()]));
    // Closures capture.
    let offset = Arc::new(100);
    let o = offset.clone();
    assert_eq!(
        p.map_chunked(move |x: i32| x + *o, 0..5, 2).unwrap(),
        vec![100, 101, 102, 103, 104]
    );
    assert_eq!(p.apply(|(a, b): (i32, i32)| a * b, (6, 7)).unwrap(), 42);
    assert_eq!(
        p.starmap(|a: i32, b: i32| a - b, vec![(5, 3), (1, 1)])
            .unwrap(),
        vec![2, 0]
    );
    assert_eq!(
        p.starmap(|a: i32, b: i32, c: i32| a + b + c, vec![(1, 2, 3)])
            .unwrap(),
        vec![6]
    );
    assert_eq!(
        p.starmap3(
            |a: i32, b: u8, c: i32| a + i32::from(b) * c,
            vec![(1, 2, 3)]
        )
        .unwrap(),
        vec![7]
    );
    assert_eq!(
        p.starmap4(
            |a: u8, b: u8, c: u8, d: u8| [a, b, c, d],
            vec![(1, 2, 3, 4)]
        )
        .unwrap(),
        vec![[1, 2, 3, 4]]
    );
    assert_eq!(p.map(|x: i32| x, Vec::new()).unwrap(), Vec::<i32>::new());
    assert!(matches!(
        p.map_chunked(|x: i32| x, 0..3, 0),
        Err(Error::InvalidArgument(_))
    ));
}

fn test_tasks_run_on_several_threads() {
    let p = ThreadPool::new(4).unwrap();
    let b = Arc::new(Barrier::new(4));
    let rs: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            p.apply_async(
                move |_: ()| {
                    b.wait();
                    std::thread::current().name().unwrap().to_string()
                },
                (),
            )
        })
        .collect();
    let names: BTreeSet<String> = rs.iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with("(worker)")));
}

fn test_map_async_and_timeouts() {
    let p = ThreadPool::new(2).unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let r = p.map_async(
        move |x: i32| {
            g.wait();
            x * 2
        },
        0..4,
    );
    assert!(!r.ready());
    assert_eq!(r.successful(), None);
    assert_eq!(
        r.get_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    );
    assert!(!r.wait_timeout(Duration::from_millis(1)).unwrap());
    gate.open();
    r.wait().unwrap();
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
    assert_eq!(r.get().unwrap(), vec![0, 2, 4, 6]);
    assert_eq!(r.get(), Err(Error::AlreadyTaken));
}

fn test_panics_are_errors() {
    let p = ThreadPool::new(2).unwrap();
    match p.apply(|x: i32| -> i32 { panic!("bad {x}") }, 7) {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "bad 7"),
        other => panic!("{other:?}"),
    }
    let f = |x: i32| {
        if x == 5 || x == 8 {
            panic!("no {x}");
        }
        x
    };
    match p.map_chunked(f, 0..10, 3) {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "no 5"),
        other => panic!("{other:?}"),
    }
    let out: Vec<_> = p.imap(f, 0..10).collect();
    assert!(matches!(out[5], Err(Error::Panicked { .. })));
    assert_eq!(out[4], Ok(4));
    assert_eq!(p.map(|x: i32| x, 0..3).unwrap(), vec![0, 1, 2]);
}

fn test_callbacks() {
    let p = ThreadPool::new(2).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s1 = seen.clone();
    let s2 = seen.clone();
    let r = p.apply_async_with(
        |x: i32| -> i32 {
            if x < 0 {
                panic!("negative")
            } else {
                x
            }
        },
        -1,
        Callbacks::new()
            .on_success(move |v: &i32| s1.lock().unwrap().push(format!("ok {v}")))
            .on_error(move |e: &Error| s2.lock().unwrap().push(format!("err {e}"))),
    );
    assert!(r.get().is_err());
    let s = seen.clone();
    let r = p.map_async_with(
        |x: i32| x * 10,
        0..3,
        None,
        Callbacks::new().on_success(move |v: &Vec<i32>| s.lock().unwrap().push(format!("{v:?}"))),
    );
    assert_eq!(r.get().unwrap(), vec![0, 10, 20]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].starts_with("err task panicked"), "{}", seen[0]);
    assert_eq!(seen[1], "[0, 10, 20]");
}

fn test_lifecycle() {
    let p = ThreadPool::new(2).unwrap();
    assert_eq!(p.join(), Err(Error::StillRunning));
    let rs: Vec<_> = (0..10)
        .map(|i| {
            p.apply_async(
                move |x: u64| {
                    std::thread::sleep(Duration::from_millis(5));
                    x * x
                },
                i,
            )
        })
        .collect();
    p.close();
    p.join().unwrap();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    assert_eq!(p.apply(|x: i32| x, 1), Err(Error::NotRunning));
    assert_eq!(
        p.imap(|x: i32| x, 0..2).next(),
        Some(Err(Error::NotRunning))
    );

    // terminate: queued tasks fail; the running one finishes.
    let p = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let started = Gate::new();
    let g = gate.clone();
    let st = started.clone();
    let running = p.apply_async(
        move |_: ()| {
            st.open();
            g.wait();
            "done"
        },
        (),
    );
    started.wait();
    let queued: Vec<_> = (0..5).map(|i| p.apply_async(|x: i32| x, i)).collect();
    let g = gate.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        g.open();
    });
    p.terminate();
    t.join().unwrap();
    for r in &queued {
        // Queued behind the running task on the only thread: failed by terminate.
        assert!(r.ready());
        assert_eq!(r.get(), Err(Error::Terminated));
    }
    assert_eq!(running.get().unwrap(), "done");
    assert_eq!(p.apply(|x: i32| x, 1), Err(Error::NotRunning));

    // Drop terminates and resolves pending results.
    let p = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let started = Gate::new();
    let g = gate.clone();
    let st = started.clone();
    let _first = p.apply_async(
        move |_: ()| {
            st.open();
            g.wait()
        },
        (),
    );
    started.wait();
    let second = p.apply_async(|x: i32| x, 2);
    let g = gate.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        g.open();
    });
    drop(p);
    t.join().unwrap();
    assert_eq!(second.get(), Err(Error::Terminated));
}

fn test_initializer() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let p = ThreadPool::builder()
        .processes(3)
        .initializer(move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    assert_eq!(p.map(|x: i32| x, 0..30).unwrap().len(), 30);
    p.close();
    p.join().unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let p = ThreadPool::builder()
        .processes(2)
        .initializer(|| panic!("no config"))
        .build()
        .unwrap();
    let broken = Error::InitializerFailed {
        message: "no config".into(),
    };
    assert_eq!(p.map(|x: i32| x, 0..4), Err(broken.clone()));
    assert_eq!(p.apply(|x: i32| x, 1), Err(broken));
}

fn test_lazy_imap() {
    let p = ThreadPool::new(2).unwrap();
    let pulled = StdCell::new(0usize);
    let got: Vec<u64> = p
        .imap(
            |x: u64| x + 1,
            (0u64..).inspect(|_| pulled.set(pulled.get() + 1)),
        )
        .take(1000)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, (1..=1000).collect::<Vec<_>>());
    assert!(pulled.get() <= 1000 + 8, "pulled {}", pulled.get());
    let mut un: Vec<u64> = p
        .imap_unordered_chunked(|x: u64| x, 0..100, 7)
        .collect::<Result<_, _>>()
        .unwrap();
    un.sort();
    assert_eq!(un, (0..100).collect::<Vec<_>>());
    let ordered: Vec<u64> = p
        .imap_chunked(|x: u64| x * 3, 0..50, 4)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ordered, (0..50).map(|x| x * 3).collect::<Vec<_>>());
}

fn main() {
    testkit::main(
        &[],
        &[
            ("seed_dummy_pool", test_seed_dummy_pool),
            (
                "tasks_run_on_several_threads",
                test_tasks_run_on_several_threads,
            ),
            ("map_async_and_timeouts", test_map_async_and_timeouts),
            ("panics_are_errors", test_panics_are_errors),
            ("callbacks", test_callbacks),
            ("lifecycle", test_lifecycle),
            ("initializer", test_initializer),
            ("lazy_imap", test_lazy_imap),
        ],
    );
}
