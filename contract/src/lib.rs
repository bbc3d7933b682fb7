//! The contract between manager and vault, and with their clients: access-token claims,
//! the JWE envelope a secret is sealed in, request/response bodies, the JSON error body,
//! JWKs and the TLS configuration both sides build from PEM files.
//!
//! Keeping these in one crate stops the two services from drifting apart.

pub mod claims;
pub mod envelope;
pub mod jwk;
pub mod tls;
pub mod wire;
