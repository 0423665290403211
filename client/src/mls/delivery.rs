//! A device's MLS side talking to the delivery service: publishing key packages, adding people,
//! pushing commits (and rebasing when another won the epoch), catching up on commits, joining from
//! a Welcome, rejoining by external commit.

use conclave_protocol::handshake::{MlsBytes, StoredCommit, UploadCommit};
use conclave_protocol::keypackages::{KeyPackageBytes, KeyPackageStock, UploadKeyPackages};
use openmls::group::MlsGroup;
use thiserror::Error;
use uuid::Uuid;

use super::MlsError;
use super::group::{Device, Incoming, Outgoing, Roster};
use super::trust::TrustStore;
use crate::api::{Client, Error as ApiCallError};

/// Why a delivery step failed.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// The MLS layer refused (an attack, or corrupt state).
    #[error(transparent)]
    Mls(#[from] MlsError),
    /// The server refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiCallError),
    /// Another device's commit won this epoch: catch up and make the change again.
    #[error("another commit won epoch {made_in}; the conversation is at epoch {current}")]
    Rebase { made_in: u64, current: i64 },
}

impl From<DeliveryError> for ApiCallError {
    fn from(error: DeliveryError) -> Self {
        match error {
            DeliveryError::Mls(error) => Self::Mls(error),
            DeliveryError::Api(error) => error,
            DeliveryError::Rebase { .. } => Self::Protocol(error.to_string()),
        }
    }
}

/// Where a group lives on the server.
#[derive(Debug, Clone, Copy)]
pub struct GroupAddress {
    pub organization_id: Uuid,
    pub conversation_id: Uuid,
}

fn epoch_i32(epoch: u64) -> Result<i32, MlsError> {
    i32::try_from(epoch).map_err(|_| MlsError::Protocol { context: "epoch", reason: "beyond 2^31 - 1".to_owned() })
}

impl Device {
    /// Uploads `one_time` fresh key packages (and a last-resort one when asked).
    pub async fn publish_key_packages(
        &self,
        client: &Client,
        one_time: usize,
        last_resort: bool,
    ) -> Result<KeyPackageStock, DeliveryError> {
        let key_packages =
            (0..one_time).map(|_| self.key_package(false).map(KeyPackageBytes)).collect::<Result<Vec<_>, _>>()?;
        let last_resort = if last_resort { Some(KeyPackageBytes(self.key_package(true)?)) } else { None };
        Ok(client.upload_key_packages(&UploadKeyPackages { key_packages, last_resort }).await?)
    }

    /// Hands a commit this device made to the server. Accepted: the group moves on. Another commit
    /// won the epoch: the pending commit is dropped and [`DeliveryError::Rebase`] says so.
    pub async fn push(
        &self,
        client: &Client,
        at: GroupAddress,
        group: &mut MlsGroup,
        outgoing: Outgoing,
    ) -> Result<i32, DeliveryError> {
        let body = UploadCommit {
            epoch: epoch_i32(outgoing.epoch)?,
            commit: MlsBytes(outgoing.commit),
            group_info: MlsBytes(outgoing.group_info),
            welcome: outgoing.welcome.map(MlsBytes),
            welcomed_devices: outgoing.welcomed.iter().map(|(_, device)| *device).collect(),
            proposals: outgoing.proposals.into_iter().map(MlsBytes).collect(),
        };
        match client.upload_commit(at.organization_id, at.conversation_id, &body).await {
            Ok(accepted) => {
                self.merge_pending(group)?;
                Ok(accepted.epoch)
            }
            Err(error) if error.is_api("stale_generation") => {
                self.discard_pending(group)?;
                let current = error.current_key_generation().unwrap_or_default();
                if let Ok(later) = u64::try_from(current) {
                    self.saw_epoch(group, later);
                }
                Err(DeliveryError::Rebase { made_in: outgoing.epoch, current })
            }
            Err(error) => {
                self.discard_pending(group)?;
                Err(error.into())
            }
        }
    }

