//! Harness shared by the `handshake` fuzz target (`fuzz/fuzz_targets/handshake.rs`) and its
//! proptest twin (`ipc-channel-core/tests/hostile_handshake.rs`): the authkey handshake of
//! `Listener::accept` and `Client::connect` against a hostile peer.
//!
//! The input chooses the victim (a real `Listener` on a private Unix socket, or a real
//! `Client` connecting to a raw socket the peer listens on), whether the victim has a key,
//! whether the peer knows it, and then a script for the peer, step by step: read the victim's
//! next frame, send raw bytes, a hello (well-formed or with fuzzed version, flag and
//! challenge), a response (computed right over this connection's challenges when the peer
//! knows the key, else under a wrong key), a response captured on an earlier connection
//! (replay), the victim's own last frame sent back (reflection), a verdict, a frame header
//! with fuzzed fields, descriptors; or a half-close. Then the peer hangs up.
//!
//! Whatever the script: the victim returns, within its handshake timeout and a generous
//! margin (no panic, no hang), and a keyed victim authenticates the peer only if the peer
//! holds the key *and* answered this connection's challenge: wrong keys, no keys, replayed and
//! reflected responses all fail.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use ipc_channel_core::{Client, Error, Listener};
use sha2::Sha256;

/// The key keyed victims hold.
pub(crate) const KEY: &[u8] = b"hostile-handshake-key";
/// A key the peer uses when it does not know [`KEY`].
const WRONG_KEY: &[u8] = b"hostile-handshake-kez";
/// The victim's handshake timeout: the bound on how long any script can hold it.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);
/// How long the peer waits for a frame from the victim before going on with its script.
const PEER_READ: Duration = Duration::from_millis(20);

/// A response some earlier connection's peer computed right (for the replay step).
static CAPTURED: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Reads the fuzz input front to back; past the end every read is zero.
struct Script<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Script<'a> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_le_bytes(b)
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = self.pos.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(16 + payload.len());
    f.extend_from_slice(b"mp");
    f.push(kind);
    f.push(0);
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// The protocol's response: `HMAC-SHA256(key, label ‖ role ‖ answered ‖ own)`.
pub(crate) fn response(key: &[u8], role: u8, answered: &[u8], own: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(b"multiproc-auth-v1");
    mac.update(&[role]);
    mac.update(answered);
    mac.update(own);
    mac.finalize().into_bytes().to_vec()
}

/// Reads one frame from the victim (or nothing, after [`PEER_READ`]).
fn read_frame(sock: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 16];
    sock.read_exact(&mut h).ok()?;
    let len = u64::from_le_bytes(h[8..16].try_into().ok()?);
    if &h[..2] != b"mp" || len > 4096 {
        return None;
    }
    let mut body = vec![0u8; len as usize];
    sock.read_exact(&mut body).ok()?;
    Some((h[2], body))
}

/// What the peer did that could legitimately authenticate it.
#[derive(Default)]
struct Peer {
    /// The challenge in the peer's last well-formed hello.
    own: Option<[u8; 32]>,
    /// The victim's challenge, from its hello on this connection.
    victim: Option<Vec<u8>>,
    /// The victim's last frame, whole.
    last: Option<Vec<u8>>,
    /// The peer sent a response computed with the right key over this connection's challenges.
    fresh_valid_response: bool,
}

