//! sagegate
pub mod config;
