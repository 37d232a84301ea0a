//! Round trip of a small message between two processes: `Connection` (typed and bytes) against
//! the OS limit (a raw `SOCK_STREAM` and a raw `SOCK_SEQPACKET` socketpair ping-pong, 8 bytes
//! each way) and against the `ipc-channel` crate. The echo side runs in a child process.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use criterion::Criterion;
use ipc_channel_core::{Connection, Pipe};
use ipc_shm::transfer;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

fn case_conn_echo(payload: &[u8], fds: Vec<OwnedFd>) {
    let c: Connection = transfer::decode(payload, fds).unwrap();
    while let Ok(v) = c.recv::<u64>() {
        if c.send(&v).is_err() {
            return;
        }
    }
}

fn case_conn_bytes_echo(payload: &[u8], fds: Vec<OwnedFd>) {
    let c: Connection = transfer::decode(payload, fds).unwrap();
    let mut buf = [0u8; 64];
    while let Ok(n) = c.recv_bytes_into(&mut buf) {
        if c.send_bytes(&buf[..n]).is_err() {
            return;
        }
    }
}

fn case_raw_stream_echo(_: &[u8], mut fds: Vec<OwnedFd>) {
    let mut s = UnixStream::from(fds.remove(0));
    let mut buf = [0u8; 8];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            return;
        }
    }
}

fn case_raw_seqpacket_echo(_: &[u8], fds: Vec<OwnedFd>) {
    let fd = &fds[0];
    let mut buf = [0u8; 8];
    loop {
        match rustix::net::recv(fd, &mut buf, RecvFlags::empty()) {
            Ok((0, _)) | Err(_) => return,
            Ok((n, _)) => {
                if rustix::net::send(fd, &buf[..n], SendFlags::NOSIGNAL).is_err() {
                    return;
                }
            }
        }
    }
}

type IpcPair = (
    ipc_channel::ipc::IpcReceiver<u64>,
    ipc_channel::ipc::IpcSender<u64>,
);
/// ipc-channel endpoints handed to a forked child through memory (fork copies them).
static IPC_CHILD: Mutex<Option<IpcPair>> = Mutex::new(None);

fn case_ipc_channel_echo(_: &[u8], _: Vec<OwnedFd>) {
    let Some((rx, tx)) = IPC_CHILD.lock().unwrap().take() else {
        return;
    };
    // The forked child holds copies of the parent's endpoints too, so it never sees a
    // disconnect: u64::MAX tells it to stop.
    while let Ok(v) = rx.recv() {
        if v == u64::MAX || tx.send(v).is_err() {
            return;
        }
    }
}

fn start(method: testkit::Method, case: &str, payload: &[u8], fds: &[OwnedFd]) -> testkit::Child {
    let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    testkit::start(method, case, payload, &b).unwrap()
}

/// One round trip of each kind, against its echo child.
struct Peers {
    stream: UnixStream,
    seqpacket: OwnedFd,
    conn: Connection,
    conn_bytes: Connection,
    ipc_tx: ipc_channel::ipc::IpcSender<u64>,
    ipc_rx: ipc_channel::ipc::IpcReceiver<u64>,
    children: Vec<testkit::Child>,
}

const KINDS: [&str; 5] = [
    "raw_socketpair_stream",
    "raw_socketpair_seqpacket",
    "connection_send_recv_u64",
    "connection_send_bytes_recv_bytes_into_8B",
    "ipc_channel_crate_u64",
];

