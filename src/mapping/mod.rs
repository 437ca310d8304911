//! Mapping templates: API Gateway's Velocity (VTL) dialect.
//!
//! Place in the pipeline: `render request template` (before the SageMaker call) and `render response
//! template` (after it); gateway responses with a custom template use it too. Templates are parsed once,
//! when the configuration is compiled ([`parse`]), and rendered on every request ([`Template::render`]).
//!
//! Input: the raw body, the request parameters ([`Params`]: path, query string, header, in request
//! order; the headers API Gateway's front door blanks are blank, [`BLANKED_HEADERS`]), `$context` as a
//! JSON object built by the caller and the stage variables. Output: the rendered body plus what the
//! template wrote into `$context.requestOverride.*` / `$context.responseOverride.*` ([`Overrides`]). A
//! response render starts from the request render's overrides ([`Template::render_with`]), so it
//! reads them and a status or header set in the request template reaches the client unless the
//! response template sets it again.
//!
//! # Dialect
//!
//! The language is Apache Velocity 1.7 (the engine API Gateway runs), re-implemented from its grammar:
//! references (`$a`, `${a}`, `$!a`, `$a.b`, `$a[0]`, `$a.m(args)`), `#set`, `#if/#elseif/#else/#end`,
//! `#foreach` (with `$foreach.hasNext/index/count/first/last`, `$velocityCount`, `$velocityHasNext`),
//! `#break`, `#stop`, `##` and `#* *#` comments, `#[[ raw ]]#`, `\$x` / `\#set` escapes, string
//! interpolation in double-quoted literals, list/map/range literals, arithmetic and comparisons (also as
//! `eq ne lt gt le ge and or not`).
//! Velocity 1.7 semantics that matter for JSON templates are kept on purpose:
//! - Whitespace: a directive's closing `)` (of `#set`, `#if`, `#elseif`, `#foreach`) swallows trailing
//!   spaces/tabs *and the newline* when a newline follows; `#else` and `#end` do the same; `#set` also
//!   swallows the spaces/tabs before it when they start a token (start of template, or right after
//!   another directive/reference). Indentation before `#if/#foreach/#end` is output, as in 1.7.
//!   `## comment` swallows its newline.
//! - API Gateway departs from Velocity here: a null or undefined reference renders as nothing (`$foo`,
//!   `$a.missing`, `$input.path('$.missing')`, `$util.urlEncode($nothing)` all give `""`), also
//!   inside string literals and as a side of string `+`; and null equals `""` in `==`/`!=`.
//!   `#set($a = <null>)` leaves `$a` unchanged (Velocity 1.7's rule).
//! - In `#if`, only `null` and `false` are false: an empty string is *true*. `$input.params('x')` is `""`
//!   when absent, so optional fields are written `#if($input.params('seed') != "")`.
//! - `==` compares numbers numerically, values of one kind by value, anything else by string form
//!   (`"1" == 1` is true).
//! - Integer division truncates; `/ 0` is null. String `+` concatenates.
//! - Strings are measured in UTF-16 code units, as Java does (`length`, `substring`, `indexOf`).
//! - `split`, `replaceAll`, `replaceFirst`, `matches` take a regular expression (Rust `regex` syntax,
//!   which covers the Java subset templates use; look-around and back-references are an error).
//!
//! API Gateway objects: `$input.body`, `$input.json(path)`, `$input.path(path)`, `$input.params()`,
//! `$input.params(name)` (path, then query string, then header — case-insensitive —, `""` when absent),
//! `$util.escapeJavaScript/parseJson/urlEncode/urlDecode/base64Encode/base64Decode`, `$context.*`,
//! `$stageVariables.*`, and `$esc` (Velocity Tools' EscapeTool, used by AWS samples: `newline`, `d`/`dollar`,
//! `h`/`hash`, `b`/`backslash`, `q`/`quote`, `s`/`singleQuote`, `e`/`exclamation`, `javascript(s)`,
//! `url(s)`). EscapeTool has no `tab`, so `$esc.tab` renders literally, as it would on AWS.
//! JSONPath is RFC 9535 (`serde_json_path`); Jayway extras used in practice are accepted by rewriting:
//! a path without `$` gets `$.` in front, dotted names with `-` become bracketed names.
//! `$input.body` of an empty body is `{}`; for `json` and `path` an empty body is no document (`""` and
//! null). A body that is not JSON and does not start like JSON (`a=b&c=d`) reads as one string; one
//! that starts like JSON but is not ([`RenderError::BadPayload`]) fails the render, which the gateway
//! answers 400 `Could not process payload` for a request ([`json`]).
//!
//! Printing values: maps print Java-style (`{a=1, b=x}`), lists that come from JSON (`$input.path`,
//! `parseJson`) print as compact JSON (`[{"c":5}]`), lists built in the template print Java-style
//! (`[a, b]`); numbers print like Java (`1`, `1.5`, `1.0E10`).
//!
//! # Keeping a JSON template valid
//!
//! `$util.escapeJavaScript` is commons-lang 2's `StringEscapeUtils.escapeJavaScript`: it escapes `"`,
//! `\`, `/`, control characters and every non-ASCII UTF-16 unit as `\uXXXX` — all valid in a JSON
//! string — and also `'` as `\'`, which JSON does **not** allow. Inside a double-quoted JSON string a
//! template therefore either relies on the value having no `'`, or writes
//! `$util.escapeJavaScript($x).replaceAll("\\'", "'")` (the form AWS documents). The property tests
//! check exactly this: the output is a valid JSON string body once each `\'` is read as `'`.
//!
//! # Invariants and security
//!
//! Rendering never panics and is bounded by [`Bounds`]: output bytes (also caps every intermediate
//! string), iterations per `#foreach`, total evaluation steps (regex compilation and JSONPath parsing
//! are charged extra), nesting depth of values, and the bytes held by JSON the render parses (the
//! body and every `$util.parseJson`, counted as the values are built: [`Bounds::max_json_bytes`]; the
//! same count is charged as it grows to the caller's [`Reserve`], the gateway's in-flight memory
//! budget, and a refusal stops the render with [`RenderError::OverBudget`]). Parsing bounds block/expression nesting
//! ([`MAX_PARSE_DEPTH`]), so neither parse nor render can overflow the stack. Regexes are compiled with
//! a size limit and run in linear time (no ReDoS). Values are immutable and shared (`Rc`); mutation
//! (`add`, `put`, `#set($m.k = v)`) is copy-on-write on the variable, so a template cannot build a
//! reference cycle.

