//! SigV4 for SageMaker Runtime's `InvokeEndpoint` and `InvokeEndpointWithResponseStream` with a
//! cached signing key: aws-sigv4's own primitives ([`v4::generate_signing_key`],
//! [`v4::calculate_signature`]) around a canonical request written straight into one buffer.
//!
//! Why: aws-sigv4's `sign` derives the signing key (four HMAC-SHA256) on every call, and builds the
//! canonical request through a second header map and `Display`: 57k and 34k of the 179k
//! instructions a signature cost per request under callgrind (bench/RESULTS.md). The key depends
//! only on the UTC date, the region, the signing name and the secret, so it is derived once a day.
//!
//! Input: a built request (method, URI, every header to sign, `Host` included), its body, the
//! identity, the [`Scope`] and the signing time. Output: the request with `x-amz-date`,
//! `authorization` and, with a session token, `x-amz-security-token` added: the same headers,
//! values, order and sensitivity flags as [`signed::sign_request_at`] with
//! `SigningSettings::default()`, the settings the SDK signs SageMaker Runtime calls with.
//!
//! Shapes: a request without a query string whose path dot-segment normalisation leaves as it is
//! (no `.`, `..` or empty segment), signed in the header: `POST /endpoints/{name}/invocations` and
//! `POST /endpoints/{name}/invocations-response-stream` for every name SageMaker accepts, with any
//! headers (`Accept` or `X-Amzn-SageMaker-Accept`, the identifier and session headers). Anything
//! else (a query, a path the signer would normalise, no `Host` header, an identity without AWS
//! credentials, a time outside 1970–9999, a value that is no header value) goes to the full signer,
//! so no request is signed differently or refused here that it would sign.
//!
//! Invariants: equal to the full signer byte for byte (`tests.rs`: a differential property test
//! and the `aws-signing-test-suite` vectors shipped in aws-sigv4's source). The cache is one
//! entry, replaced whole through an [`ArcSwapOption`] and never locked, so no lock is held by a
//! request, across an `.await` or otherwise; a miss (a new day, a rotated secret) costs one key
//! derivation. Security: the entry holds the identity it was derived from instead of a copy of
//! the secret; the key, like the secret, never reaches a log line (no `Debug` shows it).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_http::label::{EncodingStrategy, fmt_string};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use chrono::Datelike;
use http::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue};
use http_body_util::Full;
use sha2::{Digest, Sha256};

use super::signed::{self, Scope};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const DATE: &str = "x-amz-date";
const TOKEN: &str = "x-amz-security-token";
const X_AMZ_DATE: HeaderName = HeaderName::from_static(DATE);
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static(TOKEN);
const SECONDS_PER_DAY: u64 = 86_400;
/// 9999-12-31T23:59:59Z: the last second the signature's four-digit year can name.
const LAST_SECOND: u64 = 253_402_300_799;

/// Signs SageMaker Runtime invoke calls; one per client, shared by every worker.
pub struct Signer {
    /// Headers never signed: the full signer's default exclusions (`Authorization`,
    /// `User-Agent`, `X-Amzn-Trace-Id`, `Transfer-Encoding`), read from aws-sigv4 itself.
    excluded: Vec<Cow<'static, str>>,
    /// False when aws-sigv4's default settings are not the ones this builder writes (a future
    /// version changing them): every request then goes to the full signer.
    fast: bool,
    /// The signing key of the last signature. Replaced whole, never locked: a request reads it
    /// lock-free and, on a miss, stores the key it derived (two requests missing at once both
    /// derive; the second store wins, both keys are right).
    key: ArcSwapOption<SigningKey>,
}

/// The key for one UTC day, region, signing name and secret, with the strings derived from them.
struct SigningKey {
    /// Days since 1970-01-01 (UTC).
    day: u64,
    /// `YYYYMMDD/region/name/aws4_request`; the date is its first 8 bytes.
    scope: String,
    region: Box<str>,
    name: Box<str>,
    /// The identity whose secret the key was derived from (compared, never copied).
    identity: Arc<Identity>,
    key: Box<[u8]>,
}

/// What the signature adds to a request (no `Debug`: it carries a signature).
pub(crate) struct Signature {
    amz_date: HeaderValue,
    authorization: HeaderValue,
    security_token: Option<HeaderValue>,
}

/// A canonical request and what the string to sign is made of (the tests read them).
#[derive(Debug)]
pub(crate) struct Canonical {
    /// The canonical request, as aws-sigv4's `CanonicalRequest` displays it.
    pub(crate) request: String,
    /// `host;x-amz-date;…`
    pub(crate) signed_headers: String,
    /// `YYYYMMDDTHHMMSSZ`
    pub(crate) amz_date: String,
}

