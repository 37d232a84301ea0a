//! Manager benchmarks, side by side in one run (the goals in brackets):
//!
//! - `round_trip/proxy_dict_insert_get`: `d.insert(k, v)` then `d.get(&k)` on a
//!   `DictProxy<u64, u64>` (two proxy calls, two round trips to the server process).
//! - `round_trip/raw_listener_2x`: two raw `Connection` round trips (a `(u64, u64)` message out,
//!   a `u64` back) over a `Listener`/`Client` Unix stream socket with an authkey to a child
//!   process serving it on a thread — the same transport the manager uses, without the
//!   manager. [the proxy within 1.5× of this]
//! - `round_trip/raw_pipe_2x`: the same over a `Pipe` (seqpacket socketpair), for reference.
//!
//! Python's `Manager().dict()` figure comes from `python_manager_dict.py` in this directory
//! (stdlib only): `python3 proc-manager/benches/python_manager_dict.py`. [the proxy ≥ 5×
//! faster than Python's]

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use ipc_channel_core::{Client, Connection, Listener, Pipe};
use proc_manager::Manager;
use proc_spawn::Process;

fn echo(conn: Connection) {
    while let Ok((k, v)) = conn.recv::<(u64, u64)>() {
        if conn.send(&k.wrapping_add(v)).is_err() {
            break;
        }
    }
}

/// Serves one client on a thread, as the manager does, over a Unix stream socket.
fn listener_server(report: Connection) {
    let listener = Listener::bind_temp(Some(b"bench key")).expect("bind");
    report.send(&listener.address()).expect("report");
    let conn = listener.accept().expect("accept");
    std::thread::spawn(move || echo(conn))
        .join()
        .expect("echo thread");
}

fn round_trip(c: &mut Criterion) {
    let manager = Manager::start().expect("manager");
    let d = manager.dict::<u64, u64>().expect("dict");

    let (mine, theirs) = Pipe::new().expect("pipe");
    let mut pipe_child = Process::new(echo, theirs);
    pipe_child.start().expect("start pipe echo");

    let (report_mine, report_theirs) = Pipe::new().expect("pipe");
    let mut listener_child = Process::new(listener_server, report_theirs);
    listener_child.start().expect("start listener echo");
    let address: ipc_channel_core::Address = report_mine.recv().expect("address");
    let client = Client::connect(address, Some(b"bench key")).expect("connect");

    let mut g = c.benchmark_group("round_trip");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    let mut k = 0u64;
    g.bench_function("proxy_dict_insert_get", |b| {
        b.iter(|| {
            k = (k + 1) % 1024;
            d.insert(k, k).expect("insert");
            black_box(d.get(&k).expect("get"))
        })
    });
    g.bench_function("raw_listener_2x", |b| {
        b.iter(|| {
            client.send(&(1u64, 2u64)).expect("send");
            black_box(client.recv::<u64>().expect("recv"));
            client.send(&(3u64, 4u64)).expect("send");
            black_box(client.recv::<u64>().expect("recv"))
        })
    });
    g.bench_function("raw_pipe_2x", |b| {
        b.iter(|| {
            mine.send(&(1u64, 2u64)).expect("send");
            black_box(mine.recv::<u64>().expect("recv"));
            mine.send(&(3u64, 4u64)).expect("send");
            black_box(mine.recv::<u64>().expect("recv"))
        })
    });
    g.finish();

    // Criterion measures one case after the other; on a shared machine the load changes in
    // between. The ratio that matters is taken here with the two interleaved: batches of
    // proxy pairs and raw pairs alternate, and the medians of the per-batch times are compared.
    let batch = 2000u64;
    let (mut proxy, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        let t = std::time::Instant::now();
        for k in 0..batch {
            d.insert(k % 1024, k).expect("insert");
            black_box(d.get(&(k % 1024)).expect("get"));
        }
        proxy.push(t.elapsed().as_nanos() as f64 / batch as f64);
        let t = std::time::Instant::now();
        for _ in 0..batch {
            client.send(&(1u64, 2u64)).expect("send");
            black_box(client.recv::<u64>().expect("recv"));
            client.send(&(3u64, 4u64)).expect("send");
            black_box(client.recv::<u64>().expect("recv"));
        }
        raw.push(t.elapsed().as_nanos() as f64 / batch as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (p, r) = (median(&mut proxy), median(&mut raw));
    println!(
        "interleaved (median of 15 batches of {batch}): proxy insert+get {:.1} us, raw listener \
         2 round trips {:.1} us, ratio {:.2} (goal <= 1.5)",
        p / 1e3,
        r / 1e3,
        p / r
    );
    drop(mine);
    drop(client);
    let _ = pipe_child.join();
    let _ = listener_child.join();
    manager.shutdown().expect("shutdown");
}

fn main() {
    proc_spawn::init();
    let mut c = Criterion::default().configure_from_args();
    round_trip(&mut c);
    c.final_summary();
}
