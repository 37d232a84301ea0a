//! Test support shared by the model tests: one body is a loom model under `--cfg ipc_loom` and a
//! plain multi-threaded stress test otherwise.

#![allow(dead_code, unreachable_pub)]

#[cfg(ipc_loom)]
pub use loom::{sync::Arc, thread};
#[cfg(not(ipc_loom))]
pub use std::{sync::Arc, thread};

/// How many times a stress run repeats its body (loom explores interleavings instead).
pub const STRESS_ITERATIONS: usize = 300;

/// Runs `body` as a loom model (every interleaving up to the preemption bound) or, without loom,
/// `STRESS_ITERATIONS` times with real threads.
pub fn model(body: impl Fn() + Sync + Send + 'static) {
    #[cfg(ipc_loom)]
    loom::model(body);
    #[cfg(not(ipc_loom))]
    for _ in 0..STRESS_ITERATIONS {
        body();
    }
}
