//! Hostile input at length (issue #9, "Hostile input"): the harnesses of the four fuzz targets
//! (`fuzz/harness/*.rs`, shared word for word with the fuzz targets and with their proptest
//! twins in `cargo test`) run on random scripts: frames a `Connection` reads, handle-transfer
//! tables, bootstrap messages, and hostile peers in the authkey handshake.
//!
//! One iteration is one script through one harness. A failure is a script whose harness
//! panicked (the script is printed in hex, to replay it with the fuzz target or a test); a
//! leak is a descriptor still open after all the scripts of a harness.

use std::panic::{self, AssertUnwindSafe};

use crate::{Rng, Scale, Tally};

#[allow(dead_code, unreachable_pub)]
#[path = "../../fuzz/harness/bootstrap.rs"]
mod bootstrap;
#[allow(dead_code, unreachable_pub)]
#[path = "../../fuzz/harness/frames.rs"]
mod frames;
#[allow(dead_code, unreachable_pub)]
#[path = "../../fuzz/harness/handshake.rs"]
mod handshake;
#[allow(dead_code, unreachable_pub)]
#[path = "../../fuzz/harness/transfer.rs"]
mod transfer;

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs `harness` on `n` random scripts of up to `max_len` bytes, stopping early at
/// `scale`'s deadline.
fn drive(name: &str, n: u64, max_len: u64, scale: &Scale, t: &mut Tally, harness: fn(&[u8])) {
    let mut rng = Rng::new();
    let before = open_fds();
    let mut ran = 0u64;
    for _ in 0..n {
        if scale.out_of_time() {
            break;
        }
        let len = rng.below(max_len + 1) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let r = panic::catch_unwind(AssertUnwindSafe(|| harness(&data)));
        t.iterations += 1;
        ran += 1;
        if r.is_err() {
            t.fail(format!(
                "{name}: the harness panicked on script {}",
                hex(&data)
            ));
        }
    }
    t.note(format!("{name}: {ran} scripts"));
    let after = open_fds();
    t.leak(
        after.saturating_sub(before),
        format!("{name}: {before} descriptors open before its scripts, {after} after"),
    );
}

/// The four harnesses: 100 scripts each at the reduced size (50 handshakes), 200,000 at full
/// size (20,000 handshakes, which make real sockets and wait for the victim). Under a time
/// budget each harness gets an equal share of what is left of the case's.
pub fn hostile_input(scale: &Scale, t: &mut Tally) {
    type Harness = (&'static str, u64, u64, u64, fn(&[u8]));
    let harnesses: [Harness; 4] = [
        ("frames", 100, 200_000, 1200, |d| frames::run(d, false)),
        ("transfer", 100, 200_000, 600, |d| transfer::run(d, false)),
        ("bootstrap", 100, 200_000, 600, |d| bootstrap::run(d, false)),
        ("handshake", 50, 20_000, 200, handshake::run),
    ];
    let total = harnesses.len() as u32;
    for (i, (name, small, full, max_len, run)) in harnesses.into_iter().enumerate() {
        let mut share = *scale;
        share.deadline = scale.deadline.map(|d| {
            let now = std::time::Instant::now();
            now + d.saturating_duration_since(now) / (total - i as u32)
        });
        drive(name, scale.pick(small, full), max_len, &share, t, run);
    }
}
