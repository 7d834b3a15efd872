//! Parsing a JSON body so that a bad one is reported with the field at fault
//! (`messages[1].content`), ready to become an API error's `param`.

use serde::de::DeserializeOwned;
use thiserror::Error;

/// A request or response body that is not the JSON its API expects.
#[derive(Debug, Error)]
#[error("{}: {source}", if path.is_empty() { "body" } else { path.as_str() })]
pub struct InvalidBody {
    /// The field at fault, empty when the body as a whole is (not JSON at all,
    /// or a field inside an enum whose variant could not be decided).
    pub path: String,
    pub source: serde_json::Error,
}

/// Parses `body` as `T`, naming the field at fault on failure.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, InvalidBody> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        InvalidBody {
            path: if path == "." { String::new() } else { path },
            source: error.into_inner(),
        }
    })?;
    deserializer.end().map_err(|source| InvalidBody {
        path: String::new(),
        source,
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::ChatRequest;

    #[test]
    fn wrong_type_names_the_field() {
        let error = parse::<ChatRequest>(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"}"#,
        )
        .unwrap_err();
        assert_eq!(error.path, "max_tokens");
    }

    #[test]
    fn missing_field_inside_a_message_names_the_message() {
        let error =
            parse::<ChatRequest>(br#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"tool","content":"x"}]}"#)
                .unwrap_err();
        assert!(error.path.starts_with("messages[1]"), "{}", error.path);
        assert!(error.to_string().contains("tool_call_id"), "{error}");
    }

    #[test]
    fn trailing_garbage_and_non_json_are_refused() {
        assert_eq!(parse::<ChatRequest>(b"not json").unwrap_err().path, "");
        let trailing = br#"{"model":"m","messages":[]} x"#;
        assert!(parse::<ChatRequest>(trailing).is_err());
    }
}