mod apigw;
mod ast;
mod escape;
mod eval;
mod json;
mod methods;
mod parse;
mod reads;
mod value;

#[cfg(test)]
mod fidelity;
#[cfg(test)]
mod tests;

#[doc(hidden)]
pub mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use escape::escape_javascript;
pub use reads::{BodyUse, Input, Name, Read};

/// Deepest nesting of blocks (`#if`, `#foreach`) and expressions the parser accepts.
pub const MAX_PARSE_DEPTH: usize = 64;

/// Deepest expression tree the parser builds: nesting plus operators in a row (`a || b || c`
/// nests one level per operator). Rendering and dropping a template recurse this deep, so it keeps
/// both far from the stack's end; 256 operators in one expression is far above real templates.
pub const MAX_EXPR_DEPTH: usize = 256;

/// Request headers templates see as empty (lower case), as behind API Gateway's front door:
/// hop-by-hop and front-door headers keep their name in `$input.params()` with an empty value.
pub const BLANKED_HEADERS: &[&str] = &[
    "connection",
    "content-md5",
    "expect",
    "max-forwards",
    "proxy-authenticate",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "www-authenticate",
];

/// The header list templates see: `headers` with [`BLANKED_HEADERS`] emptied.
pub fn template_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            if BLANKED_HEADERS.iter().any(|b| name.eq_ignore_ascii_case(b)) {
                (name.clone(), String::new())
            } else {
                (name.clone(), value.clone())
            }
        })
        .collect()
}

/// A parsed template, ready to render many times from many threads.
#[derive(Clone, Debug)]
pub struct Template {
    inner: Arc<TemplateInner>,
}

#[derive(Debug)]
struct TemplateInner {
    source: Box<str>,
    body: ast::Block,
    /// Initial output capacity: the template's own size plus room for values.
    size_hint: usize,
}

/// Where a render sets aside the memory its parsed JSON holds, as the values are built: the
/// gateway's in-flight memory budget ([`crate::memory`]). Charged in steps of
/// [`JSON_CHARGE_STEP`] bytes, so a small body costs one charge; a refusal stops the render with
/// [`RenderError::OverBudget`]. The values are gone when the render returns, so the caller gives
/// the charges back then.
pub trait Reserve {
    /// Sets `bytes` more aside; `false` when they cannot be had (nothing is set aside then).
    fn try_reserve(&self, bytes: usize) -> bool;
}

