//! Carrying a user's identity key to their new device, through the server but never readable by
//! it (`docs/protocol-v2.md`, "Adding a device").
//!
//! The new device makes a one-time X25519 key pair and shows its owner a *link code*: its device
//! id and the public key, with a checksum. The owner types or pastes the code on a device that has
//! the identity key, which seals the key's 32-byte seed to that public key with HPKE (base mode,
//! X25519 / HKDF-SHA256 / ChaCha20-Poly1305, `info` = [`identity_transfer_info`] of the user and the
//! new device, empty `aad`) and hands the sealed bytes to the server for the new device. The
//! server never sees the link code, so it can neither open the transfer nor make one of its own
//! that the new device would open; the new device also checks that the key it receives is the
//! one the account published.

use conclave_protocol::b64;
use conclave_protocol::identity::identity_transfer_info;
use hpke::rand_core::UnwrapErr;
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::MlsError;
use super::identity::IdentityKey;
use crate::crypto::CryptoError;
use crate::crypto::suite::{Aead, Kdf, Kem};

/// What every link code starts with (and its version).
pub const LINK_CODE_PREFIX: &str = "cnl1-";
/// The bytes of an encapsulated key.
const ENC_LEN: usize = 32;

/// What a new device shows its owner: its id and the public half of its one-time link key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkCode {
    pub device_id: Uuid,
    pub public_key: [u8; 32],
}

impl LinkCode {
    fn checksum(device_id: Uuid, public_key: &[u8; 32]) -> [u8; 2] {
        let digest = Sha256::new().chain_update(device_id.as_bytes()).chain_update(public_key).finalize();
        [digest[0], digest[1]]
    }

    /// `cnl1-` followed by base64url of `device_id || public_key || first two bytes of
    /// SHA-256(device_id || public_key)` (67 characters after the prefix).
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(50);
        bytes.extend_from_slice(self.device_id.as_bytes());
        bytes.extend_from_slice(&self.public_key);
        bytes.extend_from_slice(&Self::checksum(self.device_id, &self.public_key));
        format!("{LINK_CODE_PREFIX}{}", b64::encode(bytes))
    }

    /// Parses a code as typed (surrounding spaces are ignored); a typo fails the checksum.
    pub fn decode(text: &str) -> Result<Self, MlsError> {
        let body = text.trim().strip_prefix(LINK_CODE_PREFIX).ok_or(MlsError::MalformedLinkCode)?;
        let bytes = b64::decode(body).map_err(|_| MlsError::MalformedLinkCode)?;
        if bytes.len() != 50 {
            return Err(MlsError::MalformedLinkCode);
        }
        let device_id = Uuid::from_slice(&bytes[..16]).map_err(|_| MlsError::MalformedLinkCode)?;
        let public_key: [u8; 32] = bytes[16..48].try_into().map_err(|_| MlsError::MalformedLinkCode)?;
        if bytes[48..] != Self::checksum(device_id, &public_key) {
            return Err(MlsError::MalformedLinkCode);
        }
        Ok(Self { device_id, public_key })
    }
}

/// The new device's one-time link key (its 32-byte seed, `DeriveKeyPair` input).
pub struct LinkSecret(Zeroizing<[u8; 32]>);

impl LinkSecret {
    /// A fresh link key.
    pub fn generate() -> Result<Self, MlsError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| MlsError::Crypto(CryptoError::Randomness))?;
        Ok(Self(seed))
    }

    /// Rebuilds a link key from its seed (kept in the keystore while the transfer is pending).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(Zeroizing::new(*seed))
    }

    pub fn seed(&self) -> &[u8; 32] {
        &self.0
    }

    /// The code to show for `device_id`.
    pub fn code(&self, device_id: Uuid) -> LinkCode {
        let (_, public) = <Kem as hpke::Kem>::derive_keypair(self.0.as_slice());
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(&public.to_bytes());
        LinkCode { device_id, public_key }
    }

    /// Opens the identity key sealed for `device_id` of `user_id`.
    pub fn open(&self, user_id: Uuid, device_id: Uuid, sealed: &[u8]) -> Result<IdentityKey, MlsError> {
        if sealed.len() <= ENC_LEN {
            return Err(MlsError::TransferRejected);
        }
        let (enc, ciphertext) = sealed.split_at(ENC_LEN);
        let (secret, _) = <Kem as hpke::Kem>::derive_keypair(self.0.as_slice());
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| MlsError::TransferRejected)?;
        let seed = Zeroizing::new(
            hpke::single_shot_open::<Aead, Kdf, Kem>(
                &OpModeR::Base,
                &secret,
                &enc,
                &identity_transfer_info(user_id, device_id),
                ciphertext,
                b"",
            )
            .map_err(|_| MlsError::TransferRejected)?,
        );
        let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| MlsError::TransferRejected)?;
        Ok(IdentityKey::from_seed(seed))
    }
}

/// Seals `identity` for the device the code names (of `user_id`): `enc || ciphertext`.
pub fn seal_identity(identity: &IdentityKey, user_id: Uuid, code: &LinkCode) -> Result<Vec<u8>, MlsError> {
    let recipient =
        <Kem as hpke::Kem>::PublicKey::from_bytes(&code.public_key).map_err(|_| MlsError::MalformedLinkCode)?;
    let (enc, ciphertext) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &recipient,
        &identity_transfer_info(user_id, code.device_id),
        identity.seed().as_slice(),
        b"",
        &mut UnwrapErr(getrandom::SysRng),
    )
    .map_err(|_| MlsError::MalformedLinkCode)?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_sealed_to_a_link_code_opens_only_for_that_device_and_user() {
        let (user, device) = (Uuid::now_v7(), Uuid::now_v7());
        let identity = IdentityKey::generate().expect("identity");
        let link = LinkSecret::generate().expect("link");
        let code = LinkCode::decode(&link.code(device).encode()).expect("the code round-trips");
        assert_eq!(code, link.code(device));
        let sealed = seal_identity(&identity, user, &code).expect("seal");
        assert_eq!(sealed.len(), 32 + 32 + 16);
        assert_eq!(link.open(user, device, &sealed).expect("open").public(), identity.public());
        // Bound to the user and the device, and to this link key.
        assert_eq!(link.open(Uuid::now_v7(), device, &sealed).expect_err("refused"), MlsError::TransferRejected);
        assert_eq!(link.open(user, Uuid::now_v7(), &sealed).expect_err("refused"), MlsError::TransferRejected);
        let other = LinkSecret::generate().expect("other");
        assert_eq!(other.open(user, device, &sealed).expect_err("refused"), MlsError::TransferRejected);
        let mut tampered = sealed.clone();
        tampered[40] ^= 1;
        assert_eq!(link.open(user, device, &tampered).expect_err("refused"), MlsError::TransferRejected);
    }

    #[test]
    fn a_mistyped_link_code_is_refused() {
        let code = LinkSecret::generate().expect("link").code(Uuid::now_v7()).encode();
        assert!(code.starts_with(LINK_CODE_PREFIX) && code.len() == LINK_CODE_PREFIX.len() + 67, "{code}");
        let mut typo: Vec<char> = code.chars().collect();
        let i = LINK_CODE_PREFIX.len() + 20;
        typo[i] = if typo[i] == 'A' { 'B' } else { 'A' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(LinkCode::decode(&typo).expect_err("refused"), MlsError::MalformedLinkCode);
        assert_eq!(LinkCode::decode("hello").expect_err("refused"), MlsError::MalformedLinkCode);
        assert!(LinkCode::decode(&format!("  {code}\n")).is_ok());
    }
}
