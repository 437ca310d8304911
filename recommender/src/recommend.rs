//! The invocation pipeline, plain Rust (no HTTP types):
//!
//! ```text
//! check content type → parse → draw seed → resolve user → score (or cache) → rank → assemble
//! ```
//!
//! Input: `Content-Type`, body bytes, request id. Output: [`Recommendations`] or an
//! [`InvocationError`] (always a client error: bad input or an unusable parameter; an unknown user
//! is not an error but the popularity fallback).
//!
//! A streamed answer ([`Recommender::start_stream`]) runs the same stages up to the sampler's
//! up-front work, so every error is still found before the first line; then [`Stream::next_line`]
//! ranks one position per line, through the same [`Draws`] a buffered answer collects. The lines
//! therefore hold exactly the buffered answer: its `recommendations`, one per line, then its other
//! fields. A stream owns its scores (shared with the cache, or scored into its own buffer).
//!
//! The score cache serves `stochastic_plackett_luce_cached`: it keeps each user's raw scores (one
//! `f32` per item, temperature-independent) keyed by (model version, user id), so a repeat request
//! skips the O(n·d) scoring and only samples, with the sequential sum-tree sampler: exact
//! Plackett–Luce with exact propensities, unlike a pool of pre-drawn rankings (see README). It is
//! bounded by bytes, not entries, because a catalogue's size decides what one entry costs.
//! `moka::sync::Cache` is lock-free for readers and never held across an `.await` (the pipeline is
//! synchronous).

use std::cell::RefCell;
use std::sync::Arc;

use moka::sync::Cache;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{Model, UserRef};
use crate::policy::{self, Draws, Policy, PolicyError};
use crate::request::{self, Invocation, RequestError};
use crate::response::{self, Context, Recommendations, Summary};

/// Default byte budget of the score cache.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Why an invocation was refused. Every variant is the client's to fix (HTTP 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvocationError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl InvocationError {
    /// The request field at fault, if one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            InvocationError::Request(e) => e.field,
            InvocationError::Policy(PolicyError::LogitOverflow { .. }) => Some("temperature"),
        }
    }
}

/// Whether the scores came from the cache (logged, for the cached policy only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    NotUsed,
}

/// The model plus the cross-request score cache.
pub struct Recommender {
    model: Arc<Model>,
    scores: Cache<(Arc<str>, String), Arc<[f32]>>,
    /// Whether requests may carry the streaming test knobs.
    stream_test_knobs: bool,
}

/// An answer and what the access log needs about it.
pub struct Answer {
    pub body: Recommendations,
    pub cache: CacheStatus,
}

/// Where a request's scores come from.
enum Source {
    /// Already computed: the fallback's, or the cache's (hit, or a miss just inserted).
    Shared(Arc<[f32]>, CacheStatus),
    /// To be computed for this user row.
    Fresh(usize),
}

impl Recommender {
    /// Wraps a loaded model; the score cache holds at most `cache_bytes` of scores.
    pub fn new(model: Arc<Model>, cache_bytes: u64) -> Self {
        let scores = Cache::builder()
            .weigher(|_key: &(Arc<str>, String), value: &Arc<[f32]>| {
                // Weights are u32: count KiB so a 10⁶-item catalogue still fits.
                u32::try_from(value.len() * 4 / 1024 + 1).unwrap_or(u32::MAX)
            })
            .max_capacity(cache_bytes / 1024)
            .build();
        Recommender {
            model,
            scores,
            stream_test_knobs: false,
        }
    }

    /// Accepts (`true`) or refuses the streaming test knobs in requests (refused by default).
    pub fn with_stream_test_knobs(mut self, enabled: bool) -> Self {
        self.stream_test_knobs = enabled;
        self
    }

