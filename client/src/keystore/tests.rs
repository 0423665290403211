use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::crypto::ConversationKey;

/// A directory of its own under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("conclave-keystore-test-{}", Uuid::new_v4()));
        fs::create_dir(&dir).expect("create a test directory");
        Self(dir)
    }

    fn keystore(&self) -> PathBuf {
        self.0.join("keystore.json")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("keystore exists").permissions().mode() & 0o777
}

fn device() -> DeviceKeys {
    DeviceKeys::generate().expect("system randomness")
}

#[test]
fn a_created_keystore_is_readable_by_its_owner_only() {
    let dir = TempDir::new();
    Keystore::create(dir.keystore(), device()).expect("create");
    assert_eq!(mode(&dir.keystore()), 0o600);
}

#[test]
fn device_and_conversation_keys_survive_a_save_and_load() {
    let dir = TempDir::new();
    let conversation = Uuid::new_v4();
    let device_id = Uuid::new_v4();
    let mut keystore = Keystore::create(dir.keystore(), device()).expect("create");
    keystore.set_device_id(device_id);
    for generation in [1, 2] {
        keystore.insert_key(ConversationKey::generate(conversation, generation).expect("randomness"));
    }
    keystore.save().expect("save");

    let loaded = Keystore::load(dir.keystore()).expect("load");
    assert_eq!(loaded.device().public(), keystore.device().public());
    assert_eq!(loaded.device().key_signature(), keystore.device().key_signature());
    assert_eq!(loaded.device_id(), Some(device_id));
    for generation in [1, 2] {
        assert_eq!(
            loaded.key(conversation, generation).expect("kept").expose_secret(),
            keystore.key(conversation, generation).expect("inserted").expose_secret()
        );
    }
    assert_eq!(loaded.latest_key(conversation).expect("some generation").generation(), 2);
    assert!(loaded.latest_key(Uuid::new_v4()).is_none());
}

#[test]
fn a_keystore_readable_by_group_or_others_is_refused() {
    let dir = TempDir::new();
    Keystore::create(dir.keystore(), device()).expect("create");
    for wider in [0o640, 0o604, 0o660, 0o644] {
        fs::set_permissions(dir.keystore(), fs::Permissions::from_mode(wider)).expect("chmod");
        let err = Keystore::load(dir.keystore()).expect_err("wider than 0600");
        assert!(matches!(err, KeystoreError::InsecurePermissions { mode, .. } if mode == wider), "{err:?}");
        assert!(err.to_string().contains("chmod 600"), "the message says how to fix it: {err}");
    }
    fs::set_permissions(dir.keystore(), fs::Permissions::from_mode(0o400)).expect("chmod");
    Keystore::load(dir.keystore()).expect("narrower than 0600 is fine");
}

#[test]
fn saving_replaces_the_file_and_leaves_no_temporary_behind() {
    let dir = TempDir::new();
    let mut keystore = Keystore::create(dir.keystore(), device()).expect("create");
    keystore.insert_key(ConversationKey::generate(Uuid::new_v4(), 1).expect("randomness"));
    keystore.save().expect("save");
    keystore.save().expect("save again");

    let entries: Vec<_> = fs::read_dir(&dir.0).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("keystore.json")]);
    assert_eq!(mode(&dir.keystore()), 0o600);
    assert_eq!(Keystore::load(dir.keystore()).expect("load").conversation_keys.len(), 1);
}

#[test]
fn creating_over_an_existing_keystore_is_refused() {
    let dir = TempDir::new();
    Keystore::create(dir.keystore(), device()).expect("create");
    let err = Keystore::create(dir.keystore(), device()).expect_err("never overwrite keys");
    assert!(matches!(err, KeystoreError::AlreadyExists(_)), "{err:?}");
}

