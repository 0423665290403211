//! What the delivery service itself writes into a group: a `Remove` proposal as the group's
//! external sender (RFC 9420 sections 6 and 12.1.3), for a removed member's devices or a revoked
//! device, and the lookup it needs first: which leaf of the group's ratchet tree is that device.
//!
//! Still no cryptography here: [`external_remove`] returns the exact bytes to sign
//! ([`UnsignedRemove::to_sign`]: the `SignContent` of RFC 9420 section 5.1.2 with the label
//! `"FramedContentTBS"`), and the caller signs them with its Ed25519 removal key.
//!
//! ```text
//! MLSMessage      = version(1) wire_format(public_message = 1) PublicMessage
//! PublicMessage   = FramedContent FramedContentAuthData          (no membership tag: external)
//! FramedContent   = group_id<V> epoch(u64) sender(external = 2, sender_index u32)
//!                   authenticated_data<V> (empty) content_type(proposal = 2)
//!                   Proposal(remove = 3, removed leaf index u32)
//! FramedContentAuthData = signature<V>                           (a proposal has no confirmation tag)
//! FramedContentTBS = version wire_format FramedContent           (no group context: external)
//! SignContent     = label<V> = "MLS 1.0 FramedContentTBS", content<V> = FramedContentTBS
//! ```

use super::{MLS_VERSION, Reader, WireError, content_type, header, wire_format, write_vector};

/// `SenderType::external`.
const EXTERNAL_SENDER: u8 = 2;
/// `ProposalType::remove`.
const REMOVE: u16 = 3;
/// `ExtensionType::ratchet_tree`.
const RATCHET_TREE: u16 = 2;
/// `ExtensionType::external_senders`.
const EXTERNAL_SENDERS: u16 = 5;
/// The label every MLS signature of a framed message is made under.
const TBS_LABEL: &[u8] = b"MLS 1.0 FramedContentTBS";

/// A `Remove` proposal written and waiting for its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedRemove {
    /// `FramedContent`.
    content: Vec<u8>,
    /// `SignContent` over `FramedContentTBS`.
    to_sign: Vec<u8>,
}

/// The proposal, made by external sender `sender_index` (its place in the group's
/// `external_senders` extension), that removes leaf `removed` of group `group_id` in `epoch`.
pub fn external_remove(group_id: &[u8], epoch: u64, sender_index: u32, removed: u32) -> UnsignedRemove {
    let mut content = Vec::new();
    write_vector(&mut content, group_id);
    content.extend_from_slice(&epoch.to_be_bytes());
    content.push(EXTERNAL_SENDER);
    content.extend_from_slice(&sender_index.to_be_bytes());
    write_vector(&mut content, &[]);
    content.push(content_type::PROPOSAL);
    content.extend_from_slice(&REMOVE.to_be_bytes());
    content.extend_from_slice(&removed.to_be_bytes());
    let mut tbs = Vec::new();
    tbs.extend_from_slice(&MLS_VERSION.to_be_bytes());
    tbs.extend_from_slice(&wire_format::PUBLIC_MESSAGE.to_be_bytes());
    tbs.extend_from_slice(&content);
    let mut to_sign = Vec::new();
    write_vector(&mut to_sign, TBS_LABEL);
    write_vector(&mut to_sign, &tbs);
    UnsignedRemove { content, to_sign }
}

impl UnsignedRemove {
    /// What the removal key signs (Ed25519 over these bytes).
    pub fn to_sign(&self) -> &[u8] {
        &self.to_sign
    }

    /// The `MLSMessage` to deliver, with its `signature`.
    pub fn signed(self, signature: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.content.len() + 2 + signature.len());
        out.extend_from_slice(&MLS_VERSION.to_be_bytes());
        out.extend_from_slice(&wire_format::PUBLIC_MESSAGE.to_be_bytes());
        out.extend_from_slice(&self.content);
        write_vector(&mut out, signature);
        out
    }
}

/// The index of the leaf whose signature key is `signature_key` in the ratchet tree a
/// `GroupInfo` carries (its `ratchet_tree` extension); `None` when no leaf has that key. Reads
/// the tree's structure only: nothing in it is verified (the members verify what they process).
pub fn leaf_with_key(group_info: &[u8], signature_key: &[u8]) -> Result<Option<u32>, WireError> {
    Ok(leaves(group_info)?.into_iter().find(|leaf| leaf.signature_key == signature_key).map(|leaf| leaf.index))
}

/// One leaf of a group's ratchet tree: its index and its signature key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLeaf<'a> {
    pub index: u32,
    pub signature_key: &'a [u8],
}

/// The occupied leaves of the ratchet tree a `GroupInfo` carries, in index order.
pub fn leaves(group_info: &[u8]) -> Result<Vec<TreeLeaf<'_>>, WireError> {
    let parts = GroupInfoParts::read(group_info)?;
    let mut extensions = Reader(parts.extensions);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vector()?;
        if kind == RATCHET_TREE {
            let mut data = Reader(data);
            let tree = data.vector()?;
            return tree_leaves(Reader(tree));
        }
    }
    Err(WireError("the group info carries no ratchet tree"))
}

