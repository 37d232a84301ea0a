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

fn round_trips(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip_8B");

    {
        let (s, theirs) = UnixStream::pair().unwrap();
        let mut child = start(
            testkit::Method::Spawn,
            "raw_stream_echo",
            &[],
            &[OwnedFd::from(theirs)],
        );
        let mut s = s;
        let mut buf = [0u8; 8];
        g.bench_function("raw_socketpair_stream", |b| {
            b.iter(|| {
                s.write_all(&7u64.to_le_bytes()).unwrap();
                s.read_exact(&mut buf).unwrap();
                black_box(buf);
            })
        });
        drop(s);
        child.wait().unwrap();
    }

    {
        let (a, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let mut child = start(testkit::Method::Spawn, "raw_seqpacket_echo", &[], &[theirs]);
        let mut buf = [0u8; 8];
        g.bench_function("raw_socketpair_seqpacket", |b| {
            b.iter(|| {
                rustix::net::send(&a, &7u64.to_le_bytes(), SendFlags::NOSIGNAL).unwrap();
                rustix::net::recv(&a, &mut buf, RecvFlags::empty()).unwrap();
                black_box(buf);
            })
        });
        drop(a);
        child.wait().unwrap();
    }

    {
        let (mine, theirs) = Pipe::new().unwrap();
        let (bytes, fds) = transfer::encode(&theirs).unwrap();
        drop(theirs);
        let mut child = start(testkit::Method::Spawn, "conn_echo", &bytes, &fds);
        drop(fds);
        g.bench_function("connection_send_recv_u64", |b| {
            b.iter(|| {
                mine.send(&black_box(7u64)).unwrap();
                black_box(mine.recv::<u64>().unwrap());
            })
        });
        drop(mine);
        child.wait().unwrap();
    }

    {
        let (mine, theirs) = Pipe::new().unwrap();
        let (bytes, fds) = transfer::encode(&theirs).unwrap();
        drop(theirs);
        let mut child = start(testkit::Method::Spawn, "conn_bytes_echo", &bytes, &fds);
        drop(fds);
        let mut buf = [0u8; 64];
        g.bench_function("connection_send_bytes_recv_bytes_into_8B", |b| {
            b.iter(|| {
                mine.send_bytes(&7u64.to_le_bytes()).unwrap();
                black_box(mine.recv_bytes_into(&mut buf).unwrap());
            })
        });
        drop(mine);
        child.wait().unwrap();
    }

    {
        let (to_child, child_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
        let (child_tx, from_child) = ipc_channel::ipc::channel::<u64>().unwrap();
        *IPC_CHILD.lock().unwrap() = Some((child_rx, child_tx));
        let mut child = start(testkit::Method::Fork, "ipc_channel_echo", &[], &[]);
        // The parent's copies of the child's endpoints are not needed.
        IPC_CHILD.lock().unwrap().take();
        g.bench_function("ipc_channel_crate_u64", |b| {
            b.iter(|| {
                to_child.send(black_box(7u64)).unwrap();
                black_box(from_child.recv().unwrap());
            })
        });
        to_child.send(u64::MAX).unwrap();
        child.wait().unwrap();
    }

    g.finish();
}

fn main() {
    testkit::dispatch(&[
        ("conn_echo", case_conn_echo),
        ("conn_bytes_echo", case_conn_bytes_echo),
        ("raw_stream_echo", case_raw_stream_echo),
        ("raw_seqpacket_echo", case_raw_seqpacket_echo),
        ("ipc_channel_echo", case_ipc_channel_echo),
    ]);
    let mut c = Criterion::default().configure_from_args();
    round_trips(&mut c);
    c.final_summary();
}