fn play(mut sock: UnixStream, s: &mut Script<'_>, knows_key: bool, role: u8) -> Peer {
    let _ = sock.set_read_timeout(Some(PEER_READ));
    let _ = sock.set_write_timeout(Some(PEER_READ));
    let key = if knows_key { KEY } else { WRONG_KEY };
    let mut p = Peer::default();
    let mut reads = 0;
    let steps = s.u8() % 16;
    for _ in 0..steps {
        if s.done() {
            break;
        }
        let ok = match s.u8() % 12 {
            0 | 1 if reads < 6 => {
                reads += 1;
                if let Some((kind, body)) = read_frame(&mut sock) {
                    if kind == 1 && body.len() == 34 {
                        p.victim = Some(body[2..].to_vec());
                    }
                    p.last = Some(frame(kind, &body));
                }
                true
            }
            2 => {
                let n = usize::from(s.u8());
                sock.write_all(s.bytes(n)).is_ok()
            }
            3 => {
                // A hello with fuzzed fields.
                let version = if s.u8() % 4 == 0 { s.u8() } else { 1 };
                let flag = if s.u8() % 4 == 0 { s.u8() } else { s.u8() & 1 };
                let n = match s.u8() % 4 {
                    0 => usize::from(s.u8() % 64),
                    _ => 32,
                };
                let mut hello = vec![version, flag];
                let challenge = s.bytes(n).to_vec();
                hello.extend_from_slice(&challenge);
                if version == 1 && flag == 1 && challenge.len() == 32 {
                    p.own = Some(challenge.clone().try_into().expect("32 bytes"));
                }
                sock.write_all(&frame(1, &hello)).is_ok()
            }
            4 => {
                // A proper keyed hello with a fresh challenge.
                let mut own = [0u8; 32];
                for (i, b) in own.iter_mut().enumerate() {
                    *b = s.u8() ^ (i as u8);
                }
                p.own = Some(own);
                let mut hello = vec![1, 1];
                hello.extend_from_slice(&own);
                sock.write_all(&frame(1, &hello)).is_ok()
            }
            5 => {
                // A response over this connection's challenges (zeros for what is unknown).
                let victim = p.victim.clone().unwrap_or_else(|| vec![0; 32]);
                let own = p.own.unwrap_or([0; 32]);
                let r = response(key, role, &victim, &own);
                if knows_key && p.victim.is_some() && p.own.is_some() {
                    p.fresh_valid_response = true;
                    *CAPTURED.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
                }
                sock.write_all(&frame(2, &r)).is_ok()
            }
            6 => {
                // Replay a response that was right on an earlier connection.
                let old = CAPTURED.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let r = old.unwrap_or_else(|| response(KEY, role, &[0; 32], &[0; 32]));
                sock.write_all(&frame(2, &r)).is_ok()
            }
            7 => match p.last.clone() {
                // Reflection: the victim's own frame sent back.
                Some(f) => sock.write_all(&f).is_ok(),
                None => true,
            },
            8 => {
                let v = if s.u8() % 4 == 0 { s.u8() } else { 1 };
                sock.write_all(&frame(3, &[v])).is_ok()
            }
            9 => {
                // A header with fuzzed fields and a short body.
                let mut h = frame(s.u8() % 6, &[]);
                h[3] = if s.u8() % 4 == 0 { s.u8() } else { 0 };
                h[4..8].copy_from_slice(&u32::from(s.u8() % 4).to_le_bytes());
                h[8..16].copy_from_slice(&s.u64().to_le_bytes());
                let n = usize::from(s.u8() % 64);
                h.extend_from_slice(s.bytes(n));
                sock.write_all(&h).is_ok()
            }
            10 => {
                // A frame with a descriptor attached.
                let devnull = std::fs::File::open("/dev/null").expect("/dev/null");
                let mut f = frame(s.u8() % 4, &[1, 0]);
                f[4..8].copy_from_slice(&u32::from(s.u8() % 2).to_le_bytes());
                ipc_shm::transfer::send_with_fds(sock.as_fd(), &f, &[devnull.as_fd()]).is_ok()
            }
            _ => sock.shutdown(std::net::Shutdown::Write).is_ok(),
        };
        if !ok {
            break;
        }
    }
    p
}

/// Runs one hostile script against a victim and checks the outcome.
pub(crate) fn run(data: &[u8]) {
    let mut s = Script { data, pos: 0 };
    let flags = s.u8();
    let victim_is_listener = flags & 1 == 0;
    let victim_keyed = flags & 2 != 0;
    let knows_key = flags & 4 != 0;
    let key = victim_keyed.then_some(KEY);
    let script: Vec<u8> = s.bytes(usize::MAX).to_vec();
    let start = Instant::now();
    let (result, peer) = if victim_is_listener {
        let mut l = Listener::bind_temp(key).expect("bind_temp");
        l.set_handshake_timeout(TIMEOUT);
        let ipc_channel_core::Address::Unix(path) = l.address() else {
            unreachable!("bind_temp listens on a Unix socket")
        };
        let peer = std::thread::spawn(move || {
            let sock = UnixStream::connect(path).expect("connect");
            play(
                sock,
                &mut Script {
                    data: &script,
                    pos: 0,
                },
                knows_key,
                b'C',
            )
        });
        let r = l.accept();
        (r, peer.join().expect("peer thread"))
    } else {
        let dir = private_dir();
        let path = dir.join("peer.sock");
        let raw = UnixListener::bind(&path).expect("bind");
        let peer = std::thread::spawn(move || {
            let (sock, _) = raw.accept().expect("accept");
            play(
                sock,
                &mut Script {
                    data: &script,
                    pos: 0,
                },
                knows_key,
                b'L',
            )
        });
        let r = Client::connect_timeout(path.as_path(), key, TIMEOUT);
        let peer = peer.join().expect("peer thread");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
        (r, peer)
    };
    let took = start.elapsed();
    assert!(
        took < TIMEOUT + Duration::from_secs(10),
        "the victim was held {took:?} (handshake timeout {TIMEOUT:?})"
    );
    match result {
        Ok(conn) => {
            if victim_keyed {
                assert!(
                    knows_key && peer.fresh_valid_response,
                    "a keyed victim accepted a peer that did not answer its challenge with the key"
                );
            }
            drop(conn);
        }
        Err(
            Error::Authentication(_)
            | Error::Handshake(_)
            | Error::Eof
            | Error::Io(_)
            | Error::Broken,
        ) => {}
        Err(e) => panic!("unexpected handshake error: {e:?}"),
    }
}

/// A fresh 0700 directory for the peer's socket.
fn private_dir() -> std::path::PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    loop {
        let mut r = [0u8; 8];
        rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty()).expect("random");
        let name: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("hostile-hs-{name}"));
        if std::fs::DirBuilder::new().mode(0o700).create(&dir).is_ok() {
            return dir;
        }
    }
}
