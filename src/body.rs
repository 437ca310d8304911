//! The `read body` stage: the request body, read only once the request is routed, its key checked
//! and the request admitted.
//!
//! Place in the pipeline: `route → authenticate → admit → **read body** → validate → render → …`.
//! Until here only the request head has been looked at; a request refused before this stage leaves
//! its body unread, and the HTTP adapter answers it with `Connection: close`, so unread bytes are
//! never parsed as a next request and a caller without a valid key makes the gateway hold nothing
//! but actix's bounded read buffers.
//!
//! Input: the body as a stream of chunks (the adapter's), the request head (for its framing
//! headers), the [`BodyLimits`] and the request's memory account. Output: the whole body, or
//! - 413 REQUEST_TOO_LARGE when more than `max_bytes` arrive (a chunked body: a declared length over
//!   the limit is refused on the head, before routing),
//! - 408 `RequestTimeoutException` when the whole body has not arrived within `timeout` of the
//!   stage's start (a body trickled in to hold memory and a connection),
//! - 503 when the memory budget refuses the growth, or is spent already ([`crate::memory`]),
//! - 400 when the stream breaks (malformed chunked encoding, connection closed mid-body).
//!
//! Invariants: nothing is allocated from the declared length. The buffer grows with what arrives
//! (doubling from 8 KiB, never past the smaller of the declared length and `max_bytes`), and each
//! growth is charged to the memory account before it is made. Chunks are copied into that one
//! buffer as they arrive, so what is charged is what is held. A request without a body (no
//! `Content-Length`, no `Transfer-Encoding`, or a length of 0) reads nothing and starts no timer.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::config::gateway::ServerConfig;
use crate::error::GatewayError;
use crate::memory::Held;

/// First allocation of a body buffer (or less, when the body is declared shorter).
const FIRST_GROWTH: usize = 8 * 1024;

/// `server.max_body_bytes` and `server.body_timeout_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body in bytes.
    pub max_bytes: usize,
    /// Time allowed for the whole body to arrive.
    pub timeout: Duration,
}

impl BodyLimits {
    /// The limits `server` configures.
    pub fn of(server: &ServerConfig) -> Self {
        BodyLimits {
            max_bytes: server.max_body_bytes,
            timeout: server.body_timeout,
        }
    }
}

/// The `Content-Length` a request declares; `None` when absent or not a number.
pub fn declared_length(content_length: Option<&str>) -> Option<u64> {
    content_length.and_then(|v| v.trim().parse().ok())
}

/// Whether a request head announces a body: a non-zero `Content-Length` or any
/// `Transfer-Encoding` (HTTP/1.1 frames a request body only with one of them).
pub fn has_body(content_length: Option<&str>, transfer_encoding: Option<&str>) -> bool {
    transfer_encoding.is_some() || declared_length(content_length).is_some_and(|n| n > 0)
}

/// The read-body stage: the whole body of a request whose head carries `content_length` and
/// `transfer_encoding`.
pub async fn read<S, E>(
    chunks: &mut S,
    content_length: Option<&str>,
    transfer_encoding: Option<&str>,
    limits: &BodyLimits,
    memory: &Held,
) -> Result<Bytes, GatewayError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // New work waits while the budget is spent, a request without a body too.
    memory.try_grow(0)?;
    if !has_body(content_length, transfer_encoding) {
        return Ok(Bytes::new());
    }
    let bound = declared_length(content_length)
        .map_or(limits.max_bytes, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        })
        .min(limits.max_bytes);
    tokio::time::timeout(
        limits.timeout,
        collect(chunks, limits.max_bytes, bound, memory),
    )
    .await
    .unwrap_or(Err(GatewayError::RequestTimeout))
}