impl Peers {
    fn start() -> Peers {
        let mut children = Vec::new();
        let (stream, theirs) = UnixStream::pair().unwrap();
        children.push(start(
            testkit::Method::Spawn,
            "raw_stream_echo",
            &[],
            &[OwnedFd::from(theirs)],
        ));
        let (seqpacket, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        children.push(start(
            testkit::Method::Spawn,
            "raw_seqpacket_echo",
            &[],
            &[theirs],
        ));
        let mut conns = Vec::new();
        for case in ["conn_echo", "conn_bytes_echo"] {
            let (mine, theirs) = Pipe::new().unwrap();
            let (bytes, fds) = transfer::encode(&theirs).unwrap();
            children.push(start(testkit::Method::Spawn, case, &bytes, &fds));
            conns.push(mine);
        }
        let conn_bytes = conns.pop().unwrap();
        let conn = conns.pop().unwrap();
        let (ipc_tx, child_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
        let (child_tx, ipc_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
        *IPC_CHILD.lock().unwrap() = Some((child_rx, child_tx));
        children.push(start(testkit::Method::Fork, "ipc_channel_echo", &[], &[]));
        // The parent's copies of the child's endpoints are not needed.
        IPC_CHILD.lock().unwrap().take();
        Peers {
            stream,
            seqpacket,
            conn,
            conn_bytes,
            ipc_tx,
            ipc_rx,
            children,
        }
    }

    fn round_trip(&mut self, kind: usize) {
        let mut buf = [0u8; 64];
        match kind {
            0 => {
                self.stream.write_all(&7u64.to_le_bytes()).unwrap();
                self.stream.read_exact(&mut buf[..8]).unwrap();
            }
            1 => {
                rustix::net::send(&self.seqpacket, &7u64.to_le_bytes(), SendFlags::NOSIGNAL)
                    .unwrap();
                rustix::net::recv(&self.seqpacket, &mut buf[..8], RecvFlags::empty()).unwrap();
            }
            2 => {
                self.conn.send(&black_box(7u64)).unwrap();
                black_box(self.conn.recv::<u64>().unwrap());
            }
            3 => {
                self.conn_bytes.send_bytes(&7u64.to_le_bytes()).unwrap();
                black_box(self.conn_bytes.recv_bytes_into(&mut buf).unwrap());
            }
            _ => {
                self.ipc_tx.send(black_box(7u64)).unwrap();
                black_box(self.ipc_rx.recv().unwrap());
            }
        }
        black_box(buf);
    }

    fn stop(self) {
        let Peers {
            stream,
            seqpacket,
            conn,
            conn_bytes,
            ipc_tx,
            ipc_rx,
            children,
        } = self;
        ipc_tx.send(u64::MAX).unwrap();
        drop((stream, seqpacket, conn, conn_bytes, ipc_tx, ipc_rx));
        for mut c in children {
            c.wait().unwrap();
        }
    }
}

fn round_trips(c: &mut Criterion, peers: &mut Peers) {
    let mut g = c.benchmark_group("round_trip_8B");
    for (kind, name) in KINDS.iter().enumerate() {
        g.bench_function(*name, |b| b.iter(|| peers.round_trip(kind)));
    }
    g.finish();
}

/// Interleaved batches: each kind's minimum (the comparison least disturbed by the neighbours
/// on a shared machine) and median.
fn interleaved_minimum(peers: &mut Peers) {
    const ROUNDS: usize = 41;
    const BATCH: u32 = 1000;
    let mut all = vec![Vec::with_capacity(ROUNDS); KINDS.len()];
    for _ in 0..ROUNDS {
        for (kind, v) in all.iter_mut().enumerate() {
            let t = std::time::Instant::now();
            for _ in 0..BATCH {
                peers.round_trip(kind);
            }
            v.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH));
        }
    }
    for v in &mut all {
        v.sort_by(f64::total_cmp);
    }
    println!("\ninterleaved over {ROUNDS} batches of {BATCH} round trips (min, median):");
    for (kind, name) in KINDS.iter().enumerate() {
        let (min, med) = (all[kind][0], all[kind][ROUNDS / 2]);
        println!(
            "  {name:<44} {min:>7.2} {med:>7.2} us   {:>5.2}x {:>5.2}x raw stream   {:>5.2}x {:>5.2}x ipc-channel",
            min / all[0][0],
            med / all[0][ROUNDS / 2],
            min / all[4][0],
            med / all[4][ROUNDS / 2],
        );
    }
}

fn main() {
    testkit::dispatch(&[
        ("conn_echo", case_conn_echo),
        ("conn_bytes_echo", case_conn_bytes_echo),
        ("raw_stream_echo", case_raw_stream_echo),
        ("raw_seqpacket_echo", case_raw_seqpacket_echo),
        ("ipc_channel_echo", case_ipc_channel_echo),
    ]);
    let mut peers = Peers::start();
    let mut c = Criterion::default().configure_from_args();
    round_trips(&mut c, &mut peers);
    c.final_summary();
    interleaved_minimum(&mut peers);
    peers.stop();
}
