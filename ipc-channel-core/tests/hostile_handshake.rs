//! Hostile peers against the authkey handshake of `Listener`/`Client` (issue #9): wrong key,
//! no key, replayed and reflected responses, responses of the wrong length, a client that
//! stalls mid-handshake.
//!
//! `hostile_handshake_proptest` runs the harness of the `handshake` fuzz target
//! (`fuzz/harness/handshake.rs`, shared word for word) on random scripts:
//! `MULTIPROC_HOSTILE_CASES` cases (default 256, a tenth of that here since each case makes
//! real sockets; `cargo xtask soak` runs it long).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ipc_channel_core::{Address, Client, Error, Listener};
use proptest::prelude::*;

#[path = "../../fuzz/harness/handshake.rs"]
mod harness;

use harness::{response, KEY};

fn cases() -> u32 {
    std::env::var("MULTIPROC_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(256)
        .div_ceil(10)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_handshake_proptest(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        harness::run(&data);
    }
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = b"mp".to_vec();
    f.push(kind);
    f.push(0);
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fn read_frame(s: &mut UnixStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[..2], b"mp");
    let len = u64::from_le_bytes(h[8..16].try_into().unwrap()) as usize;
    assert!(len <= 256);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (h[2], body)
}

fn unix_path(l: &Listener) -> std::path::PathBuf {
    match l.address() {
        Address::Unix(p) => p,
        other => panic!("{other:?}"),
    }
}

/// A keyed listener accepting on a thread, with a short handshake timeout.
fn keyed_listener() -> Listener {
    let mut l = Listener::bind_temp(Some(KEY)).unwrap();
    l.set_handshake_timeout(Duration::from_secs(3));
    l
}

/// Plays a client by hand: sends `hello_challenge`, reads the listener's hello, and sends
/// `answer(listener_challenge)` as the response. Returns the listener's challenge, the bytes
/// sent, and the listener's verdict byte (if it sent one).
fn manual_client(
    path: &std::path::Path,
    own: [u8; 32],
    answer: impl FnOnce(&[u8]) -> Vec<u8>,
) -> (Vec<u8>, Vec<u8>, Option<u8>) {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sent = Vec::new();
    let mut hello = vec![1, 1];
    hello.extend_from_slice(&own);
    sent.extend(frame(1, &hello));
    s.write_all(&sent).unwrap();
    let (kind, peer_hello) = read_frame(&mut s);
    assert_eq!(kind, 1);
    assert_eq!(peer_hello.len(), 34);
    let challenge = peer_hello[2..].to_vec();
    let r = frame(2, &answer(&challenge));
    s.write_all(&r).unwrap();
    sent.extend(r);
    // The listener's own response, then its verdict on ours.
    let verdict = (|| {
        let (k, _) = read_frame_opt(&mut s)?;
        assert_eq!(k, 2);
        let (k, v) = read_frame_opt(&mut s)?;
        assert_eq!(k, 3);
        v.first().copied()
    })();
    let _ = s.write_all(&frame(3, &[1]));
    (challenge, sent, verdict)
}

fn read_frame_opt(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).ok()?;
    let len = u64::from_le_bytes(h[8..16].try_into().ok()?) as usize;
    let mut body = vec![0u8; len.min(256)];
    s.read_exact(&mut body).ok()?;
    Some((h[2], body))
}

#[test]
fn the_manual_client_is_right_when_it_holds_the_key() {
    // Checks the hand-played protocol itself, so the failures below mean what they say.
    let l = keyed_listener();
    let path = unix_path(&l);
    let own = [7u8; 32];
    let t =
        std::thread::spawn(move || manual_client(&path, own, |ch| response(KEY, b'C', ch, &own)));
    let conn = l.accept().expect("a right response is accepted");
    let (_, _, verdict) = t.join().unwrap();
    assert_eq!(verdict, Some(1));
    drop(conn);
}

