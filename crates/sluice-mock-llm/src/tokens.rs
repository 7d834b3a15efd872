//! The token counting rule, the same for every API and documented here
//! because clients and the gateway's accounting are tested against it:
//!
//! * **prompt**: every message (chat or Anthropic message, the Anthropic
//!   `system` prompt, each legacy prompt string, each embeddings input) costs
//!   1 token, plus 1 per whitespace-separated word of its text. Text is every
//!   string content and every `text` field of content parts, tool results
//!   included; images, tool definitions and other fields cost nothing.
//! * **completion**: 1 token per word of the reply text (one word per stream
//!   event), or 1 per argument fragment of a tool call.

use serde_json::Value;

/// Tokens of one message whose text is `text`.
pub(crate) fn message_tokens(text: &str) -> u32 {
    1 + words(text)
}

pub(crate) fn words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// The text of a message content: a string, an array of parts, or a part
/// with `text` or nested `content` (tool results). Parts are joined by a space.
pub(crate) fn text_of(content: &Value) -> String {
    let mut out = String::new();
    collect(content, &mut out);
    out
}

fn collect(value: &Value, out: &mut String) {
    let mut push = |s: &str| {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(s);
    };
    match value {
        Value::String(s) => push(s),
        Value::Array(parts) => parts.iter().for_each(|p| collect(p, out)),
        Value::Object(part) => {
            if let Some(Value::String(s)) = part.get("text") {
                push(s);
            } else if let Some(content) = part.get("content") {
                collect(content, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_message_costs_one_plus_its_words() {
        assert_eq!(message_tokens(""), 1);
        assert_eq!(message_tokens("  hello   big world "), 4);
    }

    #[test]
    fn text_is_gathered_from_parts_and_tool_results() {
        let content = json!([
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:"}},
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "22C"}]}
        ]);
        assert_eq!(text_of(&content), "look 22C");
        assert_eq!(text_of(&Value::Null), "");
    }
}
