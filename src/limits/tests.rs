//! Tests of the limits stage. Time comes from a [`ManualClock`]; nothing sleeps.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::failed::bucket_key_for_test;
use super::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
}

fn throttle(rate_limit: f64, burst_limit: u32) -> ThrottleSpec {
    ThrottleSpec {
        rate_limit,
        burst_limit,
    }
}

fn quota(limit: u64, period: QuotaPeriod) -> QuotaSpec {
    QuotaSpec {
        limit,
        period,
        offset: 0,
    }
}

/// A manual clock starting at `start`, the limiter clock over it, and a memory store.
fn fixture(start: DateTime<Utc>) -> (ManualClock, LimitClock, MemoryStore) {
    let manual = ManualClock::new(start);
    let clock = LimitClock::manual(&manual);
    let store = MemoryStore::new(clock.clone());
    (manual, clock, store)
}

fn default_start() -> DateTime<Utc> {
    utc(2024, 5, 15, 12, 0, 0)
}

fn key_spec(key: &str, plan: &str) -> KeyPlanSpec {
    KeyPlanSpec {
        key_id: key.to_owned(),
        plan_id: plan.to_owned(),
        throttle: None,
        route_throttles: Vec::new(),
        quota: None,
    }
}

fn only(bucket: &Bucket) -> AdmitRequest<'_> {
    AdmitRequest {
        key_plan: Some(bucket),
        ..AdmitRequest::default()
    }
}

/// Sends `n` requests at the current instant and counts the admitted ones.
fn burst(store: &MemoryStore, req: &AdmitRequest<'_>, n: usize) -> usize {
    (0..n)
        .filter(|_| store.admit_now(req).is_admitted())
        .count()
}

const GET: &str = "GET";
const MOVIES: &str = "/recommended-movies/{user_id}";
const HEALTH: &str = "/status";

// ---------------------------------------------------------------------------------------------
// Token bucket

#[test]
fn burst_then_refill() {
    let (manual, clock, store) = fixture(default_start());
    let bucket = Bucket::new("b", throttle(10.0, 5), &clock).unwrap();
    let req = only(&bucket);

    assert_eq!(
        burst(&store, &req, 20),
        5,
        "a full bucket admits exactly its burst"
    );
    assert_eq!(
        store.admit_now(&req),
        Admission::Throttled {
            retry_after: Duration::from_millis(100)
        }
    );

    manual.advance(Duration::from_millis(99));
    assert!(!store.admit_now(&req).is_admitted(), "token not back yet");
    manual.advance(Duration::from_millis(1));
    assert_eq!(burst(&store, &req, 20), 1, "one token per 100 ms");

    manual.advance(Duration::from_secs(60));
    assert_eq!(burst(&store, &req, 20), 5, "refill stops at the burst size");
}

#[test]
fn fractional_rate_refills_one_token_per_two_seconds() {
    let (manual, clock, store) = fixture(default_start());
    let bucket = Bucket::new("half", throttle(0.5, 1), &clock).unwrap();
    let req = only(&bucket);
    assert_eq!(bucket.replenish_interval(), Duration::from_secs(2));

    assert!(store.admit_now(&req).is_admitted());
    let rejected = store.admit_now(&req);
    assert_eq!(
        rejected,
        Admission::Throttled {
            retry_after: Duration::from_secs(2)
        }
    );
    assert_eq!(rejected.retry_after_secs(), Some(2));

    manual.advance(Duration::from_millis(1999));
    assert_eq!(
        store.admit_now(&req).retry_after_secs(),
        Some(1),
        "1 ms left rounds up to 1 s"
    );
    manual.advance(Duration::from_millis(1));
    assert!(store.admit_now(&req).is_admitted());
}

#[test]
fn fractional_rate_interval_rounds_up_to_whole_nanoseconds() {
    let (manual, clock, store) = fixture(default_start());
    let bucket = Bucket::new("third", throttle(0.3, 2), &clock).unwrap();
    // 1 / 0.3 s = 3.333…s; rounding up keeps the refill from ever being faster than configured.
    assert_eq!(
        bucket.replenish_interval(),
        Duration::from_nanos(3_333_333_334)
    );
    let req = only(&bucket);
    assert_eq!(burst(&store, &req, 5), 2);
    manual.advance(Duration::from_nanos(3_333_333_333));
    assert_eq!(burst(&store, &req, 5), 0);
    manual.advance(Duration::from_nanos(1));
    assert_eq!(burst(&store, &req, 5), 1);
    manual.advance(Duration::from_secs(10));
    assert_eq!(
        burst(&store, &req, 5),
        2,
        "10 s at 0.3/s refills 3, capped at burst 2"
    );
}

#[test]
fn retry_after_header_is_whole_seconds_rounded_up_and_at_least_one() {
    let throttled = |d| Admission::Throttled { retry_after: d };
    assert_eq!(throttled(Duration::ZERO).retry_after_secs(), Some(1));
    assert_eq!(
        throttled(Duration::from_nanos(1)).retry_after_secs(),
        Some(1)
    );
    assert_eq!(
        throttled(Duration::from_secs(2)).retry_after_secs(),
        Some(2)
    );
    assert_eq!(
        throttled(Duration::from_nanos(2_000_000_001)).retry_after_secs(),
        Some(3)
    );
    let quota = Admission::QuotaExceeded {
        retry_after: Duration::from_secs(3600),
    };
    assert_eq!(quota.retry_after_secs(), Some(3600));
    assert_eq!(Admission::Admitted.retry_after_secs(), None);
}