impl Default for Signer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.key.load();
        f.debug_struct("Signer")
            .field("fast", &self.fast)
            .field("cached_scope", &cached.as_ref().map(|k| k.scope.as_str()))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with an empty key cache.
    pub fn new() -> Signer {
        let settings = SigningSettings::default();
        let fast = settings.percent_encoding_mode == PercentEncodingMode::Double
            && settings.payload_checksum_kind == PayloadChecksumKind::NoHeader
            && settings.signature_location == SignatureLocation::Headers
            && settings.uri_path_normalization_mode == UriPathNormalizationMode::Enabled
            && settings.session_token_mode == SessionTokenMode::Include
            && settings.session_token_name_override.is_none();
        Signer {
            excluded: settings.excluded_headers.unwrap_or_default(),
            fast,
            key: ArcSwapOption::empty(),
        }
    }

    /// Signs `request` (whose body is `body`) for `scope` at `time`, as
    /// [`signed::sign_request_at`] with `SigningSettings::default()` would.
    pub fn sign(
        &self,
        request: &mut http::Request<Full<Bytes>>,
        body: &[u8],
        identity: &Arc<Identity>,
        scope: Scope<'_>,
        time: SystemTime,
    ) -> Result<(), String> {
        match self.signature(request, body, identity, scope, time) {
            Some(signature) => {
                let headers = request.headers_mut();
                // The full signer's order: date, authorization, token.
                headers.insert(X_AMZ_DATE, signature.amz_date);
                headers.insert(AUTHORIZATION, signature.authorization);
                if let Some(token) = signature.security_token {
                    headers.insert(X_AMZ_SECURITY_TOKEN, token);
                }
                Ok(())
            }
            None => signed::sign_request_at(
                request,
                body,
                identity,
                scope,
                SigningSettings::default(),
                time,
            ),
        }
    }

    /// Whether the canonical request of a request to `uri` is one this builder writes: no query
    /// string, a path aws-sigv4's dot-segment normalisation leaves as it is.
    fn builds(&self, uri: &http::Uri) -> bool {
        self.fast && uri.query().is_none_or(str::is_empty) && normalised(uri.path())
    }

    /// The signature of `request`, or `None` when its shape is one for the full signer.
    pub(crate) fn signature<B>(
        &self,
        request: &http::Request<B>,
        body: &[u8],
        identity: &Arc<Identity>,
        scope: Scope<'_>,
        time: SystemTime,
    ) -> Option<Signature> {
        if !self.builds(request.uri()) {
            return None;
        }
        let creds = identity.data::<Credentials>()?;
        let (day, second) = split(time)?;
        let key = self.key.load();
        let fresh;
        let key = match key.as_deref() {
            Some(k) if k.fits(day, scope, identity, creds) => k,
            _ => {
                fresh = Arc::new(SigningKey::derive(day, time, scope, identity, creds)?);
                self.key.store(Some(Arc::clone(&fresh)));
                &fresh
            }
        };
        let token = creds.session_token();
        let canonical = self.canonical(request, body, key.date(), second, token)?;
        let signature =
            v4::calculate_signature(&key.key, string_to_sign(&canonical, &key.scope).as_bytes());
        let mut authorization = String::with_capacity(256);
        for part in [
            ALGORITHM,
            " Credential=",
            creds.access_key_id(),
            "/",
            &key.scope,
            ", SignedHeaders=",
            &canonical.signed_headers,
            ", Signature=",
            &signature,
        ] {
            authorization.push_str(part);
        }
        let security_token = match token {
            Some(t) => {
                let mut v = HeaderValue::from_str(t).ok()?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Some(Signature {
            amz_date: HeaderValue::from_str(&canonical.amz_date).ok()?,
            authorization: HeaderValue::from_str(&authorization).ok()?,
            security_token,
        })
    }

    /// The canonical request of `request` signed on `date` (`YYYYMMDD`) at `second` of that day
    /// with `token`, or `None` when its shape is one for the full signer.
    pub(crate) fn canonical<B>(
        &self,
        request: &http::Request<B>,
        body: &[u8],
        date: &str,
        second: u32,
        token: Option<&str>,
    ) -> Option<Canonical> {
        if !self.builds(request.uri()) {
            return None;
        }
        let path = request.uri().path();
        let mut amz_date = String::with_capacity(16);
        amz_date.push_str(date);
        amz_date.push('T');
        for unit in [second / 3600, second / 60 % 60, second % 60] {
            // `second` is below 86,400: each unit has two digits.
            amz_date.push(char::from(b'0' + (unit / 10 % 10) as u8));
            amz_date.push(char::from(b'0' + (unit % 10) as u8));
        }
        amz_date.push('Z');
        let headers = request.headers();
        // The names the full signer puts in its canonical header map, less its exclusions.
        let mut names: Vec<&str> = Vec::with_capacity(headers.keys_len() + 2);
        let mut room = 256 + path.len() + token.map_or(0, str::len);
        let mut host = false;
        for name in headers.keys() {
            let n = name.as_str();
            // Replaced by the signature's own values.
            if n == DATE || (token.is_some() && n == TOKEN) {
                continue;
            }
            // A value that is not visible ASCII is not signed (`signed::sign_request_at` reads
            // values with `to_str`); a name with no such value is not signed at all.
            let mut signed = false;
            for v in headers.get_all(name) {
                if v.to_str().is_ok() {
                    signed = true;
                    room += v.len() + 1;
                }
            }
            if signed {
                host |= n == HOST.as_str();
                room += 2 * n.len() + 2;
                names.push(n);
            }
        }
        if !host {
            // The full signer then signs the URI's authority, default port removed.
            return None;
        }
        names.push(DATE);
        if token.is_some() {
            names.push(TOKEN);
        }
        names.retain(|n| !self.excluded.iter().any(|e| e == n));
        names.sort_unstable();

        let mut out = String::with_capacity(room);
        out.push_str(request.method().as_str());
        out.push('\n');
        out.push_str(&fmt_string(path, EncodingStrategy::Greedy));
        out.push_str("\n\n");
        for &name in &names {
            out.push_str(name);
            out.push(':');
            match (name, token) {
                (DATE, _) => out.push_str(&amz_date),
                (TOKEN, Some(t)) => out.push_str(t),
                _ => {
                    let values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
                    for (i, value) in values.enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        push_trimmed(&mut out, value);
                    }
                }
            }
            out.push('\n');
        }
        out.push('\n');
        let signed_start = out.len();
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(name);
        }
        let signed_headers = out[signed_start..].to_owned();
        out.push('\n');
        push_sha256_hex(&mut out, body);
        Some(Canonical {
            request: out,
            signed_headers,
            amz_date,
        })
    }
}

