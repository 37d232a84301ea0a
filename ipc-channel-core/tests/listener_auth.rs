//! Listener/Client over Unix sockets and TCP (127.0.0.1 only): right key, wrong key, no key,
//! a key on one side only, silent and foreign peers, addresses and socket-file permissions.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use ipc_channel_core::{Address, Client, Error, Listener};

fn listeners(key: Option<&[u8]>) -> Vec<Listener> {
    vec![
        Listener::bind_temp(key).unwrap(),
        Listener::bind("127.0.0.1:0", key).unwrap(),
    ]
}

/// Runs a client with `client_key` against a listener with `listener_key`; returns both
/// sides' outcomes (the client side also round-trips a message when it connects).
fn pair(
    listener: &Listener,
    client_key: Option<&'static [u8]>,
) -> (Result<u32, Error>, Result<(), Error>) {
    let address = listener.address();
    let client = thread::spawn(move || {
        let c = Client::connect(address, client_key)?;
        c.send(&41u32)?;
        c.recv::<u32>()
    });
    let server = listener.accept().and_then(|conn| {
        let n: u32 = conn.recv()?;
        conn.send(&(n + 1))
    });
    (client.join().unwrap(), server)
}

#[test]
fn right_key_authenticates_both_ways() {
    for l in listeners(Some(b"sesame")) {
        let (c, s) = pair(&l, Some(b"sesame"));
        s.unwrap();
        assert_eq!(c.unwrap(), 42);
    }
}

#[test]
fn no_key_on_either_side_works() {
    for l in listeners(None) {
        let (c, s) = pair(&l, None);
        s.unwrap();
        assert_eq!(c.unwrap(), 42);
    }
}

#[test]
fn wrong_key_fails_on_both_sides() {
    for l in listeners(Some(b"sesame")) {
        let (c, s) = pair(&l, Some(b"open up"));
        match s {
            Err(Error::Authentication(m)) => assert!(m.contains("digest"), "{m}"),
            other => panic!("listener: {other:?}"),
        }
        match c {
            Err(Error::Authentication(m)) => assert!(m.contains("digest"), "{m}"),
            other => panic!("client: {other:?}"),
        }
    }
}

#[test]
fn key_on_one_side_only_fails_clearly_on_both() {
    for l in listeners(Some(b"sesame")) {
        let (c, s) = pair(&l, None);
        match s {
            Err(Error::Authentication(m)) => assert!(m.contains("peer has none"), "{m}"),
            other => panic!("listener: {other:?}"),
        }
        match c {
            Err(Error::Authentication(m)) => assert!(m.contains("none was given"), "{m}"),
            other => panic!("client: {other:?}"),
        }
    }
    for l in listeners(None) {
        let (c, s) = pair(&l, Some(b"sesame"));
        match s {
            Err(Error::Authentication(m)) => assert!(m.contains("none was given"), "{m}"),
            other => panic!("listener: {other:?}"),
        }
        match c {
            Err(Error::Authentication(m)) => assert!(m.contains("peer has none"), "{m}"),
            other => panic!("client: {other:?}"),
        }
    }
}

#[test]
fn silent_peer_cannot_hold_accept() {
    let mut l = Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
    l.set_handshake_timeout(Duration::from_millis(200));
    let Address::Tcp(addr) = l.address() else {
        panic!("not tcp")
    };
    let silent = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    match l.accept() {
        Err(Error::Handshake(m)) => assert!(m.contains("timeout"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(silent);
    // The listener still serves the next, well-behaved client.
    let (c, s) = pair(&l, Some(b"k"));
    s.unwrap();
    assert_eq!(c.unwrap(), 42);
}

#[test]
fn foreign_peer_is_a_handshake_error() {
    let l = Listener::bind("127.0.0.1:0", None).unwrap();
    let Address::Tcp(addr) = l.address() else {
        panic!("not tcp")
    };
    let mut http = TcpStream::connect(addr).unwrap();
    http.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    match l.accept() {
        Err(Error::Handshake(m)) => assert!(m.contains("does not speak"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_to_a_silent_listener_times_out() {
    // A plain TCP listener that accepts (the kernel does) and never speaks.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = plain.local_addr().unwrap();
    let t = Instant::now();
    match Client::connect_timeout(addr, None, Duration::from_millis(200)) {
        Err(Error::Handshake(m)) => assert!(m.contains("timeout"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn temp_socket_is_private_and_removed() {
    let l = Listener::bind_temp(None).unwrap();
    let Address::Unix(path) = l.address() else {
        panic!("not unix")
    };
    let dir = path.parent().unwrap().to_path_buf();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir), 0o700);
    drop(l);
    assert!(!path.exists());
    assert!(!dir.exists());
}

#[test]
fn addresses() {
    let l = Listener::bind("127.0.0.1:0", None).unwrap();
    match l.address() {
        Address::Tcp(a) => {
            assert_ne!(a.port(), 0);
            assert_eq!(a.ip().to_string(), "127.0.0.1");
        }
        other => panic!("{other:?}"),
    }
    // The address is in use now.
    match Listener::bind(l.address(), None) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!("{other:?}"),
    }
    let sa: SocketAddr = "127.0.0.1:80".parse().unwrap();
    assert_eq!(Address::from(sa), Address::Tcp(sa));
    assert_eq!(Address::from("127.0.0.1:80"), Address::Tcp(sa));
    assert_eq!(Address::from("localhost:80"), Address::Tcp(sa));
    assert_eq!(
        Address::from("/tmp/x.sock"),
        Address::Unix(PathBuf::from("/tmp/x.sock"))
    );
    assert_eq!(
        Address::from(Path::new("/tmp/y")),
        Address::Unix(PathBuf::from("/tmp/y"))
    );
    assert_eq!(
        Address::from(PathBuf::from("rel")),
        Address::Unix(PathBuf::from("rel"))
    );
    assert!(matches!(
        Listener::bind("127.0.0.1:0", Some(b"")),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn user_path_listener_and_refused_client() {
    let dir = std::env::temp_dir().join(format!("mp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    {
        let l = Listener::bind(path.as_path(), Some(b"k")).unwrap();
        let (c, s) = pair(&l, Some(b"k"));
        s.unwrap();
        assert_eq!(c.unwrap(), 42);
    }
    assert!(!path.exists(), "socket file removed on drop");
    match Client::connect(path.as_path(), None) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir(&dir);
    // Nothing listening on a TCP port: refused.
    let port = {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        t.local_addr().unwrap()
    };
    match Client::connect(port, None) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_may_send_and_close_before_accept() {
    let l = Listener::bind_temp(None).unwrap();
    let address = l.address();
    let client = thread::spawn(move || {
        let mut c = Client::connect(address, None).unwrap();
        c.send(&"hello").unwrap();
        c.close();
    });
    let conn = l.accept().unwrap();
    client.join().unwrap();
    assert_eq!(conn.recv::<String>().unwrap(), "hello");
    assert!(matches!(conn.recv::<String>(), Err(Error::Eof)));
}
