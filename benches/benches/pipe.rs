//! Group `pipe`: the round trip of a small message to a child process and back.
//!
//! multiproc's `Connection` (`Pipe::new()`, `send`/`recv` of a `u64`, an echo child started with
//! the default method) next to the OS limit — a raw Unix socketpair ping-pong of the same 8 bytes,
//! `SOCK_SEQPACKET` (the socket type `Pipe` uses) and `SOCK_STREAM` — and the `ipc-channel`
//! crate (`IpcSender`/`IpcReceiver` of a `u64`). The Python twin is `benches/python/pipe.py`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use criterion::{BenchmarkId, Criterion};
use multiproc::{Connection, Pipe, Process};
use multiproc_benches::{timing, Weight};

const CASE: &str = "8 B";

fn echo(conn: Connection) {
    while let Ok(v) = conn.recv::<u64>() {
        if v == u64::MAX || conn.send(&v).is_err() {
            return;
        }
    }
}

fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair failed");
    use std::os::fd::FromRawFd;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn send8(fd: &OwnedFd, buf: &[u8; 8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for 8 bytes; `fd` is an open socket.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), 8, libc::MSG_NOSIGNAL) };
    assert_eq!(n, 8, "send failed");
}

fn recv8(fd: &OwnedFd, buf: &mut [u8; 8]) -> isize {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for 8 writable bytes; `fd` is an open socket.
    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8, 0) }
}

fn bench(c: &mut Criterion) {
    let t = timing(Weight::Light);
    let mut g = c.benchmark_group("pipe");
    g.warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .sample_size(t.samples);

    // multiproc: an echo child with the default start method.
    let (mine, theirs) = Pipe::new().expect("pipe");
    let mut ours = Process::new(echo, theirs);
    ours.start().expect("start echo");
    g.bench_function(BenchmarkId::new("multiproc Connection", CASE), |b| {
        b.iter(|| {
            mine.send(&black_box(7u64)).expect("send");
            mine.recv::<u64>().expect("recv")
        })
    });
    mine.send(&u64::MAX).expect("stop");
    ours.join().expect("join echo");

    // Raw SOCK_SEQPACKET socketpair.
    let (a, b_end) = seqpacket_pair();
    // A forked child holds copies of the parent's descriptors too, so it never sees an end of
    // file: u64::MAX tells it to stop.
    let mut child = Process::from_closure(move || {
        let mut buf = [0u8; 8];
        while recv8(&b_end, &mut buf) == 8 && u64::from_ne_bytes(buf) != u64::MAX {
            send8(&b_end, &buf);
        }
    });
    child.start().expect("start");
    g.bench_function(BenchmarkId::new("raw socketpair seqpacket", CASE), |b| {
        b.iter(|| {
            let mut buf = 7u64.to_ne_bytes();
            send8(&a, &buf);
            assert_eq!(recv8(&a, &mut buf), 8);
            u64::from_ne_bytes(buf)
        })
    });
    send8(&a, &u64::MAX.to_ne_bytes());
    child.join().expect("join");

    // Raw SOCK_STREAM socketpair.
    let (mut s, theirs) = UnixStream::pair().expect("socketpair");
    let mut child = Process::from_closure(move || {
        let mut theirs = theirs;
        let mut buf = [0u8; 8];
        while theirs.read_exact(&mut buf).is_ok() {
            if u64::from_ne_bytes(buf) == u64::MAX || theirs.write_all(&buf).is_err() {
                return;
            }
        }
    });
    child.start().expect("start");
    g.bench_function(BenchmarkId::new("raw socketpair stream", CASE), |b| {
        b.iter(|| {
            let mut buf = 7u64.to_ne_bytes();
            s.write_all(&buf).expect("write");
            s.read_exact(&mut buf).expect("read");
            u64::from_ne_bytes(buf)
        })
    });
    s.write_all(&u64::MAX.to_ne_bytes()).expect("stop");
    child.join().expect("join");

    // The ipc-channel crate. The forked child holds copies of the parent's endpoints too, so it
    // never sees a disconnect: u64::MAX tells it to stop.
    let (to_child, child_rx) = ipc_channel::ipc::channel::<u64>().expect("ipc channel");
    let (child_tx, from_child) = ipc_channel::ipc::channel::<u64>().expect("ipc channel");
    let mut child = Process::from_closure(move || {
        while let Ok(v) = child_rx.recv() {
            if v == u64::MAX || child_tx.send(v).is_err() {
                return;
            }
        }
    });
    child.start().expect("start");
    g.bench_function(BenchmarkId::new("ipc-channel", CASE), |b| {
        b.iter(|| {
            to_child.send(black_box(7u64)).expect("send");
            from_child.recv().expect("recv")
        })
    });
    to_child.send(u64::MAX).expect("stop");
    child.join().expect("join");
    g.finish();
}

fn main() {
    multiproc::init();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
