//! The `assign canary` stage: whether this request is one of its stage's canary requests
//! (API Gateway's stage canary, [`crate::config::canary`]).
//!
//! Input: the routed stage, the request's mapping input (its parameters, for a sticky
//! assignment by parameter) and the context (the caller's key id, for a sticky assignment by API
//! key; authentication has run). Output: the stage the rest of the pipeline sees: the stage itself,
//! or its canary view, whose variables carry the canary's overrides (endpoint name, variant,
//! templates) and whose cache scope is its own. The mapping input is pointed at the same stage,
//! and the context records the flag for the access log and the metrics.
//!
//! A stage without a canary costs one `Option` check. Requests refused before this stage (unknown
//! stage or route, a bad key) are neither canary nor primary.

use crate::config::canary::Sticky;
use crate::config::gateway::Stage;
use crate::context::RequestContext;
use crate::integration::MappingInput;

/// Assigns the request (module docs) and returns the stage it runs on.
pub fn assign<'a>(
    stage: &'a Stage,
    input: &mut MappingInput<'a>,
    ctx: &mut RequestContext,
) -> &'a Stage {
    let Some(canary) = stage.canary.as_deref() else {
        return stage;
    };
    let sticky = match &canary.sticky {
        None => None,
        Some(Sticky::ApiKey) => ctx.api_key_id.clone(),
        Some(Sticky::Parameter(p)) => input.value(p, ctx),
    };
    let is_canary = canary.is_canary(&stage.name, sticky.as_deref(), rand::random::<f64>);
    ctx.canary = Some(is_canary);
    if is_canary {
        input.stage = &canary.view;
    }
    input.stage
}
