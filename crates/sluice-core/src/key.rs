//! Virtual keys: the bearer credentials applications use against the proxy.
//!
//! Only the SHA-256 hash of a key's secret is stored; the secret is shown once,
//! when it is made. The id and display prefix are derived from the secret, so
//! making a key needs no randomness beyond the secret's own bytes.

use crate::{name::check_ident, secret::hash_secret, ApplyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every virtual key secret starts with this.
pub const SECRET_PREFIX: &str = "sk-sluice-";
/// Bytes of randomness in a secret.
pub const SECRET_RANDOM_LEN: usize = 24;
/// Characters of the secret kept in clear for display (`sk-sluice-3fa2b1`).
pub const DISPLAY_PREFIX_LEN: usize = SECRET_PREFIX.len() + 6;

/// A virtual API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualKey {
    /// Stable id (`key_` + 16 hex digits of the secret's hash).
    pub id: String,
    /// Operator-given label.
    pub name: String,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    /// The first characters of the secret, for recognising it in a list.
    pub prefix: String,
    /// Routes this key may use; empty means every route.
    pub allowed_routes: Vec<String>,
    /// Refused from this instant on (milliseconds since the Unix epoch).
    pub expires_at_ms: Option<u64>,
    pub enabled: bool,
    /// Set when the key was revoked; a revoked key never works again.
    pub revoked_at_ms: Option<u64>,
    pub metadata: BTreeMap<String, String>,
    pub created_at_ms: u64,
    /// Set on the key the gateway made for one subject of a JWT issuer
    /// (see [`KeySubject`]): it has no secret, and its routes and quotas
    /// are its template's.
    pub subject: Option<Box<KeySubject>>,
}

/// Who a subject key stands for: the `subject` claim of tokens from
/// `issuer` (the name of a `[[auth.jwt]]` issuer in the node config),
/// given the routes and quotas of key `template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySubject {
    pub issuer: String,
    pub subject: String,
    /// The id of the (secret-holding) key whose routes and quota policies
    /// the subject key takes.
    pub template: String,
}

/// Longest subject claim a subject key is made for.
pub const MAX_SUBJECT_LEN: usize = 256;

impl KeySubject {
    /// The hash standing in for a secret: SHA-256 of the issuer and subject
    /// with a line feed before each, which no presented secret can contain
    /// (HTTP header values carry no line feed), so no secret hashes to it.
    pub fn hash(&self) -> [u8; 32] {
        hash_secret(&format!(
            "sluice-jwt-subject\n{}\n{}",
            self.issuer, self.subject
        ))
    }

    /// The id of the subject's key: stable, so every node (and every first
    /// request racing on several nodes) names the same key.
    pub fn key_id(&self) -> String {
        key_id(&self.hash())
    }

    fn validate(&self) -> Result<(), ApplyError> {
        check_ident("subject.issuer", &self.issuer)?;
        if self.subject.is_empty() || self.subject.len() > MAX_SUBJECT_LEN {
            return Err(ApplyError::invalid(
                "subject.subject",
                format!("must be 1-{MAX_SUBJECT_LEN} bytes"),
            ));
        }
        if self.subject.chars().any(char::is_control) {
            return Err(ApplyError::invalid(
                "subject.subject",
                "must not contain control characters",
            ));
        }
        Ok(())
    }
}

/// Why a key does not authorise a request right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Revoked,
    Disabled,
    Expired,
}

impl VirtualKey {
    /// A new, enabled key for `secret` (made by [`format_secret`]).
    pub fn new(name: String, secret: &str, created_at_ms: u64) -> Self {
        let hash = hash_secret(secret);
        VirtualKey {
            id: key_id(&hash),
            name,
            hash,
            prefix: secret.chars().take(DISPLAY_PREFIX_LEN).collect(),
            allowed_routes: Vec::new(),
            expires_at_ms: None,
            enabled: true,
            revoked_at_ms: None,
            metadata: BTreeMap::new(),
            created_at_ms,
            subject: None,
        }
    }

    /// The key of `subject`, with `template`'s routes, name and metadata.
    pub fn for_subject(subject: KeySubject, template: &VirtualKey, created_at_ms: u64) -> Self {
        let hash = subject.hash();
        VirtualKey {
            id: key_id(&hash),
            name: template.name.clone(),
            hash,
            prefix: String::new(),
            allowed_routes: template.allowed_routes.clone(),
            expires_at_ms: None,
            enabled: true,
            revoked_at_ms: None,
            metadata: template.metadata.clone(),
            created_at_ms,
            subject: Some(Box::new(subject)),
        }
    }

    /// Whether the key authorises requests at `now_ms`.
    pub fn check_usable(&self, now_ms: u64) -> Result<(), KeyRefusal> {
        if self.revoked_at_ms.is_some() {
            Err(KeyRefusal::Revoked)
        } else if !self.enabled {
            Err(KeyRefusal::Disabled)
        } else if self.expires_at_ms.is_some_and(|at| now_ms >= at) {
            Err(KeyRefusal::Expired)
        } else {
            Ok(())
        }
    }

    /// Whether the key may use the route named `route`.
    pub fn allows_route(&self, route: &str) -> bool {
        self.allowed_routes.is_empty() || self.allowed_routes.iter().any(|r| r == route)
    }