/// The signature keys of the group's external senders (its group context's `external_senders`
/// extension, RFC 9420 section 12.1.8.1), in order: a proposal by external sender `i` is signed
/// with the `i`-th. Empty when the group has none.
pub fn external_senders(group_info: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let parts = GroupInfoParts::read(group_info)?;
    let mut extensions = Reader(parts.context_extensions);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vector()?;
        if kind == EXTERNAL_SENDERS {
            let mut data = Reader(data);
            let mut senders = Reader(data.vector()?);
            let mut keys = Vec::new();
            while !senders.0.is_empty() {
                keys.push(senders.vector()?);
                skip_credential(&mut senders)?;
            }
            return Ok(keys);
        }
    }
    Ok(Vec::new())
}

/// The two extension lists of a `GroupInfo`: its group context's, and its own.
struct GroupInfoParts<'a> {
    context_extensions: &'a [u8],
    extensions: &'a [u8],
}

impl<'a> GroupInfoParts<'a> {
    fn read(group_info: &'a [u8]) -> Result<Self, WireError> {
        let (format, mut reader) = header(group_info)?;
        if format != wire_format::GROUP_INFO {
            return Err(WireError("not a group info"));
        }
        // GroupContext: version, cipher_suite, group_id, epoch, tree_hash,
        // confirmed_transcript_hash, extensions.
        reader.u16()?;
        reader.u16()?;
        reader.vector()?;
        reader.u64()?;
        reader.vector()?;
        reader.vector()?;
        let context_extensions = reader.vector()?;
        let extensions = reader.vector()?;
        Ok(Self { context_extensions, extensions })
    }
}

fn tree_leaves(mut nodes: Reader<'_>) -> Result<Vec<TreeLeaf<'_>>, WireError> {
    let mut index: u32 = 0;
    let mut found = Vec::new();
    while !nodes.0.is_empty() {
        match nodes.u8()? {
            0 => {}
            1 => match nodes.u8()? {
                1 => {
                    // Leaves sit at the even node indices.
                    found.push(TreeLeaf { index: index / 2, signature_key: leaf_key(&mut nodes)? });
                }
                2 => {
                    // ParentNode: encryption_key, parent_hash, unmerged_leaves.
                    nodes.vector()?;
                    nodes.vector()?;
                    nodes.vector()?;
                }
                _ => return Err(WireError("unknown node type")),
            },
            _ => return Err(WireError("an optional node is neither present nor absent")),
        }
        index = index.checked_add(1).ok_or(WireError("too many nodes"))?;
    }
    Ok(found)
}

/// Skips a `Credential`: basic (identity) or x509 (certificates), each one vector.
fn skip_credential(reader: &mut Reader<'_>) -> Result<(), WireError> {
    match reader.u16()? {
        1 | 2 => {
            reader.vector()?;
            Ok(())
        }
        _ => Err(WireError("unknown credential type")),
    }
}

/// Reads a `LeafNode`, returning its signature key.
fn leaf_key<'a>(nodes: &mut Reader<'a>) -> Result<&'a [u8], WireError> {
    nodes.vector()?; // encryption_key
    let key = nodes.vector()?;
    skip_credential(nodes)?;
    // Capabilities: versions, cipher_suites, extensions, proposals, credentials.
    for _ in 0..5 {
        nodes.vector()?;
    }
    match nodes.u8()? {
        // key_package: lifetime (not_before, not_after)
        1 => {
            nodes.u64()?;
            nodes.u64()?;
        }
        // update: nothing
        2 => {}
        // commit: parent_hash
        3 => {
            nodes.vector()?;
        }
        _ => return Err(WireError("unknown leaf node source")),
    }
    nodes.vector()?; // extensions
    nodes.vector()?; // signature
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remove_proposal_is_laid_out_as_the_rfc_says() {
        let unsigned = external_remove(&[0xab; 16], 7, 0, 3);
        let mut content = vec![16];
        content.extend_from_slice(&[0xab; 16]);
        content.extend_from_slice(&7u64.to_be_bytes());
        content.extend_from_slice(&[2, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3]);
        let mut tbs = vec![0, 1, 0, 1];
        tbs.extend_from_slice(&content);
        let mut to_sign = vec![24];
        to_sign.extend_from_slice(b"MLS 1.0 FramedContentTBS");
        to_sign.push(u8::try_from(tbs.len()).expect("short"));
        to_sign.extend_from_slice(&tbs);
        assert_eq!(unsigned.to_sign(), &to_sign[..]);
        let message = unsigned.signed(&[9; 64]);
        let mut expected = vec![0, 1, 0, 1];
        expected.extend_from_slice(&content);
        expected.extend_from_slice(&[0x40, 64]);
        expected.extend_from_slice(&[9; 64]);
        assert_eq!(message, expected);
        let framed = super::super::framing(&message).expect("framing");
        assert_eq!((framed.epoch, framed.content_type), (7, content_type::PROPOSAL));
    }

    #[test]
    fn a_tree_that_is_not_a_tree_is_refused() {
        assert!(leaf_with_key(&super::super::fake::private_message(&[1; 16], 1, 1, b""), b"k").is_err());
        let no_extensions = super::super::fake::group_info(&[1; 16], 1, &[0, 0, 0, 0]);
        assert_eq!(leaf_with_key(&no_extensions, b"k"), Err(WireError("the group info carries no ratchet tree")));
    }
}
