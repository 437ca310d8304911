//! HTTP adapter: the SageMaker bring-your-own-container contract, plus the SageMaker Runtime path
//! for the local stack. Actix types stop here and in [`crate::streaming`]; the pipeline is
//! [`crate::recommend`].
//!
//! Routes:
//! - `GET /ping` — 200 with the model version. The model is loaded before the port is bound, so a
//!   listening server is a ready one.
//! - `POST /invocations` — the container contract: 200 with the recommendations, or plain 400/413
//!   with `{"error": "<field>: <message>", "field": "<field>"}`, like any container. With
//!   `Accept: application/jsonlines` the answer streams (chunked), one JSON line per position as it
//!   is drawn, then a summary line (see [`crate::streaming`]); every error is still found before
//!   the 200 and answered as a plain status.
//! - `POST /endpoints/{name}/invocations` — what the AWS SDK's `InvokeEndpoint` calls. It runs the
//!   same container handler, then wraps the answer the way SageMaker wraps a container's: 200 as is
//!   with `x-Amzn-Invoked-Production-Variant`, an error as 424 `ModelError` whose JSON carries
//!   `OriginalStatusCode` and `OriginalMessage`, so the gateway's SDK parses a typed `ModelError`.
//!   `Accept: application/jsonlines` gets the whole JSON Lines answer, buffered, as SageMaker
//!   buffers a streaming container for InvokeEndpoint. `X-Amzn-SageMaker-Session-Id: NEW_SESSION`
//!   gets `X-Amzn-SageMaker-New-Session-Id: <id>; Expires=<time>`, as a stateful endpoint answers.
//! - `POST /endpoints/{name}/invocations-response-stream` — `InvokeEndpointWithResponseStream`:
//!   `X-Amzn-SageMaker-Accept` (not `Accept`) is the container's Accept; a 200 answer is an AWS
//!   event stream of `PayloadPart`s (one per JSON line, or one holding a buffered JSON answer) with
//!   `X-Amzn-SageMaker-Content-Type`; errors before the first part are the same 424 `ModelError`.
//!
//! Every invocation path echoes `X-Amzn-SageMaker-Custom-Attributes` on a successful answer (the
//! container sets it; SageMaker passes it on) and hands it to the access log.
//! Security: the body is capped at SageMaker's 6 MB payload limit before it is parsed.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer, web};
use serde_json::json;

use crate::recommend::{Answer, CacheStatus, InvocationError, Recommender};
use crate::request::{self, JSONLINES};
use crate::response;
use crate::streaming::{self, EventStream, JsonLines, LogFields};

/// SageMaker's InvokeEndpoint payload limit (6 MB).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Seconds in-flight requests get after SIGTERM; SageMaker sends SIGKILL 30 s after SIGTERM.
pub const SHUTDOWN_GRACE_SECS: u64 = 25;
/// Idle keep-alive, longer than the SDK's pooled-connection idle time so the client closes first
/// and never writes into a connection the server is closing.
pub const KEEP_ALIVE_SECS: u64 = 120;

/// Header names (SageMaker Runtime wire protocol).
pub const CUSTOM_ATTRIBUTES: &str = "x-amzn-sagemaker-custom-attributes";
pub const ERROR_TYPE: &str = "x-amzn-errortype";
pub const REQUEST_ID: &str = "x-amzn-requestid";
pub const INVOKED_VARIANT: &str = "x-amzn-invoked-production-variant";
/// The Accept of `InvokeEndpointWithResponseStream` (it does not use plain `Accept`).
pub const SAGEMAKER_ACCEPT: &str = "x-amzn-sagemaker-accept";
/// The container's `Content-Type`, on a response-stream answer.
pub const SAGEMAKER_CONTENT_TYPE: &str = "x-amzn-sagemaker-content-type";
/// The stateful-session request header, its value that opens a session, and SageMaker's answer.
pub const SESSION_ID: &str = "x-amzn-sagemaker-session-id";
pub const NEW_SESSION: &str = "NEW_SESSION";
pub const NEW_SESSION_ID: &str = "x-amzn-sagemaker-new-session-id";
/// The production variant reported on the Runtime path.
pub const VARIANT: &str = "AllTraffic";
/// Region and account of the locally emulated endpoint's log group.
pub const LOCAL_REGION: &str = "local";
pub const LOCAL_ACCOUNT: &str = "000000000000";

