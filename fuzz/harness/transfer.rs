//! Harness shared by the `transfer` fuzz target (`fuzz/fuzz_targets/transfer.rs`) and its
//! proptest twin (`ipc-shm/tests/hostile_transfer.rs`): `ipc_shm::transfer::decode` of a
//! hostile message with hostile descriptors.
//!
//! The input is a small script. It chooses the descriptors that "arrived" (how many, and of
//! which kind: sealed and unsealed memfds, memfds holding a forged shared-heap arena, pipe
//! ends, sockets, `/dev/null`, an eventfd, a real segment), the handle type the receiver
//! expects, and the payload: raw bytes, or a wire struct built from fuzzed fields so that the
//! decoder gets past postcard into the descriptor and arena checks. Whatever the input:
//! decoding returns (no panic, no hang), a decoded handle can be used and dropped, and no
//! descriptor is left open.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicU8};

use ipc_shm::{transfer, RawArray, RawValue, Segment, SharedMemory, ShmBox, ShmSlice};

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
    fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

const PAGE: usize = 4096;
const ARENA_MAGIC: u64 = u64::from_le_bytes(*b"mpheap01");
const LIVE: u32 = 0x4556_494c;
const FREE: u32 = 0x4545_5246;

fn memfd(len: usize, seal: bool) -> OwnedFd {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create("hostile", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd_create");
    rustix::fs::ftruncate(&fd, len as u64).expect("ftruncate");
    if seal {
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW).expect("seal");
    }
    fd
}

fn write_at(fd: &OwnedFd, offset: usize, bytes: &[u8]) {
    // Writes past the (sealed) end fail; the script may ask for that, it only loses the write.
    let _ = rustix::io::pwrite(fd, bytes, offset as u64);
}

/// A memfd holding a forged shared-heap arena: a header with the right magic (mostly) and
/// fuzzed fields, and a few fuzzed block headers. Returns the descriptor, the arena id written,
/// its length and the payload offsets of the block headers written.
fn forged_arena(s: &mut Script<'_>) -> (OwnedFd, u128, u64, Vec<u64>) {
    let pages = 1 + usize::from(s.u8() % 4);
    let len = pages * PAGE;
    let fd = memfd(len, s.u8() % 8 != 0);
    let id = u128::from(s.u64()) | u128::from(s.u64()) << 64;
    let flags = s.u8();
    let magic = if flags & 1 == 0 { ARENA_MAGIC } else { s.u64() };
    let hdr_len = if flags & 2 == 0 { len as u64 } else { s.u64() };
    let dedicated = u32::from(flags & 4 != 0);
    // The lock word: mostly free, else some thread id (a dead one, or init: a live holder
    // that never lets go, which costs the receiver the heap's 2 s of patience).
    let lock = match s.u8() {
        0..=239 => 0,
        240..=254 => s.u32(),
        _ => 1,
    };
    let bump = u64::from(s.u32());
    let mut header = Vec::with_capacity(256);
    header.extend_from_slice(&magic.to_le_bytes());
    header.extend_from_slice(&(id as u64).to_le_bytes());
    header.extend_from_slice(&((id >> 64) as u64).to_le_bytes());
    header.extend_from_slice(&hdr_len.to_le_bytes());
    header.extend_from_slice(&dedicated.to_le_bytes());
    header.extend_from_slice(&lock.to_le_bytes());
    header.extend_from_slice(&bump.to_le_bytes());
    for _ in 0..32 {
        let head = if s.u8() % 4 == 0 { s.u32() } else { 0 };
        header.extend_from_slice(&head.to_le_bytes());
    }
    write_at(&fd, 0, &header);
    // Block headers: refs, state, pad, class, 16 bytes right before a payload.
    let mut payloads = Vec::new();
    for _ in 0..s.u8() % 4 {
        // Mostly a plausible small block: start aligned to its class, header right before
        // the payload.
        let payload = if s.u8() % 2 == 0 {
            256 + 32 * usize::from(s.u8() % 64) + 16
        } else {
            usize::from(s.u16()) * 16
        };
        payloads.push(payload as u64);
        let refs = match s.u8() % 3 {
            0 => 1,
            1 => 0,
            _ => s.u32(),
        };
        let state = match s.u8() % 3 {
            0 => LIVE,
            1 => FREE,
            _ => s.u32(),
        };
        let pad = match s.u8() % 3 {
            0 => 16,
            1 => s.u32() % 64,
            _ => s.u32(),
        };
        let class = match s.u8() % 4 {
            0 => 5 + u32::from(s.u8() % 14),
            1 => u32::MAX,
            _ => s.u32(),
        };
        let mut bh = Vec::with_capacity(16);
        for v in [refs, state, pad, class] {
            bh.extend_from_slice(&v.to_le_bytes());
        }
        if payload >= 16 {
            write_at(&fd, payload - 16, &bh);
        }
        // Some payload bytes too.
        let n = usize::from(s.u8() % 32);
        let body = s.bytes(n).to_vec();
        write_at(&fd, payload, &body);
    }
    (fd, id, len as u64, payloads)
}

