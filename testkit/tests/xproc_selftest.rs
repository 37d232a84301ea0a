//! testkit checks itself: payload and descriptors reach the child under both methods, exit codes
//! and signals come back.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use testkit::{Exit, Method};

fn case_echo(payload: &[u8], fds: Vec<OwnedFd>) {
    assert_eq!(fds.len(), 1, "one descriptor expected");
    let mut sock = UnixStream::from(fds.into_iter().next().unwrap());
    sock.write_all(payload).unwrap();
}

fn case_panic(_: &[u8], _: Vec<OwnedFd>) {
    panic!("deliberate panic in a child");
}

fn case_sleep(_: &[u8], _: Vec<OwnedFd>) {
    std::thread::sleep(Duration::from_secs(60));
}

fn payload_and_fd_reach_the_child() {
    for method in testkit::methods() {
        let (mine, theirs) = UnixStream::pair().unwrap();
        let payload: Vec<u8> = (0..=255u8).collect();
        let mut child = testkit::start(method, "echo", &payload, &[theirs.as_fd()]).unwrap();
        drop(theirs);
        let mut got = Vec::new();
        (&mine).read_to_end(&mut got).unwrap();
        assert_eq!(got, payload, "{method:?}");
        assert_eq!(child.wait().unwrap(), Exit::Code(0), "{method:?}");
    }
}

fn panic_is_exit_101() {
    for method in testkit::methods() {
        let mut child = testkit::start(method, "panic", &[], &[]).unwrap();
        assert_eq!(child.wait().unwrap(), Exit::Code(101), "{method:?}");
    }
}

fn kill_and_wait_timeout() {
    for method in testkit::methods() {
        let mut child = testkit::start(method, "sleep", &[], &[]).unwrap();
        assert_eq!(child.wait_timeout(Duration::from_millis(50)).unwrap(), None);
        child.kill(libc::SIGKILL).unwrap();
        assert_eq!(
            child.wait().unwrap(),
            Exit::Signal(libc::SIGKILL),
            "{method:?}"
        );
    }
}

fn unknown_case_fails() {
    assert!(testkit::start(Method::Fork, "no-such-case", &[], &[]).is_err());
    let mut child = testkit::start(Method::Spawn, "no-such-case", &[], &[]).unwrap();
    assert_eq!(child.wait().unwrap(), Exit::Code(2));
}

fn main() {
    testkit::main(
        &[
            ("echo", case_echo),
            ("panic", case_panic),
            ("sleep", case_sleep),
        ],
        &[
            (
                "payload_and_fd_reach_the_child",
                payload_and_fd_reach_the_child,
            ),
            ("panic_is_exit_101", panic_is_exit_101),
            ("kill_and_wait_timeout", kill_and_wait_timeout),
            ("unknown_case_fails", unknown_case_fails),
        ],
    );
}
