//! Keeping a conversation's group in step with the server: what a device does before it sends in,
//! or reads, a conversation.
//!
//! - [`Device::open_group`] brings the device's group to the conversation's current epoch, however
//!   the device stands: its stored group caught up; a new group when the conversation has none yet
//!   (epoch 0); joined from the Welcome the server holds for it; or, when its state is lost,
//!   corrupt or too far behind, rejoined by external commit. A rejoin says so
//!   ([`Opened::Rejoined`]): what was sent in the epochs it skipped cannot be read, and the
//!   conversation shows that messages may be missing.
//! - [`Device::reconcile`] makes the group's leaves match the members' active devices as the
//!   server lists them: one commit removes the leaves of devices that left (a member removed, a
//!   device revoked), the next adds the devices that have no leaf (claiming a key package for each,
//!   and only for them). Another device's commit winning the epoch is caught up on and the change
//!   is made again, a bounded number of times. Leaves of departed devices go by committing the
//!   delivery service's removal proposals when it has some, by this device's own commit
//!   otherwise; and a group whose external sender is not the delivery service's current removal
//!   key (rotated, or none when the group was made) is moved to it.
//!
//! The server's listing decides who should be in the group, as it decides membership; what the
//! server cannot do is put in a device the account's identity key did not sign, or a user who is
//! not listed as a member: every leaf is checked ([`super::verify_leaf`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openmls::group::MlsGroup;
use uuid::Uuid;

use super::MlsError;
use super::delivery::{DeliveryError, GroupAddress};
use super::group::{Device, ExternalSenderKey, Roster};
use super::trust::TrustStore;
use crate::api::Client;

/// How many times a change is made again after another device's commit won the epoch.
pub const MAX_REBASES: usize = 4;

/// How long a device trusts the delivery service's removal keys it fetched before asking again: a
/// rotation reaches each group within this (and the rotation's overlap is a day by default).
pub const SERVICE_REFRESH: Duration = Duration::from_secs(600);

/// What the server says a conversation's group must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The conversation's current epoch (0 before its first commit).
    pub epoch: i32,
    /// A member left or a device was revoked: application messages are refused until a commit.
    pub rotation_required: bool,
    /// The members.
    pub members: BTreeSet<Uuid>,
    /// The members' active devices, as `(user, device)`.
    pub devices: BTreeSet<(Uuid, Uuid)>,
}

impl Membership {
    /// Reads the conversation and its member devices.
    pub async fn fetch(client: &Client, at: GroupAddress) -> Result<Self, DeliveryError> {
        let conversation = client.conversation(at.organization_id, at.conversation_id).await?;
        let devices = client.conversation_devices(at.organization_id, at.conversation_id).await?;
        Ok(Self {
            epoch: conversation.current_key_generation,
            rotation_required: conversation.rotation_required,
            members: conversation.members.iter().map(|m| m.user_id).collect(),
            devices: devices.iter().map(|d| (d.user_id, d.device_id)).collect(),
        })
    }

    /// The roster leaves are checked against: the members, and as revoked every device of the
    /// group that is not an active device of a member.
    pub fn roster(&self, group: Option<&MlsGroup>) -> Roster {
        let active: BTreeSet<Uuid> = self.devices.iter().map(|(_, device)| *device).collect();
        let revoked = group
            .map(Device::leaves)
            .unwrap_or_default()
            .into_iter()
            .filter(|leaf| self.members.contains(&leaf.user_id) && !active.contains(&leaf.device_id))
            .map(|leaf| leaf.device_id)
            .collect();
        Roster { members: self.members.clone(), revoked }
    }
}

/// How a device came to hold a conversation's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// From its own storage, caught up on the commits it missed.
    Loaded,
    /// Made now: the conversation had no group yet (add the members with [`Device::reconcile`]).
    Created,
    /// From the Welcome the server held for it.
    Joined,
    /// By external commit, its state lost or unusable: messages of the epochs between may be
    /// missing.
    Rejoined,
}

/// Whether an error means the device's state of the group cannot go on (as opposed to the server
/// being unreachable, which a retry fixes).
fn unusable(error: &DeliveryError) -> bool {
    matches!(error, DeliveryError::Mls(_))
}