    /// Checks the fields that do not depend on the rest of the state.
    pub fn validate(&self, now_ms: u64) -> Result<(), ApplyError> {
        check_ident("name", &self.name)?;
        if self.id != key_id(&self.hash) {
            return Err(ApplyError::invalid("id", "does not match the key's hash"));
        }
        if let Some(subject) = &self.subject {
            subject.validate()?;
            if self.hash != subject.hash() || !self.prefix.is_empty() {
                return Err(ApplyError::invalid(
                    "subject",
                    "does not match the key's hash and prefix",
                ));
            }
        } else if !self.prefix.starts_with(SECRET_PREFIX) || self.prefix.len() != DISPLAY_PREFIX_LEN
        {
            return Err(ApplyError::invalid(
                "prefix",
                "is not a virtual key display prefix",
            ));
        }
        if self.allowed_routes.len() > 256 {
            return Err(ApplyError::invalid("allowed_routes", "at most 256 routes"));
        }
        if let Some(at) = self.expires_at_ms {
            if at <= now_ms {
                return Err(ApplyError::invalid("expires_at", "is not in the future"));
            }
        }
        if self.metadata.len() > 64 {
            return Err(ApplyError::invalid("metadata", "at most 64 entries"));
        }
        for (k, v) in &self.metadata {
            if k.is_empty() || k.len() > 128 || v.len() > 1024 {
                return Err(ApplyError::invalid(
                    format!("metadata.{k}"),
                    "keys must be 1-128 bytes and values at most 1024 bytes",
                ));
            }
        }
        Ok(())
    }
}

/// The id of the key whose secret hashes to `hash`.
pub fn key_id(hash: &[u8; 32]) -> String {
    format!("key_{}", hex::encode(&hash[..8]))
}

/// Whether `text` has the shape [`key_id`] gives: `key_` and 16 lower-case
/// hex digits.
pub fn is_key_id(text: &str) -> bool {
    text.strip_prefix("key_").is_some_and(|hex| {
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Formats a new secret from random bytes the caller drew.
pub fn format_secret(random: &[u8; SECRET_RANDOM_LEN]) -> String {
    format!("{SECRET_PREFIX}{}", hex::encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_and_prefix_come_from_the_secret() {
        let secret = format_secret(&[0xab; SECRET_RANDOM_LEN]);
        let key = VirtualKey::new("ci".into(), &secret, 5);
        assert_eq!(key.prefix, "sk-sluice-ababab");
        assert_eq!(key.id, key_id(&hash_secret(&secret)));
        assert!(is_key_id(&key.id));
        assert!(!is_key_id("key_0123456789ABCDEF"));
        assert!(!is_key_id("key_0123"));
        assert!(key.validate(5).is_ok());
        assert!(!format!("{key:?}").contains(&secret));
    }

    #[test]
    fn usability_follows_revocation_enablement_and_expiry() {
        let mut key = VirtualKey::new("ci".into(), &format_secret(&[1; SECRET_RANDOM_LEN]), 0);
        assert_eq!(key.check_usable(10), Ok(()));
        key.expires_at_ms = Some(10);
        assert_eq!(key.check_usable(9), Ok(()));
        assert_eq!(key.check_usable(10), Err(KeyRefusal::Expired));
        key.enabled = false;
        assert_eq!(key.check_usable(0), Err(KeyRefusal::Disabled));
        key.revoked_at_ms = Some(1);
        assert_eq!(key.check_usable(0), Err(KeyRefusal::Revoked));
    }

    #[test]
    fn a_subject_key_is_named_by_its_issuer_and_subject_alone() {
        let template = VirtualKey::new("team-a".into(), &format_secret(&[2; SECRET_RANDOM_LEN]), 0);
        let subject = |issuer: &str, sub: &str| KeySubject {
            issuer: issuer.into(),
            subject: sub.into(),
            template: template.id.clone(),
        };
        let key = VirtualKey::for_subject(subject("corp", "alice"), &template, 7);
        assert!(key.validate(7).is_ok());
        assert_eq!(key.name, "team-a");
        assert_eq!(key.id, subject("corp", "alice").key_id());
        // Another template, the same subject: the same key.
        let other = KeySubject {
            template: "key_0".into(),
            ..subject("corp", "alice")
        };
        assert_eq!(other.key_id(), key.id);
        assert_ne!(subject("corp", "bob").key_id(), key.id);
        assert_ne!(subject("corp2", "alice").key_id(), key.id);
        // A subject key forged with a secret's hash is refused.
        let mut forged = key.clone();
        forged.hash = template.hash;
        assert!(forged.validate(7).is_err());
        let mut bad = key.clone();
        bad.subject.as_mut().unwrap().subject = "a\nb".into();
        assert!(bad.validate(7).is_err());
    }

    #[test]
    fn expiry_in_the_past_is_invalid() {
        let mut key = VirtualKey::new("ci".into(), &format_secret(&[1; SECRET_RANDOM_LEN]), 0);
        key.expires_at_ms = Some(100);
        assert!(
            matches!(key.validate(100), Err(ApplyError::Invalid { field, .. }) if field == "expires_at")
        );
    }
}
