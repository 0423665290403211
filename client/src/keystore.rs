//! The device's local keystore: its secret keys, its user's identity key, the identity keys it
//! pinned for others, and the conversation keys it has unwrapped.
//!
//! One JSON file (byte fields in base64url, like the wire protocol):
//!
//! ```json
//! {
//!   "version": 3,
//!   "device": { "device_id": "…uuid or null…", "ed25519_secret_key": "…" },
//!   "identity_seed": "…or absent until the device has its user's identity key…",
//!   "link_seed": "…the one-time link key while waiting for the identity key, else absent…",
//!   "trust": { "pins": { "…user id…": { "key": [32 bytes], "verified": false } } },
//!   "mls_state": "…the MLS side's storage (key packages' private keys, group states), or absent…",
//!   "conversation_keys": [ { "conversation_id": "…", "generation": 1, "key": "…" } ],
//!   "received": [ { "message_id": "…", "conversation_id": "…", "seq": 7, "sender_device_id": "…",
//!                   "digest": "…", "plaintext": "…" } ],
//!   "sending": [ { "conversation_id": "…", "epoch": 3, "since": 1796000000, "sent": 12 } ]
//! }
//! ```
//!
//! `conversation_keys` are the reaction keys exported from each MLS epoch the device entered
//! (`generation` = the epoch). `received` is the plaintext of every message this device decrypted
//! or sent: MLS deletes a message's key once it is used, so a message is decrypted once and read
//! from here afterwards; `digest` is the SHA-256 of the ciphertext it came from (an edit replaces
//! the ciphertext, and is decrypted again); a message deleted by its sender, or removed by
//! retention, is dropped from it as the device learns so. The MLS state and the plaintexts it released are saved
//! together, so a crash never leaves a ratchet advanced past a message whose plaintext was lost.
//! `sending` counts what the device sent in each conversation's current epoch, for its periodic
//! self-updates.
//!
//! Only version 3 is read. Versions 1 and 2 held protocol version 1's X25519 device key as well;
//! there were no deployments of them to carry over, so such a file is refused
//! ([`KeystoreError::UnsupportedVersion`]) and the device signs in again as a new one.
//!
//! Anyone who reads this file reads every conversation the device is in, so:
//! - it is created with mode `0600` (set explicitly, whatever the umask), and loading refuses a
//!   file that its group or others could read or write, rather than silently using it;
//! - every save writes a temporary file in the same directory (also `0600` from creation), syncs
//!   it and renames it over the old one, so a crash leaves the old or the new keystore, never half
//!   of one;
//! - the serialized JSON and the decoded secrets are zeroized once used (best effort: the JSON
//!   parser's own temporaries are outside our control).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use conclave_protocol::b64;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::crypto::{ConversationKey, CryptoError, DeviceKeys};
use crate::mls::IdentityKey;
use crate::mls::TrustStore;
use crate::mls::transfer::LinkSecret;

/// The keystore file format this client reads and writes.
pub const KEYSTORE_VERSION: u32 = 3;

/// Why the keystore could not be created, loaded or saved.
#[derive(Debug, Error)]
pub enum KeystoreError {
    /// The file's permissions let other users read or change it.
    #[error(
        "refusing to use keystore {path}: its permissions are {mode:03o}, but a keystore must be readable by its owner only; run `chmod 600 {path}` if the file is yours and was not exposed"
    )]
    InsecurePermissions {
        /// The keystore path.
        path: PathBuf,
        /// The permission bits found.
        mode: u32,
    },
    /// `create` found a keystore already there; it never overwrites one.
    #[error("a keystore already exists at {0}")]
    AlreadyExists(PathBuf),
    /// Reading or writing the file failed.
    #[error("keystore {path}: {source}")]
    Io {
        /// The keystore path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not a keystore (bad JSON, bad base64, wrong key length).
    #[error("keystore {path} is malformed: {source}")]
    Malformed {
        /// The keystore path.
        path: PathBuf,
        /// The parser's error (it never quotes secret values).
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by a client with another format version.
    #[error(
        "keystore {path} has format version {found}; this client reads version {KEYSTORE_VERSION} only (no \
         conversion: remove the file to sign in as a new device)"
    )]
    UnsupportedVersion {
        /// The keystore path.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A stored conversation key is invalid (for example generation 0).
    #[error("keystore {path} holds an invalid conversation key: {source}")]
    InvalidKey {
        /// The keystore path.
        path: PathBuf,
        /// Why the key is invalid.
        #[source]
        source: CryptoError,
    },
}

