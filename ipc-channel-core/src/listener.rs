//! [`Listener`] and [`Client`]: connections between unrelated processes over a Unix socket path
//! or TCP, with an optional mutual HMAC-SHA256 challenge (Python's
//! `multiprocessing.connection.Listener`/`Client`).
//!
//! # Handshake
//!
//! Right after connecting, *both* sides send a `Hello` frame saying whether they hold an
//! authkey and, if they do, carrying a fresh 32-byte random challenge; then each reads the
//! other's. So each side knows what the other expects before anything else is said:
//!
//! - neither has a key: done (no challenge, as in Python);
//! - one has a key and the other not: both fail at once with [`Error::Authentication`] saying
//!   which side lacks the key (Python hangs or fails with an `UnpicklingError` here, PP18);
//! - both have keys: each answers the other's challenge with
//!   `HMAC-SHA256(key, "multiproc-auth-v1" ‖ role ‖ peer challenge ‖ own challenge)` (the role
//!   byte stops a response being reflected back), checks the peer's answer in constant time,
//!   and sends its verdict. A wrong key fails on both sides: "digest received was wrong" where
//!   the check failed, "digest sent was rejected" where the peer's did.
//!
//! Every read of the handshake is bounded by a timeout (10 s by default), so a peer that
//! connects and says nothing cannot hold [`Listener::accept`] forever, and handshake frames
//! are capped at 256 bytes.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::codec::Kind;
use crate::connection::Connection;
use crate::err::{Error, Result};

/// How long a handshake may take by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const PROTOCOL_VERSION: u8 = 1;
const CHALLENGE_LEN: usize = 32;
const HANDSHAKE_MAX: u64 = 256;
const AUTH_LABEL: &[u8] = b"multiproc-auth-v1";

/// Where a [`Listener`] listens: a Unix socket path or a TCP address.
///
/// Converts from a [`SocketAddr`], a [`PathBuf`] or [`&Path`](Path), and a `&str`: a string
/// that parses as a socket address (`"127.0.0.1:0"`, `"[::1]:8000"`) or is `localhost:PORT` is
/// TCP, anything else is a Unix socket path.
///
/// # Examples
///
/// ```
/// use ipc_channel_core::Address;
///
/// assert!(matches!(Address::from("127.0.0.1:0"), Address::Tcp(_)));
/// assert!(matches!(Address::from("/tmp/my.sock"), Address::Unix(_)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Address {
    /// A Unix-domain socket at this filesystem path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Self {
        Address::Unix(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Self {
        Address::Unix(p.to_path_buf())
    }
}

