//! Secrets at rest and in logs.
//!
//! Provider credentials are sealed with ChaCha20-Poly1305 under the cluster's
//! data key before they are proposed, so the Raft log, snapshots and the wire
//! only ever carry ciphertext. The data key lives in a file that `sluice init`
//! makes and every node reads; it is never replicated. The provider's name is
//! the associated data, so a sealed secret cannot be moved to another provider.
//!
//! This module draws no randomness itself: the caller hands in the nonce.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Length of a data key in bytes.
pub const DATA_KEY_LEN: usize = 32;
/// Length of an AEAD nonce in bytes.
pub const NONCE_LEN: usize = 12;

/// The cluster's data-encryption key.
#[derive(Clone)]
pub struct DataKey {
    key: [u8; DATA_KEY_LEN],
}

/// A secret sealed under a [`DataKey`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Which data key sealed it (first 8 bytes of SHA-256 of the key), so a node
    /// with the wrong key file says so instead of failing obscurely.
    pub key_id: [u8; 8],
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// Why a data key could not be read or a secret not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("data key must be {DATA_KEY_LEN} bytes written as {} hex digits", DATA_KEY_LEN * 2)]
    BadKeyFormat,
    #[error("secret was sealed with data key {sealed_with}, this node has data key {have}")]
    WrongKey { sealed_with: String, have: String },
    #[error("sealed secret failed authentication (corrupt, or moved from another provider)")]
    Tampered,
}

impl DataKey {
    pub fn from_bytes(key: [u8; DATA_KEY_LEN]) -> Self {
        DataKey { key }
    }

    /// Parses the hex form written to the data key file (surrounding
    /// whitespace allowed).
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SecretError::BadKeyFormat)?;
        let key: [u8; DATA_KEY_LEN] = bytes.try_into().map_err(|_| SecretError::BadKeyFormat)?;
        Ok(DataKey { key })
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.key)
    }

    /// A short public fingerprint of the key.
    pub fn id(&self) -> [u8; 8] {
        let digest = Sha256::digest(self.key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        id
    }

    fn aead(&self) -> LessSafeKey {
        // CHACHA20_POLY1305 takes exactly DATA_KEY_LEN bytes, so this cannot fail.
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.key).expect("32-byte key"))
    }

    /// Seals `plaintext`, binding it to `context` (the provider name).
    /// `nonce` must never repeat under one key: pass fresh random bytes.
    pub fn seal(&self, context: &str, plaintext: &str, nonce: [u8; NONCE_LEN]) -> SealedSecret {
        let mut buf = plaintext.as_bytes().to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .expect("chacha20poly1305 sealing of an in-memory buffer cannot fail");
        SealedSecret {
            key_id: self.id(),
            nonce,
            ciphertext: buf,
        }
    }

    /// Opens a secret sealed by [`DataKey::seal`] with the same `context`.
    pub fn open(
        &self,
        context: &str,
        sealed: &SealedSecret,
    ) -> Result<Redacted<String>, SecretError> {
        if sealed.key_id != self.id() {
            return Err(SecretError::WrongKey {
                sealed_with: hex::encode(sealed.key_id),
                have: hex::encode(self.id()),
            });
        }
        let mut buf = sealed.ciphertext.clone();
        let plain = self
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Tampered)?;
        String::from_utf8(plain.to_vec())
            .map(Redacted)
            .map_err(|_| SecretError::Tampered)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({})", hex::encode(self.id()))
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedSecret(key {}, {} bytes)",
            hex::encode(self.key_id),
            self.ciphertext.len()
        )
    }
}

/// A value that must never be printed: `Debug` and `Display` show `*****`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(pub T);

impl<T> Redacted<T> {
    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// SHA-256 of a bearer secret (virtual key or admin token), as stored.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    sha256(secret.as_bytes())
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> DataKey {
        DataKey::from_bytes([b; DATA_KEY_LEN])
    }

    #[test]
    fn seal_open_round_trip_and_ciphertext_is_not_clear() {
        let sealed = key(1).seal("openai", "sk-live-123", [7; NONCE_LEN]);
        assert!(!sealed
            .ciphertext
            .windows(b"sk-live".len())
            .any(|w| w == b"sk-live"));
        assert_eq!(
            key(1).open("openai", &sealed).unwrap().expose(),
            "sk-live-123"
        );
    }

    #[test]
    fn wrong_key_and_wrong_context_are_refused() {
        let sealed = key(1).seal("openai", "secret", [0; NONCE_LEN]);
        assert!(matches!(
            key(2).open("openai", &sealed),
            Err(SecretError::WrongKey { .. })
        ));
        assert_eq!(
            key(1).open("anthropic", &sealed),
            Err(SecretError::Tampered)
        );
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert_eq!(key(1).open("openai", &flipped), Err(SecretError::Tampered));
    }

    #[test]
    fn hex_form_round_trips_and_rejects_bad_input() {
        let k = key(9);
        assert_eq!(
            DataKey::from_hex(&format!("{}\n", k.to_hex()))
                .unwrap()
                .id(),
            k.id()
        );
        assert_eq!(
            DataKey::from_hex("abcd").unwrap_err(),
            SecretError::BadKeyFormat
        );
        assert_eq!(
            DataKey::from_hex("zz").unwrap_err(),
            SecretError::BadKeyFormat
        );
    }

    #[test]
    fn redacted_never_prints() {
        let r = Redacted("sk-123".to_string());
        assert_eq!(format!("{r:?} {r}"), "***** *****");
        assert!(!format!("{:?}", key(3)).contains(&key(3).to_hex()));
    }
}