#[test]
fn invalid_throttle_settings_are_rejected() {
    let clock = LimitClock::manual(&ManualClock::new(default_start()));
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e-12] {
        assert!(
            matches!(
                Bucket::new("b", throttle(rate, 1), &clock),
                Err(SpecError::Rate { .. })
            ),
            "rate {rate}"
        );
    }
    assert!(matches!(
        Bucket::new("b", throttle(1.0, 0), &clock),
        Err(SpecError::Burst { .. })
    ));
    assert!(matches!(
        Bucket::new("b", throttle(1e-8, u32::MAX), &clock),
        Err(SpecError::Capacity { .. })
    ));
    // Extremes that are fine: faster than 1 per ns clamps to 1 ns; a slow, big bucket.
    assert!(Bucket::new("b", throttle(1e12, 1), &clock).is_ok());
    assert!(Bucket::new("b", throttle(0.001, 10_000), &clock).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Layers

/// One key with a route override (layer 1) and a plan throttle (layer 2) on a stage with a route
/// throttle (layer 3) and a default (layer 4). Each layer has its own refill interval, so the
/// `retry_after` of a rejection names the layer that rejected.
struct Layered {
    manual: ManualClock,
    store: MemoryStore,
    key: KeyLimiter,
    stage: StageLimiter,
}

fn layered(
    route_burst: u32,
    plan_burst: u32,
    stage_route_burst: u32,
    default_burst: u32,
) -> Layered {
    let (manual, clock, store) = fixture(default_start());
    let key = KeyLimiter::new(
        KeyPlanSpec {
            throttle: Some(throttle(2.0, plan_burst)), // 500 ms
            route_throttles: vec![RouteThrottle {
                route: crate::route::RouteKey {
                    method: GET.into(),
                    path: MOVIES.into(),
                },
                throttle: throttle(1.0, route_burst), // 1 s
            }],
            ..key_spec("partner-a", "standard")
        },
        &clock,
    )
    .unwrap();
    let stage = StageLimiter::new(
        "prod",
        Some(throttle(8.0, default_burst)), // 125 ms
        &[RouteThrottle {
            route: crate::route::RouteKey {
                method: GET.into(),
                path: MOVIES.into(),
            },
            throttle: throttle(4.0, stage_route_burst), // 250 ms
        }],
        &clock,
    )
    .unwrap();
    Layered {
        manual,
        store,
        key,
        stage,
    }
}

impl Layered {
    fn admit(&self, method: &str, path: &str) -> Admission {
        self.store.admit_now(&AdmitRequest::new(
            Some(&self.key),
            Some(&self.stage),
            method,
            path,
        ))
    }
}

fn throttled_for(ms: u64) -> Admission {
    Admission::Throttled {
        retry_after: Duration::from_millis(ms),
    }
}

#[test]
fn admit_request_resolves_each_layer() {
    let l = layered(1, 1, 1, 1);
    let on_route = AdmitRequest::new(Some(&l.key), Some(&l.stage), GET, MOVIES);
    assert!(on_route.key_route.is_some() && on_route.key_plan.is_some());
    assert!(on_route.stage_route.is_some() && on_route.stage_default.is_some());
    let elsewhere = AdmitRequest::new(Some(&l.key), Some(&l.stage), GET, HEALTH);
    assert!(elsewhere.key_route.is_none() && elsewhere.stage_route.is_none());
    assert!(elsewhere.key_plan.is_some() && elsewhere.stage_default.is_some());
    let post = AdmitRequest::new(Some(&l.key), Some(&l.stage), "POST", MOVIES);
    assert!(post.key_route.is_none(), "overrides are per method");
    let anonymous = AdmitRequest::new(None, Some(&l.stage), GET, MOVIES);
    assert!(anonymous.key_plan.is_none() && anonymous.quota.is_none());
    assert!(anonymous.stage_route.is_some());
}

#[test]
fn route_override_is_checked_before_the_plan() {
    // Both layers 1 and 2 are empty after one request; the rejection comes from layer 1 (1 s).
    let l = layered(1, 1, 100, 100);
    assert!(l.admit(GET, MOVIES).is_admitted());
    assert_eq!(l.admit(GET, MOVIES), throttled_for(1000));
    l.manual.advance(Duration::from_millis(999));
    assert_eq!(l.admit(GET, MOVIES), throttled_for(1));
    l.manual.advance(Duration::from_millis(1));
    assert!(l.admit(GET, MOVIES).is_admitted());
}

#[test]
fn plan_throttle_applies_when_the_route_override_has_tokens() {
    let l = layered(10, 2, 100, 100);
    assert!(l.admit(GET, MOVIES).is_admitted());
    assert!(l.admit(GET, MOVIES).is_admitted());
    assert_eq!(l.admit(GET, MOVIES), throttled_for(500), "layer 2 rejects");
}

#[test]
fn plan_throttle_is_shared_by_all_routes_of_the_key_but_overrides_are_not() {
    let l = layered(1, 3, 100, 100);
    assert!(l.admit(GET, MOVIES).is_admitted());
    assert_eq!(
        l.admit(GET, MOVIES),
        throttled_for(1000),
        "route override empty"
    );
    assert!(
        l.admit(GET, HEALTH).is_admitted(),
        "other route: no override"
    );
    assert!(l.admit(GET, HEALTH).is_admitted());
    assert_eq!(
        l.admit(GET, HEALTH),
        throttled_for(500),
        "plan bucket (3) spent"
    );
}

#[test]
fn stage_route_then_stage_default() {
    let l = layered(100, 100, 1, 2);
    assert!(l.admit(GET, MOVIES).is_admitted());
    assert_eq!(
        l.admit(GET, MOVIES),
        throttled_for(250),
        "layer 3 rejects first"
    );
    assert!(l.admit(GET, HEALTH).is_admitted(), "layer 4 had 2 tokens");
    assert_eq!(l.admit(GET, HEALTH), throttled_for(125), "layer 4 rejects");
}

#[test]
fn stage_buckets_are_shared_by_all_callers() {
    let (_manual, clock, store) = fixture(default_start());
    let stage = StageLimiter::new("prod", Some(throttle(1.0, 3)), &[], &clock).unwrap();
    let a = KeyLimiter::new(
        KeyPlanSpec {
            throttle: Some(throttle(1.0, 10)),
            ..key_spec("a", "p")
        },
        &clock,
    )
    .unwrap();
    let b = KeyLimiter::new(
        KeyPlanSpec {
            throttle: Some(throttle(1.0, 10)),
            ..key_spec("b", "p")
        },
        &clock,
    )
    .unwrap();
    let req_a = AdmitRequest::new(Some(&a), Some(&stage), GET, MOVIES);
    let req_b = AdmitRequest::new(Some(&b), Some(&stage), GET, MOVIES);
    let anon = AdmitRequest::new(None, Some(&stage), GET, MOVIES);
    assert_eq!(burst(&store, &req_a, 2), 2);
    assert_eq!(burst(&store, &anon, 1), 1);
    assert_eq!(
        burst(&store, &req_b, 5),
        0,
        "stage default spent by a and the anonymous caller"
    );
}

#[test]
fn tokens_taken_by_a_rejected_request_are_handed_back() {
    let (manual, clock, store) = fixture(default_start());
    let plan = Bucket::new("plan", throttle(1.0, 3), &clock).unwrap();
    let stage = Bucket::new("stage", throttle(1.0, 1), &clock).unwrap();
    let both = AdmitRequest {
        key_plan: Some(&plan),
        stage_default: Some(&stage),
        ..AdmitRequest::default()
    };
    assert_eq!(burst(&store, &both, 1), 1);
    // 50 requests rejected by the stage layer would have emptied the plan bucket without refunds.
    assert_eq!(burst(&store, &both, 50), 0);
    assert_eq!(
        burst(&store, &only(&plan), 10),
        2,
        "plan bucket lost only the admitted token"
    );
    manual.advance(Duration::from_secs(1));
    assert_eq!(burst(&store, &both, 5), 1);
}

#[test]
fn a_refund_that_lost_a_race_leaves_the_token_spent() {
    // The interleaving two threads can produce while time moves: A takes, time passes, B takes
    // from a bucket that had refilled meanwhile, then A's request is rejected elsewhere and hands
    // its token back. Subtracting one interval blindly would give B's token away as well and
    // admit C at the same instant (2 admitted in a zero-length window with burst 1).
    let (manual, clock, _store) = fixture(default_start());
    let bucket = Bucket::new("b", throttle(1.0, 1), &clock).unwrap();
    let a = bucket.try_take().unwrap();
    manual.advance(Duration::from_secs(5));
    let _b = bucket.try_take().unwrap();
    bucket.refund(a);
    assert_eq!(
        bucket.try_take().unwrap_err(),
        Duration::from_secs(1),
        "C must wait for B's token"
    );

    // Without interleaving the refund is exact, even back to a fresh bucket.
    manual.advance(Duration::from_secs(1));
    let d = bucket.try_take().unwrap();
    bucket.refund(d);
    let _e = bucket.try_take().unwrap();
    assert!(bucket.try_take().is_err());
}

// ---------------------------------------------------------------------------------------------
// Quota

#[test]
fn period_bounds_are_utc_calendar_periods() {
    use QuotaPeriod::*;
    let cases = [
        // Day
        (
            Day,
            utc(2024, 5, 15, 0, 0, 0),
            utc(2024, 5, 15, 0, 0, 0),
            utc(2024, 5, 16, 0, 0, 0),
        ),
        (
            Day,
            utc(2024, 12, 31, 23, 59, 59),
            utc(2024, 12, 31, 0, 0, 0),
            utc(2025, 1, 1, 0, 0, 0),
        ),
        // Week: 2024-01-01 is a Monday; Sunday belongs to the week before the next Monday.
        (
            Week,
            utc(2024, 1, 1, 0, 0, 0),
            utc(2024, 1, 1, 0, 0, 0),
            utc(2024, 1, 8, 0, 0, 0),
        ),
        (
            Week,
            utc(2024, 1, 7, 23, 59, 59),
            utc(2024, 1, 1, 0, 0, 0),
            utc(2024, 1, 8, 0, 0, 0),
        ),
        (
            Week,
            utc(2024, 1, 3, 12, 0, 0),
            utc(2024, 1, 1, 0, 0, 0),
            utc(2024, 1, 8, 0, 0, 0),
        ),
        (
            Week,
            utc(2024, 12, 31, 8, 0, 0),
            utc(2024, 12, 30, 0, 0, 0),
            utc(2025, 1, 6, 0, 0, 0),
        ),
        (
            Week,
            utc(2024, 2, 29, 8, 0, 0),
            utc(2024, 2, 26, 0, 0, 0),
            utc(2024, 3, 4, 0, 0, 0),
        ),
        // Month, all lengths, leap rules (2000 leap, 2100 not, 2024 leap, 2023 not).
        (
            Month,
            utc(2024, 2, 29, 23, 59, 59),
            utc(2024, 2, 1, 0, 0, 0),
            utc(2024, 3, 1, 0, 0, 0),
        ),
        (
            Month,
            utc(2023, 2, 28, 23, 59, 59),
            utc(2023, 2, 1, 0, 0, 0),
            utc(2023, 3, 1, 0, 0, 0),
        ),
        (
            Month,
            utc(2000, 2, 29, 0, 0, 0),
            utc(2000, 2, 1, 0, 0, 0),
            utc(2000, 3, 1, 0, 0, 0),
        ),
        (
            Month,
            utc(2100, 2, 28, 0, 0, 0),
            utc(2100, 2, 1, 0, 0, 0),
            utc(2100, 3, 1, 0, 0, 0),
        ),
        (
            Month,
            utc(2024, 4, 30, 12, 0, 0),
            utc(2024, 4, 1, 0, 0, 0),
            utc(2024, 5, 1, 0, 0, 0),
        ),
        (
            Month,
            utc(2024, 1, 31, 12, 0, 0),
            utc(2024, 1, 1, 0, 0, 0),
            utc(2024, 2, 1, 0, 0, 0),
        ),
        (
            Month,
            utc(2024, 12, 1, 0, 0, 0),
            utc(2024, 12, 1, 0, 0, 0),
            utc(2025, 1, 1, 0, 0, 0),
        ),
    ];
    for (period, now, start, end) in cases {
        assert_eq!(
            period_bounds(period, now),
            (start, end),
            "{period:?} at {now}"
        );
    }
    assert!(
        Utc.with_ymd_and_hms(2100, 2, 29, 0, 0, 0)
            .single()
            .is_none(),
        "2100 is not a leap year"
    );
}

/// Admits one request per period at the last second before a boundary, and checks the quota is
/// exceeded until exactly the boundary instant.
fn assert_rolls_over_at(period: QuotaPeriod, last_second: DateTime<Utc>) {
    let (manual, clock, store) = fixture(last_second);
    let key = KeyLimiter::new(
        KeyPlanSpec {
            quota: Some(quota(1, period)),
            ..key_spec("k", "p")
        },
        &clock,
    )
    .unwrap();
    let req = AdmitRequest::new(Some(&key), None, GET, MOVIES);
    assert!(store.admit_now(&req).is_admitted(), "{period:?}");
    assert_eq!(
        store.admit_now(&req),
        Admission::QuotaExceeded {
            retry_after: Duration::from_secs(1)
        },
        "{period:?} before {last_second}"
    );
    manual.advance(Duration::from_nanos(999_999_999));
    assert_eq!(
        store.admit_now(&req),
        Admission::QuotaExceeded {
            retry_after: Duration::from_nanos(1)
        }
    );
    manual.advance(Duration::from_nanos(1));
    assert!(
        store.admit_now(&req).is_admitted(),
        "{period:?} new period at the exact instant"
    );
    let usage = store.usage_now(&key).unwrap();
    assert_eq!(
        usage.period_start,
        last_second + chrono::TimeDelta::seconds(1)
    );
    assert_eq!((usage.used, usage.remaining), (1, 0));
}

#[test]
fn quota_day_rolls_over_at_midnight_utc() {
    assert_rolls_over_at(QuotaPeriod::Day, utc(2024, 3, 10, 23, 59, 59));
    assert_rolls_over_at(QuotaPeriod::Day, utc(2024, 12, 31, 23, 59, 59));
}

#[test]
fn quota_week_rolls_over_on_monday_midnight_utc() {
    assert_rolls_over_at(QuotaPeriod::Week, utc(2024, 1, 7, 23, 59, 59)); // Sunday
    assert_rolls_over_at(QuotaPeriod::Week, utc(2024, 3, 3, 23, 59, 59)); // Sunday, after Feb 29
}

#[test]
fn quota_month_rolls_over_on_the_first_for_every_month_length() {
    assert_rolls_over_at(QuotaPeriod::Month, utc(2024, 2, 29, 23, 59, 59)); // leap February
    assert_rolls_over_at(QuotaPeriod::Month, utc(2023, 2, 28, 23, 59, 59)); // common February
    assert_rolls_over_at(QuotaPeriod::Month, utc(2100, 2, 28, 23, 59, 59)); // century, not leap
    assert_rolls_over_at(QuotaPeriod::Month, utc(2024, 4, 30, 23, 59, 59)); // 30 days
    assert_rolls_over_at(QuotaPeriod::Month, utc(2024, 12, 31, 23, 59, 59)); // year end
}

#[test]
fn quota_day_does_not_roll_over_on_a_day_that_has_not_ended() {
    let (manual, clock, store) = fixture(utc(2024, 2, 28, 0, 0, 0));
    let key = KeyLimiter::new(
        KeyPlanSpec {
            quota: Some(quota(3, QuotaPeriod::Month)),
            ..key_spec("k", "p")
        },
        &clock,
    )
    .unwrap();
    let req = AdmitRequest::new(Some(&key), None, GET, MOVIES);
    assert_eq!(burst(&store, &req, 5), 3);
    // Feb 28 2024 → Feb 29 is still February.
    manual.advance(Duration::from_secs(24 * 3600));
    assert_eq!(burst(&store, &req, 5), 0);
    manual.advance(Duration::from_secs(24 * 3600));
    assert_eq!(burst(&store, &req, 5), 3, "March 1st");
}

#[test]
fn quota_counts_only_admitted_requests() {
    let (manual, clock, store) = fixture(utc(2024, 5, 15, 12, 0, 0));
    let key = KeyLimiter::new(
        KeyPlanSpec {
            throttle: Some(throttle(1.0, 2)),
            quota: Some(quota(5, QuotaPeriod::Day)),
            ..key_spec("k", "p")
        },
        &clock,
    )
    .unwrap();
    let req = AdmitRequest::new(Some(&key), None, GET, MOVIES);
    assert_eq!(burst(&store, &req, 10), 2);
    assert_eq!(
        store.usage_now(&key).unwrap().used,
        2,
        "8 throttled requests not counted"
    );

    manual.advance(Duration::from_secs(3));
    assert_eq!(burst(&store, &req, 10), 2);
    manual.advance(Duration::from_secs(3));
    assert_eq!(burst(&store, &req, 10), 1, "quota has 1 left");
    let usage = store.usage_now(&key).unwrap();
    assert_eq!((usage.used, usage.remaining, usage.limit), (5, 0, 5));

    // Rejected by the quota: counts nowhere, and its throttle token is handed back.
    let rejected = store.admit_now(&req);
    let until_midnight = Duration::from_secs(12 * 3600 - 6);
    assert_eq!(
        rejected,
        Admission::QuotaExceeded {
            retry_after: until_midnight
        }
    );
    assert_eq!(store.usage_now(&key).unwrap().used, 5);
    let plan = key.plan_bucket().unwrap();
    assert_eq!(
        burst(&store, &only(plan), 5),
        1,
        "token taken before the quota check came back"
    );
}

#[test]
fn quota_offset_applies_to_the_first_period_only() {
    let (manual, clock, store) = fixture(utc(2024, 5, 15, 12, 0, 0));
    let key = KeyLimiter::new(
        KeyPlanSpec {
            quota: Some(QuotaSpec {
                limit: 5,
                period: QuotaPeriod::Day,
                offset: 3,
            }),
            ..key_spec("k", "p")
        },
        &clock,
    )
    .unwrap();
    let req = AdmitRequest::new(Some(&key), None, GET, MOVIES);
    assert_eq!(store.usage_now(&key).unwrap().limit, 2);
    assert_eq!(burst(&store, &req, 10), 2);
    manual.advance(Duration::from_secs(12 * 3600));
    assert_eq!(store.usage_now(&key).unwrap().limit, 5);
    assert_eq!(burst(&store, &req, 10), 5);
}

#[test]
fn quota_check_and_increment_is_atomic_across_threads() {
    let (_manual, clock, store) = fixture(default_start());
    let key = KeyLimiter::new(
        KeyPlanSpec {
            quota: Some(quota(1000, QuotaPeriod::Day)),
            ..key_spec("k", "p")
        },
        &clock,
    )
    .unwrap();
    let admitted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let req = AdmitRequest::new(Some(&key), None, GET, MOVIES);
                    burst(&store, &req, 500)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(admitted, 1000);
    assert_eq!(store.usage_now(&key).unwrap().used, 1000);
}

#[test]
fn previous_period_usage_is_kept_after_the_rollover() {
    let (manual, clock, store) = fixture(utc(2024, 5, 15, 23, 59, 0));
    let key = KeyLimiter::new(
        KeyPlanSpec {
            quota: Some(quota(10, QuotaPeriod::Day)),
            ..key_spec("a", "std")
        },
        &clock,
    )
    .unwrap();
    let counter = key.quota().unwrap();
    assert_eq!(
        counter.previous_usage(clock.wall_now()).used,
        0,
        "nothing before"
    );
    assert_eq!(
        burst(&store, &AdmitRequest::new(Some(&key), None, GET, MOVIES), 3),
        3
    );
    manual.advance(Duration::from_secs(120));
    assert_eq!(
        burst(&store, &AdmitRequest::new(Some(&key), None, GET, MOVIES), 1),
        1
    );
    let previous = counter.previous_usage(clock.wall_now());
    assert_eq!(
        previous,
        QuotaUsage {
            period: QuotaPeriod::Day,
            period_start: utc(2024, 5, 15, 0, 0, 0),
            resets_at: utc(2024, 5, 16, 0, 0, 0),
            limit: 10,
            used: 3,
            remaining: 7,
        }
    );
    assert_eq!(counter.usage(clock.wall_now()).used, 1);
    // Two periods later the previous one was never counted in.
    manual.advance(Duration::from_secs(2 * 86_400));
    assert_eq!(counter.previous_usage(clock.wall_now()).used, 0);
}

#[test]
fn usage_read_out_lists_keys_with_quotas() {
    let (_manual, clock, store) = fixture(utc(2024, 5, 15, 12, 0, 0));
    let specs = vec![
        KeyPlanSpec {
            quota: Some(quota(10, QuotaPeriod::Week)),
            ..key_spec("b", "gold")
        },
        KeyPlanSpec {
            quota: Some(quota(3, QuotaPeriod::Day)),
            ..key_spec("a", "std")
        },
        key_spec("c", "free"),
    ];
    let (keys, _) = KeyLimiters::default().reconcile(&specs, &clock).unwrap();
    let a = keys.get("a", "std").unwrap();
    assert_eq!(
        burst(&store, &AdmitRequest::new(Some(a), None, GET, MOVIES), 2),
        2
    );
    let usage = keys.usage(clock.wall_now());
    let ids: Vec<_> = usage
        .iter()
        .map(|(k, p, _)| (k.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        ids,
        [("a", "std"), ("b", "gold")],
        "sorted, keys without quota left out"
    );
    assert_eq!(
        usage[0].2,
        QuotaUsage {
            period: QuotaPeriod::Day,
            period_start: utc(2024, 5, 15, 0, 0, 0),
            resets_at: utc(2024, 5, 16, 0, 0, 0),
            limit: 3,
            used: 2,
            remaining: 1,
        }
    );
    assert_eq!(usage[1].2.period_start, utc(2024, 5, 13, 0, 0, 0), "Monday");
    assert_eq!(usage[1].2.used, 0);
}

// ---------------------------------------------------------------------------------------------
// Reload

#[test]
fn reconcile_keeps_state_of_unchanged_plans_and_resets_changed_ones() {
    let (manual, clock, store) = fixture(utc(2024, 5, 15, 12, 0, 0));
    let spec = |key: &str, rate: f64| KeyPlanSpec {
        throttle: Some(throttle(rate, 2)),
        quota: Some(quota(100, QuotaPeriod::Day)),
        ..key_spec(key, "standard")
    };
    let (v1, report) = KeyLimiters::default()
        .reconcile(
            &[
                spec("same", 1.0),
                spec("changed", 1.0),
                spec("removed", 1.0),
            ],
            &clock,
        )
        .unwrap();
    assert_eq!(
        report,
        ReconcileReport {
            kept: 0,
            reset: 3,
            dropped: 0
        }
    );
    for key in ["same", "changed"] {
        let handle = v1.get(key, "standard").unwrap();
        assert_eq!(
            burst(
                &store,
                &AdmitRequest::new(Some(handle), None, GET, MOVIES),
                5
            ),
            2
        );
    }
    manual.advance(Duration::from_millis(10));

    let (v2, report) = v1
        .reconcile(
            &[spec("same", 1.0), spec("changed", 5.0), spec("new", 1.0)],
            &clock,
        )
        .unwrap();
    assert_eq!(
        report,
        ReconcileReport {
            kept: 1,
            reset: 2,
            dropped: 1
        }
    );
    assert!(v2.get("removed", "standard").is_none());
    assert_eq!(v2.len(), 3);

    let same = v2.get("same", "standard").unwrap();
    assert!(Arc::ptr_eq(same, v1.get("same", "standard").unwrap()));
    let same_req = AdmitRequest::new(Some(same), None, GET, MOVIES);
    assert!(
        !store.admit_now(&same_req).is_admitted(),
        "bucket still empty after reload"
    );
    assert_eq!(
        store.usage_now(same).unwrap().used,
        2,
        "quota count carried over"
    );

    let changed = v2.get("changed", "standard").unwrap();
    assert!(!Arc::ptr_eq(
        changed,
        v1.get("changed", "standard").unwrap()
    ));
    assert_eq!(changed.spec().throttle, Some(throttle(5.0, 2)));
    let changed_req = AdmitRequest::new(Some(changed), None, GET, MOVIES);
    assert_eq!(store.usage_now(changed).unwrap().used, 0, "fresh quota");
    assert_eq!(
        burst(&store, &changed_req, 5),
        2,
        "fresh bucket with the new settings"
    );
}

#[test]
fn reconcile_treats_a_changed_quota_or_route_override_as_a_new_plan() {
    let (_manual, clock, _store) = fixture(default_start());
    let base = KeyPlanSpec {
        quota: Some(quota(10, QuotaPeriod::Day)),
        ..key_spec("k", "p")
    };
    let (v1, _) = KeyLimiters::default()
        .reconcile(std::slice::from_ref(&base), &clock)
        .unwrap();
    let mut new_quota = base.clone();
    new_quota.quota = Some(quota(10, QuotaPeriod::Week));
    let (v2, report) = v1.reconcile(&[new_quota], &clock).unwrap();
    assert_eq!(report.reset, 1);
    let mut with_route = base.clone();
    with_route.route_throttles.push(RouteThrottle {
        route: crate::route::RouteKey {
            method: GET.into(),
            path: MOVIES.into(),
        },
        throttle: throttle(1.0, 1),
    });
    let (_, report) = v2.reconcile(&[with_route], &clock).unwrap();
    assert_eq!(report.reset, 1);
}

#[test]
fn reconcile_keeps_plans_of_one_key_apart_and_reports_all_errors() {
    let (_manual, clock, _store) = fixture(default_start());
    let (keys, _) = KeyLimiters::default()
        .reconcile(&[key_spec("k", "p1"), key_spec("k", "p2")], &clock)
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.get("k", "p1").is_some() && keys.get("k", "p2").is_some());
    assert!(keys.get("k", "p3").is_none());

    let bad_rate = KeyPlanSpec {
        throttle: Some(throttle(0.0, 1)),
        ..key_spec("x", "p")
    };
    let errors = keys
        .reconcile(
            &[key_spec("k", "p1"), key_spec("k", "p1"), bad_rate],
            &clock,
        )
        .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(matches!(errors[0], SpecError::DuplicateKeyPlan { .. }));
    assert!(
        errors[1]
            .to_string()
            .starts_with("key:x/plan:p: rate_limit"),
        "{}",
        errors[1]
    );
}

// ---------------------------------------------------------------------------------------------
// Store seam

#[tokio::test]
async fn limiter_enum_awaits_the_memory_store() {
    let manual = ManualClock::new(default_start());
    let limiter = Limiter::memory(LimitClock::manual(&manual));
    let key = KeyLimiter::new(
        KeyPlanSpec {
            throttle: Some(throttle(1.0, 1)),
            quota: Some(quota(5, QuotaPeriod::Day)),
            ..key_spec("k", "p")
        },
        limiter.clock(),
    )
    .unwrap();
    let req = AdmitRequest::new(Some(&key), None, GET, MOVIES);
    assert_eq!(limiter.admit(&req).await, Admission::Admitted);
    assert!(matches!(
        limiter.admit(&req).await,
        Admission::Throttled { .. }
    ));
    assert_eq!(limiter.usage(&key).await.map(|u| u.used), Some(1));
}

#[test]
fn specs_deserialize_in_api_gateway_spelling() {
    let q: QuotaSpec = serde_json::from_str(r#"{"limit": 10000, "period": "DAY"}"#).unwrap();
    assert_eq!(q, quota(10000, QuotaPeriod::Day));
    for (s, p) in [("WEEK", QuotaPeriod::Week), ("MONTH", QuotaPeriod::Month)] {
        let q: QuotaSpec =
            serde_json::from_str(&format!(r#"{{"limit":1,"period":"{s}","offset":2}}"#)).unwrap();
        assert_eq!((q.period, q.offset), (p, 2));
    }
    assert!(serde_json::from_str::<QuotaSpec>(r#"{"limit":1,"period":"day"}"#).is_err());
    assert!(serde_json::from_str::<QuotaSpec>(r#"{"limit":1,"period":"YEAR"}"#).is_err());
    let t: ThrottleSpec =
        serde_json::from_str(r#"{"rate_limit": 0.5, "burst_limit": 20}"#).unwrap();
    assert_eq!(t, throttle(0.5, 20));
    assert!(
        serde_json::from_str::<ThrottleSpec>(r#"{"rate_limit":1,"burst_limit":1,"x":1}"#).is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// Failed key attempts

fn failed_limiter(max_tracked: usize) -> (ManualClock, FailedAttemptLimiter) {
    let manual = ManualClock::new(default_start());
    let limiter = FailedAttemptLimiter::new(
        NonZeroU32::new(100).unwrap(),
        max_tracked,
        LimitClock::manual(&manual),
    );
    (manual, limiter)
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, last))
}

#[test]
fn failed_attempts_over_100_a_minute_are_refused_per_address() {
    let (manual, limiter) = failed_limiter(1000);
    let attacker = v4(1);
    assert_eq!(
        (0..100)
            .filter(|_| limiter.allow_failed_attempt(attacker))
            .count(),
        100
    );
    assert!(
        !limiter.allow_failed_attempt(attacker),
        "101st within the minute"
    );
    assert!(
        limiter.allow_failed_attempt(v4(2)),
        "other addresses unaffected"
    );

    manual.advance(Duration::from_millis(600));
    assert!(
        limiter.allow_failed_attempt(attacker),
        "one attempt back every 0.6 s"
    );
    assert!(!limiter.allow_failed_attempt(attacker));

    manual.advance(Duration::from_secs(60));
    assert_eq!(
        (0..150)
            .filter(|_| limiter.allow_failed_attempt(attacker))
            .count(),
        100
    );
}

#[test]
fn ipv6_clients_share_a_budget_per_64_prefix() {
    let (_manual, limiter) = failed_limiter(1000);
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(bucket_key_for_test(a), bucket_key_for_test(b));
    assert_eq!(
        (0..100).filter(|_| limiter.allow_failed_attempt(a)).count(),
        100
    );
    assert!(!limiter.allow_failed_attempt(b), "same /64");
    assert!(limiter.allow_failed_attempt(other));
    let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped());
    assert_eq!(bucket_key_for_test(mapped), v4(9));
    assert_eq!(
        bucket_key_for_test(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    );
}

#[test]
fn failed_attempt_table_is_bounded_and_housekept() {
    let (manual, limiter) = failed_limiter(10);
    for i in 0..10 {
        assert!(limiter.allow_failed_attempt(v4(i)));
    }
    assert_eq!(limiter.tracked(), 10);
    assert!(
        !limiter.allow_failed_attempt(v4(200)),
        "full: new addresses fail closed"
    );
    assert_eq!(limiter.tracked(), 10);

    // One attempt refills in 0.6 s; after that the entries are indistinguishable from fresh ones.
    manual.advance(Duration::from_secs(2));
    assert!(
        limiter.allow_failed_attempt(v4(200)),
        "opportunistic sweep made room"
    );
    assert_eq!(limiter.tracked(), 1);

    manual.advance(Duration::from_secs(2));
    limiter.housekeeping();
    assert_eq!(limiter.tracked(), 0);
}

// ---------------------------------------------------------------------------------------------
// Properties

/// `⌊elapsed / T⌋ + burst`: the most a GCRA bucket can admit in `elapsed` (see `bucket.rs`).
fn budget(bucket: &Bucket, elapsed: Duration) -> u128 {
    elapsed.as_nanos() / bucket.replenish_interval().as_nanos()
        + u128::from(bucket.spec().burst_limit)
}

fn throttle_strategy() -> impl Strategy<Value = ThrottleSpec> {
    (0.05f64..2000.0, 1u32..40).prop_map(|(r, b)| throttle(r, b))
}

/// Gaps between arrivals: mostly zero (bursts), some short, some long.
fn schedule_strategy() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(0u64),
            3 => 0u64..5_000_000,
            2 => 0u64..2_000_000_000,
            1 => 0u64..60_000_000_000,
        ],
        1..400,
    )
}

proptest! {
    /// The limiter never admits more than its budget: after any arrival schedule on the fake
    /// clock, admitted ≤ burst + ⌊elapsed / T⌋ with T = ⌈10⁹/rate⌉ ns, hence
    /// admitted ≤ burst + rate × elapsed. And it is not simply refusing: after a quiet period of
    /// burst × T, a full burst is admitted.
    #[test]
    fn a_bucket_never_admits_more_than_its_budget(spec in throttle_strategy(), gaps in schedule_strategy()) {
        let (manual, clock, store) = fixture(default_start());
        let bucket = Bucket::new("p", spec, &clock).unwrap();
        let req = only(&bucket);
        let mut admitted: u128 = 0;
        let mut times = Vec::new();
        for gap in gaps {
            manual.advance(Duration::from_nanos(gap));
            if store.admit_now(&req).is_admitted() {
                admitted += 1;
                times.push(manual.elapsed());
            }
            let elapsed = manual.elapsed();
            prop_assert!(admitted <= budget(&bucket, elapsed));
            prop_assert!(
                admitted as f64 <= f64::from(spec.burst_limit) + spec.rate_limit * elapsed.as_secs_f64() + 1e-6
            );
        }
        // The same bound holds in every window, not only from the start.
        for (i, first) in times.iter().enumerate() {
            for (n, last) in times[i..].iter().enumerate() {
                let in_window = n as u128 + 1;
                prop_assert!(in_window <= budget(&bucket, *last - *first));
            }
        }
        manual.advance(bucket.replenish_interval() * spec.burst_limit);
        prop_assert_eq!(burst(&store, &req, spec.burst_limit as usize + 5), spec.burst_limit as usize);
    }

    /// With layers and refunds: each bucket admits within its own budget, whatever mix of layers
    /// the requests carry, and the quota admits at most its limit.
    #[test]
    fn layered_buckets_with_refunds_stay_within_every_budget(
        a in throttle_strategy(),
        b in throttle_strategy(),
        limit in 1u64..300,
        arrivals in prop::collection::vec((prop_oneof![3 => Just(0u64), 2 => 0u64..500_000_000], 0u8..4), 1..400),
    ) {
        let (manual, clock, store) = fixture(default_start());
        let key = Bucket::new("a", a, &clock).unwrap();
        let stage = Bucket::new("b", b, &clock).unwrap();
        let counter = QuotaCounter::new("q", quota(limit, QuotaPeriod::Month), clock.wall_now());
        let (mut through_a, mut through_b, mut total) = (0u128, 0u128, 0u64);
        for (gap, mix) in arrivals {
            manual.advance(Duration::from_nanos(gap));
            let req = AdmitRequest {
                key_plan: (mix & 1 == 1).then_some(&key),
                stage_default: (mix & 2 == 2).then_some(&stage),
                quota: Some(&counter),
                ..AdmitRequest::default()
            };
            if store.admit_now(&req).is_admitted() {
                through_a += u128::from(req.key_plan.is_some());
                through_b += u128::from(req.stage_default.is_some());
                total += 1;
            }
            prop_assert!(through_a <= budget(&key, manual.elapsed()));
            prop_assert!(through_b <= budget(&stage, manual.elapsed()));
            prop_assert!(total <= limit);
        }
        prop_assert_eq!(counter.usage(clock.wall_now()).used, total, "quota counted admitted requests only");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Many threads on one key on a frozen clock: exactly `burst` admitted, never more.
    #[test]
    fn concurrent_callers_on_a_frozen_clock_get_exactly_the_burst(
        burst_limit in 1u32..200,
        threads in 2usize..8,
    ) {
        let (_manual, clock, store) = fixture(default_start());
        let bucket = Bucket::new("k", throttle(1.0, burst_limit), &clock).unwrap();
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| s.spawn(|| burst(&store, &only(&bucket), 300)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        prop_assert_eq!(admitted, burst_limit as usize);
    }

    /// Two layers under contention, with refunds racing: never more than the smaller budget.
    #[test]
    fn concurrent_layered_callers_never_exceed_the_smaller_budget(
        a in 1u32..100,
        b in 1u32..100,
        threads in 2usize..8,
    ) {
        let (_manual, clock, store) = fixture(default_start());
        let key = Bucket::new("a", throttle(1.0, a), &clock).unwrap();
        let stage = Bucket::new("b", throttle(1.0, b), &clock).unwrap();
        let req = AdmitRequest {
            key_plan: Some(&key),
            stage_default: Some(&stage),
            ..AdmitRequest::default()
        };
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| burst(&store, &req, 200))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        prop_assert!(admitted <= a.min(b) as usize);
        prop_assert!(admitted >= 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Cost (printed, not asserted): `cargo test --release -- --ignored --nocapture admit_cost`

#[test]
#[ignore = "measurement; run in release with --nocapture"]
fn admit_cost() {
    let clock = LimitClock::system();
    let store = MemoryStore::new(clock.clone());
    let key = KeyLimiter::new(
        KeyPlanSpec {
            throttle: Some(throttle(1e9, u32::MAX / 4)),
            route_throttles: vec![RouteThrottle {
                route: crate::route::RouteKey {
                    method: GET.into(),
                    path: MOVIES.into(),
                },
                throttle: throttle(1e9, u32::MAX / 4),
            }],
            quota: Some(quota(u64::MAX, QuotaPeriod::Month)),
            ..key_spec("bench", "p")
        },
        &clock,
    )
    .unwrap();
    let stage = StageLimiter::new("prod", Some(throttle(1e9, u32::MAX / 4)), &[], &clock).unwrap();
    const N: u32 = 1_000_000;
    let started = std::time::Instant::now();
    let mut admitted = 0u32;
    for _ in 0..N {
        let req = AdmitRequest::new(Some(&key), Some(&stage), GET, MOVIES);
        admitted += u32::from(std::hint::black_box(store.admit_now(&req)).is_admitted());
    }
    let per_call = started.elapsed() / N;
    println!("admit, 3 buckets + quota, admitted {admitted}/{N}: {per_call:?} per call");

    let parts = [
        (
            "one bucket",
            AdmitRequest {
                stage_default: stage.default_bucket(),
                ..AdmitRequest::default()
            },
        ),
        (
            "quota only",
            AdmitRequest {
                quota: key.quota(),
                ..AdmitRequest::default()
            },
        ),
    ];
    for (what, req) in parts {
        let started = std::time::Instant::now();
        for _ in 0..N {
            std::hint::black_box(store.admit_now(std::hint::black_box(&req)));
        }
        println!("admit, {what}: {:?} per call", started.elapsed() / N);
    }

    let tight = Bucket::new("tight", throttle(1.0, 1), &clock).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..N {
        std::hint::black_box(store.admit_now(&only(&tight)));
    }
    println!(
        "admit, throttled path: {:?} per call",
        started.elapsed() / N
    );

    let failed = FailedAttemptLimiter::with_defaults(clock);
    let started = std::time::Instant::now();
    for i in 0..N {
        std::hint::black_box(failed.allow_failed_attempt(IpAddr::V4(Ipv4Addr::from(i % 1000))));
    }
    println!(
        "allow_failed_attempt (1000 addresses): {:?} per call",
        started.elapsed() / N
    );
}
