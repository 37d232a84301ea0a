//! Harness shared by the `frames` fuzz target (`fuzz/fuzz_targets/frames.rs`) and its proptest
//! twin (`ipc-channel-core/tests/hostile_frames.rs`): a [`Connection`] reading what a hostile
//! peer wrote, framing and postcard decoding of typed messages included.
//!
//! The input is a script for the peer: on a stream or seqpacket socket pair it writes chunks
//! of raw bytes, well-formed frame headers with fuzzed fields and payloads, and real typed
//! messages (sent through a writer `Connection`, handles inside), each chunk optionally with
//! descriptors of assorted kinds attached; then it hangs up. The receiver reads with a
//! script-chosen mix of `recv::<T>` for several types, `recv_bytes`, `recv_bytes_into`,
//! `try_recv` and `recv_timeout`, under a script-chosen maximum message size, until the stream
//! ends or breaks. Whatever the input: every call returns (no panic, no hang), a framing error
//! leaves the connection `Broken` for good, no payload exceeds the maximum, and (single-threaded
//! callers) no descriptor is left open.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use ipc_channel_core::{Connection, Error, Queue};
use ipc_shm::{RawValue, Segment};
use rustix::net::{AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::net::{SocketFlags, SocketType};

/// Reads the fuzz input front to back; past the end every read is zero.
struct Script<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Script<'a> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = self.pos.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }
}

/// A typed message with a bit of everything postcard decodes: varints, strings, sequences,
/// options, nesting, and handles.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
enum Msg {
    Unit,
    Int(i64),
    Text(String),
    List(Vec<u32>),
    Pair(Option<Box<Msg>>, f64),
    Conn(Connection),
    Seg(Segment),
    Value(RawValue<i64>),
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").expect("/dev/null").into()
}

fn attachment(s: &mut Script<'_>) -> OwnedFd {
    match s.u8() % 6 {
        0 => devnull(),
        1 => rustix::pipe::pipe().expect("pipe").0,
        2 => std::os::unix::net::UnixStream::pair()
            .expect("pair")
            .0
            .into(),
        3 => {
            rustix::net::socketpair(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC,
                None,
            )
            .expect("pair")
            .0
        }
        4 => Segment::new(4096)
            .expect("segment")
            .as_fd()
            .try_clone_to_owned()
            .expect("dup"),
        _ => rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd"),
    }
}

fn header(kind: u8, reserved: u8, fds: u32, len: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..2].copy_from_slice(b"mp");
    h[2] = kind;
    h[3] = reserved;
    h[4..8].copy_from_slice(&fds.to_le_bytes());
    h[8..16].copy_from_slice(&len.to_le_bytes());
    h
}

fn typed(s: &mut Script<'_>, depth: u8) -> Msg {
    match s.u8() % 8 {
        0 => Msg::Unit,
        1 => Msg::Int(s.u64() as i64),
        2 => {
            let n = usize::from(s.u8());
            Msg::Text(String::from_utf8_lossy(s.bytes(n)).into_owned())
        }
        3 => Msg::List((0..s.u8() % 16).map(|i| u32::from(i) * 7).collect()),
        4 if depth < 3 => Msg::Pair(Some(Box::new(typed(s, depth + 1))), 0.5),
        5 => {
            let (a, _b) = ipc_channel_core::Pipe::new().expect("pipe");
            Msg::Conn(a)
        }
        6 => Msg::Seg(Segment::new(4096).expect("segment")),
        7 => Msg::Value(RawValue::new(41).expect("value")),
        _ => Msg::Pair(None, -1.0),
    }
}

/// Sends `bytes` with `fds` attached, without blocking: what does not fit in the socket buffer
/// now is dropped (the script is over-long, not a hang).
fn send_chunk(sock: &OwnedFd, bytes: &[u8], fds: &[OwnedFd]) -> bool {
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(&borrowed));
    }
    let iov = [std::io::IoSlice::new(bytes)];
    rustix::net::sendmsg(
        sock,
        &iov,
        &mut control,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    )
    .is_ok()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs one hostile input. With `check_fds` (single-threaded callers only: the fuzz target),
/// also asserts that every descriptor is closed again afterwards.
pub(crate) fn run(data: &[u8], check_fds: bool) {
    let before = if check_fds { open_fds() } else { 0 };
    run_inner(data);
    if check_fds {
        let after = open_fds();
        assert!(
            after <= before,
            "descriptors leaked: {before} open before, {after} after"
        );
    }
}