/// What the forged arenas announced, so structured payloads can name them.
#[derive(Default)]
struct Forged {
    arenas: Vec<(u32, u128, u64, Vec<u64>)>,
}

fn make_fd(s: &mut Script<'_>, index: u32, forged: &mut Forged) -> OwnedFd {
    match s.u8() % 12 {
        0 => memfd(PAGE * (1 + usize::from(s.u8() % 3)), true),
        1 => memfd(PAGE, false),
        2 => {
            let (r, _w) = rustix::pipe::pipe().expect("pipe");
            r
        }
        3 => {
            let (_r, w) = rustix::pipe::pipe().expect("pipe");
            w
        }
        4 => {
            let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
            a.into()
        }
        5 => {
            use rustix::net::{AddressFamily, SocketFlags, SocketType};
            let (a, _b) = rustix::net::socketpair(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC,
                None,
            )
            .expect("socketpair");
            a
        }
        6 => std::fs::File::open("/dev/null").expect("/dev/null").into(),
        7 => rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd"),
        8 => {
            let seg = Segment::new(PAGE).expect("segment");
            seg.as_fd().try_clone_to_owned().expect("dup")
        }
        9 => {
            // Sealed against writing: a shared writable mapping of it is refused.
            use rustix::fs::SealFlags;
            let fd = memfd(PAGE, true);
            let _ = rustix::fs::fcntl_add_seals(&fd, SealFlags::WRITE);
            fd
        }
        10 => memfd(0, true),
        _ => {
            let (fd, id, len, payloads) = forged_arena(s);
            forged.arenas.push((index, id, len, payloads));
            fd
        }
    }
}

/// postcard wire of a shared-heap block handle (`ShmBox`, `RawValue`).
#[derive(serde::Serialize)]
struct BlockWire {
    fd: u32,
    arena: u128,
    arena_len: u64,
    dedicated: bool,
    payload: u64,
}

fn block_wire(s: &mut Script<'_>, forged: &Forged, nfds: u32) -> BlockWire {
    let pick = usize::from(s.u8());
    let mut known: &[u64] = &[];
    let (fd, arena, arena_len) = match forged.arenas.get(pick % forged.arenas.len().max(1)) {
        Some((i, id, len, payloads)) if s.u8() % 4 != 0 => {
            known = payloads;
            (*i, *id, *len)
        }
        _ => (
            u32::from(s.u8()) % (nfds + 2),
            u128::from(s.u64()),
            u64::from(s.u32()),
        ),
    };
    let payload = match s.u8() % 4 {
        0 => u64::from(s.u16()) * 16,
        1 => u64::from(s.u16()),
        2 => s.u64(),
        _ => match known.len() {
            0 => 528,
            n => known[usize::from(s.u8()) % n],
        },
    };
    BlockWire {
        fd,
        arena,
        arena_len,
        dedicated: s.u8() & 1 == 1,
        payload,
    }
}

