//! Every behaviour of `Process` under the `spawn` start method (the bodies live in
//! `tests/support/mod.rs`; `IPC_START_METHOD` narrows a run to one method).

mod support;

use proc_spawn::StartMethod;

every_behaviour!(StartMethod::Spawn);
