//! vault's HTTP routes, one module per resource, and who may call them.

pub mod access;
pub mod health;
pub mod internal;
pub mod openapi;
pub mod public;
