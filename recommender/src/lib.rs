//! Movie-recommendation model server honouring the SageMaker bring-your-own-container contract,
//! with five inference policies that log what off-policy evaluation needs.
//!
//! # Layout
//! - [`model`]: artifact loading and validation (safetensors + JSON sidecars), scoring.
//! - [`request`]: invocation input — content type, JSON, validation with field-naming errors.
//! - [`policy`]: the five ranking policies and their propensities (pure maths, seeded RNG).
//! - [`response`]: the output JSON with the logging fields for off-policy evaluation.
//! - [`recommend`]: the pipeline, one line per stage, and the per-user score cache.
//! - [`server`]: HTTP adapter — `/ping`, `/invocations`, the SageMaker Runtime paths and their
//!   `ModelError` wrapping; `run(listener, recommender, shutdown)`.
//! - [`streaming`]: HTTP bodies of streamed answers — JSON Lines (chunked) and the AWS event
//!   stream of `InvokeEndpointWithResponseStream`; the streaming test knobs.
//! - [`sample`]: the artifact writer and the deterministic synthetic model.
//! - [`healthcheck`]: the Docker health probe without curl.
//! - [`simd`]: the hot loops (scoring in f32/f16/int8, PL weights, top-k), dispatched at run time
//!   to the CPU's vector instructions.

pub mod healthcheck;
pub mod model;
pub mod policy;
pub mod recommend;
pub mod request;
pub mod response;
pub mod sample;
pub mod server;
pub mod simd;
pub mod streaming;
