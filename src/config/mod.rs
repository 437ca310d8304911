//! Configuration.
pub mod diag;
pub mod yaml;
