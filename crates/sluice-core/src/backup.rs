//! Backups: the operator's configuration, exported from one cluster and
//! restored into another (or the same one) through the Raft log.
//!
//! A [`ConfigSnapshot`] is what an operator configured and nothing the
//! cluster derives at run time: providers (credentials still sealed under the
//! data key), routes, virtual keys and replicated admin tokens (hashes only),
//! and the quota policies. The quota ledger's bucket levels and the leases
//! nodes hold are left out on purpose: a lease is only meaningful to the node
//! and the ledger that granted it, and a level is a moment in a refill that
//! is over by the time a backup is restored; restored policies start with
//! full buckets, as a newly set policy does.
//!
//! A [`Backup`] wraps the snapshot with where and when it was taken, and
//! [`Backup::to_bytes`] frames it as a file:
//!
//! ```text
//! "SLUICEBK" | file version (1 byte) | body length (u64 LE) | body | SHA-256 of all before
//! ```
//!
//! where the body is the [`crate::codec`] encoding (so it carries the state
//! format version too). [`Backup::from_bytes`] refuses a file that is not a
//! backup, is truncated, fails its checksum or has a version this build does
//! not read, each with its own [`BackupError`], before anything looks at the
//! body.

use crate::codec::{self, CodecError};
use crate::quota::{QuotaPolicy, Scope};
use crate::{AdminToken, Provider, Route, VirtualKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"SLUICEBK";
/// The framing version this build writes and reads.
pub const FILE_VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1 + 8;
const CHECKSUM_LEN: usize = 32;

/// Everything an operator configured, as restored by
/// [`crate::Command::RestoreConfig`]. Each list is in the state's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    pub providers: Vec<Provider>,
    pub routes: Vec<Route>,
    pub keys: Vec<VirtualKey>,
    pub admin_tokens: Vec<AdminToken>,
    pub quotas: Vec<(Scope, QuotaPolicy)>,
}

impl ConfigSnapshot {
    /// How many entities of each kind it holds.
    pub fn counts(&self) -> ConfigCounts {
        ConfigCounts {
            providers: self.providers.len() as u64,
            routes: self.routes.len() as u64,
            keys: self.keys.len() as u64,
            admin_tokens: self.admin_tokens.len() as u64,
            quotas: self.quotas.len() as u64,
        }
    }

    /// Ids of the data keys the provider secrets are sealed under, each
    /// once, in the order first seen.
    pub fn data_key_ids(&self) -> Vec<[u8; 8]> {
        let mut ids: Vec<[u8; 8]> = Vec::new();
        for provider in &self.providers {
            for secret in provider.sealed() {
                if !ids.contains(&secret.sealed.key_id) {
                    ids.push(secret.sealed.key_id);
                }
            }
        }
        ids
    }
}

/// The size of a [`ConfigSnapshot`], for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigCounts {
    pub providers: u64,
    pub routes: u64,
    pub keys: u64,
    pub admin_tokens: u64,
    pub quotas: u64,
}

impl ConfigCounts {
    /// Whether there is nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == ConfigCounts::default()
    }
}

impl std::fmt::Display for ConfigCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} providers, {} routes, {} keys, {} admin tokens, {} quota policies",
            self.providers, self.routes, self.keys, self.admin_tokens, self.quotas
        )
    }
}

/// A snapshot with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// The cluster it was taken from.
    pub cluster_id: String,
    /// The node that wrote it.
    pub node_id: u64,
    /// Wall-clock time of the export, milliseconds since the Unix epoch.
    pub exported_at_ms: u64,
    /// The Raft log index the snapshot reflects.
    pub applied_index: Option<u64>,
    /// Fingerprint of the data key of the cluster it was taken from.
    pub data_key_id: [u8; 8],
    pub config: ConfigSnapshot,
}

