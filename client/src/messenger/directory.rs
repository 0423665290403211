//! The public keys of devices seen in conversations, kept so that old messages stay verifiable.
//!
//! `GET .../conversations/{c}/devices` lists the active devices of *current* members only: once
//! a member leaves (or revokes a device), the server no longer lists the device whose signature
//! is on their old messages. The directory remembers every device it was ever shown (device ids
//! are global, so one map serves every conversation) and can persist itself in the profile
//! (`devices.json`), so a removed member's old messages remain verifiable across runs.
//!
//! A device's keys never change on the server; if the server ever reports different keys for a
//! device id already known, the first ones seen are kept (trust on first use) and the change is
//! counted in [`DeviceDirectory::conflicts`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use conclave_protocol::api::MemberDevice;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{StoreError, read_private, write_json};

/// Device id → its public keys and owner.
#[derive(Debug, Default)]
pub struct DeviceDirectory {
    devices: BTreeMap<Uuid, MemberDevice>,
    path: Option<PathBuf>,
    conflicts: usize,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    devices: Vec<MemberDevice>,
}

impl DeviceDirectory {
    /// An empty directory kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The directory persisted at `path` (loaded now if the file exists).
    pub fn load(path: PathBuf) -> Result<Self, StoreError> {
        let mut directory = Self { path: Some(path.clone()), ..Self::default() };
        if let Some(text) = read_private(&path)? {
            let stored: Stored = serde_json::from_str(&text)
                .map_err(|e| StoreError::Malformed { path: path.clone(), reason: e.to_string() })?;
            directory.devices = stored.devices.into_iter().map(|d| (d.device_id, d)).collect();
        }
        Ok(directory)
    }

    /// The keys of a device, if it was ever seen.
    pub fn get(&self, device_id: Uuid) -> Option<&MemberDevice> {
        self.devices.get(&device_id)
    }

    /// Remembers devices (keeping the first keys seen for a known id); saves if anything is new.
    pub fn remember<'a>(&mut self, devices: impl IntoIterator<Item = &'a MemberDevice>) -> Result<(), StoreError> {
        let mut changed = false;
        for device in devices {
            match self.devices.get(&device.device_id) {
                Some(known) if known == device => {}
                Some(_) => self.conflicts += 1,
                None => {
                    self.devices.insert(device.device_id, device.clone());
                    changed = true;
                }
            }
        }
        match (&self.path, changed) {
            (Some(path), true) => {
                write_json(path, &Stored { version: 1, devices: self.devices.values().cloned().collect() })
            }
            _ => Ok(()),
        }
    }

    /// How many times the server reported other keys for a device already known.
    pub fn conflicts(&self) -> usize {
        self.conflicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(byte: u8) -> MemberDevice {
        MemberDevice {
            user_id: Uuid::from_u128(1),
            device_id: Uuid::from_u128(u128::from(byte)),
            x25519_public_key: [byte; 32],
            ed25519_public_key: [byte; 32],
            credential: None,
        }
    }

    #[test]
    fn the_first_keys_seen_for_a_device_are_kept_and_persisted() {
        let dir = std::env::temp_dir().join(format!("conclave-directory-test-{}", Uuid::new_v4()));
        std::fs::create_dir(&dir).expect("dir");
        let path = dir.join("devices.json");
        let mut directory = DeviceDirectory::load(path.clone()).expect("empty");
        directory.remember(&[device(1), device(2)]).expect("save");
        let mut substituted = device(1);
        substituted.ed25519_public_key = [9; 32];
        directory.remember(&[substituted]).expect("save");
        assert_eq!(directory.conflicts(), 1);
        let reloaded = DeviceDirectory::load(path).expect("load");
        assert_eq!(reloaded.get(Uuid::from_u128(1)), Some(&device(1)));
        assert_eq!(reloaded.get(Uuid::from_u128(2)), Some(&device(2)));
        let _ = std::fs::remove_dir_all(dir);
    }
}
