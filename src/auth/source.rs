//! Where the keys file comes from: a filesystem path or an S3 object (`--keys s3://bucket/key`).
//!
//! Input: the `--keys` argument. Output: a [`KeySource`], and (crate-internal) a fetcher that reads
//! the current text — for S3 with a conditional `GET` (`If-None-Match: <etag>`), so polling an
//! unchanged object costs one 304 and no parsing.
//!
//! The S3 read is [`crate::upstream::s3`]'s lean `GetObject` (AWS's SigV4 signer, credentials from
//! the default AWS chain — the task role on Fargate —, region from the environment, and
//! `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` honoured as in every SDK). With such an override the
//! object is addressed path-style (`http://host/bucket/key`), which S3 stand-ins (MinIO,
//! LocalStack) need. The S3 part exists only with the `aws` feature; without it an `s3://` source is
//! a start-up error.

use std::fmt;
use std::path::PathBuf;

use crate::config::diag::Diagnostic;

/// The `--keys` argument: a file, or an S3 object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A local file, reloaded on change and on SIGHUP.
    Path(PathBuf),
    /// `s3://bucket/key`, polled by ETag.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Object key (may contain `/`).
        key: String,
    },
}

impl KeySource {
    /// Parses `--keys`: `s3://bucket/key`, or anything else as a path.
    pub fn parse(arg: &str) -> Result<KeySource, String> {
        if let Some(rest) = arg.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(KeySource::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }),
                _ => Err(format!(
                    "`{arg}`: an S3 keys source must look like s3://bucket/key"
                )),
            };
        }
        if arg.is_empty() {
            return Err("the keys source must not be empty".to_owned());
        }
        Ok(KeySource::Path(PathBuf::from(arg)))
    }

    /// The name used in diagnostics and logs: the path as given, or `s3://bucket/key`.
    pub fn name(&self) -> String {
        self.to_string()
    }
}

impl std::str::FromStr for KeySource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeySource::parse(s)
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Path(p) => write!(f, "{}", p.display()),
            KeySource::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// The result of one fetch.
pub(crate) enum Fetched {
    /// The S3 object still has the ETag we sent.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    NotModified,
    /// The current text, with the S3 ETag when there is one.
    Text { text: String, etag: Option<String> },
}

/// Reads a [`KeySource`]; holds the S3 client so polls reuse its connections.
pub(crate) enum Fetcher {
    File(PathBuf),
    #[cfg(feature = "aws")]
    S3 {
        client: Box<crate::upstream::s3::S3>,
        bucket: String,
        key: String,
    },
}

/// A diagnostic about the source as a whole (no position inside it).
fn source_error(name: &str, message: String) -> Diagnostic {
    Diagnostic {
        file: name.to_owned(),
        line: 0,
        col: 0,
        path: String::new(),
        message,
    }
}

impl Fetcher {
    pub(crate) async fn new(source: &KeySource) -> Result<Fetcher, Diagnostic> {
        match source {
            KeySource::Path(p) => Ok(Fetcher::File(p.clone())),
            #[cfg(feature = "aws")]
            KeySource::S3 { bucket, key } => Ok(Fetcher::S3 {
                client: Box::new(crate::upstream::s3::S3::from_env().await.map_err(|e| {
                    source_error(
                        &source.name(),
                        format!("cannot set up the S3 client: {e:#}"),
                    )
                })?),
                bucket: bucket.clone(),
                key: key.clone(),
            }),
            #[cfg(not(feature = "aws"))]
            KeySource::S3 { .. } => Err(source_error(
                &source.name(),
                "an s3:// keys source needs sagegate built with the `aws` feature (on by default)"
                    .to_owned(),
            )),
        }
    }

    /// Reads the current text; `etag` (S3 only) makes the read conditional.
    pub(crate) async fn fetch(
        &self,
        name: &str,
        etag: Option<&str>,
    ) -> Result<Fetched, Diagnostic> {
        match self {
            Fetcher::File(path) => {
                let _ = etag;
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| source_error(name, format!("cannot read the keys file: {e}")))?;
                let text = utf8(name, bytes)?;
                Ok(Fetched::Text { text, etag: None })
            }
            #[cfg(feature = "aws")]
            Fetcher::S3 {
                client,
                bucket,
                key,
            } => s3_fetch(client, bucket, key, name, etag).await,
        }
    }
}

fn utf8(name: &str, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|e| {
        source_error(
            name,
            format!(
                "the keys file is not UTF-8 (bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(feature = "aws")]
async fn s3_fetch(
    client: &crate::upstream::s3::S3,
    bucket: &str,
    key: &str,
    name: &str,
    etag: Option<&str>,
) -> Result<Fetched, Diagnostic> {
    use crate::upstream::s3::GetObject;

    match client.get_object(bucket, key, etag).await {
        Ok(GetObject::NotModified) => Ok(Fetched::NotModified),
        Ok(GetObject::Found { body, etag }) => {
            let text = utf8(name, body.to_vec())?;
            Ok(Fetched::Text { text, etag })
        }
        Err(e) => Err(source_error(
            name,
            format!("cannot get the keys object: {e}"),
        )),
    }
}