/// A device's keys, loaded from and saved to one file. Changes are in memory until [`save`].
///
/// [`save`]: Keystore::save
pub struct Keystore {
    path: PathBuf,
    device: DeviceKeys,
    device_id: Option<Uuid>,
    identity: Option<IdentityKey>,
    link: Option<LinkSecret>,
    trust: TrustStore,
    mls_state: Option<Zeroizing<Vec<u8>>>,
    conversation_keys: BTreeMap<(Uuid, u32), ConversationKey>,
    received: BTreeMap<Uuid, Received>,
    sending: BTreeMap<Uuid, Sending>,
}

/// How this device has been sending in a conversation's current epoch, for the self-update policy
/// (`crate::messenger::UpdatePolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sending {
    pub conversation_id: Uuid,
    /// The epoch.
    pub epoch: u64,
    /// When this device first sent in it (Unix seconds).
    pub since: i64,
    /// How many messages it sent in it.
    pub sent: u32,
}

/// The plaintext of a message this device decrypted (or sent), kept because MLS decrypts once.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Received {
    #[zeroize(skip)]
    pub message_id: Uuid,
    #[zeroize(skip)]
    pub conversation_id: Uuid,
    /// Its place in the conversation (for retention: copies below a point are dropped).
    pub seq: i64,
    /// The device MLS authenticated as its sender.
    #[zeroize(skip)]
    pub sender_device_id: Uuid,
    /// SHA-256 of the ciphertext the plaintext came from.
    #[serde(with = "b64")]
    pub digest: [u8; 32],
    #[serde(with = "b64")]
    pub plaintext: Vec<u8>,
}

impl Keystore {
    /// Creates a new keystore file at `path` for `device`; fails if the file exists.
    pub fn create(path: impl Into<PathBuf>, device: DeviceKeys) -> Result<Self, KeystoreError> {
        let keystore = Self {
            path: path.into(),
            device,
            device_id: None,
            identity: None,
            link: None,
            trust: TrustStore::default(),
            mls_state: None,
            conversation_keys: BTreeMap::new(),
            received: BTreeMap::new(),
            sending: BTreeMap::new(),
        };
        if keystore.path.try_exists().map_err(|source| keystore.io(source))? {
            return Err(KeystoreError::AlreadyExists(keystore.path));
        }
        keystore.save()?;
        Ok(keystore)
    }

