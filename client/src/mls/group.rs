//! One device's MLS state: its leaf signing key and credential, its key packages, and the groups
//! (one per conversation) it belongs to, with every leaf checked against the identity chain.

use std::collections::{BTreeMap, BTreeSet};

use openmls::messages::group_info::GroupInfo;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::identity::{DeviceCredential, IdentityKey, IdentityPublicKey};
use super::trust::{FirstContact, TrustStore};
use super::{CIPHERSUITE, MlsError};

/// Epochs whose secrets are kept after the group moves on, so that messages sent just before a
/// commit (and delivered after it) still decrypt. Older epoch secrets are deleted: forward secrecy.
pub const PAST_EPOCHS: usize = 3;
/// Messages of one sender that may arrive out of order within an epoch.
pub const OUT_OF_ORDER_TOLERANCE: u32 = 100;
/// How far ahead of the last one seen a sender's message may be (messages lost in between).
pub const MAXIMUM_FORWARD_DISTANCE: u32 = 1000;

/// The delivery service's removal key as group members know it: an MLS external sender (RFC 9420
/// section 12.1.8.1) allowed to propose `Remove` and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalSenderKey {
    /// Raw Ed25519 public key.
    pub public_key: [u8; 32],
}

pub use conclave_protocol::handshake::DELIVERY_SERVICE_IDENTITY;

/// What a device expects of a group's roster, from the server's membership listing: which users
/// may have leaves, and which of their devices were revoked (and may not come back, by an external
/// commit for instance). Everything else about a leaf is checked cryptographically.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    pub members: BTreeSet<Uuid>,
    pub revoked: BTreeSet<Uuid>,
}

/// A device of the group, as its credential says (the credential was verified).
pub type Leaf = DeviceCredential;

/// A commit this device made, to hand to the server: the commit itself, the Welcome for the devices
/// it adds (and which devices those are), and the group info that lets a device of a member rejoin
/// by external commit.
#[derive(Debug)]
pub struct Outgoing {
    /// The epoch the commit was made in (the server accepts one commit per epoch).
    pub epoch: u64,
    pub commit: Vec<u8>,
    pub welcome: Option<Vec<u8>>,
    pub welcomed: Vec<(Uuid, Uuid)>,
    pub group_info: Vec<u8>,
    /// The delivery service's proposals the commit includes by reference: the server keeps them
    /// with it, for the other members to process first.
    pub proposals: Vec<Vec<u8>>,
}

/// What an incoming MLS message turned out to be, after every check.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// An application message: its sender's device (verified) and the plaintext.
    Application { sender: Leaf, epoch: u64, plaintext: Vec<u8> },
    /// A commit was merged: the group is at `epoch` now.
    Commit { epoch: u64, committer: Option<Leaf>, added: Vec<Leaf>, removed: Vec<Leaf> },
    /// The delivery service proposed removing `device`; stored, to be committed by the next member
    /// device that acts ([`Device::commit_pending`]).
    RemovalProposed { removed: Leaf },
    /// A message of this device's own, echoed back.
    Own,
}

/// The MLS exporter label (RFC 9420 section 8.5) of an epoch's reaction key: reactions are sealed
/// under it so that the server can de-duplicate them by tag without reading them.
pub const REACTION_KEY_LABEL: &str = "conclave/v2 reaction key";

/// The reaction key of one epoch of a conversation's group, exported when the device entered it.
#[derive(Clone)]
pub struct EpochKey {
    pub conversation_id: Uuid,
    pub epoch: u64,
    pub secret: Zeroizing<[u8; 32]>,
}

/// One device's MLS side.
pub struct Device {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: DeviceCredential,
    user_id: Uuid,
    device_id: Uuid,
    /// Keys of the epochs entered since the owner last took them ([`Device::take_epoch_keys`]):
    /// an epoch's secrets are gone once the group moves past [`PAST_EPOCHS`], its exported key is
    /// what the owner keeps of it.
    entered: std::sync::Mutex<Vec<EpochKey>>,
    /// (credential, leaf signature key) pairs whose identity signature verified: a member's leaf
    /// sends many messages, and its credential's Ed25519 signature need not be checked for each.
    verified: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
    /// The delivery service's removal keys as last fetched, and when ([`Device::removal_keys`]).
    pub(super) service: std::sync::Mutex<Option<(std::time::Instant, conclave_protocol::handshake::DeliveryService)>>,
}

/// Verified leaves remembered before the cache starts over.
const VERIFIED_LEAVES: usize = 10_000;

