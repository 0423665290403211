//! The independent client: one device, signed in over HTTP, whose MLS side is AWS's mls-rs with
//! its RustCrypto provider, and whose Conclave layers (credential, content, reactions) are this
//! crate's, written from `docs/protocol.md` and `docs/protocol-v2.md`.

use anyhow::{Context as _, Result, bail, ensure};
use conclave_protocol::api::{Message, SendMessage};
use conclave_protocol::auth::LoginRequest;
use conclave_protocol::devices::{NewDevice, Platform};
use conclave_protocol::handshake::{MlsBytes, StoredCommit, UploadCommit};
use conclave_protocol::identity::PublishIdentity;
use conclave_protocol::keypackages::{KeyPackageBytes, KeyPackageStock, UploadKeyPackages};
use conclave_protocol::rich::{AddReaction, Reaction};
use ed25519_dalek::{Signer as _, SigningKey};
use mls_rs::client_builder::{BaseConfig, WithCryptoProvider, WithIdentityProvider, WithMlsRules};
use mls_rs::extension::built_in::{ExternalSendersExt, RatchetTreeExt};
use mls_rs::group::proposal::Proposal;
use mls_rs::group::{
    CommitEffect, CommitMessageDescription, ProposalMessageDescription, ProposalSender, ReceivedMessage,
};
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::BasicCredential;
use mls_rs::mls_rules::{CommitOptions, DefaultMlsRules, EncryptionOptions};
use mls_rs::{CipherSuite, Client, ExtensionList, Group, MlsMessage, WireFormat};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;
use uuid::Uuid;

use crate::chain::{Chain, Roster};
use crate::content::{self, Content};
use crate::credential::{DeviceCredential, device_key_input};
use crate::http::{Api, At};
use crate::reaction::{self, Place};

/// `MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519`.
pub const SUITE: CipherSuite = CipherSuite::CURVE25519_CHACHA;

/// The mls-rs configuration: RustCrypto, the identity chain, and the rules below.
pub type Config =
    WithMlsRules<DefaultMlsRules, WithIdentityProvider<Chain, WithCryptoProvider<RustCryptoProvider, BaseConfig>>>;

/// A conversation's group as mls-rs keeps it.
pub type MlsGroup = Group<Config>;

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's random numbers");
    seed
}

/// An application message this device decrypted, with the leaf MLS authenticated as its sender.
#[derive(Debug)]
pub struct Received {
    pub message_id: Uuid,
    pub epoch: u64,
    pub sender: DeviceCredential,
    pub plaintext: Vec<u8>,
    pub content: Result<Content, content::Malformed>,
}

/// One stored commit this device processed: the delivery service's proposals it includes by
/// reference (each checked to be a `Remove` by the group's external sender, the delivery
/// service), then the commit.
#[derive(Debug)]
pub struct Processed {
    /// The epoch the commit opened.
    pub epoch: u64,
    pub proposals: Vec<ProposalMessageDescription>,
    pub commit: CommitMessageDescription,
}

impl Processed {
    /// Whether the commit removed this device's leaf: the group stays at the epoch before it
    /// (mls-rs does not enter an epoch it is not a member of) and can read nothing that follows.
    pub fn removed_this_device(&self) -> bool {
        matches!(self.commit.effect, CommitEffect::Removed { .. })
    }
}

/// What a rejoin by external commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejoined {
    /// The epoch of the group info rejoined from (the external commit was made in it).
    pub from_epoch: u64,
    /// The epoch the external commit opened, as the server acknowledged it.
    pub epoch: u64,
    /// This device's old leaf, which the external commit removed.
    pub replaced_leaf: u32,
}

/// One device of the independent client.
pub struct Independent {
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub email: String,
    device_key: SigningKey,
    identity_key: SigningKey,
    pub credential: DeviceCredential,
    pub chain: Chain,
    pub api: Api,
    mls: Client<Config>,
}

