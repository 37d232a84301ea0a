//! Harness shared by the `bootstrap` fuzz target (`fuzz/fuzz_targets/bootstrap.rs`) and its
//! proptest twin (`proc-spawn/tests/hostile_bootstrap.rs`): what a spawned child reads from its
//! bootstrap socket before it runs anything.
//!
//! The input chooses the bytes on the socket: raw bytes, a frame header with fuzzed fields
//! around fuzzed bytes, or a well-formed `BOOT` frame of this very executable with fuzzed
//! byte edits (so the decoder reaches the version, identity, address and descriptor checks);
//! and the descriptors that come with them (none, the right number, too many, too few; of
//! assorted kinds). The child's reader (`proc_spawn::fuzz_read_boot`, the same code a child
//! runs) must return whatever it gets: no panic, no hang; when it accepts, the target and
//! trampoline lie in this executable's code and the descriptor count is the announced one.

use std::os::fd::{AsFd, OwnedFd};

/// Reads the fuzz input front to back; past the end every read is zero.
struct Script<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Script<'a> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_le_bytes(b)
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = self.pos.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }
    fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

fn attachment(s: &mut Script<'_>) -> OwnedFd {
    match s.u8() % 4 {
        0 => std::fs::File::open("/dev/null").expect("/dev/null").into(),
        1 => rustix::pipe::pipe().expect("pipe").0,
        2 => std::os::unix::net::UnixStream::pair()
            .expect("pair")
            .0
            .into(),
        _ => rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd"),
    }
}

/// Writes `bytes` (descriptors on the first byte) without blocking; what does not fit in the
/// socket buffer is dropped.
fn send(sock: &OwnedFd, bytes: &[u8], fds: &[OwnedFd]) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(&borrowed));
    }
    let mut iov = [std::io::IoSlice::new(bytes)];
    let mut sent = 0;
    // Descriptors go with the first piece only.
    while sent < bytes.len() || (sent == 0 && !fds.is_empty()) {
        iov[0] = std::io::IoSlice::new(&bytes[sent..]);
        let r = if sent == 0 {
            rustix::net::sendmsg(
                sock,
                &iov,
                &mut control,
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            )
        } else {
            rustix::net::send(
                sock,
                &bytes[sent..],
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            )
        };
        match r {
            Ok(0) | Err(_) => return,
            Ok(n) => sent += n,
        }
    }
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
    let mode = s.u8() % 4;
    let announced_fds = u32::from(s.u8() % 4);
    let pidfd = s.u8() & 1 == 1;
    let expected = announced_fds as usize + usize::from(pidfd);
    let nfds = match s.u8() % 4 {
        0 => expected + 1,
        1 => expected.saturating_sub(1),
        _ => expected,
    };
    let fds: Vec<OwnedFd> = (0..nfds).map(|_| attachment(&mut s)).collect();
    let bytes: Vec<u8> = match mode {
        0 => s.rest().to_vec(),
        1 => {
            // A header with fuzzed kind and length around fuzzed bytes.
            let kind = if s.u8() % 2 == 0 { 1 } else { s.u8() };
            let n = usize::from(s.u16() % 2048);
            let body = s.bytes(n).to_vec();
            let len = match s.u8() % 3 {
                0 => s.u64(),
                1 => body.len() as u64 + u64::from(s.u8()),
                _ => body.len() as u64,
            };
            let mut v = vec![kind];
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&body);
            v
        }
        _ => {
            // This executable's own bootstrap frame, edited.
            let mut v = proc_spawn::fuzz_sample_boot_frame(announced_fds, pidfd);
            let edits = if mode == 2 { 0 } else { 1 + s.u8() % 8 };
            for _ in 0..edits {
                let at = usize::from(s.u16()) % v.len();
                match s.u8() % 4 {
                    0 => v[at] ^= s.u8(),
                    1 => v[at] = s.u8(),
                    2 => {
                        v.truncate(at);
                    }
                    _ => {
                        let n = usize::from(s.u8() % 16);
                        let extra = s.bytes(n).to_vec();
                        v.splice(at..at, extra);
                    }
                }
                if v.is_empty() {
                    break;
                }
            }
            v
        }
    };
    let (child, parent) = std::os::unix::net::UnixStream::pair().expect("pair");
    let parent: OwnedFd = parent.into();
    send(&parent, &bytes, &fds);
    drop(fds);
    drop(parent);
    match proc_spawn::fuzz_read_boot(child.as_fd()) {
        Ok(check) => {
            // Only a well-formed message of this executable gets here (edits may still have
            // changed fields such as the name): all the descriptors sent arrived and were
            // the announced number.
            assert_eq!(check.fds, nfds);
            assert!(check.target != 0 && check.trampoline != 0);
            if mode == 2 {
                assert_eq!(check.fds, nfds);
                assert_eq!(nfds, expected);
            }
        }
        Err(why) => {
            assert!(!why.is_empty());
            if mode == 2 && nfds == expected {
                panic!("refused its own unedited bootstrap message: {why}");
            }
        }
    }
}