/// A [`Reserve`] that never refuses (tests, `check-config` dry runs, fuzzing, gateway responses,
/// whose inputs are bounded by the request head).
#[derive(Clone, Copy, Debug, Default)]
pub struct Unmetered;

impl Reserve for Unmetered {
    fn try_reserve(&self, _bytes: usize) -> bool {
        true
    }
}

/// A test reserve that grants up to `left` bytes and records what it granted.
#[cfg(test)]
pub(crate) struct Budgeted {
    pub left: std::cell::Cell<usize>,
    pub granted: std::cell::Cell<usize>,
}

#[cfg(test)]
impl Budgeted {
    pub fn new(left: usize) -> Budgeted {
        Budgeted {
            left: std::cell::Cell::new(left),
            granted: std::cell::Cell::new(0),
        }
    }
}

#[cfg(test)]
impl Reserve for Budgeted {
    fn try_reserve(&self, bytes: usize) -> bool {
        if bytes > self.left.get() {
            return false;
        }
        self.left.set(self.left.get() - bytes);
        self.granted.set(self.granted.get() + bytes);
        true
    }
}

/// The step in which parsed JSON is charged to a [`Reserve`]: 64 KiB.
pub const JSON_CHARGE_STEP: usize = 64 * 1024;

/// A template that does not parse: position (1-based, in characters, within the template) and cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct ParseError {
    /// Line, 1-based.
    pub line: u32,
    /// Column in characters, 1-based.
    pub col: u32,
    /// What is wrong.
    pub message: String,
}

/// Why a render stopped. Every variant is a template or input problem; the gateway answers it as a
/// bad mapping (500/502), never with the partial output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The output (or an intermediate string) exceeded `Bounds::max_output_bytes`.
    #[error("mapping template output exceeds the size limit")]
    OutputTooLarge,
    /// A `#foreach` exceeded `Bounds::max_loop_iterations`.
    #[error("mapping template loop exceeds the iteration limit")]
    TooManyIterations,
    /// Evaluation exceeded `Bounds::max_total_steps`.
    #[error("mapping template exceeds the evaluation step limit")]
    TooManySteps,
    /// A value nested deeper than `Bounds::max_depth`.
    #[error("mapping template nesting exceeds the depth limit")]
    TooDeep,
    /// A run-time failure API Gateway also fails on: bad JSONPath, bad base64, bad regex, index out
    /// of range.
    #[error("mapping template failed: {0}")]
    Invalid(String),
    /// The payload (or a `$util.parseJson` argument) starts like JSON but is not JSON: the client's
    /// error for a request (400 `Could not process payload`).
    #[error("payload is not valid JSON: {0}")]
    BadPayload(String),
    /// JSON the render parses would hold more than `Bounds::max_json_bytes`.
    #[error("JSON in the payload exceeds the template memory bound")]
    JsonTooLarge,
    /// The caller's [`Reserve`] refused the memory parsed JSON needs (the gateway's in-flight
    /// budget is spent: 503).
    #[error("in-flight memory budget exhausted while parsing JSON")]
    OverBudget,
}

/// A [`RenderError`] and where in the template it happened (1-based line and column of the innermost
/// reference or `#foreach` being evaluated).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {error}")]
pub struct RenderFailure {
    /// What failed.
    pub error: RenderError,
    /// Line, 1-based.
    pub line: u32,
    /// Column in characters, 1-based.
    pub col: u32,
}

/// Limits of one render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Bytes of output, and of any string built on the way. Default 10 MiB: API Gateway's payload
    /// limit, so a pass-through template (`$input.json('$')`) never fails where AWS succeeds.
    pub max_output_bytes: usize,
    /// Iterations of one `#foreach`. Default 1 000, API Gateway's documented cap.
    pub max_loop_iterations: usize,
    /// Evaluation steps (one per node, expression, iteration, and a cost for costly calls) over the
    /// whole render. Default 1 000 000: far above real templates (the seed template takes ~30), a few
    /// tens of milliseconds at worst.
    pub max_total_steps: usize,
    /// Nesting depth of values built by the template (lists in lists...). Default 128 (serde_json's
    /// own recursion limit for parsed JSON).
    pub max_depth: usize,
    /// Bytes the JSON values one render parses may hold together (the payload for `$input.json` /
    /// `$input.path`, and every `$util.parseJson`), counted as they are built: a value slot is 72
    /// bytes, counted twice in an array for its growth. Default 128 MiB: `$input.json('$')` on a
    /// 6 MB payload (SageMaker's limit) of numbers, about 670 000 values, fits; a 10 MB body of
    /// `[0,0,…]`, five million values that serde_json holds in 370 MB (measured), is refused.
    pub max_json_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_output_bytes: 10 * 1024 * 1024,
            max_loop_iterations: 1000,
            max_total_steps: 1_000_000,
            max_depth: 128,
            max_json_bytes: 128 * 1024 * 1024,
        }
    }
}

