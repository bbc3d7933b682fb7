//! Plumbing manager and vault share, so that both behave the same at their edges:
//! configuration layered from file, environment and command line; a JSON extractor
//! whose rejections answer in the contract's error shape; HTTPS serving that reports
//! the bound address; logging and graceful shutdown.
//!
//! Nothing here knows about keys, tokens or secrets.

pub mod config;
pub mod health;
pub mod json;
pub mod metrics;
pub mod rate_limit;
pub mod report;
pub mod serve;
pub mod token;