/// Serves until `shutdown` resolves, then drains in-flight requests and returns.
pub async fn run(
    listener: std::net::TcpListener,
    recommender: Arc<Recommender>,
    shutdown: impl Future<Output = ()> + 'static,
) -> std::io::Result<()> {
    let data = web::Data::from(recommender);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .listen(listener)?
        .disable_signals()
        .keep_alive(std::time::Duration::from_secs(KEEP_ALIVE_SECS))
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        handle.stop(true).await;
    });
    server.await
}

/// The routes, shared by `run` and in-process tests.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ping", web::get().to(ping))
        .route("/invocations", web::post().to(invocations))
        .route(
            "/endpoints/{name}/invocations",
            web::post().to(runtime_invocations),
        )
        .route(
            "/endpoints/{name}/invocations-response-stream",
            web::post().to(runtime_response_stream),
        );
}

async fn ping(state: web::Data<Recommender>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "healthy",
        "model_version": &*state.model().version,
    }))
}

/// What the container answered, before any SageMaker wrapping.
struct ContainerReply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    custom_attributes: Option<HeaderValue>,
}

impl ContainerReply {
    fn error(status: StatusCode, field: Option<&str>, message: &str) -> Self {
        let body = match field {
            Some(f) => json!({ "error": message, "field": f }),
            None => json!({ "error": message }),
        };
        ContainerReply {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
            custom_attributes: None,
        }
    }

    fn into_response(self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((CONTENT_TYPE, self.content_type));
        if let Some(attrs) = self.custom_attributes {
            res.insert_header((CUSTOM_ATTRIBUTES, attrs));
        }
        res.body(self.body)
    }
}

/// A streamed answer the container has started (its errors were found), with its log fields.
struct Started {
    stream: crate::recommend::Stream,
    log: LogFields,
    custom_attributes: Option<HeaderValue>,
}

/// The id logged in the answer: the caller's `X-Amzn-SageMaker-Inference-Id` (the gateway sends its
/// own request id there, so the model's OPE log joins the gateway's access log), else a fresh UUID.
fn inference_id(req: &HttpRequest) -> String {
    req.headers()
        .get("x-amzn-sagemaker-inference-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| new_uuid().to_string(), str::to_owned)
}

/// A version 4 UUID from the thread's RNG: `Uuid::new_v4` makes a getrandom system call per id.
fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// Whether the values of `name` (every occurrence, as one list) ask for JSON Lines.
fn wants_jsonlines(req: &HttpRequest, name: impl actix_web::http::header::AsHeaderName) -> bool {
    let values: Vec<&str> = req
        .headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .collect();
    request::wants_jsonlines((!values.is_empty()).then(|| values.join(",")).as_deref())
}

async fn invocations(
    state: web::Data<Recommender>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let request_id = inference_id(&req);
    if !wants_jsonlines(&req, ACCEPT) {
        return container(&state, &req, payload, &request_id, None, Format::Json)
            .await
            .into_response();
    }
    match container_stream(&state, &req, payload, &request_id, None).await {
        Ok(started) => {
            let mut res = HttpResponse::Ok();
            res.insert_header((CONTENT_TYPE, JSONLINES));
            if let Some(attrs) = started.custom_attributes {
                res.insert_header((CUSTOM_ATTRIBUTES, attrs));
            }
            res.body(JsonLines::new(started.stream, started.log))
        }
        Err(reply) => reply.into_response(),
    }
}

async fn runtime_invocations(
    state: web::Data<Recommender>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let (request_id, name) = match runtime_call(&req, name) {
        Ok(call) => call,
        Err(invalid) => return *invalid,
    };
    let format = if wants_jsonlines(&req, ACCEPT) {
        Format::JsonLines
    } else {
        Format::Json
    };
    let reply = container(&state, &req, payload, &request_id, Some(&name), format).await;
    if !reply.status.is_success() {
        return model_error(&name, &request_id, &reply);
    }
    let mut res = reply.into_response();
    let headers = res.headers_mut();
    headers.insert(
        HeaderName::from_static(INVOKED_VARIANT),
        HeaderValue::from_static(VARIANT),
    );
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static(REQUEST_ID), id);
    }
    if req
        .headers()
        .get(SESSION_ID)
        .is_some_and(|v| v == NEW_SESSION)
        && let Ok(session) = HeaderValue::from_str(&new_session(chrono::Utc::now()))
    {
        headers.insert(HeaderName::from_static(NEW_SESSION_ID), session);
    }
    res
}

