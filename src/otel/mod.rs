//! OpenTelemetry traces: one server span per request with a child span per pipeline stage,
//! exported over OTLP/HTTP (protobuf) to a collector, typically the ADOT sidecar on ECS, which
//! forwards to AWS X-Ray.
//!
//! Input: the request's incoming trace headers (at arrival), stage start and end times (as the
//! stages run, through [`RequestContext::span_start`] / [`RequestContext::span_end`]) and the
//! finished [`RequestContext`]. Output: `SpanData` batches handed to the OTLP exporter by one
//! background task.
//!
//! - Off (the default): `Gateway::tracer` is `None`, `RequestContext::trace` stays `None`, and each
//!   stage costs one `Option` check; nothing else runs, nothing is sent.
//! - Joining the caller's trace: `traceparent` (W3C) wins, then `X-Amzn-Trace-Id` (the header the
//!   gateway already propagates to SageMaker, or the root it generated), see [`propagation`]. The
//!   trace id and parent span always join; the caller's *sampling decision* does not count unless
//!   `trust_caller_sampling` is on and the caller presented a valid key.
//! - Sampling is decided twice: at arrival, whether the request may be kept (the ratio, or a
//!   trusted caller's sampled flag) and so is worth recording; at the end, whether it is kept: never
//!   when it was refused before or at authentication ([`Authenticated::No`]), whatever the caller
//!   sent and whatever the ratio (the rules are in [`crate::config::telemetry`]).
//! - Spans are built only for sampled requests, at the end of the request: a few small vectors.
//! - Export never slows or fails a request: finished spans go to an unbounded channel gated by an
//!   atomic count (`max_queue_size` spans); above it they are dropped and counted. One task batches
//!   (`max_export_batch_size`, `schedule_delay`) and exports one call at a time, each bounded by the
//!   exporter timeout; a failed export drops its spans and counts them
//!   (`sagegate_otel_spans_total{result}`), with one warning per minute at most.
//! - Shutdown: after the HTTP server drained, [`Exporting::shutdown`] sends what is queued, bounded
//!   by [`FLUSH_BOUND`] so the task stops before ECS's SIGKILL.
//!
//! Security: attributes carry the API key *id*, never the key or its hash, and no header values;
//! the query string is not recorded (it may carry tokens). Without trust, a caller cannot force a
//! trace through the header's flag, nor through the trace id it picks (the ratio over a caller's
//! id is a fresh random draw, since OTel's trace-id rule keeps every id with small low bits); a
//! caller without a valid key gets no span exported at all, so it controls neither the tracing
//! bill nor room in the export queue.

pub mod propagation;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};

use crate::config::telemetry::{OtlpConfig, Sampling};
use crate::context::{Authenticated, RequestContext, RequestTrace, SpanValue, TraceDecision};
use crate::metrics::Metrics;

/// Longest the final flush may take at shutdown (ECS stops the task 10 s after the drain grace).
pub const FLUSH_BOUND: Duration = Duration::from_secs(5);

/// Span names of the stages (they live with the context that records them).
pub use crate::context::names;

/// The arrival half of the sampling decision (recorded in the context as plain data).
type Decision = TraceDecision;

impl Decision {
    /// Whether the request may end up kept, so is worth recording.
    fn may_keep(self) -> bool {
        self.ratio || self.caller == Some(true)
    }

    /// Whether the finished request is exported.
    fn keep(self, authenticated: Authenticated) -> bool {
        match authenticated {
            Authenticated::No => false,
            Authenticated::PublicRoute => self.ratio,
            Authenticated::Key => self.caller.unwrap_or(self.ratio),
        }
    }
}

/// The counters of `sagegate_otel_spans_total`.
#[derive(Clone)]
struct Counters {
    exported: IntCounter,
    queue_full: IntCounter,
    export_failed: IntCounter,
}

/// Starts traces and hands finished ones to the export task. Shared by all workers.
pub struct Tracer {
    queue: mpsc::UnboundedSender<Vec<SpanData>>,
    /// Spans in the channel; bounds it to `max_queue_size`.
    queued: Arc<AtomicUsize>,
    max_queue_size: usize,
    sampling: Sampling,
    scope: InstrumentationScope,
    counters: Counters,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("sampling", &self.sampling)
            .finish_non_exhaustive()
    }
}

/// The running export task.
#[derive(Debug)]
pub struct Exporting {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporting {
    /// Exports what is queued and stops, within `within` at most (what is left is dropped).
    pub async fn shutdown(self, within: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
            tracing::warn!(
                bound_ms = within.as_millis() as u64,
                "OTLP flush at shutdown did not finish; remaining spans dropped"
            );
        }
    }
}

