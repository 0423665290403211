//! The clear-text framing of MLS messages (RFC 9420 section 6), read without any cryptography so
//! that the delivery service can refuse what is not the MLS message it claims to be: a commit of
//! another conversation's group or of another epoch, a key package of another suite, a blob.
//!
//! Only the fields in front of the encrypted or signed content are read: every `MLSMessage` starts
//! with `version` (uint16, `mls10` = 1) and `wire_format` (uint16); a `PrivateMessage` then has
//! `group_id<V>`, `epoch` (uint64) and `content_type` (uint8) in clear; a `PublicMessage`'s
//! `FramedContent` has `group_id<V>`, `epoch`, `sender`, `authenticated_data<V>`, `content_type`;
//! a `GroupInfo` starts with its `GroupContext` (`version`, `cipher_suite`, `group_id<V>`,
//! `epoch`); a `Welcome` and a `KeyPackage` name their `cipher_suite` first (after the key
//! package's `version`). `<V>` is a vector whose length is a variable-size integer (RFC 9420
//! section 2.1.2: the top two bits of the first byte give 1, 2 or 4 bytes).

use std::fmt;

mod removal;
pub use removal::{TreeLeaf, UnsignedRemove, external_remove, external_senders, leaf_with_key, leaves};

/// `mls10`.
pub const MLS_VERSION: u16 = 1;
/// MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519, the only suite protocol v2 uses.
pub const CIPHERSUITE: u16 = 0x0003;

/// `WireFormat` values.
pub mod wire_format {
    pub const PUBLIC_MESSAGE: u16 = 1;
    pub const PRIVATE_MESSAGE: u16 = 2;
    pub const WELCOME: u16 = 3;
    pub const GROUP_INFO: u16 = 4;
    pub const KEY_PACKAGE: u16 = 5;
}

/// `ContentType` values.
pub mod content_type {
    pub const APPLICATION: u8 = 1;
    pub const PROPOSAL: u8 = 2;
    pub const COMMIT: u8 = 3;
}

/// Why bytes are not the MLS message expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

/// What the clear-text header of a handshake or application message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    pub wire_format: u16,
    pub group_id: Vec<u8>,
    pub epoch: u64,
    pub content_type: u8,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A vector with a variable-size length (RFC 9420 section 2.1.2), minimum encoding only.
    fn vector(&mut self) -> Result<&'a [u8], WireError> {
        let first = self.u8()?;
        let len = match first >> 6 {
            0 => usize::from(first),
            1 => {
                let len = usize::from(first & 0x3f) << 8 | usize::from(self.u8()?);
                if len < 64 {
                    return Err(WireError("a vector length is not minimally encoded"));
                }
                len
            }
            2 => {
                let rest = self.take(3)?;
                let len = usize::from(first & 0x3f) << 24
                    | usize::from(rest[0]) << 16
                    | usize::from(rest[1]) << 8
                    | usize::from(rest[2]);
                if len < 16384 {
                    return Err(WireError("a vector length is not minimally encoded"));
                }
                len
            }
            _ => return Err(WireError("a vector length uses the reserved prefix")),
        };
        self.take(len)
    }
}

fn header(bytes: &[u8]) -> Result<(u16, Reader<'_>), WireError> {
    let mut reader = Reader(bytes);
    if reader.u16()? != MLS_VERSION {
        return Err(WireError("not an MLS 1.0 message"));
    }
    let wire_format = reader.u16()?;
    Ok((wire_format, reader))
}

/// Reads the framing of a `PublicMessage` or `PrivateMessage`.
pub fn framing(bytes: &[u8]) -> Result<Framing, WireError> {
    let (wire_format, mut reader) = header(bytes)?;
    let group_id = reader.vector()?.to_vec();
    let epoch = reader.u64()?;
    let content_type = match wire_format {
        wire_format::PRIVATE_MESSAGE => reader.u8()?,
        wire_format::PUBLIC_MESSAGE => {
            match reader.u8()? {
                // member, external: a 4-byte index
                1 | 2 => {
                    reader.u32()?;
                }
                // new_member_proposal, new_member_commit: nothing
                3 | 4 => {}
                _ => return Err(WireError("unknown sender type")),
            }
            reader.vector()?;
            reader.u8()?
        }
        _ => return Err(WireError("not a public or private message")),
    };
    if !(content_type::APPLICATION..=content_type::COMMIT).contains(&content_type) {
        return Err(WireError("unknown content type"));
    }
    Ok(Framing { wire_format, group_id, epoch, content_type })
}

/// Reads the group id and epoch of a `GroupInfo`'s group context, checking the suite.
pub fn group_info(bytes: &[u8]) -> Result<(Vec<u8>, u64), WireError> {
    let (wire_format, mut reader) = header(bytes)?;
    if wire_format != wire_format::GROUP_INFO {
        return Err(WireError("not a group info"));
    }
    if reader.u16()? != MLS_VERSION {
        return Err(WireError("the group context is not MLS 1.0"));
    }
    if reader.u16()? != CIPHERSUITE {
        return Err(WireError("another cipher suite"));
    }
    let group_id = reader.vector()?.to_vec();
    Ok((group_id, reader.u64()?))
}

