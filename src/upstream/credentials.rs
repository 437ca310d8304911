//! Credentials for the lean AWS calls (SageMaker `InvokeEndpoint`, the keys source's S3 `GetObject`): `aws-config`'s default provider chain (environment,
//! profile, web identity, ECS task role on Fargate, instance metadata), refreshed in the background.
//!
//! Input: the chain's [`SharedCredentialsProvider`]. Output: the current signing [`Identity`], read
//! lock-free per request ([`CredentialCache::current`]); `None` only until the first load succeeds.
//!
//! Invariants: the request path never waits for a credential provider. One task loads credentials
//! at start (bounded, so a broken chain cannot hold the gateway's start-up) and again
//! [`REFRESH_BEFORE_EXPIRY`] before they expire (task-role credentials last hours); credentials
//! without an expiry (static keys) are re-read every [`STATIC_REFRESH`]. A failed refresh keeps the
//! previous credentials in force and is retried with a growing delay; it is logged, the secret never
//! is.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::identity::Identity;

// The provider errors carry no secrets, so their whole chain is logged.
use super::signed::error_chain;

/// How long before expiry credentials are replaced. The SDK's own cache refreshes within 10 s of
/// expiry on the request path; the background task can afford a wide margin.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// How often credentials without an expiry are re-read (a rotated profile or environment).
pub const STATIC_REFRESH: Duration = Duration::from_secs(15 * 60);
/// Bound on the first load at start; afterwards the background task keeps trying.
const FIRST_LOAD: Duration = Duration::from_secs(10);
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The current identity, replaced whole by the refresh task.
#[derive(Debug, Default)]
pub struct CredentialCache {
    current: ArcSwapOption<Identity>,
}

impl CredentialCache {
    /// Loads credentials once (bounded by 10 s), then keeps them fresh from a background task on
    /// the current Tokio runtime.
    pub async fn start(provider: SharedCredentialsProvider) -> Arc<CredentialCache> {
        let cache = Arc::new(CredentialCache::default());
        let first = tokio::time::timeout(FIRST_LOAD, cache.refresh(&provider)).await;
        let mut wait = match first {
            Ok(Ok(next)) => next,
            Ok(Err(())) => RETRY_MIN,
            Err(_) => {
                tracing::error!(
                    "AWS credentials not loaded within {FIRST_LOAD:?}; signed AWS calls fail until they are"
                );
                RETRY_MIN
            }
        };
        // The task holds a weak reference: it ends once the client owning the cache is dropped
        // (the keys source builds one per fetcher).
        let task_cache = Arc::downgrade(&cache);
        tokio::spawn(async move {
            let mut retry = RETRY_MIN;
            loop {
                tokio::time::sleep(wait).await;
                let Some(cache) = task_cache.upgrade() else {
                    return;
                };
                wait = match cache.refresh(&provider).await {
                    Ok(next) => {
                        retry = RETRY_MIN;
                        next
                    }
                    Err(()) => {
                        let w = retry;
                        retry = (retry * 2).min(RETRY_MAX);
                        w
                    }
                };
            }
        });
        cache
    }

    /// An already loaded identity (tests and callers that manage credentials themselves).
    pub fn fixed(identity: Identity) -> Arc<CredentialCache> {
        Arc::new(CredentialCache {
            current: ArcSwapOption::from_pointee(identity),
        })
    }

    /// The identity to sign with, if credentials were ever loaded.
    pub fn current(&self) -> Option<Arc<Identity>> {
        self.current.load_full()
    }

    /// One provider call; on success the identity is replaced and the wait until the next refresh
    /// returned.
    async fn refresh(&self, provider: &SharedCredentialsProvider) -> Result<Duration, ()> {
        match provider.provide_credentials().await {
            Ok(creds) => {
                let wait = next_refresh(creds.expiry(), SystemTime::now());
                tracing::debug!(next_refresh_secs = wait.as_secs(), "AWS credentials loaded");
                self.current.store(Some(Arc::new(Identity::from(creds))));
                Ok(wait)
            }
            Err(e) => {
                let kept = self.current.load().is_some();
                tracing::error!(
                    error = %error_chain(&e),
                    previous_kept = kept,
                    "AWS credentials could not be loaded"
                );
                Err(())
            }
        }
    }
}

/// When to refresh credentials expiring at `expiry`, seen at `now`.
pub fn next_refresh(expiry: Option<SystemTime>, now: SystemTime) -> Duration {
    match expiry {
        None => STATIC_REFRESH,
        Some(at) => at
            .duration_since(now)
            .unwrap_or_default()
            .saturating_sub(REFRESH_BEFORE_EXPIRY)
            .clamp(RETRY_MIN, STATIC_REFRESH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    #[test]
    fn refresh_is_scheduled_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(next_refresh(None, now), STATIC_REFRESH);
        let in_an_hour = now + Duration::from_secs(3600);
        assert_eq!(next_refresh(Some(in_an_hour), now), STATIC_REFRESH);
        let in_ten_min = now + Duration::from_secs(600);
        assert_eq!(
            next_refresh(Some(in_ten_min), now),
            Duration::from_secs(300)
        );
        // Already inside the margin, or expired: refresh almost at once.
        assert_eq!(
            next_refresh(Some(now + Duration::from_secs(60)), now),
            RETRY_MIN
        );
        assert_eq!(
            next_refresh(Some(now - Duration::from_secs(60)), now),
            RETRY_MIN
        );
    }

    #[tokio::test]
    async fn start_loads_before_returning_and_keeps_the_identity() {
        let creds = Credentials::new("AKID", "secret", Some("token".into()), None, "test");
        let cache = CredentialCache::start(SharedCredentialsProvider::new(creds)).await;
        let identity = cache.current().expect("loaded at start");
        let got = identity
            .data::<Credentials>()
            .expect("identity holds AWS credentials");
        assert_eq!(got.access_key_id(), "AKID");
        assert_eq!(got.session_token(), Some("token"));
    }
}