    /// Loads the keystore at `path`, refusing it if its permissions are wider than `0600`.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, KeystoreError> {
        let path = path.into();
        let io = |source| KeystoreError::Io { path: path.clone(), source };
        let mut file = File::open(&path).map_err(io)?;
        // Checked on the open handle, so the file checked is the file read.
        check_permissions(&path, &file.metadata().map_err(io)?)?;
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(io)?;
        let stored: StoredKeystore =
            serde_json::from_str(&text).map_err(|source| KeystoreError::Malformed { path: path.clone(), source })?;
        if stored.version != KEYSTORE_VERSION {
            return Err(KeystoreError::UnsupportedVersion { path, found: stored.version });
        }
        let device = DeviceKeys::from_seed(&stored.device.ed25519_secret_key);
        let mut conversation_keys = BTreeMap::new();
        for stored_key in &stored.conversation_keys {
            let key = ConversationKey::from_bytes(stored_key.conversation_id, stored_key.generation, &stored_key.key)
                .map_err(|source| KeystoreError::InvalidKey { path: path.clone(), source })?;
            conversation_keys.insert((key.conversation_id(), key.generation()), key);
        }
        Ok(Self {
            path,
            device,
            device_id: stored.device.device_id,
            identity: stored.identity_seed.as_ref().map(IdentityKey::from_seed),
            link: stored.link_seed.as_ref().map(LinkSecret::from_seed),
            trust: stored.trust.clone(),
            mls_state: stored.mls_state.clone().map(Zeroizing::new),
            conversation_keys,
            received: stored.received.iter().map(|r| (r.message_id, r.clone())).collect(),
            sending: stored.sending.iter().map(|s| (s.conversation_id, *s)).collect(),
        })
    }

    /// Writes the keystore atomically (temporary file, sync, rename) with mode `0600`.
    pub fn save(&self) -> Result<(), KeystoreError> {
        let ed25519_secret_key = self.device.seed();
        let stored = StoredKeystore {
            version: KEYSTORE_VERSION,
            device: StoredDevice { device_id: self.device_id, ed25519_secret_key: *ed25519_secret_key },
            identity_seed: self.identity.as_ref().map(|identity| *identity.seed()),
            link_seed: self.link.as_ref().map(|link| *link.seed()),
            trust: self.trust.clone(),
            mls_state: self.mls_state.as_ref().map(|state| state.to_vec()),
            conversation_keys: self
                .conversation_keys
                .values()
                .map(|key| StoredKey {
                    conversation_id: key.conversation_id(),
                    generation: key.generation(),
                    key: *key.expose_secret(),
                })
                .collect(),
            received: self.received.values().cloned().collect(),
            sending: self.sending.values().copied().collect(),
        };
        let mut json = Zeroizing::new(serde_json::to_vec_pretty(&stored).map_err(|e| self.io(e.into()))?);
        json.push(b'\n');
        write_atomically(&self.path, &json).map_err(|source| self.io(source))
    }

    /// Where the keystore lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device's keys.
    pub fn device(&self) -> &DeviceKeys {
        &self.device
    }

    /// The id the server gave the device at registration, once registered.
    pub fn device_id(&self) -> Option<Uuid> {
        self.device_id
    }

    /// Records the id the server gave the device.
    pub fn set_device_id(&mut self, device_id: Uuid) {
        self.device_id = Some(device_id);
    }

    /// The user's identity key, once this device has it (made here, or received from another
    /// device of the user's).
    pub fn identity(&self) -> Option<&IdentityKey> {
        self.identity.as_ref()
    }

    /// Keeps the user's identity key; the pending link key, if any, is no longer needed.
    pub fn set_identity(&mut self, identity: IdentityKey) {
        self.identity = Some(identity);
        self.link = None;
    }

    /// The one-time link key this device waits for its identity key with.
    pub fn link(&self) -> Option<&LinkSecret> {
        self.link.as_ref()
    }

    /// Keeps a one-time link key (replacing an earlier one).
    pub fn set_link(&mut self, link: LinkSecret) {
        self.link = Some(link);
    }

    /// The identity keys this client pinned for other users.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// The pins, to check or change them (saved by the next [`Self::save`]).
    pub fn trust_mut(&mut self) -> &mut TrustStore {
        &mut self.trust
    }

    /// What the device's MLS side stored ([`crate::mls::Device::snapshot`]), if anything yet.
    pub fn mls_state(&self) -> Option<&[u8]> {
        self.mls_state.as_deref().map(Vec::as_slice)
    }

    /// Replaces the MLS side's stored state (saved by the next [`Self::save`]).
    pub fn set_mls_state(&mut self, state: Zeroizing<Vec<u8>>) {
        self.mls_state = Some(state);
    }

    /// Keeps a conversation key (typically just unwrapped), replacing any for the same
    /// conversation and generation.
    pub fn insert_key(&mut self, key: ConversationKey) {
        self.conversation_keys.insert((key.conversation_id(), key.generation()), key);
    }

    /// The key of `generation` of a conversation, to open its messages.
    pub fn key(&self, conversation_id: Uuid, generation: u32) -> Option<&ConversationKey> {
        self.conversation_keys.get(&(conversation_id, generation))
    }

    /// The newest generation this device holds for a conversation, to seal new messages.
    pub fn latest_key(&self, conversation_id: Uuid) -> Option<&ConversationKey> {
        self.conversation_keys.range((conversation_id, 0)..=(conversation_id, u32::MAX)).next_back().map(|(_, key)| key)
    }

    /// Forgets every key and plaintext of a conversation (after leaving it).
    pub fn forget_conversation(&mut self, conversation_id: Uuid) {
        self.conversation_keys.retain(|(id, _), _| *id != conversation_id);
        self.received.retain(|_, r| r.conversation_id != conversation_id);
        self.sending.remove(&conversation_id);
    }

    /// Keeps the plaintext of a message this device decrypted or sent (replacing an earlier one:
    /// an edit).
    pub fn keep_received(&mut self, received: Received) {
        self.received.insert(received.message_id, received);
    }

    /// What was kept of a message, when it came from the ciphertext whose SHA-256 is `digest`.
    pub fn received(&self, message_id: Uuid, digest: &[u8; 32]) -> Option<&Received> {
        self.received.get(&message_id).filter(|r| &r.digest == digest)
    }

    /// How this device has been sending in a conversation's current epoch.
    pub fn sending(&self, conversation_id: Uuid) -> Option<Sending> {
        self.sending.get(&conversation_id).copied()
    }

    /// Counts one message sent in `epoch` of a conversation at `now` (Unix seconds).
    pub fn count_sent(&mut self, conversation_id: Uuid, epoch: u64, now: i64) {
        let entry =
            self.sending.entry(conversation_id).or_insert(Sending { conversation_id, epoch, since: now, sent: 0 });
        if entry.epoch != epoch {
            *entry = Sending { conversation_id, epoch, since: now, sent: 0 };
        }
        entry.sent = entry.sent.saturating_add(1);
    }

    /// The messages of a conversation whose plaintext this device keeps.
    pub fn kept(&self, conversation_id: Uuid) -> Vec<Uuid> {
        self.received.values().filter(|r| r.conversation_id == conversation_id).map(|r| r.message_id).collect()
    }

    /// Forgets the plaintext of a message (deleted by its sender); `true` when one was kept.
    pub fn forget_received(&mut self, message_id: Uuid) -> bool {
        self.received.remove(&message_id).is_some()
    }

    /// Forgets the plaintexts of a conversation's messages below `before_seq` (removed by
    /// retention on the server); returns how many.
    pub fn forget_received_before(&mut self, conversation_id: Uuid, before_seq: i64) -> usize {
        let before = self.received.len();
        self.received.retain(|_, r| r.conversation_id != conversation_id || r.seq >= before_seq);
        before - self.received.len()
    }

    fn io(&self, source: io::Error) -> KeystoreError {
        KeystoreError::Io { path: self.path.clone(), source }
    }
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore")
            .field("path", &self.path)
            .field("device", &self.device)
            .field("device_id", &self.device_id)
            .field("identity", &self.identity.as_ref().map(IdentityKey::public))
            .field("link_pending", &self.link.is_some())
            .field("conversation_keys", &self.conversation_keys.len())
            .finish()
    }
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StoredKeystore {
    version: u32,
    device: StoredDevice,
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    identity_seed: Option<[u8; 32]>,
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    link_seed: Option<[u8; 32]>,
    // Public keys only.
    #[zeroize(skip)]
    #[serde(default)]
    trust: TrustStore,
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    mls_state: Option<Vec<u8>>,
    conversation_keys: Vec<StoredKey>,
    #[serde(default)]
    received: Vec<Received>,
    #[zeroize(skip)]
    #[serde(default)]
    sending: Vec<Sending>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StoredDevice {
    #[zeroize(skip)]
    #[serde(default)]
    device_id: Option<Uuid>,
    #[serde(with = "b64")]
    ed25519_secret_key: [u8; 32],
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StoredKey {
    #[zeroize(skip)]
    conversation_id: Uuid,
    generation: u32,
    #[serde(with = "b64")]
    key: [u8; 32],
}

#[cfg(unix)]
fn check_permissions(path: &Path, metadata: &fs::Metadata) -> Result<(), KeystoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeystoreError::InsecurePermissions { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _metadata: &fs::Metadata) -> Result<(), KeystoreError> {
    Ok(())
}

/// Writes `contents` to a fresh `0600` temporary file beside `path`, syncs it, renames it over
/// `path` and syncs the directory, so readers see the old file or the new one. Also used by
/// [`crate::store`] for the session and the device cache.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the keystore path names no file"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(io::Error::other)?;
    let temporary = dir.join(format!(".{}.{:016x}.tmp", file_name.to_string_lossy(), u64::from_be_bytes(suffix)));

    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            // From the first byte on, nobody else can open it.
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // The umask can only remove bits; set exactly 0600 so the owner can rewrite it later.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        // Best effort: the temporary holds secrets; the original error matters more.
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests;
