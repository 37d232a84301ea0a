//! Untrusted input: garbage, truncated, oversized frames and wrong descriptor counts written
//! straight into a socket, and a proptest feeding random bytes to the frame decoder.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ipc_channel_core::{Connection, Error};
use proptest::prelude::*;

/// A frame header as the crate writes it: magic, kind, reserved, descriptor count, length.
fn header(kind: u8, fds: u32, len: u64) -> Vec<u8> {
    let mut h = b"mp".to_vec();
    h.push(kind);
    h.push(0);
    h.extend_from_slice(&fds.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = header(0, 0, payload.len() as u64);
    f.extend_from_slice(payload);
    f
}

/// A raw socket we write into and the `Connection` reading the other end.
fn raw_pair() -> (UnixStream, Connection) {
    let (raw, theirs) = UnixStream::pair().unwrap();
    (raw, Connection::from_fd(OwnedFd::from(theirs)).unwrap())
}

/// A raw seqpacket socket we send records into and the `Connection` reading the other end
/// (the kind `Pipe` uses).
fn raw_seqpacket_pair() -> (OwnedFd, Connection) {
    let (raw, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    (raw, Connection::from_fd(theirs).unwrap())
}

fn send_record(fd: &OwnedFd, bytes: &[u8]) {
    let n = rustix::net::send(fd, bytes, rustix::net::SendFlags::NOSIGNAL).unwrap();
    assert_eq!(n, bytes.len());
}

fn devnull() -> OwnedFd {
    OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
}

#[test]
fn garbage_is_bad_frame_then_broken() {
    let (mut raw, conn) = raw_pair();
    raw.write_all(b"this is not a multiproc frame at all")
        .unwrap();
    raw.write_all(&frame(b"valid, but after garbage")).unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::BadFrame(_))));
    // Never misreads what follows: the connection stays unusable.
    assert!(matches!(conn.recv_bytes(), Err(Error::Broken)));
    assert!(matches!(conn.recv::<u8>(), Err(Error::Broken)));
    assert!(matches!(conn.send(&1u8), Err(Error::Broken)));
}

#[test]
fn truncated_header_and_payload() {
    let (mut raw, conn) = raw_pair();
    raw.write_all(&header(0, 0, 100)[..5]).unwrap();
    drop(raw);
    assert!(matches!(
        conn.recv_bytes(),
        Err(Error::TruncatedFrame {
            expected: 16,
            got: 5
        })
    ));

    let (mut raw, conn) = raw_pair();
    raw.write_all(&frame(b"whole")).unwrap();
    raw.write_all(&header(0, 0, 100)).unwrap();
    raw.write_all(&[7; 10]).unwrap();
    drop(raw);
    assert_eq!(conn.recv_bytes().unwrap(), b"whole");
    assert!(matches!(
        conn.recv_bytes(),
        Err(Error::TruncatedFrame {
            expected: 116,
            got: 26
        })
    ));
    assert!(matches!(conn.recv_bytes(), Err(Error::Broken)));
}

#[test]
fn clean_eof_between_frames_is_eof() {
    let (mut raw, conn) = raw_pair();
    raw.write_all(&frame(b"last")).unwrap();
    drop(raw);
    assert_eq!(conn.recv_bytes().unwrap(), b"last");
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn oversized_length_is_refused_before_allocating() {
    let (mut raw, conn) = raw_pair();
    // 1 TiB announced: refused at once, without waiting for (or allocating) the payload.
    raw.write_all(&header(0, 0, 1 << 40)).unwrap();
    let t = Instant::now();
    match conn.recv_bytes() {
        Err(Error::TooLarge { len, max }) => {
            assert_eq!(len, 1 << 40);
            assert_eq!(max, ipc_channel_core::DEFAULT_MAX_MESSAGE_SIZE);
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(matches!(conn.recv_bytes(), Err(Error::Broken)));

    // u64::MAX with the maximum lifted: still an error, never an overflow or a panic.
    let (mut raw, conn) = raw_pair();
    conn.set_max_message_size(u64::MAX).unwrap();
    raw.write_all(&header(0, 0, u64::MAX)).unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::TooLarge { .. })));
}

#[test]
fn lying_length_does_not_allocate_ahead_of_data() {
    // 512 MiB announced (under the 1 GiB default), 1 KiB sent, then EOF: a truncation error,
    // and the process did not need 512 MiB to find out.
    let (mut raw, conn) = raw_pair();
    raw.write_all(&header(0, 0, 512 << 20)).unwrap();
    raw.write_all(&[1; 1024]).unwrap();
    drop(raw);
    assert!(matches!(
        conn.recv_bytes(),
        Err(Error::TruncatedFrame { got: 1040, .. })
    ));
}

