//! The comparison benchmarks of multiproc: each primitive next to its peers (Python, Rust crates, the OS limits)
