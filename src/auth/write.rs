//! Writing a keys source back after `sagegate keys` edited it, so that a reload never reads half a
//! file and two operators' edits never lose one another.
//!
//! Input: a [`KeySource`]; [`Editable::read`] gives its text and the version read, and
//! [`Editable::write`] replaces it with new text *only if it is still that version*. Output: `Ok`,
//! or a [`WriteError`]: `Conflict` (someone changed the source since it was read: nothing was
//! written, run the command again) or `Failed` (the cause, as one line).
//!
//! - A path is written atomically: a temporary file in the same directory (same file system),
//!   written and `fsync`ed, given the original's permissions (and owner, where allowed), then
//!   renamed over the target, and the directory `fsync`ed. A symbolic link is followed: the file
//!   it points at is replaced. Just before the rename the file is read again and compared with
//!   what the edit started from; a change is a conflict. (Two writers racing inside that last
//!   check-and-rename window are not detected: a file system has no conditional rename.)
//! - An S3 object is written with S3's conditional write, `PutObject` with `If-Match: <the ETag
//!   read>`: S3 itself refuses (412, or 409 for a concurrent conditional write) if the object
//!   changed. When a retried put meets a 412, the object is read back: if it holds our text, the
//!   earlier attempt landed and the write succeeded.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::KeySource;
use super::source::{Fetched, Fetcher};

/// Content type of a written S3 object.
#[cfg(feature = "aws")]
const CONTENT_TYPE: &str = "application/yaml";

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The source changed since it was read; nothing was written.
    #[error("{0}")]
    Conflict(String),
    /// The write failed; the cause.
    #[error("{0}")]
    Failed(String),
}

/// A keys source opened for an edit.
pub struct Editable {
    source: KeySource,
    fetcher: Fetcher,
}

/// The text of a source and the version it was read at.
pub struct Current {
    /// The file's text.
    pub text: String,
    version: Version,
}

enum Version {
    /// SHA-256 of the file's bytes.
    File([u8; 32]),
    /// The S3 object's ETag.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    S3(String),
}

impl Editable {
    /// Opens `source` (for S3: the client from the default AWS chain).
    pub async fn open(source: &KeySource) -> Result<Editable, String> {
        let fetcher = Fetcher::new(source).await.map_err(|d| d.message)?;
        Ok(Editable {
            source: source.clone(),
            fetcher,
        })
    }

    /// Reads the current text and its version.
    pub async fn read(&self) -> Result<Current, String> {
        let name = self.source.name();
        match self
            .fetcher
            .fetch(&name, None)
            .await
            .map_err(|d| d.message)?
        {
            Fetched::Text { text, etag } => {
                let version = match (&self.source, etag) {
                    (KeySource::Path(_), _) => {
                        Version::File(Sha256::digest(text.as_bytes()).into())
                    }
                    (KeySource::S3 { .. }, Some(etag)) => Version::S3(etag),
                    (KeySource::S3 { .. }, None) => {
                        return Err(
                            "the S3 answer carries no ETag: cannot write it back safely".to_owned()
                        );
                    }
                };
                Ok(Current { text, version })
            }
            Fetched::NotModified => Err("answered 304 to an unconditional read".to_owned()),
        }
    }

