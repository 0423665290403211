//! Running every kind's controller at once.

use super::{Context, bot, dataplane, organization, webhook, workspace};
use futures::StreamExt;
use std::fmt::Debug;
use std::sync::Arc;

/// Runs every controller until shutdown or until the Lease is lost; see [`crate::run`].
pub async fn run_controllers(ctx: Arc<Context>) {
    let watch_ns = ctx.config.watch_namespace.clone();
    futures::join!(
        organization::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
        workspace::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
        webhook::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
        bot::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
        dataplane::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
    );
}

async fn log_result<T: Debug, E: std::fmt::Display>(result: Result<T, E>) {
    match result {
        Ok(done) => tracing::debug!(?done, "reconciled"),
        Err(err) => tracing::debug!(error = %err, "controller"),
    }
}