impl Independent {
    /// Signs an existing, confirmed account in on a new device (`protocol.md` "Device
    /// registration": the Ed25519 key and its proof of possession), makes the account's identity
    /// key, and publishes this device's credential under it (`PUT /v1/identity`).
    pub async fn sign_in_new_device(base: &str, email: &str, password: &str) -> Result<Self> {
        let device_key = SigningKey::from_bytes(&random_seed());
        let public = device_key.verifying_key().to_bytes();
        let device = NewDevice {
            name: "mls-rs".into(),
            platform: Platform::Cli,
            ed25519_public_key: public,
            key_signature: device_key.sign(&device_key_input(&public)).to_bytes(),
        };
        let mut api = Api::new(base);
        let pair = api.login(&LoginRequest::with_new_device(email, password, device)).await?;
        let identity_key = SigningKey::from_bytes(&random_seed());
        let credential = DeviceCredential::certify(&identity_key, pair.user_id, pair.device_id, &public);
        let credential_bytes: [u8; crate::credential::LEN] =
            credential.encode().try_into().map_err(|_| anyhow::anyhow!("credential length"))?;
        api.publish_identity(&PublishIdentity {
            public_key: identity_key.verifying_key().to_bytes(),
            credential: credential_bytes,
            replace: false,
        })
        .await?;
        let chain = Chain::default();
        chain.pin(pair.user_id, identity_key.verifying_key().to_bytes());

        // The leaf: a basic credential whose identity is the device credential, signed by the
        // device's registered Ed25519 key (mls-rs takes the 64-byte seed || public key form).
        let signing_identity =
            SigningIdentity::new(BasicCredential::new(credential.encode()).into_credential(), public.to_vec().into());
        let secret = [device_key.to_bytes().as_slice(), public.as_slice()].concat();
        let rules = DefaultMlsRules::new()
            .with_commit_options(
                CommitOptions::new()
                    // The ratchet tree travels in the Welcome and the group info.
                    .with_ratchet_tree_extension(true)
                    // So that a commit comes with the new epoch's group info, which the server
                    // keeps for external rejoins.
                    .with_allow_external_commit(true)
                    .with_path_required(true),
            )
            // Commits as PrivateMessage too, as the SDK sends them; mls-rs's default padding.
            .with_encryption_options(EncryptionOptions::new(true, Default::default()));
        let mls = Client::builder()
            .crypto_provider(RustCryptoProvider::default())
            .identity_provider(chain.clone())
            .mls_rules(rules)
            .signing_identity(signing_identity, secret.into(), SUITE)
            .build();
        Ok(Self {
            user_id: pair.user_id,
            device_id: pair.device_id,
            email: email.to_owned(),
            device_key,
            identity_key,
            credential,
            chain,
            api,
            mls,
        })
    }

    /// The account's identity public key.
    pub fn identity_public_key(&self) -> [u8; 32] {
        self.identity_key.verifying_key().to_bytes()
    }

    /// The device's registered Ed25519 public key, which signs its leaves.
    pub fn device_public_key(&self) -> [u8; 32] {
        self.device_key.verifying_key().to_bytes()
    }

