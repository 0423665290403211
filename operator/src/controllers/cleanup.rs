//! A deletion's database step, with the escape hatches that keep a lost database from wedging
//! a namespace deletion.

use super::status::publish;
use super::{Context, Error};
use crate::sync::Note;
use conclave_resources::ANNOTATION_FORCE_DETACH;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

/// Runs a deletion's database step, with the escape hatches that keep a lost database from
/// wedging a namespace deletion:
///
/// * with the annotation `conclave.io/force-detach` set, the database is not touched at all;
/// * after `--delete-max-failures` failed attempts in a row (default 10, about 20 minutes with
///   the back-off), the finalizer is released anyway.
///
/// Both leave the rows in PostgreSQL as they were (still carrying the Kubernetes reference, so
/// a resource of the same namespace and name adopts them again) and publish a Warning event.
pub async fn cleanup<K, F, Fut>(ctx: &Context, obj: &K, step: F) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(sqlx::pool::PoolConnection<sqlx::Postgres>) -> Fut,
    Fut: Future<Output = Result<Note, Error>>,
{
    if obj.annotations().contains_key(ANNOTATION_FORCE_DETACH) {
        let note = Note::warning(
            "ForceDetached",
            format!(
                "{ANNOTATION_FORCE_DETACH} is set: finalizer released without touching PostgreSQL; rows are left as they were"
            ),
        );
        publish(ctx, obj, &note).await;
        ctx.forget(&obj.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    let uid = obj.uid().unwrap_or_default();
    let attempt = async {
        let conn = ctx.pool.acquire().await?;
        step(conn).await
    };
    match attempt.await {
        Ok(note) => {
            publish(ctx, obj, &note).await;
            ctx.forget(&uid);
            Ok(Action::await_change())
        }
        Err(err) => {
            let failures = ctx.failures_of(&uid) + 1;
            let max = ctx.config.delete_max_failures;
            if max > 0 && failures >= max && !matches!(err, Error::Waiting(_)) {
                let note = Note::warning(
                    "FinalizerReleased",
                    format!(
                        "gave up after {failures} failed attempts to reach PostgreSQL ({err}); rows are left as they were"
                    ),
                );
                publish(ctx, obj, &note).await;
                ctx.forget(&uid);
                return Ok(Action::await_change());
            }
            Err(err)
        }
    }
}
