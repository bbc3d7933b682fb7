//! The end-to-end tests, one binary (one link of the whole stack): the real `manager` and
//! `vault` binaries against real SoftHSM2 tokens over real TLS, one module per capability.

mod access_tokens;
mod audit_checkpoints;
mod bad_input;
mod durability;
mod group_commit;
mod hostile_traffic;
mod isolation;
mod lifecycle;
mod log_hygiene;
mod memory_scan;
mod planted_keys;
mod rate_limit;
mod replicas;
mod rotation;
mod split_trust;
mod startup;
mod storage;
mod tls_keys;
mod token_connections;
mod transport;
mod workflow;
mod wrapping_rotation;