/// A stateful session opened for `X-Amzn-SageMaker-Session-Id: NEW_SESSION`, as SageMaker answers
/// it: `<id>; Expires=<UTC time>`. The model keeps no per-session state, so the emulation only
/// names one (SageMaker's default session lifetime is 20 minutes).
fn new_session(now: chrono::DateTime<chrono::Utc>) -> String {
    let expires = now + chrono::Duration::minutes(20);
    format!(
        "{}; Expires={}",
        new_uuid(),
        expires.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// `InvokeEndpointWithResponseStream`: the container's answer as an AWS event stream.
async fn runtime_response_stream(
    state: web::Data<Recommender>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let (request_id, name) = match runtime_call(&req, name) {
        Ok(call) => call,
        Err(invalid) => return *invalid,
    };
    let (content_type, body, custom_attributes) = if wants_jsonlines(&req, SAGEMAKER_ACCEPT) {
        match container_stream(&state, &req, payload, &request_id, Some(&name)).await {
            Ok(started) => (
                JSONLINES,
                EventStream::lines(started.stream, started.log),
                started.custom_attributes,
            ),
            Err(reply) => return model_error(&name, &request_id, &reply),
        }
    } else {
        let reply = container(
            &state,
            &req,
            payload,
            &request_id,
            Some(&name),
            Format::Json,
        )
        .await;
        if !reply.status.is_success() {
            return model_error(&name, &request_id, &reply);
        }
        (
            reply.content_type,
            EventStream::once(reply.body),
            reply.custom_attributes,
        )
    };
    let mut res = HttpResponse::Ok();
    res.insert_header((CONTENT_TYPE, streaming::EVENT_STREAM))
        .insert_header((SAGEMAKER_CONTENT_TYPE, content_type))
        .insert_header((INVOKED_VARIANT, VARIANT))
        .insert_header((REQUEST_ID, request_id.as_str()));
    if let Some(attrs) = custom_attributes {
        res.insert_header((CUSTOM_ATTRIBUTES, attrs));
    }
    res.body(body)
}

/// The request id and endpoint name of a Runtime call, or SageMaker's answer to a bad name.
fn runtime_call(
    req: &HttpRequest,
    name: web::Path<String>,
) -> Result<(String, String), Box<HttpResponse>> {
    let request_id = inference_id(req);
    let name = name.into_inner();
    if !valid_endpoint_name(&name) {
        return Err(Box::new(validation_error(&name, &request_id)));
    }
    Ok((request_id, name))
}

/// SageMaker's 400 `ValidationError` for an endpoint name outside the URI rule.
fn validation_error(name: &str, request_id: &str) -> HttpResponse {
    runtime_error(StatusCode::BAD_REQUEST, "ValidationError", request_id).body(
        json!({
            "message": format!("1 validation error detected: Value '{name}' at 'endpointName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*")
        })
        .to_string(),
    )
}

/// SageMaker's 424 `ModelError` wrapping a container error.
fn model_error(name: &str, request_id: &str, reply: &ContainerReply) -> HttpResponse {
    runtime_error(StatusCode::FAILED_DEPENDENCY, "ModelError", request_id)
        .body(model_error_body(name, reply.status, &reply.body).to_string())
}

fn runtime_error(status: StatusCode, error_type: &str, request_id: &str) -> HttpResponseBuilder {
    let mut res = HttpResponse::build(status);
    res.insert_header((ERROR_TYPE, error_type))
        .insert_header((REQUEST_ID, request_id))
        .insert_header((CONTENT_TYPE, "application/json"));
    res
}

/// SageMaker's `ModelError` payload for a container answer that was not 2xx.
pub fn model_error_body(endpoint: &str, status: StatusCode, body: &[u8]) -> serde_json::Value {
    let original = String::from_utf8_lossy(body);
    let code = status.as_u16();
    let (kind, error_code) = if status.is_server_error() {
        ("server", "SERVER_ERROR_FROM_MODEL")
    } else {
        ("client", "CLIENT_ERROR_FROM_MODEL")
    };
    let group = format!("/aws/sagemaker/Endpoints/{endpoint}");
    json!({
        "ErrorCode": error_code,
        "LogStreamArn": format!("arn:aws:logs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:log-group:{group}"),
        "Message": format!(
            "Received {kind} error ({code}) from primary with message \"{original}\". See https://{LOCAL_REGION}.console.aws.amazon.com/cloudwatch/home?region={LOCAL_REGION}#logEventViewer:group={group} in account {LOCAL_ACCOUNT} for more information."
        ),
        "OriginalMessage": original,
        "OriginalStatusCode": code,
    })
}

/// `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`, at most 63 characters (the InvokeEndpoint URI rule).
pub fn valid_endpoint_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// How a buffered answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// One JSON object.
    Json,
    /// The lines a stream would have sent, all at once.
    JsonLines,
}

/// The request body, at most [`MAX_BODY_BYTES`], or the container's error for it.
async fn read_body(payload: web::Payload) -> Result<web::Bytes, ContainerReply> {
    match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(ContainerReply::error(
            StatusCode::BAD_REQUEST,
            None,
            &format!("body: could not be read: {e}"),
        )),
        Err(_) => Err(ContainerReply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            &format!("body: larger than {MAX_BODY_BYTES} bytes"),
        )),
    }
}