    /// Replaces the source's text with `text`, if it is still the version of `current`.
    pub async fn write(&self, current: &Current, text: &str) -> Result<(), WriteError> {
        let conflict = || {
            WriteError::Conflict(format!(
                "{} changed since it was read (another edit landed first); nothing was written: \
                 run the command again",
                self.source
            ))
        };
        match (&self.fetcher, &current.version) {
            (Fetcher::File(path), Version::File(digest)) => {
                let path = path.clone();
                let (digest, text) = (*digest, text.to_owned());
                let written =
                    tokio::task::spawn_blocking(move || replace_file(&path, &digest, &text))
                        .await
                        .map_err(|e| WriteError::Failed(e.to_string()))?;
                match written {
                    Err(Replace::Changed) => Err(conflict()),
                    Err(Replace::Io(why)) => Err(WriteError::Failed(why)),
                    Ok(()) => Ok(()),
                }
            }
            #[cfg(feature = "aws")]
            (
                Fetcher::S3 {
                    client,
                    bucket,
                    key,
                },
                Version::S3(etag),
            ) => {
                use crate::upstream::s3::{GetObject, PutObject};
                let body = bytes::Bytes::copy_from_slice(text.as_bytes());
                let put = client
                    .put_object(bucket, key, body, CONTENT_TYPE, etag)
                    .await
                    .map_err(|e| WriteError::Failed(format!("cannot put the keys object: {e}")))?;
                match put {
                    PutObject::Stored { .. } => Ok(()),
                    PutObject::Conflict { retried: false } => Err(conflict()),
                    PutObject::Conflict { retried: true } => {
                        // An earlier attempt may have landed: it did if the object is our text.
                        match client.get_object(bucket, key, None).await {
                            Ok(GetObject::Found { body, .. }) if body == text.as_bytes() => Ok(()),
                            _ => Err(conflict()),
                        }
                    }
                }
            }
            _ => Err(WriteError::Failed("the source changed kind".to_owned())),
        }
    }
}

enum Replace {
    Changed,
    Io(String),
}

/// Replaces the file at `path` (following symbolic links) with `text`, atomically, if its bytes
/// still hash to `digest`.
fn replace_file(path: &Path, digest: &[u8; 32], text: &str) -> Result<(), Replace> {
    let io = |what: &str, e: std::io::Error| Replace::Io(format!("{what}: {e}"));
    let target = std::fs::canonicalize(path).map_err(|e| io(&path.display().to_string(), e))?;
    let dir = target
        .parent()
        .ok_or_else(|| Replace::Io(format!("{}: no directory", target.display())))?;
    let metadata = std::fs::metadata(&target).map_err(|e| io("cannot stat the keys file", e))?;
    let temp = temp_path(&target);
    let result = write_temp(&temp, &metadata, text).and_then(|()| {
        let now = std::fs::read(&target).map_err(|e| io("cannot read the keys file again", e))?;
        if <[u8; 32]>::from(Sha256::digest(&now)) != *digest {
            return Err(Replace::Changed);
        }
        std::fs::rename(&temp, &target).map_err(|e| io("cannot replace the keys file", e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot sync the keys file's directory", e))
}

/// `.<name>.<pid>.<random>.tmp` beside `target`: hidden, unique, on the same file system.
fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "keys".into(), |n| n.to_string_lossy().into_owned());
    target.with_file_name(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ))
}

/// Writes `text` to a new file at `temp` with the permissions (and, where allowed, the owner) of
/// `like`, and syncs it.
fn write_temp(temp: &Path, like: &std::fs::Metadata, text: &str) -> Result<(), Replace> {
    use std::io::Write;
    let io = |e: std::io::Error| Replace::Io(format!("cannot write {}: {e}", temp.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never readable by more than the original, even for a moment.
        options.mode(0o600);
    }
    let mut file = options.open(temp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Only root may give a file away; anyone else keeps their own ownership.
        let _ = std::os::unix::fs::fchown(&file, Some(like.uid()), Some(like.gid()));
    }
    file.set_permissions(like.permissions()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(s: &str) -> [u8; 32] {
        Sha256::digest(s.as_bytes()).into()
    }

    #[test]
    fn a_file_is_replaced_whole_keeping_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        // Through a symbolic link: the file it points at is replaced, the link stays.
        let link = dir.path().join("current.yaml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(replace_file(&link, &digest("old\n"), "new\n").is_ok());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_file_changed_since_it_was_read_is_a_conflict_and_stays_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        std::fs::write(&path, "theirs\n").unwrap();
        assert!(matches!(
            replace_file(&path, &digest("what we read\n"), "ours\n"),
            Err(Replace::Changed)
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_file_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let e = replace_file(&dir.path().join("nope.yaml"), &digest(""), "x");
        assert!(matches!(e, Err(Replace::Io(_))));
    }
}
