//! A lean S3 `GetObject` for the keys source (`--keys s3://bucket/key`), and the conditional
//! `PutObject` of `sagegate keys` edits (`If-Match: <ETag read>`): AWS's SigV4 signer with
//! S3's settings, credentials from the default chain kept fresh by [`CredentialCache`], on the
//! pooled client of [`super::signed`] (a pool per calling thread).
//!
//! Input: bucket, key, and the last ETag seen. Output: [`GetObject::NotModified`] (304 to
//! `If-None-Match`), [`GetObject::Found`] (200: body and ETag), or the cause of a failure as one
//! line (HTTP status with S3's error code and message, or the transport error). A put answers
//! [`PutObject::Stored`] or [`PutObject::Conflict`] (the object changed since it was read).
//!
//! What the SDK client did, kept here:
//! - **Addressing**: virtual-hosted (`https://bucket.s3.region.amazonaws.com/key`) when the bucket
//!   name is a DNS label, path-style (`https://s3.region.amazonaws.com/bucket/key`) otherwise (a
//!   name with dots); FIPS and dual-stack host names from `AWS_USE_FIPS_ENDPOINT` /
//!   `AWS_USE_DUALSTACK_ENDPOINT` (via `aws-config`). With `AWS_ENDPOINT_URL_S3` or
//!   `AWS_ENDPOINT_URL` set, path-style under that URL (`http://host:port/bucket/key`), which S3
//!   stand-ins (MinIO, LocalStack) need.
//! - **Signing**: signing name `s3`, `X-Amz-Content-SHA256` sent and signed, the key encoded once
//!   (no double URI encoding) and the path never normalized (`a//b` and `a/../b` are distinct keys).
//! - **Retries**: at most 3 attempts, for HTTP 500/502/503/504, AWS throttling and transient error
//!   codes (`SlowDown`...), and transport failures; full-jitter backoff from 1 s.
//! - **Timeouts**: 5 s to connect, 60 s for the whole call including retries.
//!
//! Invariants: credentials are never fetched on the call path (a background task refreshes them);
//! the secret and the signature never reach a log line.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SigningSettings, UriPathNormalizationMode,
};
use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST, HeaderValue, IF_MATCH, IF_NONE_MATCH, USER_AGENT,
};
use http_body_util::{BodyExt, Full};

use super::credentials::CredentialCache;
use super::signed::{self, HttpClient, Scope, error_chain, host_of};

/// S3's SigV4 signing name.
pub const SIGNING_NAME: &str = "s3";
/// Environment variables that override the S3 endpoint, most specific first (as in every SDK).
pub const ENDPOINT_ENV: [&str; 2] = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: u32 = 3;
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(20);
const AGENT: &str = concat!("sagegate/", env!("CARGO_PKG_VERSION"), " md/aws-sigv4-lean");
const AMZ_USER_AGENT: http::HeaderName = http::HeaderName::from_static("x-amz-user-agent");

/// The answer to one `GetObject`.
#[derive(Debug)]
pub enum GetObject {
    /// 304: the object still has the ETag sent in `If-None-Match`.
    NotModified,
    /// 200: the object's bytes and its ETag.
    Found { body: Bytes, etag: Option<String> },
}

/// The answer to one conditional `PutObject`.
#[derive(Debug)]
pub enum PutObject {
    /// 200: stored, with the object's new ETag.
    Stored { etag: Option<String> },
    /// 412 or 409: the object is no longer the version `If-Match` named; nothing was stored by
    /// this answer. `retried`: an earlier attempt of the same call got no answer or a 5xx, so it
    /// may have stored the body itself (the caller can read the object back to tell).
    Conflict { retried: bool },
}

/// Where requests go: the endpoint settings loaded once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Signing region (also the region of the default host names).
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, when set.
    pub url_override: Option<String>,
    /// FIPS host names.
    pub fips: bool,
    /// Dual-stack host names.
    pub dual_stack: bool,
}