/// Builds the OTLP exporter for `cfg` and starts the export task on the current Tokio runtime.
pub fn start(cfg: &OtlpConfig, metrics: &Metrics) -> anyhow::Result<(Tracer, Exporting)> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(cfg.traces_url.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(cfg.timeout)
        .with_headers(cfg.headers.clone().into_iter().collect())
        .build()
        .map_err(|e| anyhow::anyhow!("OTLP exporter for {}: {e}", cfg.traces_url))?;
    // `Resource::builder` also reads OTEL_RESOURCE_ATTRIBUTES; the resolved name wins over it.
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    exporter.set_resource(&resource);
    let counters = Counters {
        exported: metrics.otel_spans("exported"),
        queue_full: metrics.otel_spans("queue_full"),
        export_failed: metrics.otel_spans("export_failed"),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(run(
        exporter,
        rx,
        stopped,
        queued.clone(),
        Batching {
            size: cfg.max_export_batch_size,
            delay: cfg.schedule_delay,
            timeout: cfg.timeout,
        },
        counters.clone(),
    ));
    let tracer = Tracer {
        queue: tx,
        queued,
        max_queue_size: cfg.max_queue_size,
        sampling: cfg.sampling,
        scope: InstrumentationScope::builder("sagegate")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
        counters,
    };
    Ok((tracer, Exporting { stop, task }))
}

impl Tracer {
    /// The trace of a new request, or `None` when it cannot be sampled. `traceparent` is the W3C
    /// header if sent; `xray` is the request's `X-Amzn-Trace-Id` (the caller's, or the new root
    /// the gateway generated). [`Tracer::finish`] makes the final decision.
    pub fn start(&self, traceparent: Option<&str>, xray: &str) -> Option<Box<RequestTrace>> {
        let incoming = traceparent
            .and_then(propagation::traceparent)
            .or_else(|| propagation::xray(xray));
        let (trace_id, parent) = match incoming {
            Some(i) => (i.trace_id, i.parent_span_id),
            None => (new_trace_id(), None),
        };
        let decision = self.sampling.decide(&trace_id, incoming.as_ref());
        decision.may_keep().then(|| {
            Box::new(RequestTrace {
                decision,
                trace_id,
                span_id: new_span_id().to_bytes(),
                parent,
                start: SystemTime::now(),
                stages: Vec::with_capacity(8),
            })
        })
    }

    /// Turns a finished request into spans and queues them, if it is sampled after all (see
    /// [`Decision::keep`]); drops and counts them when the queue is full. Never blocks.
    pub fn finish(&self, trace: RequestTrace, ctx: &RequestContext, status: u16) {
        if !trace.decision.keep(ctx.authenticated) {
            return;
        }
        let spans = self.spans(trace, ctx, status);
        let n = spans.len();
        if self.queued.fetch_add(n, Ordering::Relaxed) + n > self.max_queue_size {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.counters.queue_full.inc_by(n as u64);
            return;
        }
        if self.queue.send(spans).is_err() {
            // The export task is gone (shutdown): nothing will send these.
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.counters.queue_full.inc_by(n as u64);
        }
    }

    fn spans(&self, trace: RequestTrace, ctx: &RequestContext, status: u16) -> Vec<SpanData> {
        let end = SystemTime::now();
        let trace_id = TraceId::from_bytes(trace.trace_id);
        let span_id = SpanId::from_bytes(trace.span_id);
        let parent_span = trace.parent.map(SpanId::from_bytes);
        let context = |span_id| {
            SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            )
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", ctx.http_method.clone()),
            KeyValue::new("url.path", ctx.path.clone()),
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("client.address", ctx.source_ip.to_string()),
            KeyValue::new("sagegate.request_id", ctx.request_id.clone()),
        ];
        let mut optional = |key: &'static str, value: Option<String>| {
            if let Some(v) = value {
                attributes.push(KeyValue::new(key, v));
            }
        };
        optional("http.route", ctx.resource_path.clone());
        optional("sagegate.stage", ctx.stage.clone());
        optional("sagegate.api_key_id", ctx.api_key_id.clone());
        optional("sagegate.cache", ctx.cache.map(str::to_owned));
        optional("error.type", ctx.error_type.map(str::to_owned));
        optional(
            "user_agent.original",
            Some(ctx.user_agent.clone()).filter(|u| !u.is_empty()),
        );
        let name = match &ctx.resource_path {
            Some(route) => format!("{} {route}", ctx.http_method),
            None => ctx.http_method.clone(),
        };
        let server = SpanData {
            span_context: context(span_id),
            parent_span_id: parent_span.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: parent_span.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(name),
            start_time: trace.start,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            // HTTP server semantics: only 5xx marks the server span as failed.
            status: if status >= 500 {
                Status::error(ctx.error_type.unwrap_or("5xx"))
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        };
        let ids: Vec<SpanId> = trace.stages.iter().map(|_| new_span_id()).collect();
        let mut spans = Vec::with_capacity(trace.stages.len() + 1);
        spans.push(server);
        for (i, stage) in trace.stages.into_iter().enumerate() {
            let parent = stage
                .parent
                .and_then(|p| ids.get(p).copied())
                .unwrap_or(span_id);
            spans.push(SpanData {
                span_context: context(ids[i]),
                parent_span_id: parent,
                parent_span_is_remote: false,
                span_kind: if stage.client {
                    SpanKind::Client
                } else {
                    SpanKind::Internal
                },
                name: Cow::Borrowed(stage.name),
                start_time: stage.start,
                end_time: stage.end,
                attributes: {
                    let mut a: Vec<KeyValue> = stage
                        .attributes
                        .into_iter()
                        .map(|(key, value)| match value {
                            SpanValue::Text(v) => KeyValue::new(key, v),
                            SpanValue::Int(v) => KeyValue::new(key, v),
                        })
                        .collect();
                    if let Some(e) = stage.error {
                        a.push(KeyValue::new("error.type", e));
                    }
                    a
                },
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: stage.error.map_or(Status::Unset, Status::error),
                instrumentation_scope: self.scope.clone(),
            });
        }
        spans
    }
}

