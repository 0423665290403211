//! The user's identity key on this device (protocol v2): made on the first device, carried to
//! later ones by a device that has it ([`crate::mls::transfer`]), published with each device's
//! credential, and used to show safety numbers.

use conclave_protocol::identity::{Identity, PublishIdentity, SealedIdentity};
use uuid::Uuid;

use super::Messenger;
use crate::api::{Error, Result};
use crate::mls::safety;
use crate::mls::transfer::{LinkCode, LinkSecret, seal_identity};
use crate::mls::{FirstContact, IdentityKey, IdentityPublicKey, MlsError, Trust};

/// Where this device stands with its user's identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityState {
    /// This device holds the account's identity key, and its credential is published.
    Ready {
        /// The account's identity public key.
        public_key: IdentityPublicKey,
        /// The key was made just now (this is the account's first device, or it was replaced).
        created: bool,
    },
    /// The account's identity key lives on another device: show this link code to its owner,
    /// who enters it there (`conclave devices link <code>`).
    AwaitingLink {
        /// The link code (`cnl1-…`).
        code: String,
    },
}

/// A safety-number check against a fellow member's published identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyCheck {
    /// The other user.
    pub user_id: Uuid,
    /// 60 digits, the same on both sides when each holds the other's real key.
    pub safety_number: String,
    /// What this client knew of the key: first seen now, pinned, or compared.
    pub trust: Trust,
}

impl Messenger {
    /// Makes sure this device has the account's identity key and has published its credential:
    /// creates the key on the account's first device, takes a transfer another device sealed for
    /// this one, or (when neither) returns the link code to enter on a device that has the key.
    pub async fn ensure_identity(&self) -> Result<IdentityState> {
        let state = self.settle_identity().await?;
        if let IdentityState::Ready { .. } = state {
            self.top_up_key_packages().await?;
        }
        Ok(state)
    }

    async fn settle_identity(&self) -> Result<IdentityState> {
        let client = self.client();
        let held = self.with_keystore(|k| k.identity().map(|i| IdentityKey::from_seed(&i.seed())));
        if let Some(identity) = held {
            let published = self.publish(&identity, false).await?;
            return Ok(IdentityState::Ready { public_key: IdentityPublicKey(published.public_key), created: false });
        }
        let account = match client.own_identity().await {
            Ok(identity) => Some(identity),
            Err(err) if err.is_api("not_found") => None,
            Err(err) => return Err(err),
        };
        let Some(account) = account else {
            let identity = IdentityKey::generate()?;
            let published = self.publish(&identity, false).await?;
            self.keep_identity(identity)?;
            return Ok(IdentityState::Ready { public_key: IdentityPublicKey(published.public_key), created: true });
        };
        if let Some(state) = self.receive_identity(&account).await? {
            return Ok(state);
        }
        let code = self.with_keystore(|keystore| -> Result<String> {
            if keystore.link().is_none() {
                keystore.set_link(LinkSecret::generate()?);
                keystore.save()?;
            }
            Ok(keystore.link().map(|link| link.code(self.device_id()).encode()).unwrap_or_default())
        })?;
        Ok(IdentityState::AwaitingLink { code })
    }

    /// Takes the identity key another device sealed for this one, if any: it must open with this
    /// device's link key and be the key the account publishes.
    async fn receive_identity(&self, account: &Identity) -> Result<Option<IdentityState>> {
        let Some(link) = self.with_keystore(|k| k.link().map(|l| LinkSecret::from_seed(l.seed()))) else {
            return Ok(None);
        };
        let transfer = match self.client().take_identity_transfer().await {
            Ok(transfer) => transfer,
            Err(err) if err.is_api("not_found") => return Ok(None),
            Err(err) => return Err(err),
        };
        let identity = link.open(self.user_id(), self.device_id(), &transfer.sealed)?;
        if identity.public().0 != account.public_key {
            return Err(MlsError::TransferRejected.into());
        }
        self.publish(&identity, false).await?;
        self.keep_identity(identity)?;
        Ok(Some(IdentityState::Ready { public_key: IdentityPublicKey(account.public_key), created: false }))
    }

    /// Starts a new identity for an account that lost every device holding the old one. Everyone
    /// who pinned the old key is warned that it changed.
    pub async fn replace_identity(&self) -> Result<IdentityPublicKey> {
        let identity = IdentityKey::generate()?;
        let published = self.publish(&identity, true).await?;
        self.keep_identity(identity)?;
        self.reset_mls();
        self.top_up_key_packages().await?;
        Ok(IdentityPublicKey(published.public_key))
    }

