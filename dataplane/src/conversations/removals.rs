//! The delivery service as its groups' MLS external sender (RFC 9420 section 12.1.8.1): it
//! proposes `Remove` for the leaves of devices that are no longer active devices of a member (a
//! member removed or gone, a device revoked), signed with the removal key the operator generates,
//! and a member device commits them by reference before any application message is accepted.
//!
//! The proposals are not stored: they follow from what is (the ratchet tree in the current
//! epoch's group info, which the committer uploaded; the members and their active devices), and
//! Ed25519 is deterministic, so asking again gives the same bytes. For the same reason a removal
//! cannot be dropped by a commit that leaves the leaf in the tree: the conversation keeps
//! requiring a rotation (`still_required`) until a commit removes every such leaf.
//!
//! A group made without an external sender, or with a key the data plane no longer holds, gets
//! no proposal; its members remove those leaves by their own commits (`Device::reconcile` in the
//! SDK), which the same rule enforces.

use std::path::Path;

use crate::AppState;
use crate::config::Config;
use crate::context::member_tx;
use crate::context::seat;
use crate::context::session::AuthUser;
use crate::error::ApiResult;
use crate::extract::ApiPath;
use anyhow::Context as _;
use axum::extract::State;
use conclave_protocol::handshake::{DeliveryService, MlsBytes, PendingProposals};
use conclave_protocol::mls_wire;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(delivery_service)).routes(routes!(proposals))
}

/// The removal keys: the one new groups get, and during a rotation's overlap the one it replaces.
pub struct RemovalKeys {
    current: SigningKey,
    previous: Option<SigningKey>,
}

impl std::fmt::Debug for RemovalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemovalKeys").field("current", &self.current.verifying_key()).finish_non_exhaustive()
    }
}

/// Reads a removal key file (Ed25519, PKCS#8 PEM).
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading the MLS removal key {}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| anyhow::anyhow!("the MLS removal key {} is not an Ed25519 PKCS#8 PEM key: {e}", path.display()))
}

impl RemovalKeys {
    /// The keys the configuration names; `None` without `--mls-removal-key-file`. The previous
    /// key's file is read when it exists (the operator's Secret has it only during an overlap).
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(path) = &config.mls_removal_key_file else {
            return Ok(None);
        };
        let current = read_key(path)?;
        let previous = match &config.mls_removal_previous_key_file {
            Some(path) if path.exists() => Some(read_key(path)?),
            _ => None,
        };
        Ok(Some(Self { current, previous }))
    }

    fn public(&self) -> DeliveryService {
        DeliveryService {
            removal_key: Some(self.current.verifying_key().to_bytes()),
            previous_removal_key: self.previous.as_ref().map(|k| k.verifying_key().to_bytes()),
        }
    }

    /// The key that is the group's external sender `index`, with that index, if the data plane
    /// holds it.
    fn for_group(&self, group_info: &[u8]) -> Option<(u32, &SigningKey)> {
        let senders = mls_wire::external_senders(group_info).ok()?;
        [Some(&self.current), self.previous.as_ref()].into_iter().flatten().find_map(|key| {
            let public = key.verifying_key().to_bytes();
            let index = senders.iter().position(|s| *s == public.as_slice())?;
            Some((u32::try_from(index).ok()?, key))
        })
    }
}

/// Writes a new removal key to `path` (PKCS#8 PEM), for tests and local runs; the operator
/// generates the one a deployment uses.
pub fn generate_key_file(path: &Path) -> anyhow::Result<()> {
    let signing = SigningKey::from_bytes(&crate::tokens::random_bytes::<32>());
    let pem = signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("encoding key: {e}"))?;
    std::fs::write(path, pem.as_bytes())?;
    Ok(())
}

/// The leaves of `group_info`'s ratchet tree whose device is not an active device of a member of
/// the conversation (left or removed, or revoked), in leaf order. A leaf whose key is no device
/// the server knows is not counted: the members refuse such leaves themselves. A group info
/// whose tree cannot be read has none.
pub(crate) async fn departed_leaves(
    conn: &mut PgConnection,
    conversation_id: Uuid,
    group_info: &[u8],
) -> ApiResult<Vec<u32>> {
    let Ok(leaves) = mls_wire::leaves(group_info) else {
        return Ok(Vec::new());
    };
    let keys: Vec<Vec<u8>> = leaves.iter().map(|l| l.signature_key.to_vec()).collect();
    let departed: Vec<Vec<u8>> = sqlx::query_scalar!(
        r#"SELECT d.ed25519_public_key FROM devices d
            WHERE d.ed25519_public_key = ANY($2)
              AND (d.revoked_at IS NOT NULL
                   OR NOT EXISTS (SELECT 1 FROM conversation_members m
                                   WHERE m.conversation_id = $1 AND m.user_id = d.user_id))"#,
        conversation_id,
        &keys[..]
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(leaves.into_iter().filter(|l| departed.iter().any(|k| k == l.signature_key)).map(|l| l.index).collect())
}

/// After a commit opened a new epoch with `group_info`: whether leaves of departed devices are
/// still in the tree, so the conversation must keep refusing application messages.
pub(crate) async fn still_required(
    conn: &mut PgConnection,
    conversation_id: Uuid,
    group_info: &[u8],
) -> ApiResult<bool> {
    Ok(!departed_leaves(conn, conversation_id, group_info).await?.is_empty())
}

#[utoipa::path(
    get,
    path = "/v1/mls/delivery-service",
    tag = "conversations",
    operation_id = "get_delivery_service",
    responses((status = 200, description = "The removal key new groups name as their external sender", body = DeliveryService))
)]
async fn delivery_service(State(state): State<AppState>, _auth: AuthUser) -> axum::Json<DeliveryService> {
    axum::Json(
        state
            .removal
            .as_deref()
            .map(RemovalKeys::public)
            .unwrap_or(DeliveryService { removal_key: None, previous_removal_key: None }),
    )
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/proposals",
    tag = "conversations",
    operation_id = "list_proposals",
    responses((status = 200, description = "The delivery service's Remove proposals for the current epoch, in leaf order", body = PendingProposals))
)]
async fn proposals(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<PendingProposals>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let epoch = seat.current_key_generation;
    let info = super::commits::stored_group_info(&mut tx, conversation_id, epoch).await?;
    let mut proposals = Vec::new();
    if let (Some(keys), Some(info)) = (state.removal.as_deref(), info)
        && let Some((sender, key)) = keys.for_group(&info)
    {
        for leaf in departed_leaves(&mut tx, conversation_id, &info).await? {
            let unsigned = mls_wire::external_remove(conversation_id.as_bytes(), epoch as u64, sender, leaf);
            let signature = key.sign(unsigned.to_sign());
            proposals.push(MlsBytes(unsigned.signed(&signature.to_bytes())));
        }
    }
    tx.commit().await?;
    Ok(axum::Json(PendingProposals { epoch, proposals }))
}