fn run_inner(data: &[u8]) {
    let mut s = Script { data, pos: 0 };
    let flags = s.u8();
    let ty = if flags & 1 == 0 {
        SocketType::STREAM
    } else {
        SocketType::SEQPACKET
    };
    let (rx, tx) =
        rustix::net::socketpair(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None).expect("pair");
    let reader = Connection::from_fd(rx).expect("a socket");
    let max = match (flags >> 1) % 4 {
        0 => 64,
        1 => 4096,
        2 => u64::from(s.u16()),
        _ => ipc_channel_core::DEFAULT_MAX_MESSAGE_SIZE,
    };
    reader.set_max_message_size(max).expect("open");
    let writer = Connection::from_fd(tx.try_clone().expect("dup")).expect("a socket");
    writer.set_max_message_size(u64::MAX).expect("open");

    // The peer's script.
    let chunks = 1 + s.u8() % 12;
    for _ in 0..chunks {
        if s.done() {
            break;
        }
        let nfds = match s.u8() % 8 {
            0 => 1,
            1 => 2,
            2 => 3,
            _ => 0,
        };
        let fds: Vec<OwnedFd> = (0..nfds).map(|_| attachment(&mut s)).collect();
        let sent = match s.u8() % 4 {
            0 => {
                let n = usize::from(s.u16() % 2048);
                send_chunk(&tx, s.bytes(n), &fds)
            }
            1 => {
                // A frame header with fuzzed fields and a payload of fuzzed length.
                let kind = if s.u8() % 4 == 0 { s.u8() } else { 0 };
                let reserved = if s.u8() % 8 == 0 { s.u8() } else { 0 };
                let announced = match s.u8() % 4 {
                    0 => u32::from(s.u8()),
                    1 => s.u32(),
                    _ => nfds as u32,
                };
                let body = usize::from(s.u16() % 1024);
                let len = match s.u8() % 4 {
                    0 => s.u64(),
                    1 => body as u64 + u64::from(s.u8()),
                    _ => body as u64,
                };
                let mut bytes = header(kind, reserved, announced, len).to_vec();
                bytes.extend_from_slice(s.bytes(body));
                send_chunk(&tx, &bytes, &fds)
            }
            2 => {
                // A real typed message; the attached descriptors (if any) then arrive with
                // bytes of their own, unannounced.
                let m = typed(&mut s, 0);
                let ok = writer.send(&m).is_ok();
                if !fds.is_empty() {
                    send_chunk(&tx, &[0u8], &fds);
                }
                ok
            }
            _ => {
                // A real message of another type than the reader expects.
                let ok = match s.u8() % 3 {
                    0 => writer.send(&(s.u64(), "x".to_string())).is_ok(),
                    1 => writer.send_bytes(s.bytes(64)).is_ok(),
                    _ => writer.send(&vec![Some(1u8); usize::from(s.u8())]).is_ok(),
                };
                ok
            }
        };
        if !sent {
            break;
        }
    }
    drop(writer);
    drop(tx);

    // The receiver: read until the stream ends or breaks.
    let mut broken = false;
    for _ in 0..64 {
        let small = usize::from(s.u8() % 32);
        let mut buf = vec![0u8; small];
        let r: Result<usize, Error> = match s.u8() % 9 {
            0 => reader.recv::<Msg>().map(|_| 0),
            1 => reader.recv_bytes().map(|b| b.len()),
            2 => reader.recv_bytes_into(&mut buf),
            3 => reader.try_recv::<Msg>().map(|_| 0),
            4 => reader
                .recv_timeout::<(u64, String)>(Duration::from_millis(50))
                .map(|_| 0),
            5 => reader.recv::<Vec<Connection>>().map(|v| v.len()),
            6 => reader.recv::<Queue<u32>>().map(|_| 0),
            7 => reader.recv::<ipc_sync::Lock>().map(|_| 0),
            _ => reader.recv::<(Segment, Option<RawValue<u8>>)>().map(|_| 0),
        };
        match r {
            Ok(n) => {
                assert!(!broken, "a broken connection delivered a message");
                assert!(
                    n as u64 <= max,
                    "a {n}-byte payload passed a maximum of {max}"
                );
            }
            Err(Error::BufferTooShort(m)) => {
                assert!(!broken);
                assert!(m.len() > small && m.len() as u64 <= max);
            }
            Err(Error::Eof) => {
                assert!(!broken, "a broken connection reported a clean end");
                break;
            }
            Err(Error::Broken) => {
                broken = true;
            }
            Err(
                e @ (Error::TruncatedFrame { .. }
                | Error::TooLarge { .. }
                | Error::BadFrame(_)
                | Error::MissingFds { .. }
                | Error::UnexpectedFds { .. }),
            ) => {
                assert!(!broken, "a broken connection reported {e:?}");
                broken = true;
            }
            Err(Error::Decode(_) | Error::Transfer(_) | Error::Timeout) => {}
            Err(e) => panic!("unexpected error from a hostile stream: {e:?}"),
        }
        if broken {
            // Once broken, always broken, whatever the call.
            assert!(matches!(reader.recv_bytes(), Err(Error::Broken)));
            assert!(matches!(reader.try_recv::<Msg>(), Err(Error::Broken)));
            break;
        }
    }
}