impl From<&str> for Address {
    fn from(s: &str) -> Self {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Address::Tcp(a);
        }
        if let Some(port) = s.strip_prefix("localhost:") {
            if let Ok(port) = port.parse::<u16>() {
                return Address::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
            }
        }
        Address::Unix(PathBuf::from(s))
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Self {
        a.clone()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Accepts [`Connection`]s at an [`Address`], authenticating each peer when an authkey is
/// given.
///
/// # Examples
///
/// ```
/// use ipc_channel_core::{Client, Listener};
///
/// let listener = Listener::bind("127.0.0.1:0", Some(b"secret"))?;
/// let address = listener.address();
/// let client = std::thread::spawn(move || {
///     let c = Client::connect(address, Some(b"secret")).unwrap();
///     c.send(&1729u32).unwrap();
/// });
/// let server_side = listener.accept()?;
/// assert_eq!(server_side.recv::<u32>()?, 1729);
/// client.join().unwrap();
/// # Ok::<(), ipc_channel_core::Error>(())
/// ```
pub struct Listener {
    socket: Socket,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    /// The socket file to remove on drop, and the private directory made for it.
    cleanup: Option<(PathBuf, Option<PathBuf>)>,
    /// The process that bound the socket: only it removes the file (a forked child dropping
    /// its inherited copy must not unlink the parent's socket), as Python's finalizer does.
    owner: u32,
}

fn check_key(authkey: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
    match authkey {
        Some([]) => Err(Error::InvalidArgument(
            "an empty authkey is not a key; pass None for no authentication".into(),
        )),
        Some(k) => Ok(Some(k.to_vec())),
        None => Ok(None),
    }
}

impl Listener {
    /// Listens at `address`. Binding TCP port 0 picks a free port ([`address`](Self::address)
    /// tells which). A Unix socket file is removed when the listener is dropped.
    ///
    /// With `authkey`, every accepted peer must prove it holds the same key (and may ask the
    /// same of this side); see the module docs for the handshake.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the address cannot be bound (in use: `AddrInUse`),
    /// [`Error::InvalidArgument`] for an empty authkey.
    pub fn bind(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Listener> {
        let authkey = check_key(authkey)?;
        match address.into() {
            Address::Unix(path) => {
                let l = UnixListener::bind(&path)?;
                Ok(Listener {
                    socket: Socket::Unix(l),
                    address: Address::Unix(path.clone()),
                    authkey,
                    handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                    cleanup: Some((path, None)),
                    owner: std::process::id(),
                })
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a)?;
                let real = l.local_addr()?;
                Ok(Listener {
                    socket: Socket::Tcp(l),
                    address: Address::Tcp(real),
                    authkey,
                    handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                    cleanup: None,
                    owner: std::process::id(),
                })
            }
        }
    }

    /// Listens on a Unix socket at a path the library chooses (Python's `Listener()`): a fresh
    /// directory with mode 0700 under the temporary directory, holding a socket with mode 0600.
    /// Both are removed when the listener is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the directory or socket cannot be made.
    pub fn bind_temp(authkey: Option<&[u8]>) -> Result<Listener> {
        let authkey = check_key(authkey)?;
        // Like Python's `tempfile.mkdtemp`: a fresh directory (never an existing one, so no
        // one can have planted it or a symlink by that name), retrying on a collision.
        let mut attempts = 0;
        let dir = loop {
            let mut rnd = [0u8; 8];
            getrandom(&mut rnd)?;
            let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
            let dir = std::env::temp_dir().join(format!("multiproc-{name}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                    attempts += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        // The mode asked of mkdir is reduced by the umask; make it exactly 0700.
        if let Err(e) = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e.into());
        }
        let path = dir.join("listener.sock");
        let l = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e.into());
            }
        };
        // Drop removes the socket and the directory if setting the mode fails.
        let listener = Listener {
            socket: Socket::Unix(l),
            address: Address::Unix(path.clone()),
            authkey,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            cleanup: Some((path.clone(), Some(dir))),
            owner: std::process::id(),
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    }

    /// The address peers connect to (with the real port after binding port 0).
    pub fn address(&self) -> Address {
        self.address.clone()
    }

    /// How long [`accept`](Self::accept) waits for a connected peer's handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Sets how long [`accept`](Self::accept) waits for a connected peer's handshake.
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// Waits for a peer, runs the handshake, and returns the connection.
    ///
    /// # Errors
    ///
    /// [`Error::Authentication`] on a wrong key or a key on one side only,
    /// [`Error::Handshake`] when the peer is not a multiproc client or stays silent past the
    /// handshake timeout, [`Error::Io`] when accepting fails. The failed peer is dropped; call
    /// `accept` again for the next one.
    pub fn accept(&self) -> Result<Connection> {
        let fd: OwnedFd = match &self.socket {
            Socket::Unix(l) => l.accept()?.0.into(),
            Socket::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                s.into()
            }
        };
        let conn = Connection::from_fd(fd)?;
        handshake(
            &conn,
            self.authkey.as_deref(),
            Role::Listener,
            self.handshake_timeout,
        )?;
        Ok(conn)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, dir)) = self.cleanup.take() {
            if self.owner != std::process::id() {
                return;
            }
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = dir {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .finish()
    }
}

/// Connects to a [`Listener`] (Python's `multiprocessing.connection.Client`).
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connects to `address` and runs the handshake (with the default handshake timeout).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when nothing listens there (`ConnectionRefused`, `NotFound`),
    /// [`Error::Authentication`] on a wrong key or a key on one side only,
    /// [`Error::Handshake`] when the listener is not a multiproc listener or stays silent.
    pub fn connect(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Connection> {
        Client::connect_timeout(address, authkey, DEFAULT_HANDSHAKE_TIMEOUT)
    }

    /// Like [`connect`](Self::connect), bounding the TCP connect and the handshake by
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_timeout(
        address: impl Into<Address>,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Connection> {
        let authkey = check_key(authkey)?;
        let fd: OwnedFd = match address.into() {
            Address::Unix(p) => UnixStream::connect(&p)?.into(),
            Address::Tcp(a) => {
                let s = TcpStream::connect_timeout(&a, timeout)?;
                s.set_nodelay(true)?;
                s.into()
            }
        };
        let conn = Connection::from_fd(fd)?;
        handshake(&conn, authkey.as_deref(), Role::Client, timeout)?;
        Ok(conn)
    }

    /// Resolves `host:port` (for example `"localhost:8000"`) to a TCP [`Address`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the name does not resolve.
    pub fn resolve(host_port: &str) -> Result<Address> {
        host_port
            .to_socket_addrs()?
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| Error::InvalidArgument(format!("{host_port} resolves to nothing")))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Listener,
    Client,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Listener => b'L',
            Role::Client => b'C',
        }
    }
    fn peer(self) -> Role {
        match self {
            Role::Listener => Role::Client,
            Role::Client => Role::Listener,
        }
    }
}

