//! HTTP adapter: the SageMaker bring-your-own-container contract, plus the SageMaker Runtime path
//! for the local stack. Actix types stop here; the pipeline is [`crate::recommend`].
//!
//! Routes:
//! - `GET /ping` — 200 with the model version. The model is loaded before the port is bound, so a
//!   listening server is a ready one.
//! - `POST /invocations` — the container contract: 200 with the recommendations, or plain 400/413
//!   with `{"error": "<field>: <message>", "field": "<field>"}`, like any container.
//! - `POST /endpoints/{name}/invocations` — what the AWS SDK's `InvokeEndpoint` calls. It runs the
//!   same container handler, then wraps the answer the way SageMaker wraps a container's: 200 as is
//!   with `x-Amzn-Invoked-Production-Variant`, an error as 424 `ModelError` whose JSON carries
//!   `OriginalStatusCode` and `OriginalMessage`, so the gateway's SDK parses a typed `ModelError`.
//!
//! Both invocation paths echo `X-Amzn-SageMaker-Custom-Attributes` on a successful answer (the
//! container sets it; SageMaker passes it on) and hand it to the access log.
//! Security: the body is capped at SageMaker's 6 MB payload limit before it is parsed.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

use crate::recommend::{Answer, CacheStatus, Recommender};

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
            body: body.to_string().into_bytes(),
            custom_attributes: None,
        }
    }

    fn into_response(self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((CONTENT_TYPE, "application/json"));
        if let Some(attrs) = self.custom_attributes {
            res.insert_header((CUSTOM_ATTRIBUTES, attrs));
        }
        res.body(self.body)
    }
}

/// The id logged in the answer: the caller's `X-Amzn-SageMaker-Inference-Id` (the gateway sends its
/// own request id there, so the model's OPE log joins the gateway's access log), else a fresh UUID.
fn inference_id(req: &HttpRequest) -> String {
    req.headers()
        .get("x-amzn-sagemaker-inference-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

async fn invocations(
    state: web::Data<Recommender>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let request_id = inference_id(&req);
    container(&state, &req, payload, &request_id, None)
        .await
        .into_response()
}

async fn runtime_invocations(
    state: web::Data<Recommender>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let request_id = inference_id(&req);
    let name = name.into_inner();
    if !valid_endpoint_name(&name) {
        return HttpResponse::BadRequest()
            .insert_header((ERROR_TYPE, "ValidationError"))
            .insert_header((REQUEST_ID, request_id.as_str()))
            .insert_header((CONTENT_TYPE, "application/json"))
            .body(
                json!({
                    "message": format!("1 validation error detected: Value '{name}' at 'endpointName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*")
                })
                .to_string(),
            );
    }
    let reply = container(&state, &req, payload, &request_id, Some(&name)).await;
    if reply.status.is_success() {
        let mut res = reply.into_response();
        let headers = res.headers_mut();
        headers.insert(
            actix_web::http::header::HeaderName::from_static(INVOKED_VARIANT),
            HeaderValue::from_static(VARIANT),
        );
        if let Ok(id) = HeaderValue::from_str(&request_id) {
            headers.insert(
                actix_web::http::header::HeaderName::from_static(REQUEST_ID),
                id,
            );
        }
        return res;
    }
    HttpResponse::build(StatusCode::FAILED_DEPENDENCY)
        .insert_header((ERROR_TYPE, "ModelError"))
        .insert_header((REQUEST_ID, request_id.as_str()))
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(model_error_body(&name, reply.status, &reply.body).to_string())
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

/// The container's own handler: read the body, run the pipeline, log one line.
async fn container(
    state: &Recommender,
    req: &HttpRequest,
    payload: web::Payload,
    request_id: &str,
    endpoint: Option<&str>,
) -> ContainerReply {
    let started = Instant::now();
    let custom_attributes = req.headers().get(CUSTOM_ATTRIBUTES).cloned();
    let body = match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return ContainerReply::error(
                StatusCode::BAD_REQUEST,
                None,
                &format!("body: could not be read: {e}"),
            );
        }
        Err(_) => {
            return ContainerReply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                &format!("body: larger than {MAX_BODY_BYTES} bytes"),
            );
        }
    };
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<non-ASCII>"));
    let attrs_for_log = custom_attributes
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match state.invoke(content_type, &body, request_id) {
        Ok(Answer {
            body: answer,
            cache,
        }) => {
            let items: Vec<&str> = answer
                .recommendations
                .iter()
                .map(|r| r.item_id.as_str())
                .collect();
            tracing::info!(
                request_id,
                endpoint = endpoint.unwrap_or(""),
                user_id = %answer.user_id,
                inference_type = answer.inference_type,
                k = answer.k,
                seed = %answer.rng.seed,
                model_version = %answer.model_version,
                log_propensity = answer.log_propensity,
                fallback = answer.fallback.unwrap_or(""),
                cache = cache_label(cache),
                custom_attributes = attrs_for_log,
                items = ?items,
                elapsed_us = started.elapsed().as_micros() as u64,
                "invocation"
            );
            // Sized for the answer (≈ 200 bytes per item), so serialising never reallocates.
            let mut body = Vec::with_capacity(512 + 256 * answer.recommendations.len());
            match serde_json::to_writer(&mut body, &answer) {
                Ok(()) => ContainerReply {
                    status: StatusCode::OK,
                    body,
                    custom_attributes,
                },
                Err(e) => {
                    tracing::error!(request_id, error = %e, "serializing the answer failed");
                    ContainerReply::error(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
                }
            }
        }
        Err(e) => {
            tracing::info!(
                request_id,
                endpoint = endpoint.unwrap_or(""),
                error = %e,
                custom_attributes = attrs_for_log,
                elapsed_us = started.elapsed().as_micros() as u64,
                "invocation rejected"
            );
            ContainerReply::error(StatusCode::BAD_REQUEST, e.field(), &e.to_string())
        }
    }
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
