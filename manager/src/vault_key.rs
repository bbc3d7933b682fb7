//! vault's public wrapping key, which manager seals to: from a file, or fetched from
//! vault's internal API (and re-fetched, so a wrapping-key rotation reaches manager).

use std::sync::{Arc, RwLock};

use contract::envelope::Recipient;

use crate::vault_client::{VaultClient, VaultError};

/// Where the key comes from.
pub enum VaultKey {
    /// A JWK file exported at provisioning; never changes while manager runs.
    File(Arc<Recipient>),
    /// `GET /internal/wrapping-key` on vault, cached between refreshes.
    Vault(RwLock<Option<Arc<Recipient>>>),
}

impl VaultKey {
    /// The key to seal to now; fetched from vault on first use.
    pub async fn recipient(&self, vault: &VaultClient) -> Result<Arc<Recipient>, VaultError> {
        match self {
            VaultKey::File(recipient) => Ok(recipient.clone()),
            VaultKey::Vault(cached) => {
                if let Some(recipient) = cached.read().unwrap_or_else(|p| p.into_inner()).clone() {
                    return Ok(recipient);
                }
                self.refresh(vault).await
            }
        }
    }

    /// Re-fetches the key from vault (no-op for a file).
    pub async fn refresh(&self, vault: &VaultClient) -> Result<Arc<Recipient>, VaultError> {
        match self {
            VaultKey::File(recipient) => Ok(recipient.clone()),
            VaultKey::Vault(cached) => {
                let jwk = vault.wrapping_key().await?;
                let recipient = Arc::new(Recipient::from_jwk(&jwk).map_err(VaultError::BadKey)?);
                *cached.write().unwrap_or_else(|p| p.into_inner()) = Some(recipient.clone());
                Ok(recipient)
            }
        }
    }
}