fn payload_for(s: &mut Script<'_>, target: u8, forged: &Forged, nfds: u32) -> Vec<u8> {
    let small_fd = |s: &mut Script<'_>| u32::from(s.u8()) % (nfds + 2);
    let enc = |r: Result<Vec<u8>, postcard::Error>| r.unwrap_or_default();
    let mut out = match target {
        0 => {
            let fd = small_fd(s);
            let len = match s.u8() % 3 {
                0 => PAGE as u64 * u64::from(s.u8() % 4),
                1 => u64::from(s.u32()),
                _ => s.u64(),
            };
            enc(postcard::to_allocvec(&(fd, len)))
        }
        1 => {
            let fd = small_fd(s);
            let name = match s.u8() % 4 {
                0 => "psm_hostile".to_string(),
                1 => String::new(),
                2 => "a/b".to_string(),
                _ => {
                    let n = usize::from(s.u16() % 300);
                    String::from_utf8_lossy(s.bytes(n)).into_owned()
                }
            };
            let size = u64::from(s.u32());
            enc(postcard::to_allocvec(&(fd, name, size)))
        }
        2 | 4 => enc(postcard::to_allocvec(&block_wire(s, forged, nfds))),
        3 | 5 => {
            let len = match s.u8() % 3 {
                0 => u64::from(s.u8()),
                1 => u64::from(s.u32()),
                _ => s.u64(),
            };
            enc(postcard::to_allocvec(&(len, block_wire(s, forged, nfds))))
        }
        6 => {
            let seg = (small_fd(s), PAGE as u64);
            enc(postcard::to_allocvec(&(seg, block_wire(s, forged, nfds))))
        }
        _ => {
            let n = s.u8() % 4;
            let mut v = Vec::new();
            for _ in 0..n {
                v.push((small_fd(s), PAGE as u64 * u64::from(s.u8() % 3)));
            }
            enc(postcard::to_allocvec(&v))
        }
    };
    // Sometimes a byte too many or too few.
    match s.u8() % 8 {
        0 => out.push(s.u8()),
        1 => {
            out.pop();
        }
        _ => {}
    }
    out
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs one hostile input. With `check_fds` (single-threaded callers only: the fuzz target),
/// also asserts that every descriptor the input made, received or mapped is closed again.
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
    let nfds = u32::from(s.u8() % 6);
    let mut forged = Forged::default();
    let fds: Vec<OwnedFd> = (0..nfds).map(|i| make_fd(&mut s, i, &mut forged)).collect();
    let target = s.u8() % 8;
    let structured = s.u8() % 4 != 0;
    let payload = if structured {
        payload_for(&mut s, target, &forged, nfds)
    } else {
        s.rest().to_vec()
    };
    // Each arm decodes, then uses what it got: reads and writes must stay in bounds.
    match target {
        0 => {
            if let Ok(seg) = transfer::decode::<Segment>(&payload, fds) {
                assert_eq!(seg.len() % PAGE, 0);
                let mut b = [0u8; 8];
                seg.read_at(seg.len() - 8, &mut b).expect("in bounds");
                seg.write_at(0, &b).expect("in bounds");
                assert!(seg.read_at(seg.len(), &mut b).is_err());
            }
        }
        1 => {
            if let Ok(shm) = transfer::decode::<SharedMemory>(&payload, fds) {
                assert!(shm.size() > 0);
                assert!(!shm.is_creator());
                let mut b = [0u8; 1];
                shm.read_at(shm.size() - 1, &mut b).expect("in bounds");
            }
        }
        2 => {
            if let Ok(v) = transfer::decode::<RawValue<i64>>(&payload, fds) {
                v.store(v.load().wrapping_add(1));
            }
        }
        3 => {
            if let Ok(a) = transfer::decode::<RawArray<u32>>(&payload, fds) {
                let all = a.to_vec();
                assert_eq!(all.len(), a.len());
                if !a.is_empty() {
                    a.set(a.len() - 1, 5).expect("in bounds");
                }
                assert!(a.get(a.len()).is_none());
            }
        }
        4 => {
            if let Ok(b) = transfer::decode::<ShmBox<AtomicU64>>(&payload, fds) {
                b.fetch_add(1, Relaxed);
            }
        }
        5 => {
            if let Ok(sl) = transfer::decode::<ShmSlice<AtomicU8>>(&payload, fds) {
                let sum: u64 = sl.iter().map(|x| u64::from(x.load(Relaxed))).sum();
                std::hint::black_box(sum);
            }
        }
        6 => {
            if let Ok((seg, v)) = transfer::decode::<(Segment, RawValue<u8>)>(&payload, fds) {
                std::hint::black_box((seg.len(), v.load()));
            }
        }
        _ => {
            if let Ok(v) = transfer::decode::<Vec<Segment>>(&payload, fds) {
                for seg in &v {
                    assert_eq!(seg.len() % PAGE, 0);
                }
            }
        }
    }
}