    /// The served model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs the pipeline on one request.
    pub fn invoke(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Result<Answer, InvocationError> {
        let model = &*self.model;
        let (inv, context, user) = self.prepare(content_type, body, request_id)?;
        // score (or cache), then rank and assemble over those scores wherever they live
        let rng = &mut ChaCha8Rng::seed_from_u64(context.seed);
        let (body, cache) = self.with_scores(user, &inv.user_id, inv.policy, |scores| {
            // rank
            let ranking = policy::rank(inv.policy, scores, inv.k, rng)?;
            // assemble
            Ok::<_, InvocationError>(response::assemble(model, &context, scores, ranking))
        });
        Ok(Answer { body: body?, cache })
    }

    /// Runs the pipeline up to the first position of a streamed answer: every client error is
    /// found here, before anything is sent.
    pub fn start_stream(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Result<Stream, InvocationError> {
        let (inv, context, user) = self.prepare(content_type, body, request_id)?;
        // score (or cache), into scores the stream owns
        let (scores, cache) = match self.source(user, &inv.user_id, inv.policy) {
            Source::Shared(scores, cache) => (Scores::Shared(scores), cache),
            Source::Fresh(row) => {
                let mut own = Vec::new();
                self.model.score_user_into(row, &mut own);
                (Scores::Owned(own), CacheStatus::NotUsed)
            }
        };
        // rank: the policy's up-front work; positions are drawn line by line
        let mut rng = ChaCha8Rng::seed_from_u64(context.seed);
        let draws = Draws::start(inv.policy, scores, inv.k, &mut rng)?;
        Ok(Stream {
            model: Arc::clone(&self.model),
            context,
            knobs: inv.knobs,
            draws,
            rng,
            items: Vec::with_capacity(inv.k),
            finished: false,
            cache,
        })
    }

    /// The stages every answer starts with: check content type → parse → draw seed → resolve user.
    fn prepare(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Result<(Invocation, Context, UserRef), InvocationError> {
        let model = &*self.model;
        // check content type
        request::check_content_type(content_type)?;
        // parse
        let inv = request::parse(body, model.n_items(), self.stream_test_knobs)?;
        // draw seed: echoed so the ranking can be replayed; one RNG per request, never shared
        let seed = inv.seed.unwrap_or_else(|| rand::rng().random());
        // resolve user
        let user = model.resolve(&inv.user_id);
        let context = Context {
            user_id: inv.user_id.clone(),
            request_id: request_id.to_owned(),
            policy: inv.policy,
            seed,
            fallback: user == UserRef::Unknown,
        };
        Ok((inv, context, user))
    }

    /// Runs `f` over the scores of every item for this user, wherever they live; fresh scores
    /// go into this thread's scratch buffer (reused across requests, so scoring allocates nothing
    /// n-sized).
    fn with_scores<T>(
        &self,
        user: UserRef,
        user_id: &str,
        policy: Policy,
        f: impl FnOnce(&[f32]) -> T,
    ) -> (T, CacheStatus) {
        match self.source(user, user_id, policy) {
            Source::Shared(scores, cache) => (f(&scores), cache),
            Source::Fresh(row) => (
                with_scratch(|buf| {
                    self.model.score_user_into(row, buf);
                    f(buf)
                }),
                CacheStatus::NotUsed,
            ),
        }
    }

    /// The fallback for unknown users, the cache for the cached policy (scoring and inserting on
    /// a miss), else a fresh O(n·d) pass to come.
    fn source(&self, user: UserRef, user_id: &str, policy: Policy) -> Source {
        let UserRef::Known(row) = user else {
            return Source::Shared(self.model.fallback_scores(), CacheStatus::NotUsed);
        };
        if !matches!(policy, Policy::PlackettLuceCached { .. }) {
            return Source::Fresh(row);
        }
        let key = (Arc::clone(&self.model.version), user_id.to_owned());
        if let Some(hit) = self.scores.get(&key) {
            return Source::Shared(hit, CacheStatus::Hit);
        }
        let fresh: Arc<[f32]> = with_scratch(|buf| {
            self.model.score_user_into(row, buf);
            Arc::from(&buf[..])
        });
        self.scores.insert(key, Arc::clone(&fresh));
        Source::Shared(fresh, CacheStatus::Miss)
    }
}

/// The scores a streamed answer ranks: shared with the cache or the fallback, or its own.
pub enum Scores {
    Shared(Arc<[f32]>),
    Owned(Vec<f32>),
}

impl AsRef<[f32]> for Scores {
    fn as_ref(&self) -> &[f32] {
        match self {
            Scores::Shared(s) => s,
            Scores::Owned(s) => s,
        }
    }
}

/// A streamed answer in progress: one JSON line per ranked position, then the summary line.
///
/// Memory while open: the scores (4 bytes per item, unless shared with the cache or the
/// fallback), a PL policy's weight tree (16 bytes per item, rounded up to a power of two), and
/// the positions sent so far.
pub struct Stream {
    model: Arc<Model>,
    context: Context,
    knobs: request::StreamKnobs,
    draws: Draws<Scores>,
    rng: ChaCha8Rng,
    /// Item indices sent so far, for the log.
    items: Vec<usize>,
    finished: bool,
    /// Whether the scores came from the cache.
    pub cache: CacheStatus,
}

impl Stream {
    /// The next line, `\n`-terminated: the next ranked position while any are left
    /// (`"done": false`), then the summary (`"done": true`), then `None`.
    pub fn next_line(&mut self) -> Option<serde_json::Result<Vec<u8>>> {
        if self.finished {
            return None;
        }
        let line = match self.draws.next_slot(&mut self.rng) {
            Some(slot) => {
                self.items.push(slot.index);
                let position = self.items.len();
                let item =
                    response::recommendation(&self.model, self.draws.scores(), position, &slot);
                response::line(&item, false)
            }
            None => {
                self.finished = true;
                response::line(&self.summary(), true)
            }
        };
        Some(line)
    }

    /// The whole-list fields for the positions sent so far (the whole list's once finished).
    pub fn summary(&self) -> Summary {
        response::summary(
            &self.model,
            &self.context,
            self.draws.scores().len(),
            self.draws.log_normalizer(),
            self.draws.log_propensity(),
            self.items.len(),
        )
    }

    /// The ids of the items sent so far.
    pub fn item_ids(&self) -> Vec<&str> {
        self.items.iter().map(|&i| self.model.item_id(i)).collect()
    }

    /// The request's streaming test knobs.
    pub fn knobs(&self) -> &request::StreamKnobs {
        &self.knobs
    }

    /// Whether the summary line was produced.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

thread_local! {
    /// One score buffer per worker thread (n f32), reused by every request on it.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's score buffer (a fresh one if it is somehow in use: never a panic).
fn with_scratch<T>(f: impl FnOnce(&mut Vec<f32>) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{self, SampleSpec};

    fn recommender() -> (Recommender, tempfile::TempDir) {
        recommender_as(crate::model::Precision::F32)
    }

    fn recommender_as(precision: crate::model::Precision) -> (Recommender, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        sample::generate(SampleSpec {
            users: 10,
            items: 40,
            dim: 16,
            seed: 9,
        })
        .and_then(|a| a.write_as(dir.path(), precision))
        .expect("sample");
        let model = Model::load(dir.path()).expect("load");
        (Recommender::new(Arc::new(model), DEFAULT_CACHE_BYTES), dir)
    }

    fn call(r: &Recommender, body: &str) -> Result<Answer, InvocationError> {
        r.invoke(Some("application/json"), body.as_bytes(), "req-1")
    }

    #[test]
    fn answers_carry_raw_scores_and_consistent_logging_fields() {
        let (r, _dir) = recommender();
        let UserRef::Known(row) = r.model().resolve("U:3") else {
            panic!("U:3 is known")
        };
        let raw = r.model().score_user(row);
        let a = call(
            &r,
            r#"{"user_id":"U:3","k":5,"inference_type":"stochastic_plackett_luce","temperature":0.7,"seed":"99"}"#,
        )
        .expect("ok")
        .body;
        assert_eq!(
            (
                a.summary.k,
                a.summary.n_candidates,
                a.summary.request_id.as_str()
            ),
            (5, 40, "req-1")
        );
        assert_eq!(a.summary.rng.seed, "99");
        assert_eq!(a.summary.params.temperature, Some(0.7));
        assert_eq!(a.summary.fallback, None);
        let indices: Vec<usize> = a
            .recommendations
            .iter()
            .map(|x| {
                let n: usize = x.item_id[2..].parse().expect("M:n");
                n - 1
            })
            .collect();
        for (j, rec) in a.recommendations.iter().enumerate() {
            assert_eq!(rec.position, j + 1);
            assert_eq!(rec.score, f64::from(raw[indices[j]]));
        }
        let expected = policy::plackett_luce_log_probability(&raw, 0.7, &indices);
        assert!((a.summary.log_propensity - expected).abs() < 1e-12);
    }

    #[test]
    fn reduced_precision_answers_log_the_propensities_of_the_scores_they_serve() {
        use crate::model::Precision;
        for precision in [Precision::F16, Precision::Int8] {
            let (r, _dir) = recommender_as(precision);
            let UserRef::Known(row) = r.model().resolve("U:4") else {
                panic!("U:4 is known")
            };
            // What this model scores: the stored (rounded) embeddings, not the f32 originals.
            let served_scores = r.model().score_user(row);
            for policy in &Policy::NAMES[1..4] {
                let body = format!(
                    r#"{{"user_id":"U:4","k":6,"inference_type":"{policy}","temperature":0.5,"seed":7}}"#
                );
                let a = call(&r, &body).expect("ok").body;
                let indices: Vec<usize> = a
                    .recommendations
                    .iter()
                    .map(|x| x.item_id[2..].parse::<usize>().expect("M:n") - 1)
                    .collect();
                for (rec, &i) in a.recommendations.iter().zip(&indices) {
                    assert_eq!(rec.score, f64::from(served_scores[i]), "{precision:?}");
                }
                let expected = policy::plackett_luce_log_probability(&served_scores, 0.5, &indices);
                assert!(
                    (a.summary.log_propensity - expected).abs() < 1e-12,
                    "{precision:?} {policy}: {} vs {expected}",
                    a.summary.log_propensity
                );
            }
        }
    }

    #[test]
    fn unknown_users_get_the_popularity_fallback() {
        let (r, _dir) = recommender();
        for policy in Policy::NAMES {
            let body = format!(r#"{{"user_id":"U:404","k":3,"inference_type":"{policy}"}}"#);
            let a = call(&r, &body).expect("fallback, not an error").body;
            assert_eq!(a.summary.fallback, Some("popularity"));
            assert_eq!(a.recommendations.len(), 3);
        }
        let a = call(&r, r#"{"user_id":"U:404","k":3}"#).expect("ok").body;
        let pop = r.model().fallback_scores();
        let best = policy::top_k_by_key(&pop, 3);
        let got: Vec<&str> = a
            .recommendations
            .iter()
            .map(|x| x.item_id.as_str())
            .collect();
        let want: Vec<&str> = best.iter().map(|&i| r.model().item_id(i)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_cached_policy_reuses_scores_and_samples_exact_pl() {
        let (r, _dir) = recommender();
        let body = r#"{"user_id":"U:5","k":4,"inference_type":"stochastic_plackett_luce_cached","seed":1234}"#;
        let first = call(&r, body).expect("ok");
        let second = call(&r, body).expect("ok");
        assert_eq!(first.cache, CacheStatus::Miss);
        assert_eq!(second.cache, CacheStatus::Hit);
        assert_eq!(first.body, second.body);
        // Same scores, same seed, same sampler: identical to sequential PL on fresh scores.
        let fresh = call(
            &r,
            r#"{"user_id":"U:5","k":4,"inference_type":"stochastic_plackett_luce","seed":1234}"#,
        )
        .expect("ok");
        assert_eq!(fresh.cache, CacheStatus::NotUsed);
        assert_eq!(first.body.recommendations, fresh.body.recommendations);
        assert_eq!(
            first.body.summary.log_propensity,
            fresh.body.summary.log_propensity
        );
    }

    #[test]
    fn absent_seeds_are_drawn_fresh_and_echoed() {
        let (r, _dir) = recommender();
        let seeds: std::collections::HashSet<String> = (0..20)
            .map(|_| {
                call(
                    &r,
                    r#"{"user_id":"U:1","inference_type":"stochastic_gumbel_softmax_trick"}"#,
                )
                .expect("ok")
                .body
                .summary
                .rng
                .seed
            })
            .collect();
        assert_eq!(seeds.len(), 20);
        // An echoed seed replays the same list.
        let seed = seeds.iter().next().cloned().unwrap_or_default();
        let body = format!(
            r#"{{"user_id":"U:1","inference_type":"stochastic_gumbel_softmax_trick","seed":"{seed}"}}"#
        );
        assert_eq!(
            call(&r, &body).expect("ok").body.recommendations,
            call(&r, &body).expect("ok").body.recommendations
        );
    }

    #[test]
    fn client_errors_name_their_field() {
        let (r, _dir) = recommender();
        let e = r
            .invoke(Some("text/plain"), br#"{"user_id":"U:1"}"#, "x")
            .err()
            .expect("bad content type");
        assert_eq!(e.field(), Some("content-type"));
        let e = call(&r, r#"{"user_id":"U:1","k":41}"#)
            .err()
            .expect("k too large");
        assert_eq!(e.field(), Some("k"));
        let e = call(
            &r,
            r#"{"user_id":"U:1","inference_type":"stochastic_plackett_luce","temperature":1e-320}"#,
        )
        .err()
        .expect("overflow");
        assert_eq!(e.field(), Some("temperature"));
        assert!(e.to_string().starts_with("temperature: "));
    }

    /// Every line a stream produces, in order.
    fn stream_lines(r: &Recommender, body: &str) -> Vec<u8> {
        let mut stream = r
            .start_stream(Some("application/json"), body.as_bytes(), "req-1")
            .expect("stream starts");
        let mut out = Vec::new();
        while let Some(line) = stream.next_line() {
            out.extend(line.expect("serializes"));
        }
        assert!(stream.is_finished());
        out
    }

    #[test]
    fn a_stream_is_the_buffered_answer_line_by_line() {
        let (r, _dir) = recommender();
        for policy in Policy::NAMES {
            for seed in 0..25 {
                for (user, k) in [("U:3", 5), ("U:404", 3), ("U:2", 40)] {
                    let body = format!(
                        r#"{{"user_id":"{user}","k":{k},"inference_type":"{policy}","seed":{seed},"temperature":0.6,"epsilon":0.4}}"#
                    );
                    let buffered = call(&r, &body).expect("ok").body;
                    let lines = response::lines(&buffered).expect("serializes");
                    assert_eq!(
                        String::from_utf8_lossy(&stream_lines(&r, &body)),
                        String::from_utf8_lossy(&lines),
                        "{body}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_stream_reports_its_errors_before_its_first_line() {
        let (r, _dir) = recommender();
        let start = |body: &str| {
            r.start_stream(Some("application/json"), body.as_bytes(), "x")
                .err()
                .and_then(|e| e.field())
        };
        assert_eq!(start(r#"{"user_id":"U:1","k":41}"#), Some("k"));
        assert_eq!(
            start(
                r#"{"user_id":"U:1","inference_type":"stochastic_gumbel_softmax_trick","temperature":1e-320}"#
            ),
            Some("temperature")
        );
        assert_eq!(
            start(r#"{"user_id":"U:1","line_delay_ms":5}"#),
            Some("line_delay_ms")
        );
        let r = r.with_stream_test_knobs(true);
        let stream = r
            .start_stream(None, br#"{"user_id":"U:1","line_delay_ms":5}"#, "x")
            .expect("knobs on");
        assert_eq!(
            stream.knobs().line_delay,
            std::time::Duration::from_millis(5)
        );
    }
}
