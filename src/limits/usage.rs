//! The usage read-out (API Gateway's GetUsage) as JSON, for the admin listener's `GET /usage` and
//! `sagegate usage`.

use std::sync::Arc;

use serde_json::Value;

use super::{KeyLimiter, KeyLimiters, Limiter, QuotaPeriod, UsagePeriod};

/// The usage read-out of `GET /usage` and `sagegate usage` over any store and handles (the CLI
/// reads Redis without a running gateway): every (key, plan) with a quota, or only `key_id`'s,
/// sorted by key id then plan id, in `period`. Key ids only, never key values.
pub async fn usage_json(
    limiter: &Limiter,
    limiters: &KeyLimiters,
    key_id: Option<&str>,
    period: UsagePeriod,
) -> Result<Value, String> {
    let mut handles: Vec<&KeyLimiter> = limiters
        .iter()
        .map(Arc::as_ref)
        .filter(|l| key_id.is_none_or(|k| l.spec().key_id == k))
        .collect();
    handles.sort_by(|a, b| {
        (&a.spec().key_id, &a.spec().plan_id).cmp(&(&b.spec().key_id, &b.spec().plan_id))
    });
    let rows = limiter.usage_report(&handles, period).await?;
    let usage: Vec<Value> = rows
        .into_iter()
        .filter_map(|(i, u)| {
            let spec = handles.get(i)?.spec();
            let rfc3339 = |t: chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            Some(serde_json::json!({
                "key_id": spec.key_id,
                "plan_id": spec.plan_id,
                "period": match u.period {
                    QuotaPeriod::Day => "DAY",
                    QuotaPeriod::Week => "WEEK",
                    QuotaPeriod::Month => "MONTH",
                },
                "period_start": rfc3339(u.period_start),
                "period_end": rfc3339(u.resets_at),
                "limit": u.limit,
                "used": u.used,
                "remaining": u.remaining,
            }))
        })
        .collect();
    Ok(serde_json::json!({
        "store": limiter.status().backend,
        "period": match period {
            UsagePeriod::Current => "current",
            UsagePeriod::Previous => "previous",
        },
        "usage": usage,
    }))
}