/// Why bytes are not a usable backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "not a Sluice backup (the file does not start with {:?})",
        String::from_utf8_lossy(MAGIC)
    )]
    NotABackup,
    #[error("backup file version {found} is not readable by this build (it reads version {FILE_VERSION})")]
    UnsupportedVersion { found: u8 },
    #[error("the file is truncated: {expected} bytes expected, {found} found")]
    Truncated { expected: u64, found: u64 },
    #[error("checksum mismatch: the file is corrupt")]
    Checksum,
    #[error("the backup's body cannot be read: {0}")]
    Body(#[from] CodecError),
}

impl Backup {
    /// The file bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BackupError> {
        let body = codec::encode(self)?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.push(FILE_VERSION);
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        Ok(out)
    }

    /// Reads a file written by [`Backup::to_bytes`], checking its framing,
    /// version and checksum before decoding the body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Backup, BackupError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(BackupError::NotABackup);
        }
        let truncated = |expected: u64| BackupError::Truncated {
            expected,
            found: bytes.len() as u64,
        };
        let Some(&version) = bytes.get(MAGIC.len()) else {
            return Err(truncated(HEADER_LEN as u64));
        };
        if version != FILE_VERSION {
            return Err(BackupError::UnsupportedVersion { found: version });
        }
        let Some(len) = bytes.get(MAGIC.len() + 1..HEADER_LEN) else {
            return Err(truncated(HEADER_LEN as u64));
        };
        let body_len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let expected = body_len.saturating_add((HEADER_LEN + CHECKSUM_LEN) as u64);
        if bytes.len() as u64 != expected {
            return Err(truncated(expected));
        }
        let (framed, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if Sha256::digest(framed).as_slice() != checksum {
            return Err(BackupError::Checksum);
        }
        Ok(codec::decode(&framed[HEADER_LEN..])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{format_secret, SECRET_RANDOM_LEN};
    use crate::{DataKey, ProviderKind, Timeouts};
    use proptest::prelude::*;

    fn backup() -> Backup {
        let key = DataKey::from_bytes([7; 32]);
        Backup {
            cluster_id: "c-1".into(),
            node_id: 2,
            exported_at_ms: 1_700_000_000_000,
            applied_index: Some(42),
            data_key_id: key.id(),
            config: ConfigSnapshot {
                providers: vec![Provider {
                    name: "openai".into(),
                    kind: ProviderKind::OpenAi,
                    base_url: "https://api.openai.com/v1".into(),
                    api_key: Some(key.seal("openai", "sk-upstream", [1; 12])),
                    headers: Default::default(),
                    secret_headers: Default::default(),
                    timeouts: Timeouts::default(),
                    azure: None,
                    bedrock: None,
                    created_at_ms: 1,
                    updated_at_ms: 2,
                }],
                keys: vec![VirtualKey::new(
                    "app".into(),
                    &format_secret(&[3; SECRET_RANDOM_LEN]),
                    5,
                )],
                ..Default::default()
            },
        }
    }

    #[test]
    fn round_trips_and_holds_no_clear_secret() {
        let backup = backup();
        let bytes = backup.to_bytes().unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(Backup::from_bytes(&bytes).unwrap(), backup);
        let needle = b"sk-upstream";
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        assert_eq!(backup.config.data_key_ids(), vec![backup.data_key_id]);
    }

    #[test]
    fn refuses_other_files_versions_truncation_and_corruption() {
        let bytes = backup().to_bytes().unwrap();
        assert!(matches!(
            Backup::from_bytes(b"{\"providers\": []}"),
            Err(BackupError::NotABackup)
        ));
        let mut other = bytes.clone();
        other[8] = 9;
        assert!(matches!(
            Backup::from_bytes(&other),
            Err(BackupError::UnsupportedVersion { found: 9 })
        ));
        assert!(matches!(
            Backup::from_bytes(&bytes[..bytes.len() - 1]),
            Err(BackupError::Truncated { .. })
        ));
        assert!(matches!(
            Backup::from_bytes(&bytes[..10]),
            Err(BackupError::Truncated { .. })
        ));
    }

    proptest! {
        /// Flipping any bit anywhere is caught, never read as another backup.
        #[test]
        fn any_flipped_bit_is_refused(at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut bytes = backup().to_bytes().unwrap();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(Backup::from_bytes(&bytes).is_err());
        }
    }
}