/// The S3 client of the keys source.
pub struct S3 {
    http: HttpClient,
    credentials: Arc<CredentialCache>,
    endpoint: Endpoint,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The endpoint override from the environment, if any.
    pub fn override_from_env() -> Option<String> {
        ENDPOINT_ENV
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// The URL of `bucket`/`key`, addressed as the SDK addresses it by default.
    pub fn object_url(&self, bucket: &str, key: &str) -> Result<String, String> {
        let key = percent_encoding::utf8_percent_encode(key, KEY).to_string();
        if let Some(base) = &self.url_override {
            let bucket = percent_encoding::utf8_percent_encode(bucket, LABEL);
            return Ok(format!("{}/{bucket}/{key}", base.trim_end_matches('/')));
        }
        let region = self
            .region
            .as_deref()
            .ok_or("no AWS region (set AWS_REGION)")?;
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!("invalid AWS region {region:?}"));
        }
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let host = format!(
            "s3{}{}.{region}.{suffix}",
            if self.fips { "-fips" } else { "" },
            if self.dual_stack { ".dualstack" } else { "" },
        );
        if virtual_hostable(bucket) {
            Ok(format!("https://{bucket}.{host}/{key}"))
        } else {
            let bucket = percent_encoding::utf8_percent_encode(bucket, LABEL);
            Ok(format!("https://{host}/{bucket}/{key}"))
        }
    }
}

/// The SDK's `isVirtualHostableS3Bucket(bucket, false)`: 3 to 63 lower-case letters, digits and
/// hyphens, starting and ending with a letter or digit, and not an IP address.
fn virtual_hostable(bucket: &str) -> bool {
    let b = bucket.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && bucket.parse::<std::net::IpAddr>().is_err()
}

impl S3 {
    /// The client from the default AWS chain (credentials, region, FIPS/dual-stack) and the
    /// endpoint override in the environment. Credentials load in the background after a bounded
    /// first attempt; calls fail with a clear cause until they are there.
    pub async fn from_env() -> anyhow::Result<S3> {
        let conf = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let credentials = match conf.credentials_provider() {
            Some(provider) => CredentialCache::start(provider).await,
            None => Arc::new(CredentialCache::default()),
        };
        let endpoint = Endpoint {
            region: conf.region().map(|r| r.as_ref().to_owned()),
            url_override: Endpoint::override_from_env(),
            fips: conf.use_fips().unwrap_or(false),
            dual_stack: conf.use_dual_stack().unwrap_or(false),
        };
        S3::new(endpoint, credentials)
    }

    /// A client for `endpoint` signing with `credentials`.
    pub fn new(endpoint: Endpoint, credentials: Arc<CredentialCache>) -> anyhow::Result<S3> {
        Ok(S3 {
            http: signed::http_client(CONNECT_TIMEOUT)?,
            credentials,
            endpoint,
        })
    }

