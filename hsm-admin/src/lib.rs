//! What `hsm-admin` does beyond the token layer: X.509 certificates and signing requests for
//! keys held in tokens, signed there (the dev CA's key lives in a token of its own).
//!
//! The `hsm-admin` binary provisions tokens for `softhsm-setup/setup.sh` and for operators
//! of a real HSM alike; this library keeps certificate issuing testable on its own.

pub mod certificates;
