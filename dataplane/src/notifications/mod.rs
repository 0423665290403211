//! Notifications: what a person wants to hear about, and how many messages wait for them
//! (docs/notifications.md).
//!
//! - `preferences`: account-wide defaults and overrides per organization,
//!   workspace and conversation;
//! - [`policy`]: the pure rules that turn preferences and an event into push or no push;
//! - [`unread`]: unread counts from the receipts' read cursors, served and announced live;
//! - `mentions`: the members a sender declares mentioned in a message;
//! - `unsubscribe`: the one-click unsubscribe link of notification emails (RFC 8058).
//!
//! Deliveries (Web Push, email digests) run in the outbox worker (`crate::outbox::push`,
//! `crate::outbox::digests`), which reads preferences through [`policy`].

mod mentions;
pub mod policy;
mod preferences;
pub mod unread;
mod unsubscribe;

use crate::AppState;
use utoipa_axum::router::OpenApiRouter;

pub use preferences::load_account;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(preferences::router())
        .merge(unread::router())
        .merge(mentions::router())
        .merge(unsubscribe::router())
}
