//! Hostile input to a `Connection` (issue #9): framing and postcard decoding of typed
//! messages written by a hostile peer.
//!
//! `hostile_frames_proptest` runs the harness of the `frames` fuzz target
//! (`fuzz/harness/frames.rs`, shared word for word) on random scripts:
//! `MULTIPROC_HOSTILE_CASES` cases (default 256; `cargo xtask soak` runs it long). The other
//! tests pin single behaviours by name.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use ipc_channel_core::{Connection, Error};
use proptest::prelude::*;

#[path = "../../fuzz/harness/frames.rs"]
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
    fn hostile_frames_proptest(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
        harness::run(&data, false);
    }
}

fn header(kind: u8, fds: u32, len: u64) -> Vec<u8> {
    let mut h = b"mp".to_vec();
    h.push(kind);
    h.push(0);
    h.extend_from_slice(&fds.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h
}

fn reader_and_peer() -> (Connection, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    (Connection::from_fd(OwnedFd::from(a)).unwrap(), b)
}

#[test]
fn a_huge_announced_length_is_refused_before_allocating() {
    let (c, mut peer) = reader_and_peer();
    peer.write_all(&header(0, 0, u64::MAX)).unwrap();
    assert!(matches!(
        c.recv_bytes(),
        Err(Error::TooLarge { len: u64::MAX, .. })
    ));
    assert!(matches!(c.recv_bytes(), Err(Error::Broken)));
}

#[test]
fn a_payload_that_is_not_the_expected_type_is_a_decode_error_and_the_stream_goes_on() {
    let (c, mut peer) = reader_and_peer();
    // A varint that never ends, then a well-formed string message.
    let bad = [0xffu8; 12];
    let mut bytes = header(0, 0, bad.len() as u64);
    bytes.extend_from_slice(&bad);
    let good = postcard::to_allocvec(&"after".to_string()).unwrap();
    bytes.extend_from_slice(&header(0, 0, good.len() as u64));
    bytes.extend_from_slice(&good);
    peer.write_all(&bytes).unwrap();
    drop(peer);
    assert!(matches!(c.recv::<u64>(), Err(Error::Decode(_))));
    assert_eq!(c.recv::<String>().unwrap(), "after");
    assert!(matches!(c.recv::<String>(), Err(Error::Eof)));
}

#[test]
fn a_handle_naming_a_descriptor_that_never_came_is_an_error() {
    // A Connection travels as (fd index, mode, max): index 0 with no descriptor attached.
    let (c, mut peer) = reader_and_peer();
    let payload = postcard::to_allocvec(&(0u32, 0u8, 1024u64)).unwrap();
    let mut bytes = header(0, 0, payload.len() as u64);
    bytes.extend_from_slice(&payload);
    peer.write_all(&bytes).unwrap();
    match c.recv::<Connection>() {
        Err(Error::Transfer(_)) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn a_dev_null_where_a_connection_is_expected_is_refused() {
    let (c, peer) = reader_and_peer();
    let payload = postcard::to_allocvec(&(0u32, 0u8, 1024u64)).unwrap();
    let mut bytes = header(0, 1, payload.len() as u64);
    bytes.extend_from_slice(&payload);
    let devnull = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsFd;
    ipc_shm::transfer::send_with_fds(peer.as_fd(), &bytes, &[devnull.as_fd()]).unwrap();
    assert!(matches!(
        c.recv::<Connection>(),
        Err(Error::Decode(_) | Error::Transfer(_))
    ));
}

#[test]
fn seeds_of_every_script_kind_pass_the_harness() {
    // Hand-picked scripts: raw garbage, a header announcing descriptors that do not come,
    // typed messages of each kind, on both socket types.
    for flags in 0..8u8 {
        for chunk_kind in 0..4u8 {
            for seed in [0u8, 1, 7, 0x55, 0xff] {
                let mut data = vec![flags, 0x10, 3];
                for _ in 0..3 {
                    data.extend_from_slice(&[seed % 8, chunk_kind, seed, seed.wrapping_mul(3)]);
                    data.extend(std::iter::repeat_n(seed, 24));
                }
                data.extend((0..64u8).map(|i| i.wrapping_mul(seed | 1)));
                harness::run(&data, false);
            }
        }
    }
}
