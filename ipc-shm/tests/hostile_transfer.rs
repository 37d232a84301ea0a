//! Hostile input to the handle-transfer table (issue #9): `transfer::decode` of messages whose
//! bytes, descriptor counts and descriptor kinds come from a hostile peer.
//!
//! `hostile_transfer_proptest` runs the harness of the `transfer` fuzz target
//! (`fuzz/harness/transfer.rs`, shared word for word) on random scripts:
//! `MULTIPROC_HOSTILE_CASES` cases (default 256; `cargo xtask soak` runs it long). The other
//! tests pin the behaviours by name, and hold the regression inputs of fuzzer findings.

use std::os::fd::OwnedFd;

use ipc_shm::{transfer, RawArray, RawValue, Segment, SharedMemory, TransferError};
use proptest::prelude::*;

#[path = "../../fuzz/harness/transfer.rs"]
mod harness;

fn cases() -> u32 {
    std::env::var("MULTIPROC_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_transfer_proptest(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        harness::run(&data, false);
    }
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

fn pipe_read_end() -> OwnedFd {
    rustix::pipe::pipe().unwrap().0
}

fn socket() -> OwnedFd {
    std::os::unix::net::UnixStream::pair().unwrap().0.into()
}

/// The bytes and descriptors of a real message carrying `value`.
fn real<T: serde::Serialize>(value: &T) -> (Vec<u8>, Vec<OwnedFd>) {
    transfer::encode(value).unwrap()
}

fn assert_wrong_kind<T: serde::de::DeserializeOwned>(bytes: &[u8], fd: OwnedFd, what: &str) {
    match transfer::decode::<T>(bytes, vec![fd]) {
        Err(TransferError::WrongKind { .. }) => {}
        Err(e) => panic!("{what}: expected WrongKind, got {e:?}"),
        Ok(_) => panic!("{what}: a descriptor of the wrong kind was accepted"),
    }
}

#[test]
fn a_pipe_a_socket_or_dev_null_where_a_memfd_is_expected_is_wrong_kind() {
    let seg = Segment::new(4096).unwrap();
    let (seg_bytes, _) = real(&seg);
    let value = RawValue::new(5i64).unwrap();
    let (value_bytes, value_fds) = real(&value);
    // Give the message's count back: decode the real message once.
    let back: RawValue<i64> = transfer::decode(&value_bytes, value_fds).unwrap();
    assert_eq!(back.load(), 5);
    let shm = SharedMemory::create(None, 4096).unwrap();
    let (shm_bytes, _) = real(&shm);
    for (name, make) in [
        ("pipe", pipe_read_end as fn() -> OwnedFd),
        ("socket", socket),
        ("/dev/null", devnull),
    ] {
        assert_wrong_kind::<Segment>(&seg_bytes, make(), name);
        assert_wrong_kind::<SharedMemory>(&shm_bytes, make(), name);
    }
    // An unsealed memfd can shrink under the mapping: refused for a Segment.
    let unsealed = rustix::fs::memfd_create("unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&unsealed, 4096).unwrap();
    assert_wrong_kind::<Segment>(&seg_bytes, unsealed, "unsealed memfd");
    // A segment that is not a shared-heap arena, where a heap block is expected. (The value's
    // own arena descriptor is already mapped here: the descriptor must be that very arena.)
    let other = Segment::new(1 << 20).unwrap();
    let seg_fd = other.as_fd().try_clone_to_owned().unwrap();
    let (value_bytes, value_fds) = real(&value);
    drop(value_fds);
    assert_wrong_kind::<RawValue<i64>>(&value_bytes, seg_fd, "another segment");
    assert_wrong_kind::<RawValue<i64>>(&value_bytes, pipe_read_end(), "pipe for a heap block");
    shm.unlink().unwrap();
}

#[test]
fn wrong_descriptor_counts_are_errors() {
    let pair = (Segment::new(4096).unwrap(), Segment::new(8192).unwrap());
    let (bytes, mut fds) = real(&pair);
    assert_eq!(fds.len(), 2);
    // None at all.
    assert!(matches!(
        transfer::decode::<(Segment, Segment)>(&bytes, Vec::new()),
        Err(TransferError::MissingFd {
            index: 0,
            received: 0
        })
    ));
    // One short.
    let second = fds.pop().unwrap();
    assert!(matches!(
        transfer::decode::<(Segment, Segment)>(&bytes, vec![fds[0].try_clone().unwrap()]),
        Err(TransferError::MissingFd {
            index: 1,
            received: 1
        })
    ));
    // Two too many.
    fds.push(second);
    fds.push(devnull());
    fds.push(socket());
    assert!(matches!(
        transfer::decode::<(Segment, Segment)>(&bytes, fds),
        Err(TransferError::UnusedFds {
            unused: 2,
            received: 4
        })
    ));
    // An index far past the table.
    let forged = postcard::to_allocvec(&(u32::MAX, 4096u64)).unwrap();
    assert!(matches!(
        transfer::decode::<Segment>(&forged, vec![devnull()]),
        Err(TransferError::MissingFd {
            index: u32::MAX,
            received: 1
        })
    ));
}

#[test]
fn hostile_lengths_are_errors_not_allocations() {
    // A slice announcing more elements than the block (or the address space) holds.
    let arr = RawArray::from_slice(&[1u32, 2, 3]).unwrap();
    let (bytes, fds) = real(&arr);
    let back: RawArray<u32> = transfer::decode(&bytes, fds).unwrap();
    assert_eq!(back.to_vec(), [1, 2, 3]);
    for len in [1u64 << 20, u64::MAX / 2, u64::MAX] {
        let (mut bytes, fds) = real(&arr);
        // The length is the first field (a varint): replace it.
        let old = postcard::to_allocvec(&3u64).unwrap();
        assert_eq!(&bytes[..old.len()], &old[..]);
        let mut new = postcard::to_allocvec(&len).unwrap();
        new.extend_from_slice(&bytes[old.len()..]);
        bytes = new;
        match transfer::decode::<RawArray<u32>>(&bytes, fds) {
            Err(TransferError::WrongKind { .. } | TransferError::Codec(_)) => {}
            other => panic!("length {len}: {:?}", other.map(|a| a.len())),
        }
    }
}

/// A memfd holding a forged shared-heap arena of one page: the right magic, `id`, length,
/// a lock word naming `holder`, and one live block (refs 1, class 5) at 512, payload at 528.
fn forged_arena(id: u128, holder: u32) -> OwnedFd {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create("forged", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW).unwrap();
    let mut h = Vec::new();
    h.extend_from_slice(b"mpheap01");
    h.extend_from_slice(&(id as u64).to_le_bytes());
    h.extend_from_slice(&((id >> 64) as u64).to_le_bytes());
    h.extend_from_slice(&4096u64.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // shared arena
    h.extend_from_slice(&holder.to_le_bytes()); // lock word
    h.extend_from_slice(&1024u64.to_le_bytes()); // bump
    rustix::io::pwrite(&fd, &h, 0).unwrap();
    let mut bh = Vec::new();
    for v in [1u32, 0x4556_494c, 16, 5] {
        bh.extend_from_slice(&v.to_le_bytes());
    }
    rustix::io::pwrite(&fd, &bh, 512).unwrap();
    fd
}

#[derive(serde::Serialize)]
struct BlockWire {
    fd: u32,
    arena: u128,
    arena_len: u64,
    dedicated: bool,
    payload: u64,
}

/// Regression for a hang the `transfer` fuzz harness reaches (issue #9): a forged arena whose
/// lock word names a live thread that never lets go (init, or this very thread). Dropping the
/// last handle of a block received in it used to spin on that lock forever; now it returns
/// (the block leaks), and so does an allocation that tries the arena.
#[test]
fn a_forged_arena_lock_held_forever_does_not_hang() {
    let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    for (i, holder) in [1u32, me].into_iter().enumerate() {
        let id = 0x5eed_0000_0000_0000_0000_0000_0000_0000u128 + i as u128;
        let wire = BlockWire {
            fd: 0,
            arena: id,
            arena_len: 4096,
            dedicated: false,
            payload: 528,
        };
        let bytes = postcard::to_allocvec(&wire).unwrap();
        let start = std::time::Instant::now();
        let v: RawValue<i64> = transfer::decode(&bytes, vec![forged_arena(id, holder)]).unwrap();
        v.store(3);
        assert_eq!(v.load(), 3);
        // A new value goes elsewhere (the forged arena is a candidate: it is mapped here).
        let fresh = RawValue::new(9i64).unwrap();
        assert_eq!(fresh.load(), 9);
        drop(v);
        drop(fresh);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "took {:?}",
            start.elapsed()
        );
    }
}