/// `AWS4-HMAC-SHA256\n{x-amz-date}\n{scope}\n{hex SHA-256 of the canonical request}`.
fn string_to_sign(canonical: &Canonical, scope: &str) -> String {
    let mut out = String::with_capacity(128 + scope.len());
    for part in [ALGORITHM, "\n", &canonical.amz_date, "\n", scope, "\n"] {
        out.push_str(part);
    }
    push_sha256_hex(&mut out, canonical.request.as_bytes());
    out
}

impl SigningKey {
    /// Derives the key with aws-sigv4's own derivation; `None` for a year it cannot name.
    fn derive(
        day: u64,
        time: SystemTime,
        scope: Scope<'_>,
        identity: &Arc<Identity>,
        creds: &Credentials,
    ) -> Option<SigningKey> {
        let midnight =
            chrono::DateTime::from_timestamp(i64::try_from(day * SECONDS_PER_DAY).ok()?, 0)?;
        let scope_string = format!(
            "{:04}{:02}{:02}/{}/{}/aws4_request",
            midnight.year(),
            midnight.month(),
            midnight.day(),
            scope.region,
            scope.name
        );
        let key =
            v4::generate_signing_key(creds.secret_access_key(), time, scope.region, scope.name);
        Some(SigningKey {
            day,
            scope: scope_string,
            region: scope.region.into(),
            name: scope.name.into(),
            identity: Arc::clone(identity),
            key: key.as_ref().into(),
        })
    }

    /// Whether this key signs for `scope` on `day` with `creds`' secret.
    fn fits(
        &self,
        day: u64,
        scope: Scope<'_>,
        identity: &Arc<Identity>,
        creds: &Credentials,
    ) -> bool {
        self.day == day
            && *self.region == *scope.region
            && *self.name == *scope.name
            && (Arc::ptr_eq(&self.identity, identity)
                || self
                    .identity
                    .data::<Credentials>()
                    .is_some_and(|c| c.secret_access_key() == creds.secret_access_key()))
    }

    /// `YYYYMMDD`.
    fn date(&self) -> &str {
        self.scope.get(..8).unwrap_or_default()
    }
}

/// `time` as (days since 1970-01-01, second of that day), UTC; `None` outside 1970–9999.
fn split(time: SystemTime) -> Option<(u64, u32)> {
    let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    if secs > LAST_SECOND {
        return None;
    }
    let second = u32::try_from(secs % SECONDS_PER_DAY).ok()?;
    Some((secs / SECONDS_PER_DAY, second))
}

/// Whether aws-sigv4's dot-segment normalisation leaves `path` unchanged: absolute, without an
/// empty (`//`), `.` or `..` segment (a trailing `/` is kept by it).
fn normalised(path: &str) -> bool {
    path.starts_with('/') && !path.contains("//") && path.split('/').all(|s| s != "." && s != "..")
}

/// `value` as SigV4 canonicalises it: spaces trimmed at both ends and runs of spaces made one
/// (spaces only, as aws-sigv4 does; tabs are kept).
fn push_trimmed(out: &mut String, value: &str) {
    let value = value.trim_matches(' ');
    if !value.contains("  ") {
        out.push_str(value);
        return;
    }
    let mut space = false;
    for c in value.chars() {
        if c == ' ' && space {
            continue;
        }
        space = c == ' ';
        out.push(c);
    }
}

/// Appends the lower-case hex SHA-256 of `data` (the payload and canonical-request hash of
/// SigV4), through a stack buffer: `hex::encode` collects a `String` char by char.
fn push_sha256_hex(out: &mut String, data: &[u8]) {
    let mut hex = [0u8; 64];
    if hex::encode_to_slice(Sha256::digest(data), &mut hex).is_ok() {
        out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests;
