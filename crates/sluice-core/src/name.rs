//! Shared rules for the names operators give things.

use crate::ApplyError;

/// Provider names, key names, admin token names: short, URL-safe identifiers.
pub(crate) fn check_ident(field: &str, value: &str) -> Result<(), ApplyError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApplyError::invalid(
            field,
            "must be 1-64 characters of letters, digits, '-', '_' or '.', starting with a letter or digit",
        ))
    }
}

/// Public model names (route names) as clients send them in `model`:
/// `gpt-4o`, `meta-llama/Llama-3-8b`, `claude:latest`.
pub(crate) fn check_model_name(field: &str, value: &str) -> Result<(), ApplyError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'@')
        })
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApplyError::invalid(
            field,
            "must be 1-128 characters of letters, digits and '-_.:/@', starting with a letter or digit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents() {
        assert!(check_ident("name", "openai-main").is_ok());
        assert!(check_ident("name", "").is_err());
        assert!(check_ident("name", "-x").is_err());
        assert!(check_ident("name", "a b").is_err());
        assert!(check_ident("name", &"a".repeat(65)).is_err());
    }

    #[test]
    fn model_names() {
        assert!(check_model_name("name", "meta-llama/Llama-3-8b").is_ok());
        assert!(check_model_name("name", "claude:latest").is_ok());
        assert!(check_model_name("name", "/x").is_err());
        assert!(check_model_name("name", "a\nb").is_err());
    }
}
