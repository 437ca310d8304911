//! The usage read-out from the shared counters (API Gateway's `GetUsage`): for each (key, plan)
//! with a quota, the requests counted in the current or the previous period.
//!
//! Input: limiter handles (for their quota settings and counter names). Output: one
//! [`QuotaUsage`] per handle with a quota. Two round trips: `TIME` (the store's clock decides the
//! period, as it does for admissions), then one `MGET` of every counter and offset marker.

use chrono::{DateTime, TimeDelta, Utc};

use super::{RedisStore, period_letter};
use crate::limits::{KeyLimiter, QuotaUsage, period_bounds};

/// Which period a usage read-out covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsagePeriod {
    /// The period that contains now.
    Current,
    /// The one before it (kept for `quota_retention_days` after it ends).
    Previous,
}

impl RedisStore {
    /// Usage of every handle in `limiters` that has a quota, in their order.
    pub async fn usage(
        &self,
        limiters: &[&KeyLimiter],
        which: UsagePeriod,
    ) -> redis::RedisResult<Vec<(usize, QuotaUsage)>> {
        let shared = &self.shared;
        let mut con = shared.conn();
        let timeout = shared.settings.connect_timeout;
        let timed_out = || redis::RedisError::from((redis::ErrorKind::Io, "timed out"));
        let (secs, micros): (i64, i64) = tokio::time::timeout(
            timeout,
            redis::cmd("TIME").query_async::<(i64, i64)>(&mut con),
        )
        .await
        .map_err(|_| timed_out())??;
        let now = DateTime::<Utc>::from_timestamp(secs, u32::try_from(micros * 1000).unwrap_or(0))
            .unwrap_or_default();
        let mut rows = Vec::new();
        let mut keys = Vec::new();
        for (i, limiter) in limiters.iter().enumerate() {
            let Some(quota) = limiter.quota() else {
                continue;
            };
            let spec = quota.spec();
            let (mut start, mut end) = period_bounds(spec.period, now);
            if which == UsagePeriod::Previous {
                end = start;
                start = period_bounds(spec.period, start - TimeDelta::seconds(1)).0;
            }
            let base = format!("{}{}", shared.prefix, quota.store_key());
            keys.push(format!(
                "{base}:{}:{}",
                period_letter(spec.period),
                start.timestamp()
            ));
            keys.push(format!("{base}:first"));
            rows.push((i, spec, start, end));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<i64>> =
            tokio::time::timeout(timeout, redis::cmd("MGET").arg(&keys).query_async(&mut con))
                .await
                .map_err(|_| timed_out())??;
        Ok(rows
            .into_iter()
            .enumerate()
            .map(|(j, (i, spec, start, end))| {
                let used = values
                    .get(2 * j)
                    .copied()
                    .flatten()
                    .map_or(0, |v| v.max(0).unsigned_abs());
                let first = values.get(2 * j + 1).copied().flatten();
                // The script charges `offset` in the first period counted (marker = its start).
                let limit = if spec.offset > 0 && first.is_none_or(|f| f == start.timestamp()) {
                    spec.limit.saturating_sub(spec.offset)
                } else {
                    spec.limit
                };
                (
                    i,
                    QuotaUsage {
                        period: spec.period,
                        period_start: start,
                        resets_at: end,
                        limit,
                        used,
                        remaining: limit.saturating_sub(used),
                    },
                )
            })
            .collect())
    }
}
