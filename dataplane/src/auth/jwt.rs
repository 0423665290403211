//! Access tokens: short-lived JWTs signed with Ed25519 (`EdDSA`), each naming its key in `kid`.
//!
//! Keys are loaded from a directory of PKCS#8 PEM files (see `Config::jwt_keys_dir`): all of
//! them verify, one signs. Rotation is "add the new key everywhere, switch the signer, remove
//! the old key after one access-token lifetime", which works across replicas without any
//! coordination. `/.well-known/jwks.json` publishes the public halves.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use uuid::Uuid;

pub const ISSUER: &str = "conclave";

/// What an access token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// The user.
    pub sub: Uuid,
    /// The session; revoking it (or its device) ends the token at once.
    pub sid: Uuid,
    /// The device the session is bound to.
    pub did: Uuid,
    pub iat: u64,
    pub exp: u64,
    /// The session is a bot's (opened with a bot token): every request is checked against the
    /// bot's scopes, including the sends that otherwise trust the signature alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
}

pub struct JwtKeys {
    signing_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    jwks: Value,
    /// Tokens whose signature already verified, by the SHA-256 of the whole token: a client
    /// presents the same access token on every request of its lifetime, and an Ed25519 check
    /// (the key's point decompressed again each time) cost more CPU per message send than
    /// anything else the data plane did. Only the identical string hits; expiry is checked on
    /// every hit; revocation never depended on this (the session is checked in PostgreSQL).
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

/// Verified tokens kept before the cache starts over (an entry is about 150 bytes; tokens live
/// minutes, so this holds every active client of a large replica).
const MAX_VERIFIED: usize = 100_000;

struct LoadedKey {
    kid: String,
    signing: SigningKey,
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 64 && kid.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl JwtKeys {
    /// Loads every `<kid>.pem` in `dir`; `signing_kid` (or the last kid by name) signs.
    pub fn from_dir(dir: &Path, signing_kid: Option<&str>) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        let entries = std::fs::read_dir(dir).with_context(|| format!("reading JWT keys from {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            let kid = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            if !valid_kid(&kid) {
                bail!("JWT key file {} has an invalid key id (letters, digits, - _ . only)", path.display());
            }
            let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            // The error from the PEM parser names no key material.
            let signing = SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{} is not a PKCS#8 Ed25519 private key: {e}", path.display()))?;
            keys.push(LoadedKey { kid, signing });
        }
        if keys.is_empty() {
            bail!("no <kid>.pem Ed25519 keys in {}", dir.display());
        }
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        let signing_kid = match signing_kid {
            Some(kid) if keys.iter().any(|k| k.kid == kid) => kid.to_owned(),
            Some(kid) => bail!("the signing key id {kid:?} has no {kid}.pem in {}", dir.display()),
            None => keys.last().map(|k| k.kid.clone()).unwrap_or_default(),
        };
        Self::from_keys(keys, &signing_kid)
    }

    /// A single random key: for one replica in development and for tests.
    pub fn ephemeral() -> anyhow::Result<Self> {
        let signing = SigningKey::from_bytes(&crate::tokens::random_bytes::<32>());
        let kid = format!("ephemeral-{}", &hex_prefix(&signing.verifying_key().to_bytes()));
        Self::from_keys(vec![LoadedKey { kid: kid.clone(), signing }], &kid)
    }

