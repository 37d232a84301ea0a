//! A dict and a list held by a manager process, changed by a child; then four processes
//! counting in the dict with `update_with`, and a missing key.
//!
//! Python (the `multiprocessing` documentation's manager example):
//!
//! ```python
//! from multiprocessing import Process, Manager
//!
//! def f(d, l):
//!     d[1] = 'one'; d[2] = 'two'; d[3] = 'three'
//!     l.reverse()
//!
//! if __name__ == "__main__":
//!     with Manager() as manager:
//!         d = manager.dict()
//!         l = manager.list(range(10))
//!         p = Process(target=f, args=(d, l))
//!         p.start()
//!         p.join()
//!         print(d)
//!         print(l)
//! ```
//!
//! The proxies are typed (`DictProxy<u32, String>`), travel to the child as its argument
//! whatever the start method, and every call is one round trip to the manager's server.
//! `d[k] += 1` from several Python processes loses updates; `update_with` is an atomic
//! read-modify-write on the server, so the count below is exact.

use multiproc::prelude::*;
use multiproc::ManagerError;

fn f((d, l): (DictProxy<u32, String>, ListProxy<u32>)) {
    d.insert(1, "one".into()).unwrap();
    d.insert(2, "two".into()).unwrap();
    d.insert(3, "three".into()).unwrap();
    let mut items = l.to_vec().unwrap();
    items.reverse();
    l.clear().unwrap();
    l.extend(items).unwrap();
}

fn count(counts: DictProxy<String, u64>) {
    for _ in 0..100 {
        counts
            .update_with(&"hits".to_string(), |n| Some(n.unwrap_or(0) + 1))
            .unwrap();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let manager = Manager::start()?;
    let d = manager.dict::<u32, String>()?;
    let l = manager.list::<u32>()?;
    l.extend(0..10)?;
    let mut p = Process::new(f, (d.clone(), l.clone()));
    p.start()?;
    p.join()?;
    let items: Vec<String> = d
        .items()?
        .into_iter()
        .map(|(k, v)| format!("{k}: {v:?}"))
        .collect();
    println!("{{{}}}", items.join(", "));
    println!("{:?}", l.to_vec()?);

    let counts = manager.dict::<String, u64>()?;
    let mut procs: Vec<Process> = (0..4)
        .map(|_| Process::new(count, counts.clone()))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    for p in &mut procs {
        p.join()?;
    }
    println!("hits: {}", counts.get_item(&"hits".to_string())?);

    match d.get_item(&42) {
        Err(ManagerError::KeyNotFound) => println!("d[42]: key not found"),
        other => println!("d[42]: unexpected {other:?}"),
    }
    manager.shutdown()?;
    Ok(())
}
