//! cargo xtask: the project's test, bench and matrix commands.
fn main() {}
