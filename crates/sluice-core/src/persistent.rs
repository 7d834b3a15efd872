//! serde for the state's persistent maps (`imbl::OrdMap`): encoded exactly
//! as ordered maps, and decoded through a `BTreeMap`.
//!
//! imbl's own decoder sizes a buffer from the map's length prefix before
//! reading a single entry. That prefix comes from disk or the network: a
//! corrupt snapshot (found by the `state_decode` fuzz target) made it ask
//! for half a terabyte and abort the process. `BTreeMap` grows as entries
//! actually arrive, so a lying prefix ends in a decode error instead.

use imbl::OrdMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// `#[serde(with = "crate::persistent::ord_map")]`.
pub(crate) mod ord_map {
    use super::*;

    pub(crate) fn serialize<S, K, V>(map: &OrdMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        K: Serialize + Ord + Clone,
        V: Serialize + Clone,
    {
        s.collect_map(map.iter())
    }

    pub(crate) fn deserialize<'de, D, K, V>(d: D) -> Result<OrdMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord + Clone,
        V: Deserialize<'de> + Clone,
    {
        Ok(BTreeMap::<K, V>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Persistent {
        #[serde(with = "ord_map")]
        map: OrdMap<String, u64>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain {
        map: BTreeMap<String, u64>,
    }

    #[test]
    fn encodes_as_an_ordered_map_and_back() {
        let plain = Plain {
            map: (0..50u64)
                .map(|i| (format!("k{}", i * 7 % 50), i))
                .collect(),
        };
        let persistent = Persistent {
            map: plain.map.clone().into_iter().collect(),
        };
        let bytes = codec::encode(&persistent).unwrap();
        assert_eq!(bytes, codec::encode(&plain).unwrap());
        assert_eq!(codec::decode::<Persistent>(&bytes).unwrap(), persistent);
    }

    /// The `state_decode` fuzz target's crash: a map length prefix of about
    /// 2³⁶ entries in 11 bytes. Refused, not an allocation of that size.
    #[test]
    fn regression_a_huge_length_prefix_is_refused_not_allocated() {
        // (Found at format 4; the body's bytes after the current format's.)
        let data = [codec::FORMAT_VERSION, 252, 94, 167, 0, 167, 0, 0, 0, 0, 0];
        let refused = crate::State::decode(&data).expect_err("refused");
        assert!(
            !matches!(refused, codec::CodecError::UnknownVersion { .. }),
            "refused for its body, not its version: {refused}"
        );
        let mut lying = codec::encode(&Plain {
            map: BTreeMap::new(),
        })
        .unwrap();
        lying.truncate(1);
        // Format byte, then a varint length of 2^40 and no entries.
        lying.extend_from_slice(&[253, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(codec::decode::<Persistent>(&lying).is_err());
    }
}
