//! The pool seeds of Python's `multiprocessing` tutorial with proc-pool, under every start
//! method: `Pool(4).map(square, range(10))` (seed a), `imap` of a slow square in input order
//! (seed f), `map_async` with `ready`/`wait`/`get` (seed j), how the chunksize sets the number
//! of tasks (seed k), the thread pool (seed l); then what Python cannot do: a panicking task and
//! a killed worker are errors, and the pool goes on.
//!
//! Run it with `cargo run -p proc-pool --example pool_seeds`; its output is checked against
//! `pool_seeds.expected` by `cargo xtask test`.

use std::collections::BTreeSet;
use std::time::Duration;

use proc_pool::{Error, Pool, ThreadPool};
use proc_spawn::{get_all_start_methods, get_context};

fn square(x: i64) -> i64 {
    x * x
}

fn slow_square(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(if x == 0 { 300 } else { 50 }));
    x * x
}

fn sleepy_square(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(200));
    x * x
}

fn worker_pid(_: u32) -> u32 {
    std::process::id()
}

fn checked_div((a, b): (i64, i64)) -> i64 {
    if b == 0 {
        panic!("division of {a} by zero");
    }
    a / b
}

fn die(_: ()) -> i64 {
    std::process::abort()
}

fn main() -> Result<(), Error> {
    proc_pool::init();
    for m in get_all_start_methods() {
        println!("{m}:");
        let pool = Pool::builder()
            .processes(4)
            .context(get_context(m))
            .build()?;
        println!("  {:?}", pool.map(square, 0..10)?);

        let ordered: Vec<i64> = pool.imap(slow_square, 0..8).collect::<Result<_, _>>()?;
        println!("  imap: {ordered:?}");
        let mut unordered: Vec<i64> = pool
            .imap_unordered(slow_square, 0..8)
            .collect::<Result<_, _>>()?;
        unordered.sort();
        println!("  imap_unordered, sorted: {unordered:?}");

        let r = pool.map_async(sleepy_square, 0..4);
        println!("  ready: {}", r.ready());
        r.wait()?;
        println!("  ready: {} successful: {:?}", r.ready(), r.successful());
        println!("  {:?}", r.get()?);

        // One task per worker (maxtasksperchild=1): distinct pids count the tasks.
        for chunksize in [None, Some(1), Some(10), Some(25), Some(100)] {
            let fresh = Pool::builder()
                .processes(4)
                .max_tasks_per_child(1)
                .context(get_context(m))
                .build()?;
            let pids: BTreeSet<u32> = match chunksize {
                None => fresh.map(worker_pid, 0..100)?,
                Some(c) => fresh.map_chunked(worker_pid, 0..100, c)?,
            }
            .into_iter()
            .collect();
            let label = chunksize.map_or("None".to_string(), |c| c.to_string());
            println!("  chunksize={label}: tasks={}", pids.len());
        }

        match pool.apply(checked_div, (1, 0)) {
            Err(Error::Panicked { message, .. }) => println!("  panicked: {message}"),
            other => println!("  unexpected: {other:?}"),
        }
        match pool.apply(die, ()) {
            Err(Error::WorkerLost { exitcode, .. }) => {
                println!("  worker lost, exit code {exitcode:?}")
            }
            other => println!("  unexpected: {other:?}"),
        }
        println!("  still working: {}", pool.apply(checked_div, (84, 2))?);
        pool.close();
        pool.join()?;
    }

    let threads = ThreadPool::new(4)?;
    println!("threads:");
    println!("  {:?}", threads.map(|x: i64| x * x, 0..10)?);
    let offset = 1;
    println!(
        "  {:?}",
        threads.map(move |x: i32| x + offset, vec![1, 2, 3])?
    );
    let pids: BTreeSet<u32> = threads
        .map(|_: u8| std::process::id(), 0..8)?
        .into_iter()
        .collect();
    println!(
        "  same pid: {}",
        pids == BTreeSet::from([std::process::id()])
    );
    Ok(())
}