#[test]
fn announced_fds_missing() {
    let (mut raw, conn) = raw_pair();
    let mut f = header(0, 1, 1);
    f.push(0);
    raw.write_all(&f).unwrap();
    assert!(matches!(
        conn.recv::<u32>(),
        Err(Error::MissingFds {
            expected: 1,
            received: 0
        })
    ));
    assert!(matches!(conn.recv_bytes(), Err(Error::Broken)));
}

#[test]
fn fewer_fds_than_announced() {
    let (raw, conn) = raw_pair();
    let mut f = header(0, 2, 1);
    f.push(0);
    let d = devnull();
    ipc_shm::transfer::send_with_fds(raw.as_fd(), &f, &[d.as_fd()]).unwrap();
    assert!(matches!(
        conn.recv_bytes(),
        Err(Error::MissingFds {
            expected: 2,
            received: 1
        })
    ));
}

#[test]
fn unannounced_fds_are_detected() {
    let (mut raw, conn) = raw_pair();
    let d = devnull();
    // A frame that announces none but carries one, then a normal frame.
    ipc_shm::transfer::send_with_fds(raw.as_fd(), &frame(b"a"), &[d.as_fd()]).unwrap();
    raw.write_all(&frame(b"b")).unwrap();
    let first = conn.recv_bytes();
    let second = conn.recv_bytes();
    // The first frame may be delivered (its descriptor could belong to a later frame in the
    // same read); by the next frame the stray descriptor is reported, and never misattributed.
    match (first, second) {
        (Ok(a), Err(Error::UnexpectedFds { count: 1 })) => assert_eq!(a, b"a"),
        (Err(Error::UnexpectedFds { count: 1 }), Err(Error::Broken)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn more_fds_than_announced() {
    let (raw, conn) = raw_pair();
    let (d1, d2) = (devnull(), devnull());
    let mut f = header(0, 1, 1);
    f.push(0);
    ipc_shm::transfer::send_with_fds(raw.as_fd(), &f, &[d1.as_fd(), d2.as_fd()]).unwrap();
    assert!(matches!(
        conn.recv_bytes(),
        Err(Error::UnexpectedFds { count: 1 })
    ));
}

#[test]
fn undecodable_payload_keeps_the_stream() {
    let (mut raw, conn) = raw_pair();
    raw.write_all(&frame(&[0xff; 3])).unwrap(); // not a valid varint-encoded u64 + nothing
    raw.write_all(&frame(&[5])).unwrap();
    assert!(matches!(conn.recv::<(u64, u64)>(), Err(Error::Decode(_))));
    assert_eq!(conn.recv::<u8>().unwrap(), 5);
}

#[test]
fn handshake_frame_in_data_stream_is_bad_frame() {
    let (mut raw, conn) = raw_pair();
    let mut f = header(1, 0, 2);
    f.extend_from_slice(&[1, 0]);
    raw.write_all(&f).unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::BadFrame(_))));
}

#[test]
fn partial_frame_survives_a_timeout() {
    let (mut raw, conn) = raw_pair();
    let f = frame(b"split across a timeout");
    raw.write_all(&f[..20]).unwrap();
    assert!(matches!(
        conn.recv_bytes_timeout(Duration::from_millis(30)),
        Err(Error::Timeout)
    ));
    assert!(matches!(conn.try_recv_bytes(), Err(Error::Timeout)));
    raw.write_all(&f[20..]).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"split across a timeout");
}