    /// Adds every active device of `users` (members of the conversation by now): claims their key
    /// packages, checks them, commits, and pushes the commit with its Welcome.
    pub async fn add_users(
        &self,
        client: &Client,
        at: GroupAddress,
        group: &mut MlsGroup,
        users: Vec<Uuid>,
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<i32, DeliveryError> {
        let claimed = client.claim_key_packages(at.organization_id, users.clone()).await?;
        let packages: Vec<Vec<u8>> = claimed.key_packages.into_iter().map(|p| p.key_package.0).collect();
        // Only devices of the users asked for, checked before any of their identity keys is pinned.
        for package in &packages {
            let leaf = self.key_package_leaf(package)?;
            if !users.contains(&leaf.user_id) {
                return Err(MlsError::Unrequested { user_id: leaf.user_id, device_id: leaf.device_id }.into());
            }
        }
        let outgoing = self.add(group, &packages, roster, trust)?;
        self.push(client, at, group, outgoing).await
    }

    /// Processes, in order, the commits the group has missed.
    pub async fn catch_up(
        &self,
        client: &Client,
        at: GroupAddress,
        group: &mut MlsGroup,
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<Vec<Incoming>, DeliveryError> {
        self.catch_up_to(client, at, group, roster, trust, u64::MAX).await
    }

    /// Processes, in order, the commits the group has missed up to epoch `until` (to read the
    /// messages of an epoch before moving past it).
    pub async fn catch_up_to(
        &self,
        client: &Client,
        at: GroupAddress,
        group: &mut MlsGroup,
        roster: &Roster,
        trust: &mut TrustStore,
        until: u64,
    ) -> Result<Vec<Incoming>, DeliveryError> {
        let mut seen = Vec::new();
        while group.epoch().as_u64() < until {
            let after = epoch_i32(group.epoch().as_u64())?;
            let commits = client.commits(at.organization_id, at.conversation_id, after).await?;
            if commits.is_empty() {
                break;
            }
            for commit in commits {
                if group.epoch().as_u64() >= until {
                    break;
                }
                seen.push(self.process_commit(group, &commit, roster, trust)?);
            }
        }
        Ok(seen)
    }

    /// Processes a stored commit: first the delivery service's proposals it includes by reference
    /// (each verified against the group's external sender, and stored), then the commit.
    pub fn process_commit(
        &self,
        group: &mut MlsGroup,
        commit: &StoredCommit,
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<Incoming, MlsError> {
        for proposal in &commit.proposals {
            match self.process(group, &proposal.0, roster, trust)? {
                Incoming::RemovalProposed { .. } => {}
                _ => return Err(MlsError::UnauthorizedSender),
            }
        }
        self.process(group, &commit.commit.0, roster, trust)
    }

    /// Joins the group from the latest Welcome the server holds for this device.
    pub async fn join_from_server(
        &self,
        client: &Client,
        at: GroupAddress,
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<MlsGroup, DeliveryError> {
        self.join_from_server_at(client, at, roster, trust, 0).await
    }

    /// [`Self::join_from_server`] knowing that the conversation is at `current_epoch` now. A Welcome
    /// of an earlier epoch describes the group as it was: its leaves may include members removed
    /// since (the commits after it remove them), so a leaf of a user the roster no longer lists is
    /// accepted in it; every leaf must still carry its user's identity signature, and a Welcome of
    /// the current epoch must match the roster exactly.
    pub async fn join_from_server_at(
        &self,
        client: &Client,
        at: GroupAddress,
        roster: &Roster,
        trust: &mut TrustStore,
        current_epoch: i32,
    ) -> Result<MlsGroup, DeliveryError> {
        let welcome = client.welcome(at.organization_id, at.conversation_id).await?;
        let stale = welcome.epoch < current_epoch;
        Ok(self.join_group(&welcome.welcome.0, Some(at.conversation_id), roster, stale, trust)?)
    }

    /// Rejoins by external commit from the current group info (state lost, or too far behind).
    pub async fn rejoin_from_server(
        &self,
        client: &Client,
        at: GroupAddress,
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<MlsGroup, DeliveryError> {
        let info = client.group_info(at.organization_id, at.conversation_id).await?;
        let (mut group, outgoing) = self.rejoin(&info.group_info.0, roster, trust)?;
        self.push(client, at, &mut group, outgoing).await?;
        Ok(group)
    }
}
