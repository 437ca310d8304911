//! The route stage over the compiled configuration: the request's stage, route and path
//! parameters, resolved against the route table compiled at load.
//!
//! Place in the pipeline: `(head checks) → **route** → authenticate → …`. Input: the request head.
//! Output: [`Routed`]; an unknown stage is 403 `Forbidden`, an unknown route or method 403
//! `Missing Authentication Token`, a malformed path 400.

use super::GatewayConfig;
use super::gateway::{Route, Stage};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::message::{GatewayRequest, HEALTH_PATH};
use crate::route::{self, RouteError};

/// The route stage's output: the stage, the route and its path parameters.
pub type Routed<'a> = (&'a Stage, &'a Route, Vec<(String, String)>);

impl GatewayConfig {
    /// The route stage (also `sagegate test-invoke`'s): the stage named by the first path
    /// segment, then the most specific route of the rest, recorded in the context as they are
    /// known (the stage even when no route matches).
    pub fn route<'a>(
        &'a self,
        req: &GatewayRequest,
        ctx: &mut RequestContext,
    ) -> Result<Routed<'a>, GatewayError> {
        let config = self;
        let (stage_name, rest) =
            route::split_stage(&req.path).ok_or(GatewayError::MissingAuthenticationToken)?;
        let stage = match config.stages.get(stage_name) {
            Some(stage) => stage,
            // `/healthz` is a resource (GET only): another method on it is an unknown method.
            None if stage_name == &HEALTH_PATH[1..] => {
                return Err(GatewayError::MissingAuthenticationToken);
            }
            None => return Err(GatewayError::UnknownStage),
        };
        ctx.stage = Some(stage.name.clone());
        let matched = config
            .table
            .resolve(&req.method, rest, config.server.decode_parameters)
            .map_err(|e| match e {
                RouteError::NotFound => GatewayError::MissingAuthenticationToken,
                RouteError::BadPath(why) => GatewayError::InvalidRequest(why.to_string()),
            })?;
        let route = &config.routes[*matched.value];
        ctx.resource_path = Some(route.path.clone());
        Ok((stage, route, matched.params))
    }
}
