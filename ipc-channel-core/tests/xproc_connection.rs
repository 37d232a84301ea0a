//! Cross-process tests of `Connection`/`Pipe` and `Listener`/`Client`, in real child processes
//! under every start method `testkit::methods()` names.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use ipc_channel_core::{Address, Client, Connection, Error, Listener, Pipe};
use ipc_shm::transfer;
use testkit::Exit;

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8], fds: Vec<OwnedFd>) -> T {
    transfer::decode(payload, fds).expect("decode the case argument")
}

fn start<T: serde::Serialize>(method: testkit::Method, case: &str, arg: &T) -> testkit::Child {
    let (bytes, fds) = transfer::encode(arg).unwrap();
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    testkit::start(method, case, &bytes, &borrowed).unwrap()
}

fn wait_ok(child: &mut testkit::Child) {
    assert_eq!(
        child.wait_timeout(Duration::from_secs(60)).unwrap(),
        Some(Exit::Code(0))
    );
}

// --- seed (e): a child sends "hello" through a Pipe --------------------------------------

fn case_send_hello(payload: &[u8], fds: Vec<OwnedFd>) {
    let conn: Connection = decode(payload, fds);
    conn.send(&"hello".to_string()).unwrap();
}

fn test_child_sends_hello() {
    for method in testkit::methods() {
        let (parent_end, child_end) = Pipe::new().unwrap();
        let mut child = start(method, "send_hello", &child_end);
        // The parent may close its copy of the child's end right after starting it.
        drop(child_end);
        let got: String = parent_end.recv().unwrap();
        println!("{got}");
        assert_eq!(got, "hello");
        wait_ok(&mut child);
        // The child exited: its end is gone, so the parent sees end of file.
        assert!(matches!(parent_end.recv::<String>(), Err(Error::Eof)));
    }
}

// --- a Connection sent through a Connection to an already-running process ---------------

fn case_echo_server(payload: &[u8], fds: Vec<OwnedFd>) {
    let control: Connection = decode(payload, fds);
    // Receive connections until told to stop (under fork this process holds a copy of the
    // parent's end of `control`, so its end of file would never come); on each, echo doubled
    // strings until its peer closes.
    loop {
        let conn: Connection = match control.recv::<Option<Connection>>() {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => panic!("control: {e}"),
        };
        loop {
            match conn.recv::<String>() {
                Ok(s) => conn.send(&format!("{s}{s}")).unwrap(),
                Err(Error::Eof) => break,
                Err(e) => panic!("data: {e}"),
            }
        }
    }
}

fn test_connection_through_connection_to_running_process() {
    for method in testkit::methods() {
        let (control, child_control) = Pipe::new().unwrap();
        let mut child = start(method, "echo_server", &child_control);
        drop(child_control);
        for round in 0..3 {
            let (mine, theirs) = Pipe::new().unwrap();
            control.send(&Some(theirs.clone())).unwrap();
            drop(theirs);
            for i in 0..10 {
                let s = format!("r{round}m{i}");
                mine.send(&s).unwrap();
                assert_eq!(mine.recv::<String>().unwrap(), format!("{s}{s}"));
            }
        }
        control.send(&None::<Connection>).unwrap();
        wait_ok(&mut child);
    }
}

// --- a child killed mid-conversation is an Eof, not a hang ------------------------------

fn case_send_then_hang(payload: &[u8], fds: Vec<OwnedFd>) {
    let conn: Connection = decode(payload, fds);
    conn.send(&1u32).unwrap();
    std::thread::sleep(Duration::from_secs(100));
}

fn test_killed_peer_is_eof() {
    for method in testkit::methods() {
        let (mine, theirs) = Pipe::new().unwrap();
        let mut child = start(method, "send_then_hang", &theirs);
        drop(theirs);
        assert_eq!(mine.recv::<u32>().unwrap(), 1);
        child.kill(libc::SIGKILL).unwrap();
        assert_eq!(
            child.wait_timeout(Duration::from_secs(30)).unwrap(),
            Some(Exit::Signal(libc::SIGKILL))
        );
        assert!(matches!(mine.recv::<u32>(), Err(Error::Eof)));
        assert!(matches!(mine.send(&2u32), Err(Error::Eof)));
    }
}

// --- large messages in both directions between processes --------------------------------

fn case_big_echo(payload: &[u8], fds: Vec<OwnedFd>) {
    let conn: Connection = decode(payload, fds);
    let v: Vec<u8> = conn.recv().unwrap();
    conn.send_bytes(&v).unwrap();
}

fn test_sixteen_mib_between_processes() {
    for method in testkit::methods() {
        let (mine, theirs) = Pipe::new().unwrap();
        let mut child = start(method, "big_echo", &theirs);
        drop(theirs);
        let data: Vec<u8> = (0..16u32 << 20).map(|i| (i * 7 % 253) as u8).collect();
        mine.send(&data).unwrap();
        assert_eq!(mine.recv_bytes().unwrap(), data);
        wait_ok(&mut child);
    }
}

