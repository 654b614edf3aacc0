//! Signed preview URLs: `expires` (Unix seconds) and `sig`, the lower-case
//! hex HMAC-SHA256 of `{path}\n{expires}` under a secret every instance
//! shares (`QUIRE_SIGNING_SECRET`, or one generated once and kept in the
//! database). Checking compares in constant time (`hmac`'s `verify_slice`).

use chrono::Utc;
use entity::server_secrets;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use sha2::Sha256;

use crate::error::AppResult;

type HmacSha256 = Hmac<Sha256>;

/// The name of the generated secret in `server_secrets`.
const SECRET_NAME: &str = "file_url_signing";

/// The key that signs preview URLs.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

impl Signer {
    /// A signer over `secret`'s bytes.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    /// The configured secret, or the one kept in the database (made by
    /// the first instance that asks; every later one reads the same).
    pub async fn load<C: ConnectionTrait>(db: &C, configured: Option<&str>) -> AppResult<Self> {
        if let Some(secret) = configured.filter(|s| !s.is_empty()) {
            return Ok(Self::new(secret.as_bytes()));
        }
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        let row = server_secrets::ActiveModel {
            name: Set(SECRET_NAME.to_owned()),
            value: Set(hex::encode(fresh)),
            created_at: Set(Utc::now()),
        };
        server_secrets::Entity::insert(row)
            .on_conflict(
                OnConflict::column(server_secrets::Column::Name)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        let kept = server_secrets::Entity::find_by_id(SECRET_NAME.to_owned())
            .one(db)
            .await?
            .ok_or_else(|| crate::error::AppError::internal("the signing secret vanished"))?;
        Ok(Self::new(kept.value.as_bytes()))
    }

    /// The MAC of `path` and `expires` (HMAC takes keys of any length, so
    /// this is always `Some`).
    fn mac(&self, path: &str, expires: i64) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.secret).ok()?;
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        Some(mac)
    }

    /// The signature of `path` valid until `expires`.
    pub fn sign(&self, path: &str, expires: i64) -> String {
        self.mac(path, expires)
            .map(|mac| hex::encode(mac.finalize().into_bytes()))
            .unwrap_or_default()
    }

    /// Whether `sig` signs `path` until `expires` and `now` is before it.
    pub fn verify(&self, path: &str, expires: i64, sig: &str, now: i64) -> bool {
        if now >= expires {
            return false;
        }
        let (Ok(bytes), Some(mac)) = (hex::decode(sig), self.mac(path, expires)) else {
            return false;
        };
        mac.verify_slice(&bytes).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_path_and_expiry_only() {
        let s = Signer::new(b"secret");
        let sig = s.sign("/files/a/b.png", 100);
        assert!(s.verify("/files/a/b.png", 100, &sig, 99));
        assert!(!s.verify("/files/a/b.png", 100, &sig, 100), "expired");
        assert!(!s.verify("/files/a/c.png", 100, &sig, 1), "other path");
        assert!(!s.verify("/files/a/b.png", 101, &sig, 1), "other expiry");
        assert!(!s.verify("/files/a/b.png", 100, "zz", 1), "not hex");
        assert!(!Signer::new(b"other").verify("/files/a/b.png", 100, &sig, 1));
    }
}
