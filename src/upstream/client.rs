//! Builds the SageMaker Runtime client once at start, from the default AWS chain.
//!
//! Credentials and region come from `aws-config`'s default chain (environment, profile, ECS task
//! role on Fargate). The endpoint is overridden the way every AWS SDK allows: the environment
//! variable `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` (or `AWS_ENDPOINT_URL`) wins over
//! `sagemaker.endpoint_url` in the file, because an operator's deploy-time setting must win.
//! `sagemaker.client` picks the lean client (default) or the SDK client; both are built from the
//! same loaded AWS config.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::config::StalledStreamProtectionConfig;
use aws_sdk_sagemakerruntime::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};

use super::SageMaker;
use super::credentials::CredentialCache;
use super::lean::{self, Lean, LeanSettings, Target};
use crate::config::gateway::{SageMakerClient, SageMakerConfig};

/// Environment variables that override the endpoint, most specific first.
pub const ENDPOINT_ENV: [&str; 2] = ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL"];

/// The endpoint override in force, if any, and where it came from (for the start-up log).
pub fn endpoint_override(cfg: &SageMakerConfig) -> Option<(String, &'static str)> {
    for name in ENDPOINT_ENV {
        if let Ok(v) = std::env::var(name)
            && !v.is_empty()
        {
            return Some((v, name));
        }
    }
    cfg.endpoint_url
        .clone()
        .map(|u| (u, "sagemaker.endpoint_url"))
}

/// Loads the shared AWS config and builds the client `sagemaker.client` names.
pub async fn build(cfg: &SageMakerConfig) -> anyhow::Result<SageMaker> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &cfg.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    match cfg.client {
        SageMakerClient::Sdk => Ok(SageMaker::new(sdk_client(cfg, &shared))),
        SageMakerClient::Lean => {
            let credentials = match shared.credentials_provider() {
                Some(provider) => CredentialCache::start(provider).await,
                None => {
                    tracing::error!("no AWS credential provider; SageMaker calls will fail");
                    std::sync::Arc::new(CredentialCache::default())
                }
            };
            let settings = LeanSettings {
                target: resolve_target(cfg, &shared).await,
                max_attempts: cfg.max_attempts,
                connect_timeout: cfg.connect_timeout,
            };
            match &settings.target {
                Ok(t) => {
                    tracing::info!(endpoint = %t.base, region = %t.region, "SageMaker Runtime client: lean (aws-sigv4 + hyper)")
                }
                Err(e) => {
                    tracing::error!(error = %e, "SageMaker Runtime endpoint cannot be resolved; calls will fail")
                }
            }
            Ok(SageMaker::lean(Lean::new(settings, credentials)?))
        }
    }
}

/// The endpoint URL the SDK would call, from the SDK's own endpoint rules (region, FIPS,
/// dual-stack) or the override; and the signing region.
async fn resolve_target(
    cfg: &SageMakerConfig,
    shared: &aws_config::SdkConfig,
) -> Result<Target, String> {
    let region = shared
        .region()
        .map(|r| r.as_ref().to_owned())
        .ok_or("no AWS region (set AWS_REGION or sagemaker.region)")?;
    let mut params = Params::builder()
        .region(region.clone())
        .use_fips(shared.use_fips().unwrap_or(false))
        .use_dual_stack(shared.use_dual_stack().unwrap_or(false));
    if let Some((url, _)) = endpoint_override(cfg) {
        params = params.endpoint(url);
    }
    let params = params.build().map_err(|e| e.to_string())?;
    let endpoint = DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Target {
        base: endpoint.url().trim_end_matches('/').to_owned(),
        region,
    })
}

/// The SDK client (`sagemaker.client: sdk`).
fn sdk_client(cfg: &SageMakerConfig, shared: &aws_config::SdkConfig) -> Client {
    let mut builder = aws_sdk_sagemakerruntime::config::Builder::from(shared)
        // Initial backoff short: the route's timeout bounds the whole call anyway.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(cfg.max_attempts)
                .with_initial_backoff(lean::INITIAL_BACKOFF),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(cfg.connect_timeout)
                .build(),
        )
        // The route's timeout bounds every call. The SDK's stalled-stream guard (1 B/s over a 5 s
        // grace) only added false failures: under CPU starvation it cancelled healthy calls, which
        // the retry then doubled (measured in bench/RESULTS.md at 9,000 in flight).
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    // The environment variable is already applied by `aws-config`; only the file's value is set here,
    // and only when no environment variable is present.
    if let Some((url, "sagemaker.endpoint_url")) = endpoint_override(cfg) {
        builder = builder.endpoint_url(url);
    }
    Client::from_conf(builder.build())
}
