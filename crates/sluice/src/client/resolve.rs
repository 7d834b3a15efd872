//! A key named on the command line by its id (`key_` + 16 hex digits) or
//! by its name, when exactly one key has that name: `sluice keys quota
//! team-a`. Nothing is guessed: a name two keys share is refused with their
//! ids, and an argument that matches nothing says what ids look like.

use super::error::UsageError;
use super::http::{v1_path as path, AdminClient, ApiFailure};
use reqwest::StatusCode;
use sluice_admin::keys::{KeyList, KeyView};

/// What a key id looks like, for messages when no key is at hand.
const ID_EXAMPLE: &str = "key_3fa2b1c4d5e6f708";

/// Whether `text` has the shape of a key id.
pub fn looks_like_key_id(text: &str) -> bool {
    sluice_core::key::is_key_id(text)
}

/// Every key, as `GET /admin/v1/keys` lists them.
pub async fn all_keys(client: &AdminClient) -> anyhow::Result<Vec<KeyView>> {
    let value = client.get(&path(&["keys"])).await?;
    let list: KeyList = serde_json::from_value(value)
        .map_err(|e| anyhow::anyhow!("the admin API listed keys in an unexpected shape: {e}"))?;
    Ok(list.keys)
}

/// The id of the key `given` names: `given` itself when it has an id's
/// shape (the API answers 404 if no key has it), else the one key with
/// that id or name.
pub async fn key_id(client: &AdminClient, given: &str) -> anyhow::Result<String> {
    if looks_like_key_id(given) {
        return Ok(given.to_owned());
    }
    pick(&all_keys(client).await?, given)
}

/// [`key_id`] over `keys`.
pub fn pick(keys: &[KeyView], given: &str) -> anyhow::Result<String> {
    if let Some(key) = keys.iter().find(|k| k.id == given) {
        return Ok(key.id.clone());
    }
    // A JWT subject's key carries its template's name: a name names the
    // key with a secret (subject keys are named by their id).
    let named: Vec<&KeyView> = keys
        .iter()
        .filter(|k| k.name == given && k.subject.is_none())
        .collect();
    match named.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => {
            let example = keys.first().map_or(ID_EXAMPLE, |k| k.id.as_str());
            Err(ApiFailure {
                status: StatusCode::NOT_FOUND,
                kind: "not_found".to_owned(),
                message: format!("no key has the id or name {given:?}"),
                field: None,
                hint: Some(format!(
                    "key ids look like {example}; `sluice keys list` shows every key's id and name"
                )),
            }
            .into())
        }
        several => {
            let ids: Vec<&str> = several.iter().map(|k| k.id.as_str()).collect();
            Err(UsageError::new(format!(
                "{} keys are named {given:?} ({}): give the id of the one you mean",
                ids.len(),
                ids.join(", ")
            ))
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_admin::keys::KeyStatus;

    fn key(id: &str, name: &str) -> KeyView {
        KeyView {
            id: id.into(),
            name: name.into(),
            prefix: "sk-sluice-0".into(),
            status: KeyStatus::Active,
            enabled: true,
            allowed_routes: Vec::new(),
            expires_at_ms: None,
            revoked_at_ms: None,
            metadata: Default::default(),
            created_at_ms: 0,
            limits: Vec::new(),
            reserve: None,
            subject: None,
        }
    }

    #[test]
    fn a_key_is_found_by_id_or_unique_name_and_nothing_is_guessed() {
        let keys = [
            key("key_0000000000000001", "team-a"),
            key("key_0000000000000002", "ci"),
            key("key_0000000000000003", "ci"),
        ];
        assert_eq!(pick(&keys, "team-a").unwrap(), "key_0000000000000001");
        // A subject key of team-a's does not make the name ambiguous.
        let mut with_subject = keys.to_vec();
        with_subject.push(KeyView {
            subject: Some(sluice_admin::keys::SubjectView {
                issuer: "corp".into(),
                subject: "alice".into(),
                template: "key_0000000000000001".into(),
            }),
            ..key("key_0000000000000009", "team-a")
        });
        assert_eq!(
            pick(&with_subject, "team-a").unwrap(),
            "key_0000000000000001"
        );
        assert_eq!(
            pick(&with_subject, "key_0000000000000009").unwrap(),
            "key_0000000000000009"
        );
        assert_eq!(
            pick(&keys, "key_0000000000000002").unwrap(),
            "key_0000000000000002"
        );
        let shared = pick(&keys, "ci").unwrap_err();
        assert!(shared.is::<UsageError>());
        let text = shared.to_string();
        assert!(
            text.contains("key_0000000000000002") && text.contains("key_0000000000000003"),
            "{text}"
        );
        let none = pick(&keys, "team-b").unwrap_err();
        let failure = none.downcast_ref::<ApiFailure>().expect("a not_found");
        assert_eq!(failure.kind, "not_found");
        assert!(
            failure
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("ids look like key_0000000000000001")),
            "{failure:?}"
        );
        assert!(pick(&[], "x")
            .unwrap_err()
            .downcast_ref::<ApiFailure>()
            .and_then(|f| f.hint.clone())
            .is_some_and(|h| h.contains(ID_EXAMPLE)));
    }

    #[test]
    fn ids_have_a_shape() {
        assert!(looks_like_key_id("key_3fa2b1c4d5e6f708"));
        assert!(!looks_like_key_id("key_3fa2"));
        assert!(!looks_like_key_id("team-a"));
        assert!(!looks_like_key_id("key_3fa2b1c4d5e6f70g"));
    }
}