#[test]
fn forgetting_a_conversation_drops_all_its_generations() {
    let dir = TempDir::new();
    let (left, kept) = (Uuid::new_v4(), Uuid::new_v4());
    let mut keystore = Keystore::create(dir.keystore(), device()).expect("create");
    for (conversation, generation) in [(left, 1), (left, 2), (kept, 1)] {
        keystore.insert_key(ConversationKey::generate(conversation, generation).expect("randomness"));
    }
    keystore.forget_conversation(left);
    assert!(keystore.latest_key(left).is_none());
    assert!(keystore.key(kept, 1).is_some());
}

#[test]
fn a_keystore_of_another_format_version_is_refused() {
    let dir = TempDir::new();
    Keystore::create(dir.keystore(), device()).expect("create");
    let text = fs::read_to_string(dir.keystore()).expect("read");
    fs::write(dir.keystore(), text.replace("\"version\": 3", "\"version\": 4")).expect("write");
    let err = Keystore::load(dir.keystore()).expect_err("version 4");
    assert!(matches!(err, KeystoreError::UnsupportedVersion { found: 4, .. }), "{err:?}");
}

#[test]
fn a_keystore_of_an_earlier_version_with_an_x25519_key_is_refused() {
    // Versions 1 and 2 held version 1's X25519 key; there are no deployments to carry over.
    let dir = TempDir::new();
    Keystore::create(dir.keystore(), device()).expect("create");
    let text = fs::read_to_string(dir.keystore()).expect("read");
    assert!(!text.contains("x25519"), "{text}");
    for version in [1, 2] {
        let mut older: serde_json::Value = serde_json::from_str(&text).expect("json");
        older["version"] = serde_json::json!(version);
        older["device"]["x25519_secret_key"] = serde_json::json!(b64::encode([2u8; 32]));
        let older = older.to_string();
        fs::write(dir.keystore(), older).expect("write");
        let err = Keystore::load(dir.keystore()).expect_err("an earlier version");
        assert!(matches!(err, KeystoreError::UnsupportedVersion { found, .. } if found == version), "{err:?}");
    }
}

#[test]
fn the_identity_link_and_pins_survive_a_save() {
    use crate::mls::transfer::LinkSecret;
    use crate::mls::{IdentityKey, Trust};
    let dir = TempDir::new();
    let mut keystore = Keystore::create(dir.keystore(), device()).expect("create");
    let link = LinkSecret::generate().expect("link");
    keystore.set_link(LinkSecret::from_seed(link.seed()));
    keystore.save().expect("save");
    let device_id = Uuid::now_v7();
    assert_eq!(
        Keystore::load(dir.keystore()).expect("load").link().map(|l| l.code(device_id)),
        Some(link.code(device_id))
    );

    let (identity, alice) = (IdentityKey::generate().expect("identity"), Uuid::now_v7());
    let alices = IdentityKey::generate().expect("alice's").public();
    keystore.set_identity(IdentityKey::from_seed(&identity.seed()));
    assert_eq!(keystore.trust_mut().check(alice, &alices), Ok(Trust::New));
    keystore.save().expect("save");
    let mut loaded = Keystore::load(dir.keystore()).expect("load");
    assert_eq!(loaded.identity().map(IdentityKey::public), Some(identity.public()));
    assert!(loaded.link().is_none(), "the link key is dropped once the identity arrived");
    assert_eq!(loaded.trust_mut().check(alice, &alices), Ok(Trust::Unverified));
    let debug = format!("{loaded:?}");
    assert!(!debug.contains(&b64::encode(*identity.seed())), "{debug}");
}

#[test]
fn debug_output_shows_no_secret() {
    let dir = TempDir::new();
    let mut keystore = Keystore::create(dir.keystore(), device()).expect("create");
    let key = ConversationKey::generate(Uuid::new_v4(), 1).expect("randomness");
    keystore.insert_key(key.clone());
    let seed = keystore.device().seed();
    let debug = format!("{keystore:?} {key:?}");
    for secret in [&*seed, key.expose_secret()] {
        assert!(!debug.contains(&b64::encode(secret)), "{debug}");
        assert!(!debug.contains(&format!("{:?}", secret)), "{debug}");
    }
    assert!(debug.contains("<redacted>"));
}
