//! This device's MLS side inside the messenger, and its key packages on the server.
//!
//! The MLS side ([`crate::mls::Device`]) is built on first use from the account's identity key and
//! the device's Ed25519 key, with the storage the keystore saved (key packages' private keys, group
//! states) restored into it; after every use its storage is written back to the keystore, so a key
//! package's private key is on disk before the package is uploaded, and a Welcome that arrives
//! after a restart still opens.

use std::sync::Arc;

use conclave_protocol::keypackages::{KeyPackageBytes, KeyPackageStock, UploadKeyPackages};

use super::Messenger;
use crate::api::{Error, Result};
use crate::mls::Device;

/// How many one-time key packages a device keeps on the server.
pub const KEY_PACKAGE_TARGET: u32 = 32;
/// Below this many, [`Messenger::top_up_key_packages`] uploads new ones.
pub const KEY_PACKAGE_LOW_WATER: u32 = 8;

impl Messenger {
    /// This device's MLS side, built on first use. Whoever changes its state (a key package made,
    /// a group joined or moved on) calls [`Self::save_mls`] afterwards.
    pub fn mls(&self) -> Result<Arc<Device>> {
        let mut slot = self.inner.mls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(device) = slot.as_ref() {
            return Ok(device.clone());
        }
        let device = self.with_keystore(|keystore| -> Result<Device> {
            let identity = keystore.identity().ok_or_else(|| {
                Error::Protocol("this device does not have the account's identity key yet (`conclave identity`)".into())
            })?;
            let device = Device::for_device_keys(identity, self.user_id(), self.device_id(), keystore.device())?;
            if let Some(state) = keystore.mls_state() {
                device.restore(state)?;
            }
            Ok(device)
        })?;
        let device = Arc::new(device);
        *slot = Some(device.clone());
        Ok(device)
    }

    /// Writes the MLS side's storage to the keystore file.
    pub fn save_mls(&self) -> Result<()> {
        let snapshot = self.mls()?.snapshot();
        self.with_keystore(|keystore| {
            keystore.set_mls_state(snapshot);
            keystore.save()
        })?;
        Ok(())
    }

    /// Runs `f` with this device's MLS side, then saves its storage.
    pub fn with_mls<R>(&self, f: impl FnOnce(&Device) -> Result<R>) -> Result<R> {
        let device = self.mls()?;
        let result = f(&device);
        self.save_mls()?;
        result
    }

    /// Forgets the MLS side built in memory (after the identity key changed); the next use
    /// rebuilds it with the new credential.
    pub(super) fn reset_mls(&self) {
        *self.inner.mls.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Makes sure the server holds at least [`KEY_PACKAGE_LOW_WATER`] one-time key packages of
    /// this device and a last-resort one, uploading up to [`KEY_PACKAGE_TARGET`] when it is low.
    pub async fn top_up_key_packages(&self) -> Result<KeyPackageStock> {
        let stock = self.client().key_package_stock().await?;
        if stock.available >= KEY_PACKAGE_LOW_WATER && stock.last_resort {
            return Ok(stock);
        }
        let missing = KEY_PACKAGE_TARGET.saturating_sub(stock.available) as usize;
        let upload = self.with_mls(|device| {
            let key_packages =
                (0..missing).map(|_| device.key_package(false).map(KeyPackageBytes)).collect::<Result<Vec<_>, _>>()?;
            let last_resort = if stock.last_resort { None } else { Some(KeyPackageBytes(device.key_package(true)?)) };
            Ok(UploadKeyPackages { key_packages, last_resort })
        })?;
        self.client().upload_key_packages(&upload).await
    }
}