impl Sampling {
    /// The arrival half of the decision for trace `trace_id`, which the caller sent in `incoming`
    /// or the gateway just made.
    fn decide(&self, trace_id: &[u8; 16], incoming: Option<&propagation::Incoming>) -> Decision {
        let ratio = if incoming.is_some() && !self.trust_caller {
            // An untrusted caller picks its trace id: a fresh draw keeps the share at the ratio.
            self.ratio >= 1.0 || rand::random::<f64>() < self.ratio
        } else {
            // The gateway's own ids are random, and trusted callers share OTel's rule, so they
            // and the gateway keep the same traces.
            ratio_sampled(trace_id, self.ratio)
        };
        Decision {
            ratio,
            caller: incoming
                .and_then(|i| i.sampled)
                .filter(|_| self.trust_caller),
        }
    }
}

/// OTel's `TraceIdRatioBased` rule: the trace's low 63 bits against the ratio, so every service
/// sampling at the same ratio keeps the same traces.
fn ratio_sampled(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u64::from_be_bytes(low) >> 1;
    x < (ratio * (1u64 << 63) as f64) as u64
}

/// An X-Ray-compatible trace id: 4 bytes of epoch seconds, 12 random bytes.
fn new_trace_id() -> [u8; 16] {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&secs.to_be_bytes());
    id[4..].copy_from_slice(&rand::random::<[u8; 12]>());
    id
}

fn new_span_id() -> SpanId {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return SpanId::from_bytes(id.to_be_bytes());
        }
    }
}

struct Batching {
    size: usize,
    delay: Duration,
    timeout: Duration,
}

/// The export task: batches by size or age, exports one call at a time, drains at stop.
async fn run(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::UnboundedReceiver<Vec<SpanData>>,
    mut stop: oneshot::Receiver<()>,
    queued: Arc<AtomicUsize>,
    batching: Batching,
    counters: Counters,
) {
    let mut failures = Failures::default();
    let mut batch: Vec<SpanData> = Vec::with_capacity(batching.size);
    let mut tick = tokio::time::interval(batching.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            received = rx.recv() => {
                let Some(spans) = received else { break };
                queued.fetch_sub(spans.len(), Ordering::Relaxed);
                batch.extend(spans);
                while batch.len() >= batching.size {
                    let rest = batch.split_off(batching.size);
                    let full = std::mem::replace(&mut batch, rest);
                    export(&exporter, full, &batching, &counters, &mut failures).await;
                }
            }
            _ = tick.tick() => {
                if !batch.is_empty() {
                    let due = std::mem::take(&mut batch);
                    export(&exporter, due, &batching, &counters, &mut failures).await;
                }
            }
        }
    }
    // Shutdown: whatever is queued goes out now; `Exporting::shutdown` bounds the time.
    rx.close();
    while let Ok(spans) = rx.try_recv() {
        queued.fetch_sub(spans.len(), Ordering::Relaxed);
        batch.extend(spans);
    }
    while !batch.is_empty() {
        let rest = batch.split_off(batch.len().min(batching.size));
        let chunk = std::mem::replace(&mut batch, rest);
        export(&exporter, chunk, &batching, &counters, &mut failures).await;
    }
    let _ = exporter.shutdown();
}