impl Device {
    /// Brings this device's group of `at` to the conversation's current epoch (see the module
    /// documentation). The group is saved in the device's storage as it changes.
    pub async fn open_group(
        &self,
        client: &Client,
        at: GroupAddress,
        membership: &Membership,
        trust: &mut TrustStore,
    ) -> Result<(MlsGroup, Opened), DeliveryError> {
        if let Some(mut group) = self.load(at.conversation_id)? {
            let roster = membership.roster(Some(&group));
            match self.catch_up(client, at, &mut group, &roster, trust).await {
                Ok(_) if group.is_active() => return Ok(self.listed(group, Opened::Loaded, membership)),
                Ok(_) => self.forget(&mut group)?,
                Err(error) if unusable(&error) => {
                    self.forget(&mut group)?;
                    return self.rejoin_as_member(client, at, membership, trust).await;
                }
                Err(error) => return Err(error),
            }
        }
        if membership.epoch == 0 {
            let sender = self.removal_key(client).await?;
            return Ok((self.create_group(at.conversation_id, sender.as_ref())?, Opened::Created));
        }
        let roster = membership.roster(None);
        match self.join_from_server_at(client, at, &roster, trust, membership.epoch).await {
            Ok(mut group) => {
                let roster = membership.roster(Some(&group));
                match self.catch_up(client, at, &mut group, &roster, trust).await {
                    Ok(_) if group.is_active() => return Ok(self.listed(group, Opened::Joined, membership)),
                    Ok(_) => self.forget(&mut group)?,
                    Err(error) if unusable(&error) => self.forget(&mut group)?,
                    Err(error) => return Err(error),
                }
            }
            Err(DeliveryError::Api(error)) if error.is_api("not_found") => {}
            Err(error) if unusable(&error) => {}
            Err(error) => return Err(error),
        }
        self.rejoin_as_member(client, at, membership, trust).await
    }

    /// A group caught up on the commits the server handed over, which must reach the epoch it
    /// lists the conversation at: short of it, [`Device::saw_epoch`] holds back this device's
    /// messages.
    fn listed(&self, group: MlsGroup, opened: Opened, membership: &Membership) -> (MlsGroup, Opened) {
        if let Ok(listed) = u64::try_from(membership.epoch) {
            self.saw_epoch(&group, listed);
        }
        (group, opened)
    }

    async fn rejoin_as_member(
        &self,
        client: &Client,
        at: GroupAddress,
        membership: &Membership,
        trust: &mut TrustStore,
    ) -> Result<(MlsGroup, Opened), DeliveryError> {
        let roster = membership.roster(None);
        let group = self.rejoin_from_server(client, at, &roster, trust).await?;
        Ok((group, Opened::Rejoined))
    }