#[test]
fn non_socket_is_invalid_handle() {
    assert!(matches!(
        Connection::from_fd(devnull()),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn seqpacket_frames_may_span_records() {
    let (raw, conn) = raw_seqpacket_pair();
    let f = frame(b"0123456789abcdef0123456789");
    send_record(&raw, &f[..7]);
    send_record(&raw, &f[7..20]);
    send_record(&raw, &f[20..]);
    send_record(&raw, &frame(b"next"));
    assert_eq!(conn.recv_bytes().unwrap(), b"0123456789abcdef0123456789");
    assert_eq!(conn.recv_bytes().unwrap(), b"next");
    drop(raw);
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn seqpacket_oversized_record_is_a_framing_error() {
    let (raw, conn) = raw_seqpacket_pair();
    // One record bigger than the room a connection offers: its end would be cut off.
    let big = frame(&vec![3u8; ipc_channel_core::MAX_RECORD + 1000]);
    send_record(&raw, &big);
    assert!(matches!(conn.recv_bytes(), Err(Error::BadFrame(_))));
    assert!(matches!(conn.recv_bytes(), Err(Error::Broken)));
}

#[test]
fn seqpacket_truncated_and_garbage() {
    let (raw, conn) = raw_seqpacket_pair();
    send_record(&raw, &header(0, 0, 50)[..]);
    send_record(&raw, &[1; 20]);
    drop(raw);
    assert!(matches!(
        conn.recv_bytes(),
        Err(Error::TruncatedFrame {
            expected: 66,
            got: 36
        })
    ));
    let (raw, conn) = raw_seqpacket_pair();
    send_record(&raw, b"GET / HTTP/1.0\r\n\r\n");
    assert!(matches!(conn.recv_bytes(), Err(Error::BadFrame(_))));
}

/// Feeds `bytes` (closing afterwards) to a connection and reads until an error. Returns the
/// payloads received and the first error.
fn feed(bytes: &[u8], max: u64) -> (Vec<Vec<u8>>, Error) {
    let (mut raw, conn) = raw_pair();
    conn.set_max_message_size(max).unwrap();
    let writer = {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = raw.write_all(&bytes);
        })
    };
    let mut got = Vec::new();
    let err = loop {
        match conn.recv_bytes() {
            Ok(p) => got.push(p),
            Err(e) => break e,
        }
    };
    writer.join().unwrap();
    // After any error, the connection never yields a message again.
    match conn.recv_bytes() {
        Err(Error::Broken) => assert!(!matches!(err, Error::Eof)),
        Err(Error::Eof) => assert!(matches!(err, Error::Eof)),
        other => panic!("after {err:?}: {other:?}"),
    }
    (got, err)
}

/// Like [`feed`], over a seqpacket socket in records of the given sizes.
fn feed_records(bytes: &[u8], cuts: &[usize]) -> Error {
    let (raw, conn) = raw_seqpacket_pair();
    conn.set_max_message_size(1 << 20).unwrap();
    let mut at = 0;
    for c in cuts {
        if at >= bytes.len() {
            break;
        }
        let end = (at + c.max(&1)).min(bytes.len());
        send_record(&raw, &bytes[at..end]);
        at = end;
    }
    if at < bytes.len() {
        send_record(&raw, &bytes[at..]);
    }
    drop(raw);
    let err = loop {
        if let Err(e) = conn.recv_bytes() {
            break e;
        }
    };
    assert!(conn.recv_bytes().is_err());
    err
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_records_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(1usize..300, 0..16),
    ) {
        let err = feed_records(&bytes, &cuts);
        prop_assert!(matches!(
            err,
            Error::Eof
                | Error::BadFrame(_)
                | Error::TruncatedFrame { .. }
                | Error::TooLarge { .. }
                | Error::MissingFds { .. }
        ), "{:?}", err);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let (_, err) = feed(&bytes, 1 << 20);
        prop_assert!(matches!(
            err,
            Error::Eof
                | Error::BadFrame(_)
                | Error::TruncatedFrame { .. }
                | Error::TooLarge { .. }
                | Error::MissingFds { .. }
        ), "{:?}", err);
    }

    #[test]
    fn valid_frames_then_random_tail(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = Vec::new();
        for p in &payloads {
            bytes.extend_from_slice(&frame(p));
        }
        bytes.extend_from_slice(&tail);
        let (got, err) = feed(&bytes, 1 << 20);
        // Every valid frame before the tail arrives intact and in order.
        prop_assert!(got.len() >= payloads.len());
        prop_assert_eq!(&got[..payloads.len()], &payloads[..]);
        if tail.is_empty() {
            prop_assert!(matches!(err, Error::Eof));
        }
    }
}

#[test]
fn descriptors_inside_a_frame_body_are_refused_at_once() {
    let (mut raw, conn) = raw_pair();
    // A frame announcing no descriptors and a long body, whose body bytes then arrive one at
    // a time, each carrying a descriptor: the receiver must refuse them as they come, not
    // pile them up (a peer could fill this process's descriptor table) until the frame ends.
    raw.write_all(&header(0, 0, 1000)).unwrap();
    for _ in 0..5 {
        let d = devnull();
        ipc_shm::transfer::send_with_fds(raw.as_fd(), &[0], &[d.as_fd()]).unwrap();
    }
    match conn.recv_bytes_timeout(Duration::from_secs(30)) {
        Err(Error::UnexpectedFds { count: 1 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(conn.recv_bytes(), Err(Error::Broken)));
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

#[test]
fn nonblocking_socket_waits_without_spinning() {
    let (mut raw, theirs) = UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    let conn = Connection::from_fd(OwnedFd::from(theirs)).unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        raw.write_all(&frame(b"late")).unwrap();
        // Then fill the socket so that the other side's send must wait for this reader.
        std::thread::sleep(Duration::from_millis(1000));
        let mut sink = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < HEADER + (8 << 20) {
            got += std::io::Read::read(&mut raw, &mut sink).unwrap();
        }
        got
    });
    const HEADER: usize = 16;
    let before = thread_cpu();
    // A blocking receive on a non-blocking socket waits in poll, not in a busy loop.
    assert_eq!(conn.recv_bytes().unwrap(), b"late");
    // So does a send larger than the socket buffer while the reader is slow.
    conn.send_bytes(&vec![1u8; 8 << 20]).unwrap();
    let used = thread_cpu() - before;
    assert_eq!(writer.join().unwrap(), HEADER + (8 << 20));
    // Waiting about two seconds in all; a busy loop burns much of it, poll next to nothing.
    assert!(used < Duration::from_millis(250), "{used:?} of CPU");
}