// --- Listener/Client between processes, Unix and TCP, keys right and wrong --------------

fn case_client(payload: &[u8], fds: Vec<OwnedFd>) {
    let (address, key, expect_ok): (Address, Option<Vec<u8>>, bool) = decode(payload, fds);
    match Client::connect(address, key.as_deref()) {
        Ok(c) => {
            assert!(expect_ok, "connected with a wrong key");
            c.send(&"from the client").unwrap();
            assert_eq!(c.recv::<u64>().unwrap(), 1729);
        }
        Err(Error::Authentication(_)) => assert!(!expect_ok, "authentication failed"),
        Err(e) => panic!("{e}"),
    }
}

fn test_listener_client_across_processes() {
    for method in testkit::methods() {
        for tcp in [false, true] {
            for (server_key, client_key, ok) in [
                (Some(&b"k1"[..]), Some(b"k1".to_vec()), true),
                (None, None, true),
                (Some(&b"k1"[..]), Some(b"k2".to_vec()), false),
                (Some(&b"k1"[..]), None, false),
            ] {
                let l = if tcp {
                    Listener::bind("127.0.0.1:0", server_key).unwrap()
                } else {
                    Listener::bind_temp(server_key).unwrap()
                };
                let mut child = start(method, "client", &(l.address(), client_key, ok));
                match l.accept() {
                    Ok(c) => {
                        assert!(ok);
                        assert_eq!(c.recv::<String>().unwrap(), "from the client");
                        c.send(&1729u64).unwrap();
                    }
                    Err(Error::Authentication(_)) => assert!(!ok),
                    Err(e) => panic!("{e}"),
                }
                wait_ok(&mut child);
            }
        }
    }
}

fn test_forked_child_dropping_a_listener_keeps_the_socket() {
    // `testkit::main` runs tests on its only thread, so forking here is safe.
    let l = Listener::bind_temp(None).unwrap();
    let path = match l.address() {
        Address::Unix(p) => p,
        a => panic!("{a}"),
    };
    // SAFETY: single-threaded process; the child only drops the listener and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // The child: drops its inherited copy, as a worker that got the listener would.
        drop(l);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` is writable.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert!(path.exists(), "the child removed the parent's socket");
    let t = std::thread::spawn({
        let path = path.clone();
        move || Client::connect(path, None).unwrap().send(&5u8).unwrap()
    });
    assert_eq!(l.accept().unwrap().recv::<u8>().unwrap(), 5);
    t.join().unwrap();
    drop(l);
    assert!(!path.exists());
}

fn case_fd_starved_recv(payload: &[u8], fds: Vec<OwnedFd>) {
    let conn: Connection = decode(payload, fds);
    // No new descriptor can be installed: the limit just above the highest open one, every
    // hole below it filled.
    let top = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let lim = libc::rlimit {
        rlim_cur: top + 1,
        rlim_max: old.rlim_max,
    };
    // SAFETY: `lim` is a valid rlimit; lowering the soft limit only affects this child.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut fill = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fill.push(f);
    }
    // The kernel drops the descriptor (MSG_CTRUNC): the frame's descriptor is missing, which
    // is what the error must say (not that the peer sent descriptors nobody announced).
    match conn.recv::<Connection>() {
        Err(Error::MissingFds {
            expected: 1,
            received: 0,
        }) => {}
        other => panic!("{other:?}"),
    }
}

fn test_full_descriptor_table_is_missing_fds() {
    for method in testkit::methods() {
        let (a, b) = Pipe::new().unwrap();
        let (_x, y) = Pipe::new().unwrap();
        a.send(&y).unwrap();
        let mut child = start(method, "fd_starved_recv", &b);
        wait_ok(&mut child);
    }
}

fn main() {
    testkit::main(
        &[
            ("send_hello", case_send_hello),
            ("echo_server", case_echo_server),
            ("send_then_hang", case_send_then_hang),
            ("big_echo", case_big_echo),
            ("client", case_client),
            ("fd_starved_recv", case_fd_starved_recv),
        ],
        &[
            ("child_sends_hello", test_child_sends_hello),
            (
                "connection_through_connection_to_running_process",
                test_connection_through_connection_to_running_process,
            ),
            ("killed_peer_is_eof", test_killed_peer_is_eof),
            (
                "sixteen_mib_between_processes",
                test_sixteen_mib_between_processes,
            ),
            (
                "listener_client_across_processes",
                test_listener_client_across_processes,
            ),
            (
                "forked_child_dropping_a_listener_keeps_the_socket",
                test_forked_child_dropping_a_listener_keeps_the_socket,
            ),
            (
                "full_descriptor_table_is_missing_fds",
                test_full_descriptor_table_is_missing_fds,
            ),
        ],
    );
}
