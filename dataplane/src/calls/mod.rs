//! Calls. Media flows between the devices (directly or through the deployment's TURN servers);
//! the data plane keeps each call's state and record (`lifecycle`, by the rules of [`state`])
//! and hands out TURN credentials ([`turn`]). docs/calls.md describes it for clients.

use crate::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod lifecycle;
pub mod state;
pub mod sweep;
pub mod turn;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(turn::turn_credentials))
        .routes(routes!(lifecycle::start, lifecycle::list))
        .routes(routes!(lifecycle::accept))
        .routes(routes!(lifecycle::decline))
        .routes(routes!(lifecycle::leave))
        .routes(routes!(lifecycle::heartbeat))
        .routes(routes!(lifecycle::signal))
}
