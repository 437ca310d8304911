//! Configuration: `gateway.yaml` compiled into a typed model, with every error located.
mod api_key;
pub mod cache;
pub mod cache_key;
pub mod canary;
pub mod diag;
pub mod gateway;
pub mod models;
pub mod param;
pub mod resolve;
pub mod restart;
pub mod shadow;
pub mod stream;
pub mod telemetry;
pub mod templates;
pub mod yaml;

pub use diag::{Diagnostic, Diagnostics};
pub use gateway::GatewayConfig;