/// Request parameters, each list in request order. Path and query values are already decoded as the
/// route decided. A name present twice reads as its last value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// Path parameters (`{user_id}`).
    pub path: Vec<(String, String)>,
    /// Query-string parameters.
    pub querystring: Vec<(String, String)>,
    /// Request headers; names compare case-insensitively.
    pub header: Vec<(String, String)>,
}

/// What a render reads.
#[derive(Clone, Copy, Debug)]
pub struct RenderInput<'a> {
    /// Raw payload (`$input.body`; parsed as JSON only when `json`/`path` is used).
    pub body: &'a [u8],
    /// `$input.params`.
    pub params: &'a Params,
    /// `$context`: a JSON object (`requestId`, `identity.sourceIp`, `error.messageString`...).
    pub context: &'a serde_json::Value,
    /// `$stageVariables`.
    pub stage_variables: &'a BTreeMap<String, String>,
}

/// The result of a render.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The rendered text.
    pub body: String,
    /// Values the template assigned to `$context.requestOverride.*` / `$context.responseOverride.*`
    /// (including those it started from).
    pub overrides: Overrides,
    /// Bytes the JSON values parsed by this render held (at most `Bounds::max_json_bytes`).
    pub json_bytes: usize,
}

/// Assignments to API Gateway's override variables, in assignment order (a name set twice keeps its
/// first position and last value; header names compare case-insensitively).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `$context.responseOverride.status`, kept only when it is an integer in 100..=599.
    pub status: Option<u16>,
    /// `$context.requestOverride.header.<name>`.
    pub request_headers: Vec<(String, String)>,
    /// `$context.requestOverride.querystring.<name>`.
    pub request_querystring: Vec<(String, String)>,
    /// `$context.requestOverride.path.<name>`.
    pub request_path: Vec<(String, String)>,
    /// `$context.responseOverride.header.<name>`.
    pub response_headers: Vec<(String, String)>,
    /// Other names set under the two (`responseOverride.custom`): readable later, acted on by no one.
    pub other: Vec<(String, String)>,
}

/// Parses a template. Done once, at configuration load.
pub fn parse(source: &str) -> Result<Template, ParseError> {
    let body = parse::parse_template(source)?;
    Ok(Template {
        inner: Arc::new(TemplateInner {
            source: source.into(),
            body,
            size_hint: source.len() + source.len() / 2 + 64,
        }),
    })
}

impl Template {
    /// Renders the template for one request.
    pub fn render(
        &self,
        input: &RenderInput<'_>,
        bounds: &Bounds,
    ) -> Result<Rendered, RenderError> {
        self.render_with(input, bounds, &Overrides::default(), &Unmetered)
            .map_err(|f| f.error)
    }

    /// Renders starting from the overrides `prior` (the request template's, for a response
    /// template), charging parsed JSON to `reserve`; a failure names its line and column.
    pub fn render_with(
        &self,
        input: &RenderInput<'_>,
        bounds: &Bounds,
        prior: &Overrides,
        reserve: &dyn Reserve,
    ) -> Result<Rendered, RenderFailure> {
        let (block, hint) = (&self.inner.body, self.inner.size_hint);
        eval::render(block, hint, input, bounds, prior, reserve).map_err(|(error, at)| {
            let (line, col) = parse::line_col(&self.inner.source, at);
            RenderFailure { error, line, col }
        })
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.inner.source
    }
}

/// Parses and renders in one call (tests, `check-config` dry runs). Not for the request path.
pub fn render_str(
    source: &str,
    input: &RenderInput<'_>,
    bounds: &Bounds,
) -> Result<Result<Rendered, RenderError>, ParseError> {
    Ok(parse(source)?.render(input, bounds))
}