/// Export failures since the last warning (one warning a minute at most).
#[derive(Default)]
struct Failures {
    last_warning: Option<Instant>,
    spans_since: u64,
}

async fn export(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: Vec<SpanData>,
    batching: &Batching,
    counters: &Counters,
    failures: &mut Failures,
) {
    let n = batch.len() as u64;
    // The exporter bounds its own call (retries included) by the timeout; this is the backstop.
    let bound = batching.timeout + Duration::from_secs(1);
    let outcome = match tokio::time::timeout(bound, exporter.export(batch)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", bound.as_millis())),
    };
    match outcome {
        Ok(()) => counters.exported.inc_by(n),
        Err(error) => {
            counters.export_failed.inc_by(n);
            failures.spans_since += n;
            if failures
                .last_warning
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                tracing::warn!(
                    %error,
                    dropped_spans = failures.spans_since,
                    "OTLP trace export failed; spans dropped (counted in sagegate_otel_spans_total)"
                );
                failures.last_warning = Some(Instant::now());
                failures.spans_since = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_sampling_is_a_function_of_the_trace_id() {
        let low = |b: u8| {
            let mut id = [0u8; 16];
            id[8] = b;
            id
        };
        assert!(ratio_sampled(&low(0xff), 1.0));
        assert!(!ratio_sampled(&low(0x00), 0.0));
        assert!(ratio_sampled(&low(0x10), 0.5));
        assert!(!ratio_sampled(&low(0x90), 0.5));
        // About the ratio over many random ids.
        let kept = (0..10_000)
            .filter(|_| ratio_sampled(&rand::random(), 0.25))
            .count();
        assert!((2000..3000).contains(&kept), "{kept}");
    }

    fn incoming(low: u8, sampled: Option<bool>) -> propagation::Incoming {
        let mut trace_id = [0x11; 16];
        trace_id[8..].copy_from_slice(&[low; 8]);
        propagation::Incoming {
            trace_id,
            parent_span_id: Some([1; 8]),
            sampled,
        }
    }

    fn decide(ratio: f64, trust_caller: bool, i: Option<propagation::Incoming>) -> Decision {
        let id = i.map_or([0; 16], |i| i.trace_id);
        Sampling {
            ratio,
            trust_caller,
        }
        .decide(&id, i.as_ref())
    }

    #[test]
    fn nothing_refused_at_or_before_authentication_is_kept() {
        for ratio in [0.0, 1.0] {
            for trust in [false, true] {
                for sampled in [None, Some(true), Some(false)] {
                    let d = decide(ratio, trust, Some(incoming(0, sampled)));
                    assert!(!d.keep(Authenticated::No), "{ratio} {trust} {sampled:?}");
                }
            }
        }
    }

    #[test]
    fn a_callers_sampled_flag_counts_only_when_trusted_and_authenticated() {
        let forced = Some(incoming(0, Some(true)));
        // Untrusted (the default): the ratio decides, also against the caller's flag.
        let d = decide(0.0, false, forced);
        assert!(!d.may_keep());
        assert!(!d.keep(Authenticated::Key));
        let d = decide(1.0, false, Some(incoming(0, Some(false))));
        assert!(d.keep(Authenticated::Key) && d.keep(Authenticated::PublicRoute));
        // Trusted: a key holder's flag wins over the ratio, both ways.
        let d = decide(0.0, true, forced);
        assert!(d.may_keep());
        assert!(d.keep(Authenticated::Key));
        assert!(
            !d.keep(Authenticated::PublicRoute),
            "anonymous callers are never trusted"
        );
        let d = decide(1.0, true, Some(incoming(0, Some(false))));
        assert!(!d.keep(Authenticated::Key));
        assert!(d.keep(Authenticated::PublicRoute));
        // Trusted but undecided (`Sampled=?`, the ALB's root): OTel's trace-id rule.
        assert!(decide(0.5, true, Some(incoming(0x10, None))).keep(Authenticated::Key));
        assert!(!decide(0.5, true, Some(incoming(0x90, None))).keep(Authenticated::Key));
    }

    #[test]
    fn an_untrusted_caller_cannot_pick_a_trace_id_the_ratio_always_keeps() {
        // Low bits of zero pass OTel's rule at any ratio above 0; a fresh draw does not care.
        assert!(ratio_sampled(&incoming(0, None).trace_id, 0.01));
        let kept = (0..10_000)
            .filter(|_| decide(0.25, false, Some(incoming(0, Some(true)))).may_keep())
            .count();
        assert!((2000..3000).contains(&kept), "{kept}");
    }

    #[test]
    fn new_trace_ids_carry_the_epoch_like_x_ray() {
        let id = new_trace_id();
        let secs = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        assert!(now - secs < 5);
    }
}