    fn from_keys(keys: Vec<LoadedKey>, signing_kid: &str) -> anyhow::Result<Self> {
        let mut decoding = HashMap::new();
        let mut jwks = Vec::new();
        let mut encoding = None;
        for key in &keys {
            let x = URL_SAFE_NO_PAD.encode(key.signing.verifying_key().to_bytes());
            decoding.insert(key.kid.clone(), DecodingKey::from_ed_components(&x)?);
            jwks.push(json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": key.kid, "alg": "EdDSA", "use": "sig" }));
            if key.kid == signing_kid {
                let pem = key
                    .signing
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| anyhow::anyhow!("encoding the signing key: {e}"))?;
                encoding = Some(EncodingKey::from_ed_pem(pem.as_bytes())?);
            }
        }
        let encoding = encoding.context("the signing key is not among the loaded keys")?;
        Ok(Self {
            signing_kid: signing_kid.to_owned(),
            encoding,
            decoding,
            jwks: json!({ "keys": jwks }),
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    pub fn issue(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Checks signature (by `kid`), algorithm, issuer and expiry. `None` for any invalid token:
    /// callers answer every such case with the same 401.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Some(crate::clock::unix_seconds()).filter(|now| *now > 0)?;
        let mut verified = self.verified.lock().ok()?;
        if let Some(claims) = verified.get(&digest) {
            return (claims.exp.saturating_add(LEEWAY) > now).then(|| claims.clone());
        }
        drop(verified);
        let claims = self.verify_signature(token)?;
        verified = self.verified.lock().ok()?;
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, c| c.exp.saturating_add(LEEWAY) > now);
            // Mostly live tokens: start over rather than scan again a few misses later.
            if verified.len() >= MAX_VERIFIED / 4 * 3 {
                verified.clear();
            }
        }
        verified.insert(digest, claims.clone());
        Some(claims)
    }

    fn verify_signature(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA {
            return None;
        }
        let key = self.decoding.get(header.kid.as_deref()?)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY;
        jsonwebtoken::decode::<Claims>(token, key, &validation).ok().map(|data| data.claims)
    }
}

/// Seconds of clock difference tolerated on `exp`.
const LEEWAY: u64 = 5;

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Writes a new PKCS#8 PEM Ed25519 key named `<kid>.pem` into `dir` (tests and local setups; the
/// operator generates keys into a Secret in a cluster).
pub fn generate_key_file(dir: &Path, kid: &str) -> anyhow::Result<()> {
    let signing = SigningKey::from_bytes(&crate::tokens::random_bytes::<32>());
    let pem = signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("encoding key: {e}"))?;
    std::fs::write(dir.join(format!("{kid}.pem")), pem.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_offset: i64) -> Claims {
        let now = crate::clock::unix_seconds();
        Claims {
            iss: ISSUER.to_owned(),
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            did: Uuid::now_v7(),
            iat: now,
            exp: now.saturating_add_signed(exp_offset),
            bot: false,
        }
    }

    #[test]
    fn a_token_verifies_with_its_key_and_names_it() {
        let keys = JwtKeys::ephemeral().expect("keys");
        let c = claims(60);
        let token = keys.issue(&c).expect("issue");
        assert_eq!(keys.verify(&token), Some(c));
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(keys.signing_kid()));
        assert_eq!(keys.jwks()["keys"][0]["kid"], keys.signing_kid());
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_and_only_the_same_string_hits() {
        let keys = JwtKeys::ephemeral().expect("keys");
        let c = claims(60);
        let token = keys.issue(&c).expect("issue");
        assert_eq!(keys.verify(&token), Some(c.clone()));
        assert_eq!(keys.verify(&token), Some(c), "from the cache");
        let mut tampered = token.clone();
        tampered.push('A');
        assert_eq!(keys.verify(&tampered), None, "another string is verified on its own");
        // A remembered token that has since expired is refused.
        let short = claims(-(LEEWAY as i64) + 1);
        let token = keys.issue(&short).expect("issue");
        assert!(keys.verify(&token).is_some());
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        keys.verified.lock().expect("lock").get_mut(&digest).expect("remembered").exp -= 10;
        assert_eq!(keys.verify(&token), None, "expired while remembered");
    }

    #[test]
    fn expired_foreign_and_tampered_tokens_are_refused() {
        let keys = JwtKeys::ephemeral().expect("keys");
        assert_eq!(keys.verify(&keys.issue(&claims(-120)).expect("issue")), None, "expired");
        let other = JwtKeys::ephemeral().expect("keys");
        assert_eq!(keys.verify(&other.issue(&claims(60)).expect("issue")), None, "signed by an unknown key");
        let token = keys.issue(&claims(60)).expect("issue");
        let mut tampered = token.clone();
        // Change one character of the signature to a different one (checking the character that
        // is replaced, not another, so the token always changes).
        let at = token.len() - 5;
        let replacement = if &token[at..at + 1] == "A" { "B" } else { "A" };
        tampered.replace_range(at..at + 1, replacement);
        assert_ne!(tampered, token);
        assert_eq!(keys.verify(&tampered), None, "tampered");
        assert_eq!(keys.verify("not.a.jwt"), None);
    }

    #[test]
    fn a_rotation_keeps_old_tokens_valid_while_both_keys_are_loaded() {
        let dir = std::env::temp_dir().join(format!("conclave-jwt-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        generate_key_file(&dir, "2026-01").expect("key");
        let before = JwtKeys::from_dir(&dir, None).expect("load");
        let old_token = before.issue(&claims(60)).expect("issue");
        generate_key_file(&dir, "2026-02").expect("key");
        let after = JwtKeys::from_dir(&dir, None).expect("load");
        assert_eq!(after.signing_kid(), "2026-02", "the newest key signs");
        assert!(after.verify(&old_token).is_some(), "tokens of the previous key still verify");
        assert!(
            before.verify(&after.issue(&claims(60)).expect("issue")).is_none(),
            "a replica without the new key refuses it"
        );
        let pinned = JwtKeys::from_dir(&dir, Some("2026-01")).expect("load");
        assert_eq!(pinned.signing_kid(), "2026-01");
        assert!(JwtKeys::from_dir(&dir, Some("missing")).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
