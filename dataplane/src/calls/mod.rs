//! Calls. Media flows between the devices (directly or through the deployment's TURN servers);
//! the data plane only hands out TURN credentials ([`turn`]).

use crate::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod turn;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(turn::turn_credentials))
}