fn content_type(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<non-ASCII>"))
}

fn custom_attributes_for_log(attrs: Option<&HeaderValue>) -> &str {
    attrs.and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Logs a refused invocation and answers it with a plain 400.
fn rejected(
    e: &InvocationError,
    request_id: &str,
    endpoint: Option<&str>,
    custom_attributes: Option<&HeaderValue>,
    started: Instant,
) -> ContainerReply {
    tracing::info!(
        request_id,
        endpoint = endpoint.unwrap_or(""),
        error = %e,
        custom_attributes = custom_attributes_for_log(custom_attributes),
        elapsed_us = started.elapsed().as_micros() as u64,
        "invocation rejected"
    );
    ContainerReply::error(StatusCode::BAD_REQUEST, e.field(), &e.to_string())
}

/// The container's own handler: read the body, run the pipeline, log one line.
async fn container(
    state: &Recommender,
    req: &HttpRequest,
    payload: web::Payload,
    request_id: &str,
    endpoint: Option<&str>,
    format: Format,
) -> ContainerReply {
    let started = Instant::now();
    let custom_attributes = req.headers().get(CUSTOM_ATTRIBUTES).cloned();
    let body = match read_body(payload).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let attrs_for_log = custom_attributes_for_log(custom_attributes.as_ref());
    match state.invoke(content_type(req), &body, request_id) {
        Ok(Answer {
            body: answer,
            cache,
        }) => {
            let items: Vec<&str> = answer
                .recommendations
                .iter()
                .map(|r| r.item_id.as_str())
                .collect();
            log_invocation(&Served {
                request_id,
                endpoint,
                summary: &answer.summary,
                items: &items,
                cache,
                custom_attributes: attrs_for_log,
                stream: None,
                elapsed: started.elapsed(),
            });
            let written = match format {
                Format::Json => {
                    // Sized for the answer (≈ 200 bytes per item), so serialising never reallocates.
                    let mut body = Vec::with_capacity(512 + 256 * answer.recommendations.len());
                    serde_json::to_writer(&mut body, &answer).map(|()| ("application/json", body))
                }
                Format::JsonLines => response::lines(&answer).map(|body| (JSONLINES, body)),
            };
            match written {
                Ok((content_type, body)) => ContainerReply {
                    status: StatusCode::OK,
                    content_type,
                    body,
                    custom_attributes,
                },
                Err(e) => {
                    tracing::error!(request_id, error = %e, "serializing the answer failed");
                    ContainerReply::error(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
                }
            }
        }
        Err(e) => rejected(
            &e,
            request_id,
            endpoint,
            custom_attributes.as_ref(),
            started,
        ),
    }
}

/// The container's handler for a streamed answer: read the body and start the stream, or answer
/// the error (logged) before anything is sent.
async fn container_stream(
    state: &Recommender,
    req: &HttpRequest,
    payload: web::Payload,
    request_id: &str,
    endpoint: Option<&str>,
) -> Result<Started, ContainerReply> {
    let started = Instant::now();
    let custom_attributes = req.headers().get(CUSTOM_ATTRIBUTES).cloned();
    let body = read_body(payload).await?;
    match state.start_stream(content_type(req), &body, request_id) {
        Ok(stream) => Ok(Started {
            stream,
            log: LogFields {
                request_id: request_id.to_owned(),
                endpoint: endpoint.map(str::to_owned),
                custom_attributes: custom_attributes_for_log(custom_attributes.as_ref()).to_owned(),
                started,
            },
            custom_attributes,
        }),
        Err(e) => Err(rejected(
            &e,
            request_id,
            endpoint,
            custom_attributes.as_ref(),
            started,
        )),
    }
}

/// What the `invocation` log line says about an answer.
pub(crate) struct Served<'a> {
    pub request_id: &'a str,
    pub endpoint: Option<&'a str>,
    pub summary: &'a response::Summary,
    pub items: &'a [&'a str],
    pub cache: CacheStatus,
    pub custom_attributes: &'a str,
    /// How a streamed answer went; `None` for a buffered one.
    pub stream: Option<StreamEnd>,
    pub elapsed: std::time::Duration,
}