#[test]
fn wrong_key_and_no_key_are_refused() {
    let l = keyed_listener();
    let addr = l.address();
    let t = std::thread::spawn(move || {
        let wrong = Client::connect(addr.clone(), Some(b"not the key"));
        let none = Client::connect(addr, None);
        (wrong.map(|_| ()), none.map(|_| ()))
    });
    match l.accept() {
        Err(Error::Authentication(m)) => assert!(m.contains("digest received was wrong"), "{m}"),
        other => panic!("wrong key: {:?}", other.map(|_| ())),
    }
    match l.accept() {
        Err(Error::Authentication(m)) => assert!(m.contains("peer has none"), "{m}"),
        other => panic!("no key: {:?}", other.map(|_| ())),
    }
    let (wrong, none) = t.join().unwrap();
    // (With a wrong key both checks fail: the client reports its own check first.)
    assert!(matches!(wrong, Err(Error::Authentication(_))), "{wrong:?}");
    assert!(matches!(none, Err(Error::Authentication(m)) if m.contains("none was given")));
}

#[test]
fn a_captured_response_replayed_on_a_new_connection_fails() {
    let l = keyed_listener();
    let path = unix_path(&l);
    let own = [3u8; 32];
    // Connection 1: a real client's exchange, recorded.
    let p = path.clone();
    let t = std::thread::spawn(move || manual_client(&p, own, |ch| response(KEY, b'C', ch, &own)));
    l.accept().expect("the genuine exchange succeeds");
    let (first_challenge, recorded, _) = t.join().unwrap();
    // Connection 2: the attacker, without the key, replays the recorded bytes verbatim.
    let p = path.clone();
    let t = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&recorded).unwrap();
        let (_, hello) = read_frame(&mut s);
        let _ = s.write_all(&frame(3, &[1]));
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        hello[2..].to_vec()
    });
    match l.accept() {
        Err(Error::Authentication(m)) => assert!(m.contains("digest received was wrong"), "{m}"),
        other => panic!(
            "a replayed response was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    let second_challenge = t.join().unwrap();
    assert_ne!(
        first_challenge, second_challenge,
        "the listener reused its challenge"
    );
}

#[test]
fn challenges_are_fresh_on_every_connection() {
    let l = keyed_listener();
    let path = unix_path(&l);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let p = path.clone();
        let t = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            let (_, hello) = read_frame(&mut s);
            drop(s); // hang up: the listener's accept fails
            hello
        });
        assert!(l.accept().is_err());
        let hello = t.join().unwrap();
        assert_eq!(hello.len(), 34);
        assert!(seen.insert(hello[2..].to_vec()), "a challenge came twice");
    }
}

#[test]
fn a_reflected_hello_and_response_fail() {
    // The attacker sends the listener's own hello back as its hello, then the listener's own
    // response back as its response: the role byte in the digest makes the reflection wrong.
    let l = keyed_listener();
    let path = unix_path(&l);
    let t = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (k, hello) = read_frame(&mut s);
        s.write_all(&frame(k, &hello)).unwrap();
        let (k, resp) = read_frame(&mut s);
        assert_eq!(k, 2);
        s.write_all(&frame(k, &resp)).unwrap();
        let _ = s.write_all(&frame(3, &[1]));
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    match l.accept() {
        Err(Error::Authentication(m)) => assert!(m.contains("digest received was wrong"), "{m}"),
        other => panic!("a reflected response was accepted: {:?}", other.map(|_| ())),
    }
    t.join().unwrap();
}

