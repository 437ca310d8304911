//! Builds the SageMaker Runtime client once at start, from the default AWS chain.
//!
//! Credentials and region come from `aws-config`'s default chain (environment, profile, ECS task
//! role on Fargate). The endpoint is overridden the way every AWS SDK allows: the environment
//! variable `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` (or `AWS_ENDPOINT_URL`) wins over
//! `sagemaker.endpoint_url` in the file, because an operator's deploy-time setting must win.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::config::StalledStreamProtectionConfig;

use crate::config::gateway::SageMakerConfig;

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

/// Loads the shared AWS config and builds the client.
pub async fn build(cfg: &SageMakerConfig) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &cfg.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_sagemakerruntime::config::Builder::from(&shared)
        // Initial backoff short: the route's timeout bounds the whole call anyway.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(cfg.max_attempts)
                .with_initial_backoff(Duration::from_millis(50)),
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