/// Where [`Device::saw_epoch`] keeps a group's latest epoch seen, beside openmls's own keys (which
/// all start with a label of openmls's, never with this one).
fn later_epoch_key(group_id: &GroupId) -> Vec<u8> {
    [b"conclave/later-epoch/".as_slice(), group_id.as_slice()].concat()
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("credential", &self.credential).finish_non_exhaustive()
    }
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(PAST_EPOCHS)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(OUT_OF_ORDER_TOLERANCE, MAXIMUM_FORWARD_DISTANCE))
        .use_ratchet_tree_extension(true)
        .build()
}

fn mls<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> MlsError {
    move |e| MlsError::Protocol { context, reason: e.to_string() }
}

/// The group id of a conversation's group: the conversation id's 16 bytes.
pub fn group_id(conversation_id: Uuid) -> GroupId {
    GroupId::from_slice(conversation_id.as_bytes())
}

impl Device {
    /// This device's MLS side: its leaves are signed with the device's Ed25519 key (`leaf_seed`,
    /// the key registered with the server) and carry a credential signed by the user's identity.
    pub fn new(identity: &IdentityKey, user_id: Uuid, device_id: Uuid, leaf_seed: &[u8; 32]) -> Result<Self, MlsError> {
        let public = ed25519_dalek::SigningKey::from_bytes(leaf_seed).verifying_key().to_bytes();
        let credential = identity.certify(user_id, device_id, &public);
        Self::with_credential(credential, leaf_seed)
    }

    /// The MLS side of a device registered with `keys` (its Ed25519 key signs its leaves).
    pub fn for_device_keys(
        identity: &IdentityKey,
        user_id: Uuid,
        device_id: Uuid,
        keys: &crate::crypto::DeviceKeys,
    ) -> Result<Self, MlsError> {
        Self::new(identity, user_id, device_id, &keys.seed())
    }

    /// Rebuilds the device from a credential made earlier (the identity key is not needed then).
    pub fn with_credential(credential: DeviceCredential, leaf_seed: &[u8; 32]) -> Result<Self, MlsError> {
        let public = ed25519_dalek::SigningKey::from_bytes(leaf_seed).verifying_key().to_bytes();
        credential.verify(&public)?;
        let signer = SignatureKeyPair::from_raw(SignatureScheme::ED25519, leaf_seed.to_vec(), public.to_vec());
        let provider = OpenMlsRustCrypto::default();
        signer.store(provider.storage()).map_err(mls("storing the leaf key"))?;
        Ok(Self {
            provider,
            signer,
            user_id: credential.user_id,
            device_id: credential.device_id,
            credential,
            entered: std::sync::Mutex::new(Vec::new()),
            verified: std::sync::Mutex::new(std::collections::HashSet::new()),
            service: std::sync::Mutex::new(None),
        })
    }