    /// [`Self::open_group`] then [`Self::reconcile`]: the group of `at`, current and holding exactly
    /// the members' active devices. When another device made the conversation's first group at
    /// the same time and won, this device's own is dropped and it joins theirs.
    pub async fn sync_group(
        &self,
        client: &Client,
        at: GroupAddress,
        trust: &mut TrustStore,
    ) -> Result<(MlsGroup, Opened), DeliveryError> {
        let mut last = None;
        for _ in 0..2 {
            let membership = Membership::fetch(client, at).await?;
            let (mut group, opened) = self.open_group(client, at, &membership, trust).await?;
            match self.reconcile(client, at, &mut group, trust).await {
                Ok(_) => return Ok((group, opened)),
                Err(error) if opened == Opened::Created && unusable(&error) => {
                    self.forget(&mut group)?;
                    last = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or(DeliveryError::Mls(MlsError::NotInGroup)))
    }

    /// Makes the group's leaves match the members' active devices (see the module documentation).
    /// Returns the epoch of the last commit made, or `None` when the group already matched.
    pub async fn reconcile(
        &self,
        client: &Client,
        at: GroupAddress,
        group: &mut MlsGroup,
        trust: &mut TrustStore,
    ) -> Result<Option<i32>, DeliveryError> {
        let mut committed = None;
        for _ in 0..MAX_REBASES * 2 {
            let membership = Membership::fetch(client, at).await?;
            let roster = membership.roster(Some(group));
            if !membership.devices.iter().any(|(_, device)| *device == self.device_id()) {
                return Err(MlsError::NotInGroup.into());
            }
            let active: BTreeSet<Uuid> = membership.devices.iter().map(|(_, device)| *device).collect();
            let leaves: BTreeSet<Uuid> = Device::leaves(group).into_iter().map(|leaf| leaf.device_id).collect();
            let gone: Vec<Uuid> = leaves.difference(&active).copied().collect();
            let missing: Vec<(Uuid, Uuid)> =
                membership.devices.iter().filter(|(_, device)| !leaves.contains(device)).copied().collect();
            let pushed = if !gone.is_empty() {
                let outgoing = match self.proposed_removals(client, at, group, &gone, &roster, trust).await? {
                    Some(outgoing) => outgoing,
                    // No proposal (a group without the delivery service as external sender): this
                    // device removes the leaves by its own commit.
                    None => self.remove(group, &gone)?,
                };
                self.push(client, at, group, outgoing).await
            } else if !missing.is_empty() {
                match self.add_devices(client, at, group, &missing, &roster, trust).await? {
                    Some(outgoing) => self.push(client, at, group, outgoing).await,
                    // Every missing device is out of key packages: it is added once it has some.
                    None => return Ok(committed),
                }
            } else if (membership.rotation_required || membership.epoch == 0)
                && u64::try_from(membership.epoch).is_ok_and(|epoch| epoch == group.epoch().as_u64())
            {
                // Nothing to change in the group, but the server waits for a commit (a member
                // without a device left), or has none of this group yet (a conversation of one
                // device: the server keeps the group info of the epoch the commit opens): a
                // fresh leaf of this device's.
                let outgoing = self.self_update(group)?;
                self.push(client, at, group, outgoing).await
            } else if let Some(sender) = self.stale_external_sender(client, group).await? {
                // The delivery service's removal key rotated (or the group was made before it had
                // one): the group moves to the current key while the old one still verifies.
                let outgoing = self.move_external_sender(group, &sender)?;
                self.push(client, at, group, outgoing).await
            } else {
                return Ok(committed);
            };
            match pushed {
                Ok(epoch) => committed = Some(epoch),
                Err(DeliveryError::Rebase { .. }) => {
                    self.catch_up(client, at, group, &roster, trust).await?;
                }
                Err(error) => return Err(error),
            }
        }
        Err(DeliveryError::Mls(MlsError::Protocol {
            context: "reconciling the group",
            reason: format!("other devices kept committing first ({MAX_REBASES} rebases)"),
        }))
    }

    /// The delivery service's current removal key, the external sender of every group made now;
    /// `None` when the data plane has none. Fetched at most every `SERVICE_REFRESH` (ten minutes).
    pub async fn removal_key(&self, client: &Client) -> Result<Option<ExternalSenderKey>, DeliveryError> {
        self.fetch_removal_key(client, false).await
    }

    /// Forgets the removal keys fetched, so the next sync asks again (as it does anyway once
    /// `SERVICE_REFRESH` (ten minutes) has passed).
    pub fn forget_removal_keys(&self) {
        *self.service.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    async fn fetch_removal_key(
        &self,
        client: &Client,
        fresh: bool,
    ) -> Result<Option<ExternalSenderKey>, DeliveryError> {
        if !fresh {
            let cached = self.service.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, service)) = cached.as_ref()
                && at.elapsed() < SERVICE_REFRESH
            {
                return Ok(service.removal_key.map(|public_key| ExternalSenderKey { public_key }));
            }
        }
        let service = client.delivery_service().await?;
        let key = service.removal_key.map(|public_key| ExternalSenderKey { public_key });
        *self.service.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), service));
        Ok(key)
    }

    /// The delivery service's current removal key when `group` does not name it as its only
    /// external sender (and the data plane has one). A difference is checked against a fresh
    /// answer before it counts, so a key this device fetched before a rotation never moves a
    /// group back to the old key.
    async fn stale_external_sender(
        &self,
        client: &Client,
        group: &MlsGroup,
    ) -> Result<Option<ExternalSenderKey>, DeliveryError> {
        let differs = |key: &Option<ExternalSenderKey>| {
            key.as_ref().is_some_and(|current| !Device::external_sender_is(group, current))
        };
        if !differs(&self.fetch_removal_key(client, false).await?) {
            return Ok(None);
        }
        let current = self.fetch_removal_key(client, true).await?;
        Ok(if differs(&current) { current } else { None })
    }

    /// A commit of the delivery service's removal proposals for the group's current epoch, or
    /// `None` when it has none for this epoch. They may cover fewer devices than `gone`; the
    /// next round of [`Self::reconcile`] removes the rest itself.
    async fn proposed_removals(
        &self,
        client: &Client,
        at: GroupAddress,
        group: &mut MlsGroup,
        gone: &[Uuid],
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<Option<super::Outgoing>, DeliveryError> {
        let pending = client.proposals(at.organization_id, at.conversation_id).await?;
        if u64::try_from(pending.epoch).ok() != Some(group.epoch().as_u64()) || pending.proposals.is_empty() {
            return Ok(None);
        }
        let proposals: Vec<Vec<u8>> = pending.proposals.into_iter().map(|p| p.0).collect();
        let gone: BTreeSet<Uuid> = gone.iter().copied().collect();
        Ok(self.commit_removals(group, &proposals, &gone, roster, trust)?)
    }

    /// A commit adding `devices` (with a key package claimed for each, and only for them), or
    /// `None` when none of them has a key package left.
    async fn add_devices(
        &self,
        client: &Client,
        at: GroupAddress,
        group: &mut MlsGroup,
        devices: &[(Uuid, Uuid)],
        roster: &Roster,
        trust: &mut TrustStore,
    ) -> Result<Option<super::Outgoing>, DeliveryError> {
        let users: BTreeSet<Uuid> = devices.iter().map(|(user, _)| *user).collect();
        let wanted: BTreeSet<Uuid> = devices.iter().map(|(_, device)| *device).collect();
        let claimed = client
            .claim_device_key_packages(
                at.organization_id,
                users.into_iter().collect(),
                wanted.iter().copied().collect(),
            )
            .await?;
        let packages: Vec<Vec<u8>> = claimed.key_packages.into_iter().map(|p| p.key_package.0).collect();
        if packages.is_empty() {
            return Ok(None);
        }
        // Only the devices asked for, checked before any identity key is pinned.
        for package in &packages {
            let leaf = self.key_package_leaf(package)?;
            if !wanted.contains(&leaf.device_id) {
                return Err(MlsError::Unrequested { user_id: leaf.user_id, device_id: leaf.device_id }.into());
            }
        }
        Ok(Some(self.add(group, &packages, roster, trust)?))
    }
}