    /// `GetObject`, conditional on `if_none_match` when given; bounded by 60 s, retries included.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        if_none_match: Option<&str>,
    ) -> Result<GetObject, String> {
        let mut headers = Vec::new();
        if let Some(etag) = if_none_match {
            headers.push((IF_NONE_MATCH, etag));
        }
        let request = Call {
            method: http::Method::GET,
            headers,
            body: Bytes::new(),
        };
        self.call(bucket, key, &request, |_, status, headers| match status {
            200 => Some(Ok(GetObject::Found {
                body: Bytes::new(),
                etag: etag_of(headers),
            })),
            304 => Some(Ok(GetObject::NotModified)),
            _ => None,
        })
        .await
        .map(|(answer, body)| match answer {
            GetObject::Found { etag, .. } => GetObject::Found { body, etag },
            other => other,
        })
    }

    /// `PutObject` of `body`, conditional on the object still having the ETag `if_match` (S3's
    /// conditional write: 412 `PreconditionFailed` when it changed, 409
    /// `ConditionalRequestConflict` when another write raced this one; both are
    /// [`PutObject::Conflict`]). Bounded by 60 s, retries included.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        if_match: &str,
    ) -> Result<PutObject, String> {
        let request = Call {
            method: http::Method::PUT,
            headers: vec![(IF_MATCH, if_match), (CONTENT_TYPE, content_type)],
            body,
        };
        self.call(
            bucket,
            key,
            &request,
            |attempt, status, headers| match status {
                200 => Some(Ok(PutObject::Stored {
                    etag: etag_of(headers),
                })),
                409 | 412 => Some(Ok(PutObject::Conflict {
                    retried: attempt > 1,
                })),
                _ => None,
            },
        )
        .await
        .map(|(answer, _)| answer)
    }

    /// One signed call with the SDK's retries. `answer(attempt, status, headers)` names the
    /// statuses that end the call; every other status is an S3 error, retried when transient.
    async fn call<T>(
        &self,
        bucket: &str,
        key: &str,
        request: &Call<'_>,
        answer: impl Fn(u32, u16, &http::HeaderMap) -> Option<Result<T, String>>,
    ) -> Result<(T, Bytes), String> {
        let url = self.endpoint.object_url(bucket, key)?;
        // The signature's scope needs a region even for a local endpoint, as the SDK's did.
        let region = self
            .endpoint
            .region
            .as_deref()
            .ok_or("no AWS region (set AWS_REGION)")?;
        let calls = async {
            let mut attempt = 1;
            loop {
                let why = match self.attempt(&url, region, request).await {
                    Err(Failure::Final(why)) => return Err(why),
                    Err(Failure::Transient(why)) => why,
                    Ok((parts, body)) => {
                        let status = parts.status.as_u16();
                        if let Some(done) = answer(attempt, status, &parts.headers) {
                            return done.map(|t| (t, body));
                        }
                        let code = xml_element(&body, "Code");
                        let why = describe(status, code.as_deref(), &body, &parts.headers);
                        let retry = matches!(status, 500 | 502 | 503 | 504)
                            || code.as_deref().is_some_and(|c| {
                                THROTTLING_ERRORS.contains(&c)
                                    || TRANSIENT_ERRORS.contains(&c)
                                    || c == "SlowDown"
                            });
                        if !retry {
                            return Err(why);
                        }
                        why
                    }
                };
                if attempt >= MAX_ATTEMPTS {
                    return Err(why);
                }
                tracing::debug!(attempt, method = %request.method, error = %why, "S3 call retried");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, calls).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {OPERATION_TIMEOUT:?} ({url})")),
        }
    }

    async fn attempt(
        &self,
        url: &str,
        region: &str,
        call: &Call<'_>,
    ) -> Result<(http::response::Parts, Bytes), Failure> {
        let Some(identity) = self.credentials.current() else {
            return Err(Failure::Final(
                "no AWS credentials loaded (see the credential log lines)".to_owned(),
            ));
        };
        let mut request = build_request(url, call).map_err(Failure::Final)?;
        let scope = Scope {
            region,
            name: SIGNING_NAME,
        };
        signed::sign_request(
            &mut request,
            &call.body,
            &identity,
            scope,
            signing_settings(),
        )
        .map_err(Failure::Final)?;
        let response = self.http.request(request).await.map_err(|e| {
            let why = format!("dispatch failure: {} ({url})", error_chain(&e));
            if signed::is_transient(&e) {
                Failure::Transient(why)
            } else {
                Failure::Final(why)
            }
        })?;
        let (parts, body) = response.into_parts();
        match body.collect().await {
            Ok(b) => Ok((parts, b.to_bytes())),
            Err(e) => Err(Failure::Transient(format!(
                "response error: {}",
                error_chain(&e)
            ))),
        }
    }
}

/// One S3 request before signing: method, extra headers, body.
struct Call<'a> {
    method: http::Method,
    headers: Vec<(http::HeaderName, &'a str)>,
    body: Bytes,
}

/// Why an attempt got no HTTP answer.
enum Failure {
    /// Worth another attempt (a connection failure, a cut answer).
    Transient(String),
    /// Not.
    Final(String),
}

fn etag_of(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// S3's signer settings, as the SDK sets them for S3: the payload hash sent as
/// `X-Amz-Content-SHA256`, the path encoded once, never normalized.
pub fn signing_settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings
}

fn build_request(url: &str, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, String> {
    let host = host_of(url).map_err(|e| format!("bad S3 endpoint {url}: {e}"))?;
    let mut request = http::Request::builder()
        .method(call.method.clone())
        .uri(url)
        .body(Full::new(call.body.clone()))
        .map_err(|e| format!("bad S3 endpoint {url}: {e}"))?;
    let headers = request.headers_mut();
    headers.insert(HOST, host);
    headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
    headers.insert(AMZ_USER_AGENT, HeaderValue::from_static(AGENT));
    if call.method != http::Method::GET {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(call.body.len()));
    }
    for (name, value) in &call.headers {
        let v = HeaderValue::from_str(value)
            .map_err(|_| format!("{name} {value:?} is not a header value"))?;
        headers.insert(name.clone(), v);
    }
    Ok(request)
}

