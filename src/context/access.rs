//! The access-log line, written straight into a reused buffer and onto stdout in one write.
//!
//! Same bytes as `tracing_subscriber`'s JSON formatter produced for this event (`flatten_event`:
//! `timestamp`, `level`, the fields in order, absent options left out, then `target`), without its
//! per-field dynamic dispatch, `Display` round trips and allocations: the formatter cost about 40k
//! instructions per request (issue #19), this writer a few thousand. Strings are escaped by
//! `serde_json`, exactly as the formatter escaped them.
//!
//! The line obeys the log filter like any event (`RUST_LOG=access=off` turns it off), and shares
//! stdout's lock with the formatter's own lines, so lines never interleave.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Timelike, Utc};

/// A line being written: `{"timestamp":…,"level":"INFO"` then `,"name":value` per field.
pub(super) struct Line<'a>(&'a mut Vec<u8>);

impl Line<'_> {
    /// A string field.
    pub fn str(&mut self, name: &str, value: &str) {
        self.name(name);
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.0, value);
    }

    /// A string field, left out when absent.
    pub fn opt_str(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(name, value);
        }
    }

    /// An integer.
    pub fn int(&mut self, name: &str, value: impl itoa::Integer) {
        self.name(name);
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// An integer, left out when absent.
    pub fn opt_int(&mut self, name: &str, value: Option<impl itoa::Integer>) {
        if let Some(value) = value {
            self.int(name, value);
        }
    }

    /// A boolean.
    pub fn bool(&mut self, name: &str, value: bool) {
        self.name(name);
        self.0
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// An address, as text (digits, dots, colons and hex: nothing to escape).
    pub fn ip(&mut self, name: &str, value: IpAddr) {
        self.name(name);
        self.0.push(b'"');
        let _ = write!(self.0, "{value}");
        self.0.push(b'"');
    }

    /// A time in API Gateway's CLF form, `26/Nov/2026:15:06:23 +0000`.
    pub fn clf(&mut self, name: &str, value: &DateTime<Utc>) {
        self.name(name);
        self.0.push(b'"');
        write_clf(self.0, value);
        self.0.push(b'"');
    }

    fn name(&mut self, name: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }
}

thread_local! {
    /// Each worker's line buffer, kept between requests.
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// A buffer grown past this by a long line (a 10 KB user agent) is not kept.
const KEEP_BYTES: usize = 16 * 1024;

/// Writes one line of target `access` at level INFO: `fields` adds the fields after `level`.
pub(super) fn write(fields: impl FnOnce(&mut Line<'_>)) {
    with_buffer(|buf| {
        render(buf, &Utc::now(), fields);
        // A failed stdout write is dropped, as the formatter dropped it.
        let _ = std::io::stdout().lock().write_all(buf);
        if buf.capacity() > KEEP_BYTES {
            *buf = Vec::with_capacity(1024);
        }
    });
}

/// Runs `f` on the thread's line buffer, or on a fresh one when that is unavailable (a line
/// written while the thread's locals are torn down, e.g. by a stream dropped at a worker's exit,
/// or from within another line): never a panic on the request path, as the formatter's own
/// buffer fell back to a fresh one.
fn with_buffer(f: impl FnOnce(&mut Vec<u8>)) {
    let mut f = Some(f);
    let _ = BUFFER.try_with(|cell| {
        if let Ok(mut buf) = cell.try_borrow_mut()
            && let Some(f) = f.take()
        {
            f(&mut buf);
        }
    });
    if let Some(f) = f {
        f(&mut Vec::new());
    }
}

/// The line at time `now` into `buf` (emptied first), newline included.
fn render(buf: &mut Vec<u8>, now: &DateTime<Utc>, fields: impl FnOnce(&mut Line<'_>)) {
    buf.clear();
    buf.extend_from_slice(b"{\"timestamp\":\"");
    write_rfc3339_micros(buf, now);
    buf.extend_from_slice(b"\",\"level\":\"INFO\"");
    fields(&mut Line(buf));
    buf.extend_from_slice(b",\"target\":\"access\"}\n");
}

/// `2026-12-05T09:20:00.123456Z`, the formatter's timestamp.
fn write_rfc3339_micros(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    write_year(out, t.year());
    out.push(b'-');
    two_digits(out, t.month());
    out.push(b'-');
    two_digits(out, t.day());
    out.push(b'T');
    write_hms(out, t);
    out.push(b'.');
    let micros = t.timestamp_subsec_micros().min(999_999);
    for div in [10_000, 100, 1] {
        two_digits(out, micros / div % 100);
    }
    out.push(b'Z');
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `26/Nov/2026:15:06:23 +0000`: chrono's `%d/%b/%Y:%H:%M:%S %z` for a UTC time.
pub(super) fn write_clf(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    two_digits(out, t.day());
    out.push(b'/');
    out.extend_from_slice(MONTHS[t.month0() as usize % 12]);
    out.push(b'/');
    write_year(out, t.year());
    out.push(b':');
    write_hms(out, t);
    out.extend_from_slice(b" +0000");
}

/// `15:06:23`.
fn write_hms(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    two_digits(out, t.hour());
    out.push(b':');
    two_digits(out, t.minute());
    out.push(b':');
    two_digits(out, t.second());
}

fn write_year(out: &mut Vec<u8>, year: i32) {
    if (0..=9999).contains(&year) {
        let y = year as u32;
        two_digits(out, y / 100);
        two_digits(out, y % 100);
    } else {
        let _ = write!(out, "{year}");
    }
}

fn two_digits(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&[b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]);
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::context::{Authenticated, RequestContext, StreamRecord};

    /// The access event as the gateway emitted it through `tracing`'s JSON formatter before this
    /// writer: the reference the writer must match byte for byte (timestamps aside).
    fn by_tracing(ctx: &RequestContext, status: u16, length: usize) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let latency_ms = ctx.started.elapsed().as_millis() as u64;
            let integration_ms = ctx.integration_latency.map(|d| d.as_millis() as u64);
            let unauthenticated = ctx.authenticated == Authenticated::No;
            let refused = ctx.error_cause.as_deref().filter(|_| unauthenticated);
            tracing::info!(
                target: "access",
                requestId = %ctx.request_id,
                "identity.sourceIp" = %ctx.source_ip,
                "identity.userAgent" = %ctx.user_agent,
                "identity.apiKeyId" = ctx.api_key_id.as_deref(),
                requestTime = %ctx.request_time.format("%d/%b/%Y:%H:%M:%S %z"),
                requestTimeEpoch = ctx.request_time.timestamp_millis(),
                httpMethod = %ctx.http_method,
                path = %ctx.path,
                resourcePath = ctx.resource_path.as_deref(),
                stage = ctx.stage.as_deref(),
                status,
                responseLength = length,
                responseLatency = latency_ms,
                integrationLatency = integration_ms,
                integrationStatus = ctx.integration_status,
                awsEndpointRequestId = ctx.aws_endpoint_request_id.as_deref(),
                invokedProductionVariant = ctx.invoked_variant.as_deref(),
                endpointName = ctx.endpoint_name.as_deref(),
                isCanaryRequest = ctx.canary.unwrap_or(false),
                "error.responseType" = ctx.error_type,
                "error.validationErrorString" = ctx.validation_error.as_deref(),
                cacheStatus = ctx.cache,
                upstreamErrorType = ctx.upstream_error,
                xrayTraceId = %ctx.trace_id,
                cause = refused,
                "stream.framing" = ctx.stream.as_ref().map(|s| s.framing),
                "stream.outcome" = ctx.stream.as_ref().and_then(|s| s.outcome),
                "stream.timeToFirstByte" = ctx
                    .stream
                    .as_ref()
                    .and_then(|s| s.first_byte)
                    .map(|d| d.as_millis() as u64),
                "stream.bytes" = ctx.stream.as_ref().map(|s| s.bytes),
                "stream.parts" = ctx.stream.as_ref().map(|s| s.parts),
            );
        });
        let bytes = out.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn by_writer(ctx: &RequestContext, status: u16, length: usize) -> String {
        let mut buf = Vec::new();
        render(&mut buf, &Utc::now(), |line| {
            ctx.access_fields(line, status, length)
        });
        String::from_utf8(buf).unwrap()
    }

    /// The line without its timestamp value (which the two take at different instants).
    fn untimed(line: &str) -> String {
        let start = line.find("\"timestamp\":\"").unwrap() + 13;
        let end = start + line[start..].find('"').unwrap();
        format!("{}{}", &line[..start], &line[end..])
    }

    /// The two agree on every byte but the timestamp and `responseLatency`, which each reads from
    /// the clock (the latter must still be a number in both).
    fn same_line(ctx: &RequestContext, status: u16, length: usize) {
        let (mine, theirs) = (
            by_writer(ctx, status, length),
            by_tracing(ctx, status, length),
        );
        let strip = |l: &str| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["responseLatency"].is_u64(), "{l}");
            untimed(l).replace(
                &format!("\"responseLatency\":{}", v["responseLatency"]),
                "\"responseLatency\":_",
            )
        };
        assert_eq!(strip(&mine), strip(&theirs));
    }

    fn full_context(user_agent: String, path: String, cause: String) -> RequestContext {
        let mut ctx = RequestContext::new(
            "3f1c9a2e-5b7d-4c1e-9f00-000000000001".to_owned(),
            "Root=1-67a0b1c2-0123456789abcdef01234567".to_owned(),
            "2001:db8::1".parse().unwrap(),
            "GET",
            &path,
        );
        ctx.user_agent = user_agent;
        ctx.stage = Some("prod".to_owned());
        ctx.resource_path = Some("/recommended-movies/{user_id}".to_owned());
        ctx.api_key_id = Some("k-7f3a".to_owned());
        ctx.authenticated = Authenticated::No;
        ctx.integration_latency = Some(Duration::from_micros(12_345_678));
        ctx.integration_status = Some(200);
        ctx.aws_endpoint_request_id = Some("a1b2c3".to_owned());
        ctx.invoked_variant = Some("AllTraffic".to_owned());
        ctx.canary = Some(true);
        ctx.endpoint_name = Some("movie-recommender-prod".to_owned());
        ctx.error_type = Some("THROTTLED");
        ctx.error_cause = Some(cause);
        ctx.validation_error = Some("Missing required request parameters: [k]".to_owned());
        ctx.cache = Some("miss");
        ctx.upstream_error = Some("ModelError");
        ctx.stream = Some(StreamRecord {
            framing: "sse",
            outcome: Some("complete"),
            first_byte: Some(Duration::from_micros(4_321)),
            bytes: 65_537,
            parts: 12,
        });
        ctx
    }

    #[test]
    fn a_bare_line_matches_the_tracing_formatter() {
        let ctx = RequestContext::new(
            "id".to_owned(),
            "Root=1-0-0".to_owned(),
            "127.0.0.1".parse().unwrap(),
            "POST",
            "/",
        );
        same_line(&ctx, 403, 42);
    }

    #[test]
    fn a_full_line_matches_the_tracing_formatter() {
        let ctx = full_context(
            "curl/8.5 \"quoted\" \\ \u{1}\t\n é 💡 \u{2028}".to_owned(),
            "/prod/x%2F..%2F".to_owned(),
            "bad key".to_owned(),
        );
        same_line(&ctx, 429, 0);
        let mut authenticated = ctx;
        authenticated.authenticated = Authenticated::Key;
        same_line(&authenticated, 200, usize::MAX);
        let mut started = authenticated;
        if let Some(stream) = started.stream.as_mut() {
            (stream.outcome, stream.first_byte) = (None, None);
        }
        same_line(&started, 502, 0);
    }

    #[test]
    fn times_are_written_as_the_formatter_and_chrono_write_them() {
        for (secs, nanos) in [
            (0, 0),
            (1_764_927_600, 123_456_789),
            (1_764_927_599, 999_999_999),
            (253_402_300_799, 7_000),
        ] {
            let t = Utc.timestamp_opt(secs, nanos).unwrap();
            let mut out = Vec::new();
            write_rfc3339_micros(&mut out, &t);
            let expected = t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
            let mut out = Vec::new();
            write_clf(&mut out, &t);
            let expected = t.format("%d/%b/%Y:%H:%M:%S %z").to_string();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    /// Whether `with_buffer` ran its closure on a thread whose locals are being torn down
    /// (`BUFFER` destroyed first: it was registered after `Late`).
    struct Late(std::sync::mpsc::Sender<bool>);

    impl Drop for Late {
        fn drop(&mut self) {
            let mut ran = false;
            with_buffer(|_| ran = true);
            let _ = self.0.send(ran);
        }
    }

    thread_local! {
        static LATE: RefCell<Option<Late>> = const { RefCell::new(None) };
    }

    #[test]
    fn a_line_written_from_within_a_line_or_at_thread_exit_still_gets_a_buffer() {
        let mut nested = false;
        with_buffer(|outer| {
            outer.push(b'x');
            with_buffer(|inner| nested = inner.is_empty());
        });
        assert!(nested);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            LATE.with_borrow_mut(|late| *late = Some(Late(tx)));
            with_buffer(|buf| buf.push(b'x'));
        });
        assert!(thread.join().is_ok(), "the thread panicked at exit");
        assert_eq!(rx.recv().ok(), Some(true));
    }

    proptest! {
        #[test]
        fn any_strings_match_the_tracing_formatter(
            user_agent in any::<String>(),
            path in any::<String>(),
            cause in any::<String>(),
        ) {
            same_line(&full_context(user_agent, path, cause), 200, 7);
        }
    }
}