/// Checks that bytes are a `Welcome` of protocol v2's suite.
pub fn welcome(bytes: &[u8]) -> Result<(), WireError> {
    let (wire_format, mut reader) = header(bytes)?;
    if wire_format != wire_format::WELCOME {
        return Err(WireError("not a welcome"));
    }
    if reader.u16()? != CIPHERSUITE {
        return Err(WireError("another cipher suite"));
    }
    Ok(())
}

/// Checks that bytes are a `KeyPackage` of protocol v2's suite.
pub fn key_package(bytes: &[u8]) -> Result<(), WireError> {
    let (wire_format, mut reader) = header(bytes)?;
    if wire_format != wire_format::KEY_PACKAGE {
        return Err(WireError("not a key package"));
    }
    if reader.u16()? != MLS_VERSION {
        return Err(WireError("the key package is not MLS 1.0"));
    }
    if reader.u16()? != CIPHERSUITE {
        return Err(WireError("another cipher suite"));
    }
    Ok(())
}

/// Writes `bytes` as a vector with a variable-size length (minimum encoding).
fn write_vector(out: &mut Vec<u8>, bytes: &[u8]) {
    match bytes.len() {
        n if n < 64 => out.push(n as u8),
        n if n < 16384 => out.extend_from_slice(&((n as u16) | 0x4000).to_be_bytes()),
        n => out.extend_from_slice(&((n as u32) | 0x8000_0000).to_be_bytes()),
    }
    out.extend_from_slice(bytes);
}

/// Test and tooling support: the clear-text prefix of each kind of message, followed by `body`
/// (which the parsers above never read). Not a valid MLS message beyond its framing.
pub mod fake {
    use super::*;

    fn vector(out: &mut Vec<u8>, bytes: &[u8]) {
        write_vector(out, bytes);
    }

    /// A `PrivateMessage` framing.
    pub fn private_message(group_id: &[u8], epoch: u64, content_type: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MLS_VERSION.to_be_bytes());
        out.extend_from_slice(&wire_format::PRIVATE_MESSAGE.to_be_bytes());
        vector(&mut out, group_id);
        out.extend_from_slice(&epoch.to_be_bytes());
        out.push(content_type);
        out.extend_from_slice(body);
        out
    }

    /// A `GroupInfo` framing.
    pub fn group_info(group_id: &[u8], epoch: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for value in [MLS_VERSION, wire_format::GROUP_INFO, MLS_VERSION, CIPHERSUITE] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        vector(&mut out, group_id);
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// A `Welcome` framing.
    pub fn welcome(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for value in [MLS_VERSION, wire_format::WELCOME, CIPHERSUITE] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    /// A `KeyPackage` framing.
    pub fn key_package(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for value in [MLS_VERSION, wire_format::KEY_PACKAGE, MLS_VERSION, CIPHERSUITE] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_framings_read_back() {
        let group = [7u8; 16];
        let commit = fake::private_message(&group, 9, content_type::COMMIT, b"sealed");
        assert_eq!(
            framing(&commit),
            Ok(Framing {
                wire_format: wire_format::PRIVATE_MESSAGE,
                group_id: group.to_vec(),
                epoch: 9,
                content_type: content_type::COMMIT
            })
        );
        assert_eq!(group_info(&fake::group_info(&group, 10, b"rest")), Ok((group.to_vec(), 10)));
        assert_eq!(welcome(&fake::welcome(b"secrets")), Ok(()));
        assert_eq!(key_package(&fake::key_package(b"leaf")), Ok(()));
        // Each is refused as another kind.
        assert!(framing(&fake::welcome(b"x")).is_err());
        assert!(group_info(&commit).is_err());
        assert!(welcome(&commit).is_err());
        assert!(key_package(&commit).is_err());
    }

    #[test]
    fn a_public_message_is_read_past_its_sender() {
        let mut bytes = vec![0, 1, 0, 1, 2, 0xaa, 0xbb];
        bytes.extend_from_slice(&5u64.to_be_bytes());
        bytes.extend_from_slice(&[4]); // new_member_commit: no index
        bytes.extend_from_slice(&[0]); // empty authenticated data
        bytes.push(content_type::COMMIT);
        let framed = framing(&bytes).expect("framing");
        assert_eq!((framed.group_id, framed.epoch, framed.content_type), (vec![0xaa, 0xbb], 5, 3));
    }

    #[test]
    fn blobs_truncations_and_odd_lengths_are_refused() {
        // empty, a blob, not minimally encoded, the reserved length prefix, a truncated vector
        for bad in
            [&[][..], &[1, 2, 3][..], &[0, 1, 0, 2, 0x40, 0x01, 0][..], &[0, 1, 0, 2, 0xc0][..], &[0, 1, 0, 2, 5][..]]
        {
            assert!(framing(bad).is_err(), "{bad:?}");
        }
        let long = fake::private_message(&[1; 100], 1, 1, b"");
        assert_eq!(framing(&long).map(|f| f.group_id.len()), Ok(100));
        let mut other_suite = fake::key_package(b"x");
        other_suite[7] = 1;
        assert_eq!(key_package(&other_suite), Err(WireError("another cipher suite")));
    }
}
