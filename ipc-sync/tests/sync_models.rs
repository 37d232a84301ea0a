//! The loom model bodies (tests/models) run as plain multi-threaded stress tests.
#![cfg(not(ipc_loom))]

#[path = "models/barrier.rs"]
mod barrier;
#[path = "models/condition.rs"]
mod condition;
#[path = "models/event.rs"]
mod event;
#[path = "models/lock.rs"]
mod lock;
#[path = "models/semaphore.rs"]
mod semaphore;
mod support;
