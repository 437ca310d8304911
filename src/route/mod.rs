//! The `route` stage: stage selection and the route table.
//!
//! Place in the pipeline: **route** → authenticate → admit → validate → render → … It is the first
//! stage and the only one that looks at the raw request path.
//!
//! Input: the request method, the path without its query string, and the query string. Output:
//! the stage name ([`split_stage`]), then a [`Matched`] route — the operator's value for the route,
//! its template (`$context.resourcePath`) and the path parameters in template order — or a
//! [`RouteError`]: `NotFound` (the gateway answers 403 "Missing Authentication Token", as API
//! Gateway does for an unknown path *or* method) or `BadPath` (400).
//!
//! The table is compiled once, at config load ([`RouteTable::build`] reports every bad entry at
//! once); resolving is a walk down a segment trie over borrowed slices of the request path.
//!
//! Matching rules (DESIGN.md §1, reference/apigw-sagemaker.md §1.1–1.2):
//! - `{name}` matches exactly one non-empty segment; `{name+}` matches one or more segments (the
//!   rest of the path) and must be the last part of its template, so `/a/{p+}` does not match `/a`.
//! - At every level a static segment beats `{name}`, which beats `{name+}`; when the preferred branch
//!   fails deeper down the next one is tried (backtracking). The trie visits each of its nodes at
//!   most once per request, so the cost is bounded by the table, not by the request.
//! - A route is a method *and* a path. A path whose routes accept neither the request method nor
//!   `ANY` does not match, and the search goes on to less specific paths (so adding `GET /a/b` never
//!   takes `POST /a/b` away from `ANY /{proxy+}`). Among the routes on the chosen path the exact
//!   method wins over `ANY`. `ANY` covers the seven methods API Gateway lists (GET POST PUT PATCH
//!   DELETE HEAD OPTIONS); other request methods never match.
//! - `HEAD` does not fall back to `GET`: API Gateway has no implicit HEAD either, so a route answers
//!   HEAD only when it declares `HEAD` or `ANY` (and a HEAD reaching SageMaker would be an invocation).
//! - One trailing slash is ignored (`/a/b/` is `/a/b`). Any other empty segment (`/a//b`, `/a/b//`,
//!   `//`) is never collapsed: it matches nothing, so the answer is `NotFound`. Collapsing would
//!   make two spellings of one URL and hand greedy parameters paths the client did not send.
//! - Segments are split on raw `/` before decoding, so `%2F` stays inside its segment.
//! - Static segments are compared with the *percent-decoded* request segment, whatever the
//!   `decode` switch says: `/recommended%2Dmovies` matches `/recommended-movies`. A template's
//!   static segments therefore hold decoded text and may not contain `%`.
//! - Parameter values are percent-decoded when `decode` is true (`U%3A114521` → `U:114521`; a
//!   greedy value keeps the `/` separators and decodes each segment) and are the raw request text
//!   when it is false (API Gateway REST's observed behaviour). `+` in a path is never a space.
//!
//! Security: the path is checked before any matching, in both decode modes. A malformed escape
//! (`%zz`, `%4`), an ASCII control character (raw or escaped, e.g. `%00`), and a `.` or `..`
//! segment (raw or escaped, e.g. `%2E%2E`, or one that an escaped `/` makes inside a value:
//! `x%2F..%2Fy` decodes to `x/../y`) are rejected with `BadPath`: dot segments are never
//! normalised away, because a `..` could climb out of a route prefix in whatever sees the path
//! or the parameter value next. With `decode` true, escapes that decode to invalid UTF-8 are rejected too. No regex, no
//! allocation on the hot path other than the returned parameters; recursion depth is bounded by
//! the deepest template, not by the request.
//!
//! Query strings: [`decode_query`] splits `application/x-www-form-urlencoded`-style and keeps
//! repeated keys in order; [`last_value`] gives API Gateway's single-value view (the last one).

mod key;
mod path;
mod query;
mod table;

#[cfg(test)]
mod tests;

pub use self::key::{METHODS, RouteKey, normalize_route_key};
pub use self::query::{decode_query, last_value};
pub use self::table::{Matched, RouteSpec, RouteSpecError, RouteTable};

/// A route could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No route for this path and method (API Gateway: 403 "Missing Authentication Token").
    #[error("no route for this method and path")]
    NotFound,
    /// The path (or query) is malformed (400).
    #[error("bad request path: {0}")]
    BadPath(BadPathReason),
}

/// Why a request path or query string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPathReason {
    /// A `%` not followed by two hex digits.
    #[error("malformed percent escape")]
    MalformedEscape,
    /// Percent-decoding produced bytes that are not UTF-8 (only checked when decoding).
    #[error("percent-decoded text is not UTF-8")]
    InvalidUtf8,
    /// A `.` or `..` segment (raw or percent-encoded).
    #[error("dot segment")]
    DotSegment,
    /// An ASCII control character (U+0000–U+001F, U+007F), raw or percent-encoded.
    #[error("control character")]
    ControlChar,
}

impl From<BadPathReason> for RouteError {
    fn from(reason: BadPathReason) -> Self {
        RouteError::BadPath(reason)
    }
}

/// Splits `/{stage}/{resource path}` into the stage name and the resource path.
///
/// `/temp/recommended-movies/U:1` → `("temp", "/recommended-movies/U:1")`; `/temp` and `/temp/`
/// → `("temp", "/")`. `None` when the path does not start with `/` or the stage is empty (`/`,
/// `//x`). The caller strips the query string first and checks the stage name against its stages;
/// the resource path is handed to [`RouteTable::resolve`] untouched (so `/temp//` gives `//`,
/// which no route matches).
pub fn split_stage(path: &str) -> Option<(&str, &str)> {
    let body = path.strip_prefix('/')?;
    let (stage, rest) = match body.find('/') {
        Some(at) => body.split_at(at),
        None => (body, "/"),
    };
    if stage.is_empty() {
        return None;
    }
    Some((stage, if rest.is_empty() { "/" } else { rest }))
}