/// How a streamed answer ended.
pub(crate) struct StreamEnd {
    /// `jsonlines` or `eventstream`.
    pub kind: &'static str,
    /// `complete`, `failed` or `client_gone`.
    pub outcome: &'static str,
    /// The failure's name, or "".
    pub failure: &'static str,
    /// Lines handed to the connection.
    pub lines: usize,
    pub first_line: Option<std::time::Duration>,
}

/// One `invocation` line per answer, buffered or streamed (the stream fields are empty, or 0, for
/// a buffered one).
pub(crate) fn log_invocation(served: &Served<'_>) {
    let summary = served.summary;
    let (stream, outcome, failure, lines, first_line_us) =
        served
            .stream
            .as_ref()
            .map_or(("", "complete", "", 0, 0), |s| {
                let first = s.first_line.map_or(0, |d| d.as_micros() as u64);
                (s.kind, s.outcome, s.failure, s.lines, first)
            });
    tracing::info!(
        request_id = served.request_id,
        endpoint = served.endpoint.unwrap_or(""),
        user_id = %summary.user_id,
        inference_type = summary.inference_type,
        k = summary.k,
        seed = %summary.rng.seed,
        model_version = %summary.model_version,
        log_propensity = summary.log_propensity,
        fallback = summary.fallback.unwrap_or(""),
        cache = cache_label(served.cache),
        custom_attributes = served.custom_attributes,
        items = ?served.items,
        stream,
        outcome,
        failure,
        lines,
        first_line_us,
        elapsed_us = served.elapsed.as_micros() as u64,
        "invocation"
    );
}

fn cache_label(cache: CacheStatus) -> &'static str {
    match cache {
        CacheStatus::Hit => "hit",
        CacheStatus::Miss => "miss",
        CacheStatus::NotUsed => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_session_is_a_session_id_and_its_expiry() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T23:50:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let answer = new_session(now);
        let (id, expires) = answer.split_once("; Expires=").unwrap();
        // SageMaker's session id rule: the endpoint name pattern, at most 256 characters.
        assert!(valid_endpoint_name(id), "{answer}");
        assert_eq!(expires, "2026-12-06T00:10:00Z");
    }

    #[test]
    fn fresh_ids_are_distinct_version_4_uuids() {
        let (a, b) = (new_uuid(), new_uuid());
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }

    #[test]
    fn endpoint_names_follow_the_uri_rule() {
        for ok in ["recommender", "a", "my-endpoint-1", "a--b"] {
            assert!(valid_endpoint_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!valid_endpoint_name(bad), "{bad}");
        }
    }

    #[test]
    fn model_error_carries_the_original_status_and_message() {
        let v = model_error_body("rec", StatusCode::BAD_REQUEST, br#"{"error":"k: bad"}"#);
        assert_eq!(v["ErrorCode"], "CLIENT_ERROR_FROM_MODEL");
        assert_eq!(v["OriginalStatusCode"], 400);
        assert_eq!(v["OriginalMessage"], r#"{"error":"k: bad"}"#);
        assert_eq!(
            v["LogStreamArn"],
            "arn:aws:logs:local:000000000000:log-group:/aws/sagemaker/Endpoints/rec"
        );
        let msg = v["Message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(
            r#"Received client error (400) from primary with message "{"error":"k: bad"}". See "#
        ));
        assert!(msg.ends_with("for more information."));
        let v = model_error_body("rec", StatusCode::INTERNAL_SERVER_ERROR, b"boom");
        assert_eq!(v["ErrorCode"], "SERVER_ERROR_FROM_MODEL");
        assert!(
            v["Message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Received server error (500) from primary with message \"boom\"")
        );
    }
}
