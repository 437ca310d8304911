//! Recommender (being written).
pub mod policy;
