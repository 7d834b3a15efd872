//! Errors as the admin client prints them: `error: …` and a `hint: …` line
//! for people, or with `--json` one JSON object on stderr in the admin
//! API's own error shape, so a script reads one format whether the server
//! or the client refused.

use super::http::ApiFailure;
use serde_json::{json, Value};

/// Exit code of a command line that cannot work as given (as clap's own
/// argument errors).
pub const EXIT_USAGE: u8 = 2;

/// A command line that cannot work as given: no admin URL, a URL without
/// a scheme, a key name that matches nothing. Exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    message: String,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// The JSON `--json` prints for `err`: `{"error": {"type", "message",
/// "status", "field", "hint"}}`. `type` is the API's (`not_found`, …) when
/// the API refused; else `usage_error` (the command line),
/// `connection_error` (no node answered) or `client_error`.
pub fn error_json(err: &anyhow::Error) -> Value {
    if let Some(failure) = err.chain().find_map(|e| e.downcast_ref::<ApiFailure>()) {
        return json!({"error": {
            "type": failure.kind,
            "status": failure.status.as_u16(),
            "message": failure.message,
            "field": failure.field,
            "hint": failure.hint,
        }});
    }
    let kind = if err.chain().any(|e| e.is::<UsageError>()) {
        "usage_error"
    } else if err.chain().any(|e| e.is::<reqwest::Error>()) {
        "connection_error"
    } else {
        "client_error"
    };
    json!({"error": {
        "type": kind,
        "status": null,
        "message": format!("{err:#}"),
        "field": null,
        "hint": null,
    }})
}

/// Prints `err` on stderr, as text or (`json`) as [`error_json`], and
/// returns the exit code: 2 for a [`UsageError`], else 1.
pub fn print_error(err: &anyhow::Error, json: bool) -> u8 {
    if json {
        eprintln!("{}", error_json(err));
    } else {
        eprintln!("error: {err:#}");
        if let Some(hint) = err
            .chain()
            .find_map(|e| e.downcast_ref::<ApiFailure>())
            .and_then(|f| f.hint.as_deref())
        {
            eprintln!("hint: {hint}");
        }
    }
    if err.chain().any(|e| e.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        1
    }
}

/// A clap error (an unknown flag, a missing value) as `--json` prints it.
pub fn clap_error_json(err: &clap::Error) -> Value {
    let rendered = err.render().to_string();
    let first = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    json!({"error": {
        "type": "usage_error",
        "status": null,
        "message": first,
        "field": null,
        "hint": "see --help",
    }})
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn api_failures_keep_their_type_status_field_and_hint() {
        let err = anyhow::Error::new(ApiFailure {
            status: StatusCode::UNAUTHORIZED,
            kind: "unauthorized".into(),
            message: "the admin token is not valid".into(),
            field: None,
            hint: Some("look in .sluice-dev/admin-token".into()),
        })
        .context("GET http://x/admin/v1/keys");
        let value = error_json(&err);
        assert_eq!(value["error"]["type"], "unauthorized");
        assert_eq!(value["error"]["status"], 401);
        assert_eq!(value["error"]["hint"], "look in .sluice-dev/admin-token");
        assert_eq!(print_error(&err, true), 1);
    }

    #[test]
    fn usage_errors_exit_2_and_say_so() {
        let err = anyhow::Error::new(UsageError::new("no admin URL"));
        assert_eq!(error_json(&err)["error"]["type"], "usage_error");
        assert_eq!(print_error(&err, false), EXIT_USAGE);
        let other = anyhow::anyhow!("disk full");
        assert_eq!(error_json(&other)["error"]["type"], "client_error");
        assert_eq!(print_error(&other, false), 1);
    }
}
