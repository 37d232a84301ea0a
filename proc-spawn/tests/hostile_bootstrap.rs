//! Hostile input to the bootstrap message a spawned child reads before it runs anything
//! (issue #9): framing, decoding, the descriptor count, and the checks that the message names
//! code of this very executable.
//!
//! `hostile_bootstrap_proptest` runs the harness of the `bootstrap` fuzz target
//! (`fuzz/harness/bootstrap.rs`, shared word for word) on random scripts:
//! `MULTIPROC_HOSTILE_CASES` cases (default 256; `cargo xtask soak` runs it long). The other
//! tests pin single behaviours by name.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use proptest::prelude::*;

#[path = "../../fuzz/harness/bootstrap.rs"]
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
    fn hostile_bootstrap_proptest(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        harness::run(&data, false);
    }
}

fn read(bytes: &[u8]) -> Result<proc_spawn::BootCheck, String> {
    let (child, mut parent) = UnixStream::pair().unwrap();
    parent.write_all(bytes).unwrap();
    drop(parent);
    proc_spawn::fuzz_read_boot(child.as_fd())
}

#[test]
fn the_sample_message_is_accepted_and_every_truncation_refused() {
    let good = proc_spawn::fuzz_sample_boot_frame(0, false);
    let check = read(&good).expect("this executable's own message");
    assert_eq!(check.fds, 0);
    for cut in 0..good.len() {
        let e = read(&good[..cut]).expect_err("a truncated message was accepted");
        assert!(!e.is_empty());
    }
}

#[test]
fn every_single_byte_edit_is_refused_or_harmless() {
    // Flipping any byte of the message either makes it refused, or leaves a message that
    // still names code of this executable (a changed name, say).
    let good = proc_spawn::fuzz_sample_boot_frame(0, false);
    for i in 0..good.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut m = good.clone();
            m[i] ^= x;
            if let Ok(check) = read(&m) {
                assert_eq!(check.fds, 0, "byte {i}");
            }
        }
    }
}

#[test]
fn a_descriptor_count_mismatch_is_refused() {
    let (child, parent) = UnixStream::pair().unwrap();
    let frame = proc_spawn::fuzz_sample_boot_frame(2, true);
    let devnull = std::fs::File::open("/dev/null").unwrap();
    // Three were announced (two arguments and the pidfd), one comes.
    ipc_shm::transfer::send_with_fds(parent.as_fd(), &frame, &[devnull.as_fd()]).unwrap();
    drop(parent);
    let e = proc_spawn::fuzz_read_boot(child.as_fd()).unwrap_err();
    assert!(e.contains("descriptors"), "{e}");
}

#[test]
fn a_huge_announced_length_and_a_wrong_kind_are_refused() {
    let mut huge = vec![1u8];
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    let e = read(&huge).unwrap_err();
    assert!(e.contains("malformed"), "{e}");
    let mut other_kind = proc_spawn::fuzz_sample_boot_frame(0, false);
    other_kind[0] = 4;
    let e = read(&other_kind).unwrap_err();
    assert!(e.contains("unexpected message kind"), "{e}");
    assert!(read(&[]).unwrap_err().contains("hung up"));
}