fn getrandom(buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn digest(key: &[u8], role: Role, challenge_answered: &[u8], own: &[u8]) -> Result<Hmac<Sha256>> {
    // HMAC accepts keys of every length, so this cannot fail in practice.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|e| Error::Authentication(format!("unusable authkey: {e}")))?;
    mac.update(AUTH_LABEL);
    mac.update(&[role.byte()]);
    mac.update(challenge_answered);
    mac.update(own);
    Ok(mac)
}

/// Runs the handshake on a fresh connection (see the module docs).
fn handshake(conn: &Connection, key: Option<&[u8]>, role: Role, timeout: Duration) -> Result<()> {
    let deadline = Instant::now().checked_add(timeout);
    let timed_out = |what: &str| {
        Error::Handshake(format!(
            "the peer sent no {what} within the handshake timeout of {timeout:?}"
        ))
    };
    let recv = |kind: Kind, what: &str| -> Result<Vec<u8>> {
        match conn.recv_frame_bytes(kind, deadline, HANDSHAKE_MAX) {
            Ok(b) => Ok(b),
            Err(Error::Timeout) => Err(timed_out(what)),
            Err(Error::Eof) => Err(Error::Handshake(format!(
                "the peer closed the connection before sending its {what}"
            ))),
            Err(e @ Error::Io(_)) => Err(e),
            Err(e) => Err(Error::Handshake(format!(
                "the peer does not speak the multiproc handshake ({e})"
            ))),
        }
    };

    // 1. Hello: version, whether we hold a key, and our challenge.
    let mut own = [0u8; CHALLENGE_LEN];
    let mut hello = vec![PROTOCOL_VERSION, key.is_some() as u8];
    if key.is_some() {
        getrandom(&mut own)?;
        hello.extend_from_slice(&own);
    }
    conn.send_frame(Kind::Hello, &hello)?;
    let peer_hello = recv(Kind::Hello, "hello")?;
    if peer_hello.len() < 2 || peer_hello[0] != PROTOCOL_VERSION {
        return Err(Error::Handshake(format!(
            "unsupported handshake version {} (this side speaks {PROTOCOL_VERSION})",
            peer_hello.first().copied().unwrap_or(0)
        )));
    }
    let peer_keyed = match peer_hello[1] {
        0 => false,
        1 => true,
        b => {
            return Err(Error::Handshake(format!(
                "bad authentication flag {b} in the peer's hello"
            )))
        }
    };
    let key = match (key, peer_keyed) {
        (None, false) => {
            if peer_hello.len() != 2 {
                return Err(Error::Handshake("malformed hello from the peer".into()));
            }
            return Ok(());
        }
        (Some(_), false) => {
            return Err(Error::Authentication(
                "this side requires an authkey but the peer has none".into(),
            ))
        }
        (None, true) => {
            return Err(Error::Authentication(
                "the peer requires an authkey but none was given".into(),
            ))
        }
        (Some(k), true) => k,
    };
    if peer_hello.len() != 2 + CHALLENGE_LEN {
        return Err(Error::Handshake("malformed hello from the peer".into()));
    }
    let peer_challenge = &peer_hello[2..];

    // 2. Responses.
    let response = digest(key, role, peer_challenge, &own)?
        .finalize()
        .into_bytes();
    conn.send_frame(Kind::Response, &response)?;
    let peer_response = recv(Kind::Response, "authentication response")?;
    let accepted = digest(key, role.peer(), &own, peer_challenge)?
        .verify_slice(&peer_response)
        .is_ok();

    // 3. Verdicts.
    conn.send_frame(Kind::Verdict, &[accepted as u8])?;
    let verdict = recv(Kind::Verdict, "verdict")?;
    if !accepted {
        return Err(Error::Authentication("digest received was wrong".into()));
    }
    if verdict != [1] {
        return Err(Error::Authentication("digest sent was rejected".into()));
    }
    Ok(())
}
