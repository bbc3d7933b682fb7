//! What manager and vault (and their admin tools) share, so that both behave the same at
//! their edges: configuration layered from file, environment and command line; opening the
//! service's PKCS#11 token and its rotated keys; the rustls configurations; a JSON extractor
//! whose rejections answer in the contract's error shape; health answers, metrics and rate
//! limits; HTTPS serving and graceful shutdown; one-line logging; the one wall clock.
//!
//! Nothing here knows what a secret is: sealing, signing claims and storage belong to the
//! services.

pub mod admin;
pub mod clock;
pub mod config;
pub mod connections;
pub mod health;
pub mod json;
pub mod keyring;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod rate_limit;
pub mod report;
pub mod serve;
pub mod tls;
pub mod token;
