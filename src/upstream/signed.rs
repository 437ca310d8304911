//! What every signed AWS call of the gateway shares: the pooled HTTPS client, SigV4 signing of one
//! request with AWS's own signer, and the SDK's rule for which transport failures are transient.
//!
//! Input: a built `http::Request` (method, URI, headers, body), a signing [`Identity`], region,
//! signing name and [`SigningSettings`]. Output: the request with `Authorization`, `X-Amz-Date`
//! (and for S3 `X-Amz-Content-SHA256`, and the session token when there is one) added.
//!
//! Used by [`super::lean`] (SageMaker `InvokeEndpoint`, signed by [`super::sigv4`], which leaves
//! shapes it does not build to [`sign_request_at`]) and [`super::s3`] (S3 `GetObject` for the keys
//! source). Invariants: the secret and the signature never reach a log line; connection
//! set-up (TCP and TLS together) is bounded by the connect timeout, as the SDK's is.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::header::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The connector: TCP, then TLS for `https`, with the whole set-up bounded.
pub type Connector = ConnectTimeout<hyper_rustls::HttpsConnector<HttpConnector>>;
/// The pooled client every signed call goes through.
pub type HttpClient = HyperClient<Connector, Full<Bytes>>;

/// A pooled HTTP/1.1 client for `http` and `https` URLs (native roots, rustls with aws-lc-rs).
/// Fails only when TLS cannot be set up at all.
pub fn http_client(connect_timeout: Duration) -> anyhow::Result<HttpClient> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let tls = {
        use hyper_rustls::ConfigBuilderExt;
        match builder.clone().with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                // As the SDK's client does: start anyway; an https endpoint then fails per call.
                tracing::warn!(error = %e, "no usable root certificates; https calls will fail");
                builder.with_root_certificates(rustls::RootCertStore::empty())
            }
        }
    }
    .with_no_client_auth();
    let connector = ConnectTimeout {
        inner: hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp),
        timeout: connect_timeout,
    };
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}

/// Where a signature is computed: region, signing name, and the service's signer settings.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Signing region.
    pub region: &'a str,
    /// Signing name (`sagemaker`, `s3`).
    pub name: &'a str,
}

/// Signs `request` (whose body is `body`) for `scope` at the current time and adds the signature
/// headers. The request's headers must already hold every header to sign, `Host` included.
pub fn sign_request(
    request: &mut http::Request<Full<Bytes>>,
    body: &[u8],
    identity: &Identity,
    scope: Scope<'_>,
    settings: SigningSettings,
) -> Result<(), String> {
    sign_request_at(request, body, identity, scope, settings, SystemTime::now())
}

/// [`sign_request`] at `time`: aws-sigv4's full signer, the reference [`super::sigv4`] is proven
/// equal to.
pub fn sign_request_at(
    request: &mut http::Request<Full<Bytes>>,
    body: &[u8],
    identity: &Identity,
    scope: Scope<'_>,
    settings: SigningSettings,
    time: SystemTime,
) -> Result<(), String> {
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        request
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign: {e}"))?;
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(scope.region)
        .name(scope.name)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("cannot sign: {e}"))?;
    let (headers, query) = sign(signable, &params.into())
        .map_err(|e| format!("cannot sign: {e}"))?
        .into_parts()
        .0
        .into_parts();
    if !query.is_empty() {
        return Err("cannot sign: a signature in the query string is not supported".to_owned());
    }
    // As `apply_to_request_http1x` does, without its panic on a value that is not a header value
    // (an access key id read from the environment can hold anything).
    for header in headers {
        let mut value = HeaderValue::from_str(header.value())
            .map_err(|_| format!("cannot sign: {} is not a valid header value", header.name()))?;
        value.set_sensitive(header.sensitive());
        request.headers_mut().insert(header.name(), value);
    }
    Ok(())
}

/// A connector whose whole connection set-up (TCP and TLS) is bounded, like the SDK's
/// `connect_timeout`; the timeout surfaces as an I/O `TimedOut` connect error.
#[derive(Clone)]
pub struct ConnectTimeout<C> {
    inner: C,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<http::Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<http::Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect (TCP + TLS) timed out after {limit:?}"),
                )) as BoxError),
            }
        })
    }
}

/// The `Host` value of an endpoint URL: its authority, as hyper would send it.
pub fn host_of(base: &str) -> anyhow::Result<HeaderValue> {
    let uri: http::Uri = base.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("endpoint {base} has no host"))?;
    Ok(HeaderValue::from_str(authority.as_str())?)
}

/// The SDK's rule for a failed dispatch (aws-smithy-http-client's error mapping + the transient
/// classifier): connect failures, closed or cancelled connections, I/O errors and messages cut
/// short are retried; an answer that is not HTTP is not.
pub fn is_transient(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && (h.is_closed() || h.is_canceled() || h.is_incomplete_message() || h.is_timeout())
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error and its sources, as one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_the_authority() {
        assert_eq!(host_of("http://127.0.0.1:8081").unwrap(), "127.0.0.1:8081");
        assert_eq!(
            host_of("https://runtime.sagemaker.eu-west-1.amazonaws.com").unwrap(),
            "runtime.sagemaker.eu-west-1.amazonaws.com"
        );
    }
}
