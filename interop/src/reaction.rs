//! Reactions (`docs/protocol-v2.md` "Reactions"): sealed under the epoch's reaction key, which is
//! the MLS exporter with label [`LABEL`], and tagged so the server can de-duplicate them. Written
//! from the document: no SDK code.

use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _, Nonce};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use uuid::Uuid;

/// The exporter label of an epoch's reaction key (24 ASCII bytes), with empty context, 32 bytes.
pub const LABEL: &[u8] = b"conclave/v2 reaction key";

/// `"conclave/v1/reaction" || 0x00 || conversation_id || u32be(epoch) || message_id || reactor_user_id`.
pub fn aad(conversation_id: Uuid, epoch: u32, message_id: Uuid, reactor_user_id: Uuid) -> Vec<u8> {
    let mut aad = b"conclave/v1/reaction\0".to_vec();
    aad.extend_from_slice(conversation_id.as_bytes());
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.extend_from_slice(message_id.as_bytes());
    aad.extend_from_slice(reactor_user_id.as_bytes());
    aad
}

/// `tag_key = HKDF-SHA256(salt none, IKM = reaction_key, info = "conclave/v1/reaction-tag", 32)`.
pub fn tag_key(reaction_key: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, reaction_key)
        .expand(b"conclave/v1/reaction-tag", &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// `value_tag = HMAC-SHA256(tag_key, message_id || reactor_user_id || value)`.
pub fn value_tag(reaction_key: &[u8; 32], message_id: Uuid, reactor_user_id: Uuid, value: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256>>::new_from_slice(&tag_key(reaction_key)).expect("HMAC takes keys of any length");
    mac.update(message_id.as_bytes());
    mac.update(reactor_user_id.as_bytes());
    mac.update(value.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Where a reaction is: what its `aad` binds.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub conversation_id: Uuid,
    pub epoch: u32,
    pub message_id: Uuid,
    pub reactor_user_id: Uuid,
}

/// A sealed reaction: what `AddReaction` carries besides the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
    pub value_tag: [u8; 32],
}

/// Why a reaction does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Decrypt,
    NotUtf8,
    ValueTagMismatch,
}

/// Seals `value` with the given `nonce` (fresh random bytes for each reaction).
pub fn seal_with_nonce(reaction_key: &[u8; 32], place: Place, value: &str, nonce: [u8; 12]) -> Sealed {
    let cipher = ChaCha20Poly1305::new(reaction_key.into());
    let aad = aad(place.conversation_id, place.epoch, place.message_id, place.reactor_user_id);
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: value.as_bytes(), aad: &aad })
        .expect("ChaCha20-Poly1305 encrypts any short value");
    Sealed { nonce, ciphertext, value_tag: value_tag(reaction_key, place.message_id, place.reactor_user_id, value) }
}

/// Seals `value` under a fresh random nonce.
pub fn seal(reaction_key: &[u8; 32], place: Place, value: &str) -> Sealed {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).expect("the operating system's random numbers");
    seal_with_nonce(reaction_key, place, value, nonce)
}

/// Opens a reaction and checks its tag against the value read.
pub fn open(reaction_key: &[u8; 32], place: Place, sealed: &Sealed) -> Result<String, OpenError> {
    let cipher = ChaCha20Poly1305::new(reaction_key.into());
    let aad = aad(place.conversation_id, place.epoch, place.message_id, place.reactor_user_id);
    let value = cipher
        .decrypt(&Nonce::from(sealed.nonce), Payload { msg: &sealed.ciphertext, aad: &aad })
        .map_err(|_| OpenError::Decrypt)?;
    let value = String::from_utf8(value).map_err(|_| OpenError::NotUtf8)?;
    if value_tag(reaction_key, place.message_id, place.reactor_user_id, &value) != sealed.value_tag {
        return Err(OpenError::ValueTagMismatch);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::unhex as hex;

    /// `docs/test-vectors/protocol-v2-reaction.json`, from each `reaction_key` on.
    #[test]
    fn the_committed_reaction_vectors_are_what_this_client_seals_and_opens() {
        let vectors = crate::vectors::load("protocol-v2-reaction.json");
        assert_eq!(vectors["exporter_label"].as_str().expect("label").as_bytes(), LABEL);
        let reactions = vectors["reactions"].as_array().expect("reactions");
        assert!(!reactions.is_empty());
        for r in reactions {
            let text = |k: &str| r[k].as_str().expect(k).to_owned();
            let uuid = |k: &str| text(k).parse::<Uuid>().expect(k);
            let key: [u8; 32] = hex(&text("reaction_key")).try_into().expect("key");
            let place = Place {
                conversation_id: uuid("conversation_id"),
                epoch: u32::try_from(r["epoch"].as_u64().expect("epoch")).expect("u32"),
                message_id: uuid("message_id"),
                reactor_user_id: uuid("reactor_user_id"),
            };
            assert_eq!(
                aad(place.conversation_id, place.epoch, place.message_id, place.reactor_user_id),
                hex(&text("aad"))
            );
            assert_eq!(tag_key(&key).to_vec(), hex(&text("tag_key")));
            let nonce: [u8; 12] = hex(&text("nonce")).try_into().expect("nonce");
            let sealed = seal_with_nonce(&key, place, &text("value"), nonce);
            assert_eq!(sealed.ciphertext, hex(&text("ciphertext")));
            assert_eq!(sealed.value_tag.to_vec(), hex(&text("value_tag")));
            assert_eq!(open(&key, place, &sealed), Ok(text("value")));
            let moved = Place { epoch: place.epoch + 1, ..place };
            assert_eq!(open(&key, moved, &sealed), Err(OpenError::Decrypt));
        }
    }
}
