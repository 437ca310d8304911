//! The validate stage: API Gateway's request validators, after `read body`, before `render request`.
//!
//! Input: the route's [`Validation`](crate::config::gateway::Validation) (what its validator
//! checks, compiled at load), the request's head, decoded query and body, and its memory account.
//! Output: `Ok`, or the gateway response API Gateway gives, with the detail in
//! `$context.error.validationErrorString` (the access log's `error.validationErrorString`, and
//! gateway response templates):
//! - a required query parameter or header missing or blank: BAD_REQUEST_PARAMETERS, 400
//!   `{"message": "Missing required request parameters: [k, h1]"}` (query names first, in file
//!   order); checked first, as API Gateway does, so a request failing both gets this one;
//! - a body that does not match the model of its Content-Type: BAD_REQUEST_BODY, 400
//!   `{"message": "Invalid request body"}`. The model is the one for the request's media type
//!   (missing = `application/json`, the rule templates use), else `$default`; a media type with
//!   neither is not checked (API Gateway: "If no matching content type is found, request validation
//!   is not performed"). An empty body is checked as `{}` (LocalStack's behaviour, checked against
//!   AWS: localstack/localstack#7916); a body that is not JSON fails.
//!
//! Memory: parsing a body builds a tree larger than the body, so its bound ([`parse_bound`]) is
//! charged to the request's account before parsing (over budget: 503, as every stage) and given
//! back once the check is done. Only the first violation is described, so a body with a million
//! errors costs one message, never a list as large as itself.
//!
//! Security: the detail names the place in the body and the rule broken, never the caller's
//! values ([`crate::config::models::Model::check`]), and is cut to [`MAX_DETAIL_CHARS`].

use std::mem::size_of;

use serde_json::Value;

use crate::config::gateway::{DEFAULT_MODEL_KEY, Route};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::integration::{MappingInput, media_type};
use crate::route;

/// Longest `validationErrorString` kept (characters).
pub const MAX_DETAIL_CHARS: usize = 512;

/// Heap bytes one JSON node can take once parsed, at most: the `Value` in its parent's vector, or
/// an object entry (hash, key `String`, `Value`) plus its index slot, each doubled for the spare
/// capacity of a growing vector.
const NODE_BYTES: usize = 2 * (size_of::<Value>() + size_of::<String>() + 2 * size_of::<usize>());

/// The validate stage (see the module docs).
pub fn request(
    route: &Route,
    input: &MappingInput<'_>,
    ctx: &mut RequestContext,
) -> Result<(), GatewayError> {
    let result = parameters(route, input).and_then(|()| body(route, input));
    if let Err(err) = &result {
        ctx.validation_error = detail(err);
    }
    result
}

/// `$context.error.validationErrorString` of a validation failure.
fn detail(err: &GatewayError) -> Option<String> {
    let text = match err {
        GatewayError::MissingParameters(names) => {
            format!(
                "Missing required request parameters: [{}]",
                names.join(", ")
            )
        }
        GatewayError::InvalidBody(why) => format!("[{why}]"),
        _ => return None,
    };
    Some(text.chars().take(MAX_DETAIL_CHARS).collect())
}

/// Required query parameters and headers: present and not blank.
fn parameters(route: &Route, input: &MappingInput<'_>) -> Result<(), GatewayError> {
    let validation = &route.validation;
    let mut missing: Vec<String> = Vec::new();
    for name in &validation.required_query {
        if route::last_value(&input.params.querystring, name).is_none_or(str::is_empty) {
            missing.push(name.clone());
        }
    }
    for name in &validation.required_headers {
        if input.req.header(name).is_none_or(str::is_empty) {
            missing.push(name.clone());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(GatewayError::MissingParameters(missing))
    }
}

/// The body against the model of its media type, if it has one.
fn body(route: &Route, input: &MappingInput<'_>) -> Result<(), GatewayError> {
    let memory = input.memory;
    let models = &route.validation.body;
    if models.is_empty() {
        return Ok(());
    }
    let media = media_type(input.req.header("content-type"));
    let model = models
        .iter()
        .find(|(m, _)| *m == media)
        .or_else(|| models.iter().find(|(m, _)| m == DEFAULT_MODEL_KEY));
    let Some((_, model)) = model else {
        return Ok(());
    };
    let bytes: &[u8] = if input.body.is_empty() {
        b"{}"
    } else {
        &input.body
    };
    let bound = parse_bound(bytes);
    memory.try_grow(bound)?;
    let checked = match serde_json::from_slice::<Value>(bytes) {
        Ok(instance) => model.check(&instance),
        Err(e) => Err(not_json(&e)),
    };
    memory.release(bound);
    checked.map_err(GatewayError::InvalidBody)
}

/// Heap bytes `serde_json` may take to parse `body` into a [`Value`], at most: the body again (string
/// contents, and the parser's scratch buffer for escaped strings) plus `NODE_BYTES` per node.
/// Every node but the root follows a `[`, `,` or `:`, and every object key a `{` or `,` (a comma
/// precedes one or the other, never both), so counting those bytes, also inside strings, bounds the
/// node count from above in one pass.
pub fn parse_bound(body: &[u8]) -> usize {
    let nodes = 1 + body
        .iter()
        .filter(|b| matches!(b, b'[' | b'{' | b',' | b':'))
        .count();
    body.len()
        .saturating_mul(2)
        .saturating_add(nodes.saturating_mul(NODE_BYTES))
}

/// What serde_json says about a body it could not parse, without quoting the body.
fn not_json(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "it ends too early",
        Category::Syntax => "syntax error",
        Category::Data | Category::Io => "unreadable",
    };
    format!(
        "the body is not JSON: {what} at line {} column {}",
        e.line(),
        e.column()
    )
}

#[cfg(test)]
mod tests;
