//! The cache lookup and invoke stages as the pipeline runs them: the stage cache's key and
//! directive for this request, then the answer from the cache, a coalesced call, or this
//! request's own call through the circuit breaker.

use std::future::Future;

use bytes::Bytes;

use super::{CacheStatus, Directive, Fetched, KeyRequest, StageCache, directive, key, route_ttl};
use crate::auth::Caller;
use crate::breaker::CallResult;
use crate::config::gateway::Route;
use crate::context::{CIRCUIT_OPEN, CallRecord, RequestContext};
use crate::error::GatewayError;
use crate::integration::MappingInput;
use crate::upstream::{INVOKED_VARIANT, Invocation, UpstreamFailure};

/// The cache lookup and invoke stages: the reply from the stage cache (`store`, when the stage
/// caches), from another request's call for the same key, or from this request's own call
/// (`invoke`, the endpoint's circuit breaker around SageMaker). The bool asks for the `Warning`
/// header of an ignored invalidation. Records the cache status, the call's latency, status and
/// error type, and (when traced) the lookup's and the call's spans.
pub async fn lookup<F, Fut>(
    store: Option<&StageCache>,
    route: &Route,
    caller: Option<&Caller>,
    input: &MappingInput<'_>,
    invocation: &Invocation,
    invoke: F,
    ctx: &mut RequestContext,
) -> Result<(Fetched, bool), GatewayError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = CallResult>,
{
    let stage = input.stage;
    let start = ctx.span_start();
    let cached = store.and_then(|c| {
        let ttl = route_ttl(stage, route)?;
        let req = KeyRequest {
            method: &input.req.method,
            query: &input.params.querystring,
            body: &input.body,
        };
        let key = key(stage, route, req, |p| input.value(p, ctx))?;
        Some((c, ttl, key))
    });
    let mut warn = false;
    let fetched = match cached {
        Some((store, ttl, key)) => {
            let directive = directive(
                input.req.header_values("cache-control"),
                caller,
                &stage.cache,
            );
            let directive = match directive {
                // API Gateway's FAIL_WITH_403: the key is valid, the action is not allowed.
                Directive::Refuse => {
                    return Err(GatewayError::AccessDenied {
                        reason: "not authorized to invalidate the cache",
                    });
                }
                Directive::Ignored { warn: w } => {
                    warn = w;
                    Directive::Normal
                }
                d => d,
            };
            store.fetch(key, ttl, directive, invoke).await
        }
        None => {
            let (result, stats) = invoke().await;
            Fetched {
                result,
                stats: Some(stats),
                status: CacheStatus::Bypass,
            }
        }
    };
    if store.is_some() {
        ctx.cache = Some(fetched.status.as_str());
    }
    if let Some(start) = start {
        let call = fetched.stats.map(|stats| CallRecord {
            endpoint: &invocation.endpoint_name,
            attempts: stats.attempts,
            status: stats.status,
            latency: stats.latency,
            request_id: fetched
                .result
                .as_ref()
                .ok()
                .and_then(|r| r.header("x-amzn-requestid")),
            error: fetched
                .result
                .as_ref()
                .err()
                .map(UpstreamFailure::error_type),
        });
        ctx.record_fetch(start, call);
    }
    if fetched.stats.is_some() {
        ctx.endpoint_name = Some(invocation.endpoint_name.clone());
    }
    if let Err(failure) = &fetched.result
        && crate::breaker::is_short_circuit(failure)
    {
        // No SageMaker call was made: no integration latency or status to log.
        ctx.upstream_error = Some(CIRCUIT_OPEN);
    } else if let Some(stats) = fetched.stats {
        ctx.integration_latency = Some(stats.latency);
        ctx.integration_status = stats.status;
        let reply = match &fetched.result {
            Ok(reply) => Some(reply),
            Err(failure) => failure.reply.as_ref(),
        };
        ctx.invoked_variant = reply
            .and_then(|r| r.header(INVOKED_VARIANT))
            .map(crate::message::variant_logged);
        if let Err(failure) = &fetched.result {
            ctx.upstream_error = Some(failure.error_type());
        }
    }
    Ok((fetched, warn))
}

impl Fetched {
    /// SageMaker's answer (the reply, or the failed call's reply); empty when none came.
    pub fn answer_body(&self) -> Bytes {
        match &self.result {
            Ok(reply) => reply.body.clone(),
            Err(failure) => failure
                .reply
                .as_ref()
                .map_or_else(Bytes::new, |r| r.body.clone()),
        }
    }
}
