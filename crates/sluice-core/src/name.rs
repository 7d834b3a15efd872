//! Shared rules for the names operators give things.

use crate::ApplyError;

/// Provider names, key names, admin token names: short, URL-safe identifiers.
pub fn check_ident(field: &str, value: &str) -> Result<(), ApplyError> {
    check(field, value, 64, b"-_.", "'-', '_' or '.'")
}

/// Public model names (route names) as clients send them in `model`:
/// `gpt-4o`, `meta-llama/Llama-3-8b`, `claude:latest`.
pub(crate) fn check_model_name(field: &str, value: &str) -> Result<(), ApplyError> {
    check(field, value, 128, b"-_.:/@", "'-_.:/@'")
}

/// 1..=`max` characters of ASCII letters, digits and `extra`, starting with a
/// letter or digit.
fn check(
    field: &str,
    value: &str,
    max: usize,
    extra: &[u8],
    extra_text: &str,
) -> Result<(), ApplyError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApplyError::invalid(
            field,
            format!("must be 1-{max} characters of letters, digits and {extra_text}, starting with a letter or digit"),
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