#[test]
fn responses_off_by_one_bit_or_of_the_wrong_length_fail() {
    // The digest is compared with hmac's verify_slice (constant time); what is tested here is
    // the behaviour: any difference, wherever it is, and any length other than 32, fails.
    let l = keyed_listener();
    let path = unix_path(&l);
    let own = [9u8; 32];
    type Tamper = fn(Vec<u8>) -> Vec<u8>;
    let tampers: [Tamper; 7] = [
        |mut r| {
            r[0] ^= 1;
            r
        },
        |mut r| {
            r[31] ^= 0x80;
            r
        },
        |mut r| {
            r.pop();
            r
        },
        |mut r| {
            r.push(0);
            r
        },
        |_| Vec::new(),
        |r| r[..16].to_vec(),
        |_| vec![0u8; 200],
    ];
    for (i, tamper) in tampers.into_iter().enumerate() {
        let p = path.clone();
        let t = std::thread::spawn(move || {
            manual_client(&p, own, |ch| tamper(response(KEY, b'C', ch, &own)))
        });
        match l.accept() {
            Err(Error::Authentication(m)) => {
                assert!(m.contains("digest received was wrong"), "{i}: {m}")
            }
            other => panic!("tampered response {i} accepted: {:?}", other.map(|_| ())),
        }
        let (_, _, verdict) = t.join().unwrap();
        assert_eq!(verdict, Some(0), "{i}");
    }
}

#[test]
fn a_client_that_stalls_mid_handshake_times_out_and_the_next_client_is_served() {
    let mut l = Listener::bind_temp(Some(KEY)).unwrap();
    l.set_handshake_timeout(Duration::from_millis(500));
    let path = unix_path(&l);
    let addr = l.address();
    // Stalls after its hello: never answers the challenge.
    let mut staller = UnixStream::connect(&path).unwrap();
    let mut hello = vec![1, 1];
    hello.extend_from_slice(&[5u8; 32]);
    staller.write_all(&frame(1, &hello)).unwrap();
    // A silent one, and then a good client, queued behind both.
    let silent = UnixStream::connect(&path).unwrap();
    let good = std::thread::spawn(move || {
        let c = Client::connect(addr, Some(KEY)).unwrap();
        c.send(&"served").unwrap();
        c.recv::<u8>().unwrap()
    });
    for _ in 0..2 {
        let start = Instant::now();
        match l.accept() {
            Err(Error::Handshake(m)) => {
                assert!(m.contains("within the handshake timeout"), "{m}")
            }
            other => panic!("a stalled client: {:?}", other.map(|_| ())),
        }
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    // The stalled connections were closed by the listener.
    staller
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    staller.read_to_end(&mut rest).unwrap();
    drop(silent);
    let conn = l.accept().expect("the next client is served");
    assert_eq!(conn.recv::<String>().unwrap(), "served");
    conn.send(&1u8).unwrap();
    assert_eq!(good.join().unwrap(), 1);
}

#[test]
fn seeds_of_every_script_step_pass_the_harness() {
    for flags in 0..8u8 {
        for step in 0..12u8 {
            let data = [flags, 6, 0, 4, 1, 1, 2, step, 5, 0, 3, 1, 7, 9, 3];
            harness::run(&data);
        }
    }
}

#[test]
fn a_client_dripping_one_byte_at_a_time_cannot_stretch_the_timeout() {
    // The handshake timeout bounds the whole handshake, not each read: a peer that keeps
    // sending a byte now and then is cut off at the deadline all the same.
    let mut l = Listener::bind_temp(Some(KEY)).unwrap();
    l.set_handshake_timeout(Duration::from_millis(500));
    let path = unix_path(&l);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let drip = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&path).unwrap();
        let mut hello = vec![1, 1];
        hello.extend_from_slice(&[4u8; 32]);
        let bytes = frame(1, &hello);
        for b in bytes.iter().cycle() {
            if stop2.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let start = Instant::now();
    let r = l.accept();
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drip.join().unwrap();
    match r {
        Err(Error::Handshake(m)) => assert!(m.contains("within the handshake timeout"), "{m}"),
        other => panic!("a dripping client: {:?}", other.map(|_| ())),
    }
    assert!(
        took < Duration::from_millis(500) + Duration::from_secs(2),
        "{took:?}"
    );
}
