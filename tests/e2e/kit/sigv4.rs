//! Recomputes an AWS Signature Version 4 (header form) from a request as the upstream received
//! it, the way SageMaker Runtime checks it: canonical request → string to sign → HMAC chain with
//! the secret key, for region `us-east-1` and signing name `sagemaker`; or the way S3 checks it
//! ([`verify_s3`]): signing name `s3`, the path taken as sent (S3 keys are encoded once, not
//! twice), and `x-amz-content-sha256` signed and equal to the body's hash.
//!
//! Input: method, request target, headers (lower-case names), body, access key id and secret.
//! Output: `Ok(())` when the `Authorization` header has the expected shape and its signature
//! matches; otherwise the reason. HMAC-SHA256 is written out here (RFC 2104) over `sha2`.

use sha2::{Digest, Sha256};

/// Region the gateway is configured with in tests.
pub const REGION: &str = "us-east-1";
/// SageMaker Runtime's signing name (not `runtime.sagemaker`).
pub const SERVICE: &str = "sagemaker";

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SigV4's URI encoding of one path segment (unreserved characters kept).
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Signing name of S3.
pub const S3_SERVICE: &str = "s3";

/// Checks the request's `Authorization` header as SageMaker Runtime does.
pub fn verify(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
    access_key: &str,
    secret: &str,
) -> Result<(), String> {
    verify_as(SERVICE, method, target, headers, body, (access_key, secret))
}

/// Checks the request's `Authorization` header as S3 does.
pub fn verify_s3(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
    access_key: &str,
    secret: &str,
) -> Result<(), String> {
    let content_hash = headers
        .iter()
        .find(|(n, _)| n == "x-amz-content-sha256")
        .map(|(_, v)| v.as_str())
        .ok_or("no x-amz-content-sha256 (S3 requires it)")?;
    if content_hash != sha256_hex(body) {
        return Err(format!(
            "x-amz-content-sha256 {content_hash} is not the body's hash"
        ));
    }
    verify_as(
        S3_SERVICE,
        method,
        target,
        headers,
        body,
        (access_key, secret),
    )
}

fn verify_as(
    expected_service: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
    (access_key, secret): (&str, &str),
) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let auth = header("authorization").ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| format!("not AWS4-HMAC-SHA256: {auth}"))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim) {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(format!("unexpected Authorization part {part:?}")),
        }
    }
    let (credential, signed, signature) = match (credential, signed, signature) {
        (Some(c), Some(s), Some(g)) => (c, s, g),
        _ => return Err(format!("incomplete Authorization: {auth}")),
    };
    let scope_parts: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope_parts[..] else {
        return Err(format!("bad Credential {credential}"));
    };
    if key_id != access_key
        || region != REGION
        || service != expected_service
        || terminator != "aws4_request"
    {
        return Err(format!("unexpected credential scope {credential}"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad scope date {date}"));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("signature is not 64 hex digits: {signature}"));
    }
    let names: Vec<&str> = signed.split(';').collect();
    let required: &[&str] = if expected_service == S3_SERVICE {
        &["host", "x-amz-date", "x-amz-content-sha256"]
    } else {
        &["host", "x-amz-date"]
    };
    for required in required {
        if !names.contains(required) {
            return Err(format!("{required} is not signed: {signed}"));
        }
    }
    let amz_date = header("x-amz-date").ok_or("no x-amz-date")?;
    if !amz_date.starts_with(date) {
        return Err(format!("x-amz-date {amz_date} is not on scope date {date}"));
    }
    let expected = compute(
        method,
        target,
        headers,
        signed,
        body,
        secret,
        (date, region, service),
    )?;
    if expected == signature {
        Ok(())
    } else {
        Err(format!(
            "signature mismatch: expected {expected}, got {signature} (signed headers {signed})"
        ))
    }
}

/// The hex signature of a request for `signed` headers, scope `(date, region, service)`.
fn compute(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    signed: &str,
    body: &[u8],
    secret: &str,
    (date, region, service): (&str, &str, &str),
) -> Result<String, String> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let names: Vec<&str> = signed.split(';').collect();
    let amz_date = header("x-amz-date").ok_or("no x-amz-date")?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // S3 signs the path as sent; every other service encodes it once more.
    let canonical_uri: String = if service == S3_SERVICE {
        path.to_owned()
    } else {
        path.split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut query_pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    query_pairs.sort_unstable();
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} was not sent"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = header("x-amz-content-sha256")
        .map(str::to_owned)
        .unwrap_or_else(|| sha256_hex(body));
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{}\n{canonical_headers}\n{signed}\n{payload_hash}",
        query_pairs.join("&")
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    Ok(hex::encode(hmac(&key, string_to_sign.as_bytes())))
}

#[test]
fn hmac_matches_rfc_4231_case_2() {
    assert_eq!(
        hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn aws_documentation_example_signature() {
    // The GET example of the AWS SigV4 documentation (IAM ListUsers), recomputed.
    let headers = vec![
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        ),
        ("host".to_owned(), "iam.amazonaws.com".to_owned()),
        ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
    ];
    let signature = compute(
        "GET",
        "/?Action=ListUsers&Version=2010-05-08",
        &headers,
        "content-type;host;x-amz-date",
        b"",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ("20150830", "us-east-1", "iam"),
    )
    .unwrap();
    assert_eq!(
        signature,
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    );
}

#[test]
fn aws_s3_documentation_example_get_object() {
    // The GET Object example of the S3 SigV4 documentation (header form), checked as S3 does; the
    // same request for another key must not verify.
    let headers = |sig: &str| {
        vec![
            (
                "host".to_owned(),
                "examplebucket.s3.amazonaws.com".to_owned(),
            ),
            ("range".to_owned(), "bytes=0-9".to_owned()),
            (
                "x-amz-content-sha256".to_owned(),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned(),
            ),
            ("x-amz-date".to_owned(), "20130524T000000Z".to_owned()),
            (
                "authorization".to_owned(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature={sig}"
                ),
            ),
        ]
    };
    let good = headers("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    assert_eq!(
        verify_s3(
            "GET",
            "/test.txt",
            &good,
            b"",
            "AKIAIOSFODNN7EXAMPLE",
            secret
        ),
        Ok(())
    );
    assert!(
        verify_s3(
            "GET",
            "/test2.txt",
            &good,
            b"",
            "AKIAIOSFODNN7EXAMPLE",
            secret
        )
        .is_err()
    );
    // Signed for SageMaker's rules instead of S3's: refused.
    assert!(
        verify(
            "GET",
            "/test.txt",
            &good,
            b"",
            "AKIAIOSFODNN7EXAMPLE",
            secret
        )
        .is_err()
    );
}
