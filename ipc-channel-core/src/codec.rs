//! The frame format shared by every stream this crate writes.
//!
//! A frame is a 16-byte header followed by the payload:
//!
//! | bytes | field | value |
//! |---|---|---|
//! | 0..2 | magic | `b"mp"` |
//! | 2 | kind | [`Kind`]: data, or one of the handshake messages |
//! | 3 | reserved | 0 |
//! | 4..8 | fds | number of file descriptors sent with the frame (little-endian `u32`) |
//! | 8..16 | len | payload length in bytes (little-endian `u64`, so no 2 GiB or 4 GiB ceiling) |
//!
//! The descriptors travel as `SCM_RIGHTS` attached to the frame's first byte, so the receiver
//! holds them by the time it has parsed the header and can check their number.

use crate::err::{Error, Result};

/// Size of a frame header in bytes.
pub(crate) const HEADER_LEN: usize = 16;

const MAGIC: [u8; 2] = *b"mp";

/// The most descriptors a frame may announce (Linux's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: u32 = ipc_shm::transfer::MAX_FDS_PER_MESSAGE as u32;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// A user message.
    Data = 0,
    /// First handshake message of a `Listener`/`Client` pair.
    Hello = 1,
    /// An HMAC response to the peer's challenge.
    Response = 2,
    /// The verdict on the peer's response.
    Verdict = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Data),
            1 => Some(Kind::Hello),
            2 => Some(Kind::Response),
            3 => Some(Kind::Verdict),
            _ => None,
        }
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: Kind,
    pub(crate) fds: u32,
    pub(crate) len: u64,
}

impl Header {
    /// The 16 bytes of this header.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..2].copy_from_slice(&MAGIC);
        h[2] = self.kind as u8;
        h[4..8].copy_from_slice(&self.fds.to_le_bytes());
        h[8..16].copy_from_slice(&self.len.to_le_bytes());
        h
    }

    /// Parses and checks a header from untrusted bytes: the magic, the kind, the reserved
    /// byte, the descriptor count and the length against `max_len`.
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN], max_len: u64) -> Result<Header> {
        if bytes[0..2] != MAGIC {
            return Err(Error::BadFrame(format!(
                "bad magic {:02x}{:02x} (not a multiproc stream, or out of step)",
                bytes[0], bytes[1]
            )));
        }
        let kind = Kind::from_u8(bytes[2])
            .ok_or_else(|| Error::BadFrame(format!("unknown frame kind {}", bytes[2])))?;
        if bytes[3] != 0 {
            return Err(Error::BadFrame(format!(
                "reserved byte is {} instead of 0",
                bytes[3]
            )));
        }
        let mut f = [0u8; 4];
        f.copy_from_slice(&bytes[4..8]);
        let fds = u32::from_le_bytes(f);
        if fds > MAX_FDS {
            return Err(Error::BadFrame(format!(
                "announces {fds} file descriptors, more than the {MAX_FDS} one message can carry"
            )));
        }
        let mut l = [0u8; 8];
        l.copy_from_slice(&bytes[8..16]);
        let len = u64::from_le_bytes(l);
        if len > max_len {
            return Err(Error::TooLarge { len, max: max_len });
        }
        Ok(Header { kind, fds, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header {
            kind: Kind::Data,
            fds: 3,
            len: (1u64 << 40) + 5,
        };
        assert_eq!(Header::parse(&h.encode(), u64::MAX).unwrap(), h);
    }

    #[test]
    fn rejects() {
        let good = Header {
            kind: Kind::Hello,
            fds: 0,
            len: 10,
        }
        .encode();
        let mut bad = good;
        bad[0] = b'x';
        assert!(matches!(Header::parse(&bad, 100), Err(Error::BadFrame(_))));
        let mut bad = good;
        bad[2] = 9;
        assert!(matches!(Header::parse(&bad, 100), Err(Error::BadFrame(_))));
        let mut bad = good;
        bad[3] = 1;
        assert!(matches!(Header::parse(&bad, 100), Err(Error::BadFrame(_))));
        let mut bad = good;
        bad[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(Header::parse(&bad, 100), Err(Error::BadFrame(_))));
        assert!(matches!(
            Header::parse(&good, 9),
            Err(Error::TooLarge { len: 10, max: 9 })
        ));
    }
}
