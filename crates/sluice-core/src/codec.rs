//! The codec: serde + bincode 2 behind a one-byte format version.
//!
//! Every value Sluice stores (log entries, vote, snapshots) or sends between
//! nodes is encoded here, so a future format change is a migration keyed on the
//! version byte rather than a guess. A value whose version byte this build does
//! not know is refused with [`CodecError::UnknownVersion`], never misread.

use serde::{de::DeserializeOwned, Serialize};

/// The format version this build writes. Readers accept exactly the versions
/// listed in [`decode`].
///
/// * 1: providers, routes, keys, admin tokens.
/// * 2: the quota ledger in the state and the quota commands. No release
///   ever wrote version 1, so there is no migration: a data dir from a
///   version-1 build is refused as an unknown version, never misread.
/// * 3: each node's reported admissions in the ledger (the live view).
///   Version 2 was never released either; it is refused the same way.
/// * 4: usage roll-ups in the state and the usage commands, and the
///   `RestoreConfig` command (backups). Version 3 was never released; it is
///   refused the same way.
/// * 5: usage roll-ups kept per hour past a cutoff (`CompactUsage` carries
///   it, the state holds it). Version 4 was never released; it is refused
///   the same way.
/// * 6: standing quota reserves and what each node holds (wants, grants,
///   returns and each node's share carry them), each node's credit of a
///   contended bucket, return batches, a policy's
///   `reserve` mode; and idempotency keys: the `Idempotent` command, the
///   `Replayed` result, the `IdempotencyKeyReused` refusal and the records
///   of keyed writes in the state. Version 5 was never released; it is
///   refused the same way.
/// * 7: providers' sealed secret headers, `keep_secret_headers` in
///   `UpdateProvider`, and each admin token's role. Version 6 was never
///   released; it is refused the same way.
/// * 8: the audit log: the `Audited`, `CompactAudit` and
///   `NoteClusterChange` commands, the `AuditCompacted` and `Noted`
///   results and the log in the state; `CreateKeyWithQuota`. Version 7 was
///   never released; it is refused the same way.
/// * 9: the `azure_openai`, `gemini` and `vertex` provider kinds and a
///   provider's Azure settings.
///   Version 8 was never released; it is refused the same way.
/// * 10: the `bedrock` provider kind and a provider's Bedrock settings.
///   Version 9 was never released; it is refused the same way.
/// * 11: JWT subject keys: a key's `subject` and the `RegisterSubject`
///   command. Version 10 was never released; it is refused the same way.
pub const FORMAT_VERSION: u8 = 11;

/// Why bytes could not be turned back into a value.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty input: no format version byte")]
    Empty,
    #[error("unknown format version {found} (this build reads version {FORMAT_VERSION})")]
    UnknownVersion { found: u8 },
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("{trailing} trailing bytes after the value")]
    Trailing { trailing: usize },
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 256 * 1024 * 1024 }>()
}

/// Encodes `value` with the current format version in front.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by [`encode`]. The whole input must be consumed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion { found: version });
    }
    let (value, read) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if read != body.len() {
        return Err(CodecError::Trailing {
            trailing: body.len() - read,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_version_byte() {
        let bytes = encode(&("route", 7u64)).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back: (String, u64) = decode(&bytes).unwrap();
        assert_eq!(back, ("route".to_string(), 7));
    }

    #[test]
    fn refuses_unknown_version_and_garbage() {
        let mut bytes = encode(&42u64).unwrap();
        for other in [FORMAT_VERSION - 1, FORMAT_VERSION + 1] {
            bytes[0] = other;
            assert!(matches!(
                decode::<u64>(&bytes),
                Err(CodecError::UnknownVersion { found }) if found == other
            ));
        }
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
        assert!(decode::<String>(&[FORMAT_VERSION, 0xff, 0xff]).is_err());
        let mut long = encode(&1u8).unwrap();
        long.push(0);
        assert!(matches!(
            decode::<u8>(&long),
            Err(CodecError::Trailing { trailing: 1 })
        ));
    }
}