    /// A fresh one-time key package (a TLS-encoded `MLSMessage`).
    pub fn key_package(&self) -> Result<Vec<u8>> {
        Ok(self.mls.generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)?.to_bytes()?)
    }

    /// Uploads `count` one-time key packages.
    pub async fn publish_key_packages(&self, count: usize) -> Result<KeyPackageStock> {
        let key_packages = (0..count).map(|_| self.key_package().map(KeyPackageBytes)).collect::<Result<Vec<_>>>()?;
        self.api.upload_key_packages(&UploadKeyPackages { key_packages, last_resort: None }).await
    }

    /// What the server lists of the conversation, and the delivery service's keys, handed to
    /// the chain that checks every leaf and external sender.
    pub async fn refresh_roster(&self, at: At) -> Result<Roster> {
        let conversation = self.api.conversation(at).await?;
        let devices = self.api.conversation_devices(at).await?;
        let roster = Roster {
            members: conversation.members.iter().map(|m| m.user_id).collect(),
            devices: devices.iter().map(|d| (d.device_id, d.ed25519_public_key)).collect(),
        };
        self.chain.set_roster(roster.clone());
        let service = self.api.delivery_service().await?;
        self.chain.set_delivery_service(service.removal_key.into_iter().chain(service.previous_removal_key).collect());
        Ok(roster)
    }

    /// Joins the conversation's group from the Welcome the server holds for this device, then
    /// takes the commits that followed it. mls-rs checks every leaf of the tree against the chain
    /// (and the group's external sender against the delivery service's key).
    pub async fn join(&self, at: At) -> Result<MlsGroup> {
        self.refresh_roster(at).await?;
        let stored = self.api.welcome(at).await?;
        let welcome = MlsMessage::from_bytes(&stored.welcome.0)?;
        let (mut group, _) = self.mls.join_group(None, &welcome, None).context("joining from the Welcome")?;
        ensure!(group.group_id() == at.conversation.as_bytes(), "the Welcome is for another group");
        for member in group.roster().members() {
            self.chain.check(&member.signing_identity).map_err(|e| anyhow::anyhow!("leaf {}: {e}", member.index))?;
        }
        self.catch_up(at, &mut group).await?;
        Ok(group)
    }

    /// Processes, in order, the commits after the group's epoch (each stored commit's delivery
    /// service proposals first), until the server lists no more or one removes this device.
    pub async fn catch_up(&self, at: At, group: &mut MlsGroup) -> Result<Vec<Processed>> {
        let mut seen = Vec::new();
        loop {
            let after = i32::try_from(group.current_epoch())?;
            let commits = self.api.commits(at, after).await?;
            if commits.is_empty() {
                return Ok(seen);
            }
            for stored in &commits {
                let processed = self.process_commit(group, stored)?;
                let removed = processed.removed_this_device();
                seen.push(processed);
                if removed {
                    return Ok(seen);
                }
            }
        }
    }

    /// The group's external sender at `index` (the group context's `external_senders`
    /// extension, RFC 9420 section 12.1.8.1).
    pub fn external_sender(group: &MlsGroup, index: u32) -> Result<SigningIdentity> {
        let senders = group
            .context()
            .extensions
            .get_as::<ExternalSendersExt>()?
            .context("the group has no external_senders extension")?;
        senders.allowed_senders().get(usize::try_from(index)?).cloned().context("no external sender at that index")
    }

    /// Processes one commit as `GET .../commits` lists it: first the delivery service's
    /// proposals it includes by reference, each a `PublicMessage` whose signature mls-rs verifies
    /// under the group's external sender key, checked here to come from an external sender that
    /// is the delivery service under a key it publishes, and to be a `Remove` (all it may
    /// propose); then the commit, which refers to them.
    pub fn process_commit(&self, group: &mut MlsGroup, stored: &StoredCommit) -> Result<Processed> {
        let epoch = u64::try_from(stored.epoch)?;
        ensure!(
            epoch == group.current_epoch() + 1,
            "the commit opening epoch {epoch} does not follow the group's epoch {}",
            group.current_epoch()
        );
        let mut proposals = Vec::new();
        for bytes in &stored.proposals {
            let message = MlsMessage::from_bytes(&bytes.0)?;
            ensure!(message.wire_format() == WireFormat::PublicMessage, "a stored proposal is not a PublicMessage");
            let ReceivedMessage::Proposal(proposal) = group.process_incoming_message(message)? else {
                bail!("a stored proposal is not one");
            };
            let ProposalSender::External(index) = proposal.sender else {
                bail!("a stored proposal is not by an external sender: {:?}", proposal.sender);
            };
            let sender = Self::external_sender(group, index)?;
            ensure!(
                self.chain.delivery_service_key(&sender).is_some(),
                "external sender {index} is not the delivery service under a key it publishes"
            );
            ensure!(
                matches!(proposal.proposal, Proposal::Remove(_)),
                "the delivery service proposed something other than Remove: {:?}",
                proposal.proposal
            );
            proposals.push(proposal);
        }
        let ReceivedMessage::Commit(commit) =
            group.process_incoming_message(MlsMessage::from_bytes(&stored.commit.0)?)?
        else {
            bail!("a stored commit is not one");
        };
        let entered = match &commit.effect {
            CommitEffect::NewEpoch(new) | CommitEffect::Removed { new_epoch: new, .. } => new.epoch(),
            CommitEffect::ReInit(_) => bail!("a ReInit: not part of the protocol"),
        };
        ensure!(entered == epoch, "the commit listed as opening epoch {epoch} opened {entered}");
        Ok(Processed { epoch, proposals, commit })
    }

    /// Decrypts one message the server relayed (catching up on commits to its epoch first), and
    /// reads its content: [`Self::open`].
    pub async fn read(&self, at: At, group: &mut MlsGroup, message: &Message) -> Result<Received> {
        let epoch = u64::try_from(message.key_generation)?;
        if group.current_epoch() < epoch {
            let processed = self.catch_up(at, group).await?;
            ensure!(!processed.iter().any(Processed::removed_this_device), "this device was removed from the group");
        }
        self.open(group, message)
    }

    /// Decrypts one message in the group as it stands (no catching up), and reads its content.
    /// The sender is the leaf MLS authenticates, checked against the server's attribution. An
    /// MLS failure is an [`mls_rs::error::MlsError`] inside the error.
    pub fn open(&self, group: &mut MlsGroup, message: &Message) -> Result<Received> {
        let ciphertext = message.ciphertext.as_deref().context("a deleted message")?;
        let epoch = u64::try_from(message.key_generation)?;
        let ReceivedMessage::ApplicationMessage(app) =
            group.process_incoming_message(MlsMessage::from_bytes(ciphertext)?)?
        else {
            bail!("not an application message");
        };
        let member = group.member_at_index(app.sender_index).context("the sender has no leaf")?;
        let sender = Chain::leaf(&member.signing_identity).context("the sender's credential")?;
        ensure!(
            message.sender_device_id == Some(sender.device_id) && message.sender_user_id == Some(sender.user_id),
            "cannot verify the sender: the server says {:?}, MLS says {}",
            message.sender_device_id,
            sender.device_id
        );
        let plaintext = app.data().to_vec();
        Ok(Received { message_id: message.id, epoch, sender, content: content::read(&plaintext), plaintext })
    }

    /// Rejoins the conversation's group by external commit (RFC 9420 section 12.4.3.2), as a
    /// device that lost its group state does: from the current group info
    /// (`GET .../group-info`), whose `ratchet_tree` extension gives the tree (every leaf checked
    /// against the chain, the external sender against the delivery service), an external commit
    /// that removes this device's old leaf (a resync: members accept an external commit only from
    /// a device already in the group), uploaded as any commit with the new epoch's group info.
    /// Messages of the epochs before the new one cannot be read.
    pub async fn rejoin(&self, at: At) -> Result<(MlsGroup, Rejoined)> {
        self.refresh_roster(at).await?;
        let stored = self.api.group_info(at).await?;
        let message = MlsMessage::from_bytes(&stored.group_info.0)?;
        let info = message.as_group_info().context("the group info is not a GroupInfo")?;
        ensure!(info.group_context().group_id == at.conversation.as_bytes(), "the group info is another group's");
        let from_epoch = info.group_context().epoch;
        ensure!(from_epoch == u64::try_from(stored.epoch)?, "the group info is not of the epoch the server says");
        let tree = info
            .extensions()
            .get_as::<RatchetTreeExt>()?
            .context("the group info has no ratchet_tree extension")?
            .tree_data;
        let own = (self.user_id, self.device_id);
        let replaced_leaf = tree
            .roster()
            .members_iter()
            .find(|m| Chain::leaf(&m.signing_identity).is_some_and(|l| (l.user_id, l.device_id) == own))
            .map(|m| m.index)
            .context("this device has no leaf in the group: only a member can add it")?;
        let (group, commit) = self
            .mls
            .external_commit_builder()?
            .with_tree_data(tree)
            .with_removal(replaced_leaf)
            .build(message)
            .context("the external commit")?;
        for member in group.roster().members() {
            self.chain.check(&member.signing_identity).map_err(|e| anyhow::anyhow!("leaf {}: {e}", member.index))?;
        }
        // mls-rs has merged its own external commit: the group is in the new epoch, whose group
        // info (signed by this device, with the tree and the external public key) goes with it.
        let group_info = group.group_info_message_allowing_ext_commit(true)?;
        let upload = UploadCommit {
            epoch: i32::try_from(from_epoch)?,
            commit: MlsBytes(commit.to_bytes()?),
            group_info: MlsBytes(group_info.to_bytes()?),
            welcome: None,
            welcomed_devices: Vec::new(),
            proposals: Vec::new(),
        };
        let accepted = self.api.upload_commit(at, &upload).await?;
        let epoch = u64::try_from(accepted.epoch)?;
        ensure!(
            epoch == group.current_epoch(),
            "the server opened epoch {epoch}, the group is at {}",
            group.current_epoch()
        );
        Ok((group, Rejoined { from_epoch, epoch, replaced_leaf }))
    }

    /// Encrypts a text in the group's current epoch and posts it.
    pub async fn send_text(&self, at: At, group: &mut MlsGroup, body: &str) -> Result<Message> {
        let sealed = group.encrypt_application_message(&content::write_text(body), Vec::new())?;
        let send = SendMessage {
            client_message_id: Uuid::now_v7(),
            key_generation: i32::try_from(group.current_epoch())?,
            ciphertext: sealed.to_bytes()?,
            reply_to_id: None,
            attachment_ids: Vec::new(),
        };
        self.api.send_message(at, &send).await
    }

    /// The reaction key of the group's current epoch: MLS-Exporter("conclave/v2 reaction key", "", 32).
    pub fn reaction_key(group: &MlsGroup) -> Result<[u8; 32]> {
        let secret = group.export_secret(reaction::LABEL, b"", 32)?;
        Ok(secret.as_bytes().try_into()?)
    }

    /// Reacts to `message_id` with `value`, sealed under the current epoch's reaction key.
    pub async fn react(&self, at: At, group: &MlsGroup, message_id: Uuid, value: &str) -> Result<Reaction> {
        let epoch = u32::try_from(group.current_epoch())?;
        let place = Place { conversation_id: at.conversation, epoch, message_id, reactor_user_id: self.user_id };
        let sealed = reaction::seal(&Self::reaction_key(group)?, place, value);
        let body = AddReaction {
            key_generation: i32::try_from(epoch)?,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            value_tag: sealed.value_tag,
        };
        self.api.add_reaction(at, message_id, &body).await
    }

    /// Opens a reaction made in the group's current epoch (and checks its tag).
    pub fn open_reaction(group: &MlsGroup, reaction: &Reaction) -> Result<String> {
        ensure!(u64::try_from(reaction.key_generation)? == group.current_epoch(), "a reaction of another epoch");
        let place = Place {
            conversation_id: reaction.conversation_id,
            epoch: u32::try_from(reaction.key_generation)?,
            message_id: reaction.message_id,
            reactor_user_id: reaction.user_id,
        };
        let sealed = reaction::Sealed {
            nonce: reaction.nonce,
            ciphertext: reaction.ciphertext.clone(),
            value_tag: reaction.value_tag,
        };
        reaction::open(&Self::reaction_key(group)?, place, &sealed).map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    /// A commit refreshing this device's leaf and path (an empty commit with a path: RFC 9420
    /// section 12.4), pushed with the new epoch's group info; merged once the server took it.
    pub async fn self_update(&self, at: At, group: &mut MlsGroup) -> Result<i32> {
        let epoch = i32::try_from(group.current_epoch())?;
        let output = group.commit(Vec::new())?;
        ensure!(output.contains_update_path, "a self-update carries a path");
        let group_info = output.external_commit_group_info.as_ref().context("no group info for the new epoch")?;
        let upload = UploadCommit {
            epoch,
            commit: MlsBytes(output.commit_message.to_bytes()?),
            group_info: MlsBytes(group_info.to_bytes()?),
            welcome: None,
            welcomed_devices: Vec::new(),
            proposals: Vec::new(),
        };
        match self.api.upload_commit(at, &upload).await {
            Ok(accepted) => {
                group.apply_pending_commit()?;
                Ok(accepted.epoch)
            }
            Err(error) => {
                group.clear_pending_commit();
                Err(error)
            }
        }
    }
}