    /// Seals this device's identity key for the new device whose link code its owner entered.
    /// Returns the new device's id.
    pub async fn link_device(&self, code: &str) -> Result<Uuid> {
        let code = LinkCode::decode(code)?;
        let devices = self.client().devices().await?;
        if !devices.iter().any(|d| d.id == code.device_id && d.revoked_at.is_none() && !d.current) {
            return Err(Error::Protocol(format!(
                "device {} is not another active device of this account (see `conclave devices`)",
                code.device_id
            )));
        }
        let sealed = self.with_keystore(|k| -> Result<Vec<u8>> {
            let identity = k
                .identity()
                .ok_or_else(|| Error::Protocol("this device does not have the account's identity key either".into()))?;
            Ok(seal_identity(identity, self.user_id(), &code)?)
        })?;
        self.client().send_identity_transfer(code.device_id, &SealedIdentity { sealed }).await?;
        Ok(code.device_id)
    }

    /// Whom this device adds and sends to: anyone whose identity key checks out (trust on first
    /// use, the default), or only users whose safety number was confirmed (see
    /// [`crate::mls::trust`]). Kept in the keystore.
    pub fn set_first_contact(&self, policy: FirstContact) -> Result<()> {
        self.with_keystore(|k| {
            k.trust_mut().set_first_contact(policy);
            k.save()
        })?;
        Ok(())
    }

    pub fn first_contact(&self) -> FirstContact {
        self.with_keystore(|k| k.trust().first_contact())
    }

    /// The safety number with a fellow member of `org`, from the key the server lists for them,
    /// checked against (and on first sight pinned in) this client's trust store. A key that
    /// differs from the pinned one is [`MlsError::IdentityChanged`].
    pub async fn safety_check(&self, org: Uuid, user_id: Uuid) -> Result<SafetyCheck> {
        let theirs = self.member_key(org, user_id).await?;
        self.check_pinned(user_id, &theirs, |trust, key| trust.check(user_id, key))
    }

    /// Records that the safety number with `user_id` was compared and matched (for the key the
    /// server lists now, which must be the pinned one).
    pub async fn mark_verified(&self, org: Uuid, user_id: Uuid) -> Result<SafetyCheck> {
        let theirs = self.member_key(org, user_id).await?;
        self.check_pinned(user_id, &theirs, |trust, key| {
            trust.check(user_id, key)?;
            trust.mark_verified(user_id, key)?;
            Ok(Trust::Verified)
        })
    }

    /// Accepts a changed identity key for `user_id` after its owner was warned (unverified again).
    pub async fn accept_identity_change(&self, org: Uuid, user_id: Uuid) -> Result<SafetyCheck> {
        let theirs = self.member_key(org, user_id).await?;
        self.check_pinned(user_id, &theirs, |trust, key| {
            trust.accept_change(user_id, key);
            Ok(Trust::Unverified)
        })
    }

    async fn member_key(&self, org: Uuid, user_id: Uuid) -> Result<IdentityPublicKey> {
        Ok(IdentityPublicKey(self.client().member_identity(org, user_id).await?.public_key))
    }

    /// Applies `change` to the trust store (saved) and computes the safety number with `theirs`.
    fn check_pinned(
        &self,
        user_id: Uuid,
        theirs: &IdentityPublicKey,
        change: impl FnOnce(&mut crate::mls::TrustStore, &IdentityPublicKey) -> Result<Trust, MlsError>,
    ) -> Result<SafetyCheck> {
        self.with_keystore(|k| {
            let ours = k
                .identity()
                .map(IdentityKey::public)
                .ok_or_else(|| Error::Protocol("this device does not have the account's identity key yet".into()))?;
            let trust = change(k.trust_mut(), theirs)?;
            k.save()?;
            Ok(SafetyCheck {
                user_id,
                safety_number: safety::safety_number((self.user_id(), &ours), (user_id, theirs)),
                trust,
            })
        })
    }

    async fn publish(&self, identity: &IdentityKey, replace: bool) -> Result<Identity> {
        let leaf = self.with_keystore(|k| k.device().public());
        let credential = identity.certify(self.user_id(), self.device_id(), &leaf).encode();
        let body = PublishIdentity { public_key: identity.public().0, credential, replace };
        self.client().publish_identity(&body).await
    }

    fn keep_identity(&self, identity: IdentityKey) -> Result<()> {
        self.with_keystore(|k| {
            k.set_identity(identity);
            Ok(k.save()?)
        })
    }
}