    /// The reaction key of the group's current epoch (exported, RFC 9420 section 8.5).
    pub fn epoch_key(&self, group: &MlsGroup) -> Result<EpochKey, MlsError> {
        let secret = group
            .export_secret(self.provider.crypto(), REACTION_KEY_LABEL, &[], 32)
            .map_err(mls("exporting the epoch's reaction key"))?;
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&secret);
        let conversation_id = Uuid::from_slice(group.group_id().as_slice()).map_err(|_| MlsError::WrongGroup)?;
        Ok(EpochKey { conversation_id, epoch: group.epoch().as_u64(), secret: key })
    }

    /// Keeps the current epoch's reaction key for the owner (none once this device is out of
    /// the group).
    fn entered(&self, group: &MlsGroup) -> Result<(), MlsError> {
        if !group.is_active() {
            return Ok(());
        }
        let key = self.epoch_key(group)?;
        self.entered.lock().unwrap_or_else(|p| p.into_inner()).push(key);
        Ok(())
    }

    /// The reaction keys of the epochs this device entered since the last call (a group made,
    /// joined or rejoined, a commit merged).
    pub fn take_epoch_keys(&self) -> Vec<EpochKey> {
        std::mem::take(&mut *self.entered.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn credential(&self) -> &DeviceCredential {
        &self.credential
    }

    fn credential_with_key(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.credential.encode().to_vec()).into(),
            signature_key: self.signer.to_public_vec().into(),
        }
    }

    fn capabilities() -> Capabilities {
        Capabilities::new(
            None,
            Some(&[CIPHERSUITE]),
            Some(&[ExtensionType::LastResort]),
            None,
            Some(&[CredentialType::Basic]),
        )
    }

    /// A fresh key package (TLS-encoded `MLSMessage`), one-time unless `last_resort`.
    pub fn key_package(&self, last_resort: bool) -> Result<Vec<u8>, MlsError> {
        let mut builder = KeyPackage::builder().leaf_node_capabilities(Self::capabilities());
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(CIPHERSUITE, &self.provider, &self.signer, self.credential_with_key())
            .map_err(mls("building a key package"))?;
        MlsMessageOut::from(bundle.key_package().clone()).to_bytes().map_err(mls("encoding a key package"))
    }

    /// Starts the group of `conversation_id` with this device as its only leaf.
    pub fn create_group(
        &self,
        conversation_id: Uuid,
        external_sender: Option<&ExternalSenderKey>,
    ) -> Result<MlsGroup, MlsError> {
        let mut extensions = Vec::new();
        if let Some(sender) = external_sender {
            extensions.push(Extension::ExternalSenders(vec![delivery_service_sender(sender)]));
        }
        let extensions = Extensions::from_vec(extensions).map_err(mls("group extensions"))?;
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .capabilities(Self::capabilities())
            .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(PAST_EPOCHS)
            .sender_ratchet_configuration(SenderRatchetConfiguration::new(
                OUT_OF_ORDER_TOLERANCE,
                MAXIMUM_FORWARD_DISTANCE,
            ))
            .use_ratchet_tree_extension(true)
            .with_group_context_extensions(extensions)
            .build();
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            group_id(conversation_id),
            self.credential_with_key(),
        )
        .map_err(mls("creating the group"))?;
        self.entered(&group)?;
        Ok(group)
    }

    /// Commits adding the devices whose key packages are given (as the server handed them out),
    /// each checked first: a valid key package of our suite, whose credential is signed by the
    /// pinned identity of a user the roster lists. The commit stays pending until the server
    /// accepts it ([`Self::merge_pending`]) or refuses it ([`Self::discard_pending`]).
    pub fn add(
        &self,
        group: &mut MlsGroup,
        key_packages: &[Vec<u8>],
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<Outgoing, MlsError> {
        let epoch = group.epoch().as_u64();
        let mut packages = Vec::with_capacity(key_packages.len());
        let mut welcomed = Vec::with_capacity(key_packages.len());
        for bytes in key_packages {
            let package = self.validate_key_package(bytes)?;
            self.admit(&DeviceCredential::decode(package.leaf_node().credential().serialized_content())?, trust)?;
            let leaf = verify_leaf(
                package.leaf_node().credential(),
                package.leaf_node().signature_key().as_slice(),
                roster,
                trust,
            )?;
            welcomed.push((leaf.user_id, leaf.device_id));
            packages.push(package);
        }
        let (commit, welcome, info) =
            group.add_members(&self.provider, &self.signer, &packages).map_err(mls("adding devices"))?;
        outgoing(epoch, commit, Some(welcome), info, welcomed)
    }

    /// Whether this device may bring `leaf` into a group, or send to it ([`TrustStore::admit`]);
    /// its own account's devices only under its own identity key.
    pub fn admit(&self, leaf: &Leaf, trust: &TrustStore) -> Result<(), MlsError> {
        if leaf.user_id != self.user_id {
            return trust.admit(leaf.user_id);
        }
        if trust.first_contact() == FirstContact::VerifiedOnly && leaf.identity_key != self.identity_key() {
            return Err(MlsError::Unverified { user_id: leaf.user_id });
        }
        Ok(())
    }

    /// [`Self::admit`] for every leaf of `group`: whether this device may send in it. Nothing to
    /// check under trust on first use, where every leaf was checked when it entered.
    pub fn admit_members(&self, group: &MlsGroup, trust: &TrustStore) -> Result<(), MlsError> {
        if trust.first_contact() == FirstContact::TrustOnFirstUse {
            return Ok(());
        }
        Self::leaves(group).iter().try_for_each(|leaf| self.admit(leaf, trust))
    }

    fn validate_key_package(&self, bytes: &[u8]) -> Result<KeyPackage, MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::MalformedKeyPackage)?;
        let MlsMessageBodyIn::KeyPackage(package) = message.extract() else {
            return Err(MlsError::MalformedKeyPackage);
        };
        let package = package
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(|_| MlsError::MalformedKeyPackage)?;
        if package.ciphersuite() != CIPHERSUITE {
            return Err(MlsError::MalformedKeyPackage);
        }
        Ok(package)
    }

    /// The device a key package claims to be (its credential parsed, not yet verified).
    pub(super) fn key_package_leaf(&self, bytes: &[u8]) -> Result<Leaf, MlsError> {
        let package = self.validate_key_package(bytes)?;
        DeviceCredential::decode(package.leaf_node().credential().serialized_content())
    }

    /// Commits removing these devices (a member leaving, or removing another).
    pub fn remove(&self, group: &mut MlsGroup, devices: &[Uuid]) -> Result<Outgoing, MlsError> {
        let epoch = group.epoch().as_u64();
        let wanted: BTreeSet<Uuid> = devices.iter().copied().collect();
        let leaves: Vec<LeafNodeIndex> = group
            .members()
            .filter(|m| leaf_of(&m.credential).is_some_and(|c| wanted.contains(&c.device_id)))
            .map(|m| m.index)
            .collect();
        if leaves.is_empty() {
            return Err(MlsError::NotInGroup);
        }
        let (commit, welcome, info) =
            group.remove_members(&self.provider, &self.signer, &leaves).map_err(mls("removing devices"))?;
        outgoing(epoch, commit, welcome, info, Vec::new())
    }

    /// Takes the delivery service's `Remove` proposals for the group's current epoch and commits
    /// them, or returns `None` when there are none. Each is checked by openmls (signed by the
    /// group's external sender, for this epoch) and must remove one of `gone`, the devices the
    /// server itself lists as no longer active devices of a member: a proposal removing anyone
    /// else is refused ([`MlsError::UnexpectedRemoval`]) and nothing is committed.
    pub fn commit_removals(
        &self,
        group: &mut MlsGroup,
        proposals: &[Vec<u8>],
        gone: &BTreeSet<Uuid>,
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<Option<Outgoing>, MlsError> {
        group.clear_pending_proposals(self.provider.storage()).map_err(mls("clearing proposals"))?;
        for proposal in proposals {
            let stored = self.process(group, proposal, roster, trust);
            let refused = match stored {
                Ok(Incoming::RemovalProposed { removed }) if gone.contains(&removed.device_id) => continue,
                Ok(Incoming::RemovalProposed { removed }) => {
                    MlsError::UnexpectedRemoval { user_id: removed.user_id, device_id: removed.device_id }
                }
                Ok(_) => MlsError::UnauthorizedSender,
                Err(error) => error,
            };
            group.clear_pending_proposals(self.provider.storage()).map_err(mls("clearing proposals"))?;
            return Err(refused);
        }
        if group.pending_proposals().next().is_none() {
            return Ok(None);
        }
        let mut outgoing = self.commit_pending(group)?;
        outgoing.proposals = proposals.to_vec();
        Ok(Some(outgoing))
    }

    /// Whether the group's only external sender is the delivery service under `key`.
    pub fn external_sender_is(group: &MlsGroup, key: &ExternalSenderKey) -> bool {
        group.extensions().external_senders().is_some_and(|senders| senders[..] == [delivery_service_sender(key)])
    }

    /// A commit making `sender` the group's only external sender (a group-context-extensions
    /// commit, RFC 9420 section 12.1.7): how a group made with a removal key the delivery service
    /// rotated away from, or before it had one, moves to its current key. The group's other
    /// context extensions are kept.
    pub fn move_external_sender(&self, group: &mut MlsGroup, sender: &ExternalSenderKey) -> Result<Outgoing, MlsError> {
        let epoch = group.epoch().as_u64();
        let mut extensions: Vec<Extension> = group
            .extensions()
            .iter()
            .filter(|e| e.extension_type() != ExtensionType::ExternalSenders)
            .cloned()
            .collect();
        extensions.push(Extension::ExternalSenders(vec![delivery_service_sender(sender)]));
        let extensions = Extensions::from_vec(extensions).map_err(mls("group extensions"))?;
        let (commit, welcome, info) = group
            .update_group_context_extensions(&self.provider, extensions, &self.signer)
            .map_err(mls("moving the external sender"))?;
        outgoing(epoch, commit, welcome, info, Vec::new())
    }

    /// Commits the proposals received and stored (the delivery service's removals).
    pub fn commit_pending(&self, group: &mut MlsGroup) -> Result<Outgoing, MlsError> {
        let epoch = group.epoch().as_u64();
        let (commit, welcome, info) = group
            .commit_to_pending_proposals(&self.provider, &self.signer)
            .map_err(mls("committing pending proposals"))?;
        outgoing(epoch, commit, welcome, info, Vec::new())
    }

    /// A commit that only refreshes this device's leaf and path keys: post-compromise security.
    pub fn self_update(&self, group: &mut MlsGroup) -> Result<Outgoing, MlsError> {
        let epoch = group.epoch().as_u64();
        let bundle = group
            .self_update(&self.provider, &self.signer, LeafNodeParameters::default())
            .map_err(mls("self update"))?;
        let (commit, welcome, info) = bundle.into_contents();
        let welcome = welcome.map(|w| MlsMessageOut::from_welcome(w, ProtocolVersion::Mls10));
        outgoing(epoch, commit, welcome, info, Vec::new())
    }

    /// The signed group info (with the ratchet tree) a member's device needs to rejoin by external
    /// commit.
    pub fn group_info(&self, group: &MlsGroup) -> Result<Vec<u8>, MlsError> {
        group
            .export_group_info(self.provider.crypto(), &self.signer, true)
            .map_err(mls("exporting group info"))?
            .to_bytes()
            .map_err(mls("encoding group info"))
    }

    /// The server accepted this device's commit: the group moves to the next epoch.
    pub fn merge_pending(&self, group: &mut MlsGroup) -> Result<(), MlsError> {
        group.merge_pending_commit(&self.provider).map_err(mls("merging own commit"))?;
        self.entered(group)
    }

    /// The server refused this device's commit (another was first): forget it.
    pub fn discard_pending(&self, group: &mut MlsGroup) -> Result<(), MlsError> {
        group.clear_pending_commit(self.provider.storage()).map_err(mls("discarding own commit"))
    }

    /// Joins a group from a Welcome meant for this device, after checking every leaf of the
    /// group it describes.
    pub fn join(&self, welcome: &[u8], roster: &Roster, trust: &mut TrustStore) -> Result<MlsGroup, MlsError> {
        self.join_group(welcome, None, roster, false, trust)
    }

    /// [`Self::join`], refusing a Welcome into another group than `expected`'s (the server handed
    /// out another conversation's Welcome) before the group is stored. With `former_members`, a
    /// leaf of a user the roster no longer lists is accepted (a Welcome of an earlier epoch, whose
    /// later commits remove them); its identity signature is checked all the same. (openmls spends
    /// the one-time key package when it reads the Welcome, whether or not it is accepted.)
    pub(super) fn join_group(
        &self,
        welcome: &[u8],
        expected: Option<Uuid>,
        roster: &Roster,
        former_members: bool,
        trust: &mut TrustStore,
    ) -> Result<MlsGroup, MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(welcome).map_err(|_| MlsError::MalformedMessage)?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(MlsError::MalformedMessage);
        };
        let staged = StagedWelcome::new_from_welcome(&self.provider, &join_config(), welcome, None)
            .map_err(|e| MlsError::WelcomeRejected(e.to_string()))?;
        if expected.is_some_and(|conversation| staged.group_context().group_id() != &group_id(conversation)) {
            return Err(MlsError::WrongGroup);
        }
        verify_members(staged.members(), roster, former_members, trust)?;
        let group = staged.into_group(&self.provider).map_err(|e| MlsError::WelcomeRejected(e.to_string()))?;
        self.entered(&group)?;
        Ok(group)
    }

    /// Rejoins a group whose state this device lost (or that it fell behind in), by an external
    /// commit from the group info a member published. The commit must be accepted by the server
    /// like any other; until then the returned group has it pending. Leaves of former members
    /// (their removal not committed yet) are accepted, as in a Welcome.
    pub fn rejoin(
        &self,
        group_info: &[u8],
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<(MlsGroup, Outgoing), MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(group_info).map_err(|_| MlsError::MalformedMessage)?;
        let MlsMessageBodyIn::GroupInfo(info) = message.extract() else {
            return Err(MlsError::MalformedMessage);
        };
        // The commit is made in the group info's epoch (the server's current one, if the info is fresh).
        let epoch = info.epoch().as_u64();
        let (group, bundle) = MlsGroup::external_commit_builder()
            .with_config(join_config())
            .build_group(&self.provider, info, self.credential_with_key())
            .map_err(mls("rejoining"))?
            .load_psks(self.provider.storage())
            .map_err(mls("rejoining"))?
            .build(self.provider.rand(), self.provider.crypto(), &self.signer, |_| true)
            .map_err(mls("rejoining"))?
            .finalize(&self.provider)
            .map_err(mls("rejoining"))?;
        // A leaf of a former member is the group's to remove (`Device::reconcile` does, before this
        // device sends): the tree is the one members signed, so the server did not put it there.
        verify_members(group.members(), roster, true, trust)?;
        let (commit, welcome, info) = bundle.into_contents();
        let welcome = welcome.map(|w| MlsMessageOut::from_welcome(w, ProtocolVersion::Mls10));
        let outgoing = outgoing(epoch, commit, welcome, info, Vec::new())?;
        Ok((group, outgoing))
    }

    /// Notes a sign that `group` has moved past this device's epoch: a message or commit of a later
    /// epoch, the server's listing of the conversation, or its refusal of this device's commit or
    /// message. Until the group reaches that epoch, [`Self::encrypt`] refuses with
    /// [`MlsError::Behind`]: a device the server keeps behind (withholding a removal commit, RFC
    /// 9750 section 5) would otherwise keep encrypting for an epoch the removed device still holds.
    /// Kept in this device's storage, so in its snapshot: a restart does not forget it.
    pub fn saw_epoch(&self, group: &MlsGroup, epoch: u64) {
        if epoch <= group.epoch().as_u64() || self.later_epoch(group).is_some_and(|later| later >= epoch) {
            return;
        }
        if let Ok(mut values) = self.provider.storage().values.write() {
            values.insert(later_epoch_key(group.group_id()), epoch.to_be_bytes().to_vec());
        }
    }

    /// The latest epoch of `group` this device has seen a sign of, when it is past the group's own.
    pub fn later_epoch(&self, group: &MlsGroup) -> Option<u64> {
        let values = self.provider.storage().values.read().ok()?;
        let bytes: [u8; 8] = values.get(&later_epoch_key(group.group_id()))?.as_slice().try_into().ok()?;
        Some(u64::from_be_bytes(bytes)).filter(|later| *later > group.epoch().as_u64())
    }

    /// Encrypts an application message for the group's current epoch; refused ([`MlsError::Behind`])
    /// once this device has seen a sign of a later one ([`Self::saw_epoch`]).
    pub fn encrypt(&self, group: &mut MlsGroup, plaintext: &[u8]) -> Result<Vec<u8>, MlsError> {
        if let Some(later) = self.later_epoch(group) {
            return Err(MlsError::Behind { group: group.epoch().as_u64(), later });
        }
        group
            .create_message(&self.provider, &self.signer, plaintext)
            .map_err(mls("encrypting"))?
            .to_bytes()
            .map_err(mls("encoding a message"))
    }

    /// Processes a message the server relayed for `group`: application messages are decrypted and
    /// their sender's leaf verified; commits are checked (every new or updated leaf against the
    /// identity chain and the roster) and merged; removal proposals from the delivery service are
    /// stored. Anything else is refused with a specific error.
    pub fn process(
        &self,
        group: &mut MlsGroup,
        bytes: &[u8],
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<Incoming, MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::MalformedMessage)?;
        let protocol = message.try_into_protocol_message().map_err(|_| MlsError::MalformedMessage)?;
        if protocol.group_id() != group.group_id() {
            return Err(MlsError::WrongGroup);
        }
        let message_epoch = protocol.epoch().as_u64();
        let current = group.epoch().as_u64();
        // Unauthenticated until it decrypts, but a later epoch is a reason to hold back, never to
        // trust: a forged one only stops this device sending, as a server can anyway.
        self.saw_epoch(group, message_epoch);
        if protocol.is_handshake_message() && message_epoch != current {
            return Err(MlsError::WrongEpoch { message: message_epoch, group: current });
        }
        let processed =
            group.process_message(&self.provider, protocol).map_err(|e| classify(e, message_epoch, current))?;
        let sender_leaf = match processed.sender() {
            Sender::Member(_) => Some(self.verify_member(
                processed.credential(),
                sender_signature_key(group, processed.sender()).unwrap_or_default().as_slice(),
                roster,
                trust,
            )),
            _ => None,
        };
        let external = matches!(processed.sender(), Sender::NewMemberCommit);
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                let sender = sender_leaf.ok_or(MlsError::UnauthorizedSender)??;
                Ok(Incoming::Application { sender, epoch: message_epoch, plaintext: app.into_bytes() })
            }
            ProcessedMessageContent::ProposalMessage(proposal) => {
                let Sender::External(_) = proposal.sender() else {
                    // Members commit their changes directly; a standalone member proposal is not
                    // part of this protocol.
                    return Err(MlsError::UnauthorizedSender);
                };
                let Proposal::Remove(remove) = proposal.proposal() else {
                    return Err(MlsError::UnauthorizedSender);
                };
                let removed = group
                    .member_at(remove.removed())
                    .and_then(|m| leaf_of(&m.credential))
                    .ok_or(MlsError::NotInGroup)?;
                group.store_pending_proposal(self.provider.storage(), *proposal).map_err(mls("storing a proposal"))?;
                Ok(Incoming::RemovalProposed { removed })
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let mut committer = sender_leaf.transpose()?;
                let added = staged
                    .add_proposals()
                    .map(|p| {
                        let node = p.add_proposal().key_package().leaf_node();
                        verify_leaf(node.credential(), node.signature_key().as_slice(), roster, trust)
                    })
                    .collect::<Result<Vec<Leaf>, _>>()?;
                if let Some(node) = staged.update_path_leaf_node() {
                    // The committer's new leaf; for an external commit (a device rejoining), the
                    // only statement of who it is.
                    let leaf = verify_leaf(node.credential(), node.signature_key().as_slice(), roster, trust)?;
                    committer.get_or_insert(leaf);
                }
                let removed: Vec<Leaf> = staged
                    .remove_proposals()
                    .filter_map(|p| group.member_at(p.remove_proposal().removed()))
                    .filter_map(|m| leaf_of(&m.credential))
                    .collect();
                if external {
                    // An external commit only brings back a device that is in the group (its old
                    // leaf goes in the same commit): whoever holds the group info, the server
                    // included, could otherwise join any device of anyone it lists as a member.
                    let joiner = committer.ok_or(MlsError::UnauthorizedSender)?;
                    if !removed.iter().any(|l| (l.user_id, l.device_id) == (joiner.user_id, joiner.device_id)) {
                        return Err(MlsError::ExternalJoin { user_id: joiner.user_id, device_id: joiner.device_id });
                    }
                }
                group.merge_staged_commit(&self.provider, *staged).map_err(mls("merging a commit"))?;
                self.entered(group)?;
                Ok(Incoming::Commit { epoch: group.epoch().as_u64(), committer, added, removed })
            }
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => Err(MlsError::UnauthorizedSender),
            _ => Ok(Incoming::Own),
        }
    }

    /// [`verify_leaf`] for the sender of a message, skipping the identity signature of a
    /// credential already verified on the same leaf key (the roster and the pinned identity key
    /// are checked every time).
    fn verify_member(
        &self,
        credential: &Credential,
        signature_key: &[u8],
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<Leaf, MlsError> {
        let mut seen = credential.serialized_content().to_vec();
        seen.extend_from_slice(signature_key);
        let known = self.verified.lock().unwrap_or_else(|p| p.into_inner()).contains(&seen);
        if known && credential.credential_type() == CredentialType::Basic {
            let leaf = DeviceCredential::decode(credential.serialized_content())?;
            return check_leaf(leaf, roster, trust);
        }
        let leaf = verify_leaf(credential, signature_key, roster, trust)?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_LEAVES {
            verified.clear();
        }
        verified.insert(seen);
        Ok(leaf)
    }

    /// Loads a group this device belongs to from its storage.
    pub fn load(&self, conversation_id: Uuid) -> Result<Option<MlsGroup>, MlsError> {
        MlsGroup::load(self.provider.storage(), &group_id(conversation_id)).map_err(mls("loading a group"))
    }

    /// Forgets a group (state lost, or left).
    pub fn forget(&self, group: &mut MlsGroup) -> Result<(), MlsError> {
        group.delete(self.provider.storage()).map_err(mls("deleting a group"))
    }

    /// The devices of a group, as their verified credentials say.
    pub fn leaves(group: &MlsGroup) -> Vec<Leaf> {
        group.members().filter_map(|m| leaf_of(&m.credential)).collect()
    }

    /// Everything this device's MLS side stores (key packages' private keys, group states), for the
    /// keystore to seal. Restored with [`Self::restore`].
    pub fn snapshot(&self) -> Zeroizing<Vec<u8>> {
        let values = self.provider.storage().values.read().map(|v| v.clone()).unwrap_or_default();
        let mut out = Vec::new();
        let sorted: BTreeMap<_, _> = values.into_iter().collect();
        out.extend_from_slice(&(sorted.len() as u64).to_be_bytes());
        for (k, v) in sorted {
            out.extend_from_slice(&(k.len() as u64).to_be_bytes());
            out.extend_from_slice(&k);
            out.extend_from_slice(&(v.len() as u64).to_be_bytes());
            out.extend_from_slice(&v);
        }
        Zeroizing::new(out)
    }

    /// Restores what [`Self::snapshot`] saved into this device's storage.
    pub fn restore(&self, snapshot: &[u8]) -> Result<(), MlsError> {
        let mut rest = snapshot;
        let mut take = |n: usize| -> Result<&[u8], MlsError> {
            if rest.len() < n {
                return Err(MlsError::MalformedSnapshot);
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let read_len = |bytes: &[u8]| -> Result<usize, MlsError> {
            let array: [u8; 8] = bytes.try_into().map_err(|_| MlsError::MalformedSnapshot)?;
            usize::try_from(u64::from_be_bytes(array)).map_err(|_| MlsError::MalformedSnapshot)
        };
        let count = read_len(take(8)?)?;
        let mut values = BTreeMap::new();
        for _ in 0..count {
            let len = read_len(take(8)?)?;
            let key = take(len)?.to_vec();
            let len = read_len(take(8)?)?;
            let value = take(len)?.to_vec();
            values.insert(key, value);
        }
        let mut store = self.provider.storage().values.write().map_err(|_| MlsError::MalformedSnapshot)?;
        store.extend(values);
        Ok(())
    }

    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    pub fn device_id(&self) -> Uuid {
        self.device_id
    }

    /// This device's identity key as its credential carries it.
    pub fn identity_key(&self) -> IdentityPublicKey {
        self.credential.identity_key
    }
}

/// A commit ready for the server, with the group info of the epoch it opens.
fn outgoing(
    epoch: u64,
    commit: MlsMessageOut,
    welcome: Option<MlsMessageOut>,
    group_info: Option<GroupInfo>,
    welcomed: Vec<(Uuid, Uuid)>,
) -> Result<Outgoing, MlsError> {
    let group_info = group_info.ok_or_else(|| MlsError::Protocol {
        context: "committing",
        reason: "openmls made no group info for the new epoch".to_owned(),
    })?;
    Ok(Outgoing {
        epoch,
        commit: commit.to_bytes().map_err(mls("encoding a commit"))?,
        welcome: welcome.map(|w| w.to_bytes()).transpose().map_err(mls("encoding a welcome"))?,
        welcomed,
        group_info: MlsMessageOut::from(group_info).to_bytes().map_err(mls("encoding group info"))?,
        proposals: Vec::new(),
    })
}

/// The delivery service as a group's external sender: its removal key under the basic credential
/// [`DELIVERY_SERVICE_IDENTITY`].
fn delivery_service_sender(key: &ExternalSenderKey) -> ExternalSender {
    let credential: Credential = BasicCredential::new(DELIVERY_SERVICE_IDENTITY.to_vec()).into();
    ExternalSender::new(key.public_key.to_vec().into(), credential)
}

/// The device a leaf's credential names (unverified: for leaves already in the group, which were
/// verified when they entered it).
fn leaf_of(credential: &Credential) -> Option<Leaf> {
    DeviceCredential::decode(credential.serialized_content()).ok()
}

fn sender_signature_key(group: &MlsGroup, sender: &Sender) -> Option<Vec<u8>> {
    match sender {
        Sender::Member(index) => group.member_at(*index).map(|m| m.signature_key),
        _ => None,
    }
}

/// Checks one leaf: a credential of our layout, signed by the pinned identity key of its user over
/// the leaf's signature key, for a user the roster lists.
pub fn verify_leaf(
    credential: &Credential,
    signature_key: &[u8],
    roster: &Roster,
    trust: &mut TrustStore,
) -> Result<Leaf, MlsError> {
    if credential.credential_type() != CredentialType::Basic {
        return Err(MlsError::MalformedCredential);
    }
    let leaf = DeviceCredential::decode(credential.serialized_content())?;
    leaf.verify(signature_key)?;
    check_leaf(leaf, roster, trust)
}

/// [`verify_leaf`] for every leaf of a group being joined. With `former_members`, a leaf of a user
/// the roster no longer lists is accepted (its removal is yet to be committed); its identity
/// signature is checked all the same.
fn verify_members(
    members: impl Iterator<Item = Member>,
    roster: &Roster,
    former_members: bool,
    trust: &mut TrustStore,
) -> Result<(), MlsError> {
    for member in members {
        let mut roster = std::borrow::Cow::Borrowed(roster);
        if former_members && let Some(leaf) = leaf_of(&member.credential) {
            roster.to_mut().members.insert(leaf.user_id);
        }
        verify_leaf(&member.credential, &member.signature_key, &roster, trust)?;
    }
    Ok(())
}

/// What [`verify_leaf`] checks once the identity signature verified: the roster, then the pin.
fn check_leaf(leaf: Leaf, roster: &Roster, trust: &mut TrustStore) -> Result<Leaf, MlsError> {
    if !roster.members.contains(&leaf.user_id) {
        return Err(MlsError::NotAMember { user_id: leaf.user_id, device_id: leaf.device_id });
    }
    if roster.revoked.contains(&leaf.device_id) {
        return Err(MlsError::RevokedDevice { user_id: leaf.user_id, device_id: leaf.device_id });
    }
    // Last: a leaf refused for who it is must not pin its identity key as that user's.
    trust.check(leaf.user_id, &leaf.identity_key)?;
    Ok(leaf)
}

fn classify<E: std::fmt::Display>(error: ProcessMessageError<E>, message: u64, group: u64) -> MlsError {
    match error {
        ProcessMessageError::ValidationError(ValidationError::WrongEpoch) => MlsError::WrongEpoch { message, group },
        ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(_)) => MlsError::CannotDecrypt,
        ProcessMessageError::ValidationError(ValidationError::NoPastEpochData) => MlsError::CannotDecrypt,
        ProcessMessageError::ValidationError(ValidationError::WrongGroupId) => MlsError::WrongGroup,
        ProcessMessageError::ValidationError(ValidationError::InvalidSignature) => MlsError::BadSignature,
        ProcessMessageError::InvalidCommit(e) => MlsError::InvalidCommit(e.to_string()),
        ProcessMessageError::GroupStateError(MlsGroupStateError::UseAfterEviction) => MlsError::NotInGroup,
        other => MlsError::Protocol { context: "processing a message", reason: other.to_string() },
    }
}
