//! manager's HTTP routes, one module per resource.

pub mod health;
pub mod jwks;
pub mod keys;
pub mod openapi;