/// One line about an S3 error answer: status, S3's code and message, and for a bucket in
/// another region, that region.
fn describe(status: u16, code: Option<&str>, body: &[u8], headers: &http::HeaderMap) -> String {
    let mut out = format!("HTTP {status}");
    if let Some(code) = code {
        out.push(' ');
        out.push_str(code);
    }
    if let Some(message) = xml_element(body, "Message") {
        out.push_str(": ");
        out.push_str(&message);
    }
    if let Some(region) = headers
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
    {
        out.push_str(&format!(
            " (the bucket is in region {region}; set AWS_REGION)"
        ));
    }
    out
}

/// The text of the first `<name>` element of an S3 error document (short, escapes left as sent).
fn xml_element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{name}>"))?;
    let value: String = text[start..start + len].chars().take(200).collect();
    Some(value)
}

/// Full-jitter backoff before retry `attempt` (1 = first retry), from 1 s as the SDK's default.
fn backoff(attempt: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(MAX_BACKOFF)
        .mul_f64(rand::random::<f64>())
}

/// Bucket names in a path: everything but unreserved characters encoded.
const LABEL: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Object keys (S3's greedy label): as [`LABEL`], but `/` kept.
const KEY: &percent_encoding::AsciiSet = &LABEL.remove(b'/');

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(region: &str) -> Endpoint {
        Endpoint {
            region: Some(region.to_owned()),
            url_override: None,
            fips: false,
            dual_stack: false,
        }
    }

    #[test]
    fn addressed_as_the_sdk_does_by_default() {
        let e = endpoint("eu-west-1");
        assert_eq!(
            e.object_url("my-bucket", "sagegate/keys.yaml").unwrap(),
            "https://my-bucket.s3.eu-west-1.amazonaws.com/sagegate/keys.yaml"
        );
        // Dots: not a DNS label under the wildcard certificate, so path-style.
        assert_eq!(
            e.object_url("my.bucket", "k").unwrap(),
            "https://s3.eu-west-1.amazonaws.com/my.bucket/k"
        );
        assert_eq!(
            endpoint("cn-north-1").object_url("b-1", "k").unwrap(),
            "https://b-1.s3.cn-north-1.amazonaws.com.cn/k"
        );
        let both = Endpoint {
            fips: true,
            dual_stack: true,
            ..endpoint("us-east-1")
        };
        assert_eq!(
            both.object_url("bkt", "k").unwrap(),
            "https://bkt.s3-fips.dualstack.us-east-1.amazonaws.com/k"
        );
        let local = Endpoint {
            url_override: Some("http://127.0.0.1:9000/".to_owned()),
            ..endpoint("us-east-1")
        };
        assert_eq!(
            local.object_url("bkt", "a b/c+d.yaml").unwrap(),
            "http://127.0.0.1:9000/bkt/a%20b/c%2Bd.yaml"
        );
        let none = Endpoint {
            region: None,
            ..endpoint("x")
        };
        assert!(
            none.object_url("bkt", "k")
                .unwrap_err()
                .contains("AWS_REGION")
        );
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket-1", "0bucket"] {
            assert!(virtual_hostable(ok), "{ok}");
        }
        for no in [
            "ab",
            "My-Bucket",
            "my.bucket",
            "-abc",
            "abc-",
            "192.168.1.1",
            "a_b",
        ] {
            assert!(!virtual_hostable(no), "{no}");
        }
    }

    #[test]
    fn errors_name_the_code_message_and_region() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>PermanentRedirect</Code><Message>Use the endpoint.</Message></Error>";
        let mut headers = http::HeaderMap::new();
        headers.insert("x-amz-bucket-region", HeaderValue::from_static("eu-west-1"));
        let code = xml_element(body, "Code");
        assert_eq!(
            describe(301, code.as_deref(), body, &headers),
            "HTTP 301 PermanentRedirect: Use the endpoint. (the bucket is in region eu-west-1; set AWS_REGION)"
        );
        assert_eq!(
            describe(404, None, b"", &http::HeaderMap::new()),
            "HTTP 404"
        );
    }
}
