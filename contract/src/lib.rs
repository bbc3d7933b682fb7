//! The contract between manager and vault, and with their clients: access-token claims and
//! algorithm, the JWE envelope a secret is sealed in and the holder's share it needs, request/response bodies, the JSON error
//! body and its codes, and JWKs.
//!
//! Keeping these in one crate stops the two services from drifting apart.

pub mod claims;
pub mod envelope;
pub mod error_code;
pub mod jwk;
pub mod share;
pub mod wire;