/// Copies the chunks into one buffer; `bound` caps growth (the declared length or the limit).
async fn collect<S, E>(
    chunks: &mut S,
    max_bytes: usize,
    bound: usize,
    memory: &Held,
) -> Result<Bytes, GatewayError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|e| GatewayError::InvalidRequest(format!("body could not be read: {e}")))?;
        let needed = buf.len() + chunk.len();
        if needed > max_bytes {
            return Err(GatewayError::RequestTooLarge);
        }
        if needed > buf.capacity() {
            let target = needed
                .max(buf.capacity().saturating_mul(2))
                .max(FIRST_GROWTH)
                .min(bound.max(needed));
            memory.try_grow(target - buf.capacity())?;
            buf.reserve_exact(target - buf.len());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBudget;
    use futures_util::stream;

    type Chunk = Result<Bytes, String>;

    fn limits(max_bytes: usize) -> BodyLimits {
        BodyLimits {
            max_bytes,
            timeout: Duration::from_secs(3600),
        }
    }

    fn chunks(sizes: &[usize]) -> impl Stream<Item = Chunk> + Unpin {
        stream::iter(
            sizes
                .iter()
                .map(|n| Ok(Bytes::from(vec![b'x'; *n])))
                .collect::<Vec<Chunk>>(),
        )
    }

    async fn read_all(
        s: &mut (impl Stream<Item = Chunk> + Unpin),
        length: Option<&str>,
        chunked: bool,
        limits: &BodyLimits,
        memory: &Held,
    ) -> Result<Bytes, GatewayError> {
        read(s, length, chunked.then_some("chunked"), limits, memory).await
    }

    #[tokio::test]
    async fn a_body_is_charged_as_it_grows_never_by_its_declared_length() {
        let budget = MemoryBudget::new(1 << 30);
        let memory = budget.account();
        // Declares 10 MiB, sends 3 KiB and ends (the adapter's stream ends where actix's does).
        let mut s = chunks(&[1024, 1024, 1024]);
        let body = read_all(&mut s, Some("10485760"), false, &limits(10 << 20), &memory)
            .await
            .unwrap();
        assert_eq!(body.len(), 3072);
        assert_eq!(memory.bytes(), FIRST_GROWTH, "one 8 KiB buffer, not 10 MiB");

        // Growth doubles and stops at the declared length.
        let memory = budget.account();
        let mut s = chunks(&[8192, 8192, 4000]);
        let body = read_all(&mut s, Some("20384"), false, &limits(10 << 20), &memory)
            .await
            .unwrap();
        assert_eq!((body.len(), memory.bytes()), (20384, 20384));
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_is_413_and_a_broken_one_400() {
        let budget = MemoryBudget::new(1 << 30);
        let memory = budget.account();
        let mut s = chunks(&[600, 600]);
        let err = read_all(&mut s, None, true, &limits(1024), &memory)
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::RequestTooLarge), "{err:?}");

        let mut broken = stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err("incomplete chunked encoding".to_owned()),
        ]);
        let err = read_all(&mut broken, None, true, &limits(1024), &memory)
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::InvalidRequest(_)), "{err:?}");
    }

    #[tokio::test]
    async fn the_budget_refuses_growth_and_new_work_once_spent() {
        let budget = MemoryBudget::new(10_000);
        let memory = budget.account();
        let mut s = chunks(&[4000, 4000, 4000]);
        let err = read_all(&mut s, None, true, &limits(1 << 20), &memory)
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::Unavailable { .. }), "{err:?}");
        // What was charged before the refusal stays with the account until it is dropped.
        assert_eq!(budget.held(), 8192);

        let spent = budget.account();
        spent.try_grow(10_000 - 8192).unwrap();
        let mut empty = chunks(&[]);
        let err = read_all(&mut empty, None, false, &limits(1024), &budget.account())
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::Unavailable { .. }), "{err:?}");
        drop((memory, spent));
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_408() {
        let budget = MemoryBudget::new(1 << 30);
        // One chunk, then nothing: the client holds the connection. A zero timeout expires as soon
        // as the read has to wait, without the test waiting for time to pass.
        let mut stalled = chunks(&[10]).chain(stream::pending());
        let zero = BodyLimits {
            max_bytes: 1024,
            timeout: Duration::ZERO,
        };
        let err = read_all(&mut stalled, Some("100"), false, &zero, &budget.account())
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::RequestTimeout), "{err:?}");

        // A body that is all there completes before the timer is ever looked at.
        let mut ready = chunks(&[10, 20]);
        let body = read_all(&mut ready, Some("30"), false, &zero, &budget.account())
            .await
            .unwrap();
        assert_eq!(body.len(), 30);
    }

    #[tokio::test]
    async fn a_request_without_a_body_reads_nothing() {
        let budget = MemoryBudget::new(1 << 30);
        let memory = budget.account();
        // The stream is never polled: a head without framing headers has no body.
        let mut never = stream::pending::<Chunk>();
        for (length, chunked) in [(None, false), (Some("0"), false)] {
            let body = read_all(&mut never, length, chunked, &limits(1024), &memory)
                .await
                .unwrap();
            assert!(body.is_empty());
        }
        assert_eq!(memory.bytes(), 0);
        assert!(has_body(None, Some("chunked")));
        assert!(!has_body(Some("nope"), None));
    }
}
