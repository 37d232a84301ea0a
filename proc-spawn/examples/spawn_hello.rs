//! The process seeds of Python's `multiprocessing` tutorial, with proc-spawn, under every start
//! method: hello from a child, names and parents, four numbered children, a `Run` object, a
//! value computed in a child, a shared counter, a panicking child, `terminate()`.
//!
//! Run it with `cargo run -p proc-spawn --example spawn_hello`; its output is checked
//! against `spawn_hello.expected` by `cargo xtask test`.

use ipc_channel_core::{Connection, Pipe};
use ipc_sync::Value;
use proc_spawn::{get_all_start_methods, get_context, Process, Run, StartMethod};
use serde::{Deserialize, Serialize};
use std::time::Duration;

fn hello(name: String) {
    println!("  hello {name}");
}

fn names(out: Connection) {
    let me = proc_spawn::current_process();
    let parent = proc_spawn::parent_process().expect("a child has a parent");
    out.send(&(
        me.name().to_string(),
        parent.name().to_string(),
        parent.pid(),
    ))
    .unwrap();
}

fn number((n, out): (u32, Connection)) {
    out.send(&n).unwrap();
}

#[derive(Serialize, Deserialize)]
struct Worker {
    n: u64,
}

impl Run for Worker {
    fn run(self) {
        println!(
            "  {} squares {} -> {}",
            proc_spawn::current_process().name(),
            self.n,
            self.n * self.n
        );
    }
}

fn square(x: i64) -> i64 {
    x * x
}

fn count((counter, n): (Value<i32>, u32)) {
    for _ in 0..n {
        *counter.lock() += 1;
    }
}

fn fail(msg: String) -> u8 {
    panic!("{msg}")
}

fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

fn tour(m: StartMethod) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = get_context(m);
    println!("{m}:");

    let mut p = ctx.process(hello, "bob".to_string());
    p.start()?;
    p.join()?;
    println!("  exitcode {:?}", p.exitcode());

    let (a, b) = Pipe::new()?;
    let mut p = ctx.process(names, b).name("worker-A");
    p.start()?;
    let (name, parent, parent_pid): (String, String, u32) = a.recv()?;
    p.join()?;
    println!(
        "  child: {name} parent: {parent} parent pid matches: {}",
        parent_pid == std::process::id()
    );

    let mut readers = Vec::new();
    let mut procs = Vec::new();
    for n in 0..4 {
        let (a, b) = Pipe::new()?;
        let mut p = ctx.process(number, (n, b));
        p.start()?;
        readers.push(a);
        procs.push(p);
    }
    let mut got = readers
        .iter()
        .map(|r| r.recv::<u32>())
        .collect::<Result<Vec<_>, _>>()?;
    for p in &mut procs {
        p.join()?;
    }
    got.sort();
    println!("  four children sent {got:?}");

    let mut p = ctx.process_from_run(Worker { n: 9 }).name("Worker-1");
    p.start()?;
    p.join()?;

    println!("  spawn(square, 12) = {}", ctx.spawn(square, 12).join()?);

    let counter = Value::new(0i32)?;
    let mut procs: Vec<Process> = (0..4)
        .map(|_| ctx.process(count, (counter.clone(), 100_000)))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    for p in &mut procs {
        p.join()?;
    }
    println!("  counter {}", counter.get());

    match ctx.spawn(fail, "on purpose".to_string()).join() {
        Err(e) => println!("  {e}"),
        Ok(_) => println!("  the child did not panic?"),
    }

    let mut p = ctx.process(sleep, 60);
    p.start()?;
    println!("  before: {} {:?}", p.is_alive(), p.exitcode());
    p.terminate()?;
    p.join()?;
    println!("  after: {} {:?}", p.is_alive(), p.exitcode());
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    proc_spawn::init();
    println!(
        "main: {} parent_process(): {:?}",
        proc_spawn::current_process().name(),
        proc_spawn::parent_process()
    );
    for m in get_all_start_methods() {
        tour(m)?;
    }
    Ok(())
}
