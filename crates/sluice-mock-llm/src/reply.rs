//! The deterministic reply: what the mock "generates" for a request.
//!
//! Text: `"Mock reply from {model}:"` followed by the words of the last user
//! message, one word per completion token, cut at `max_tokens`.
//! Tool call: when the request offers tools (and `tool_choice` is not
//! `"none"`) and the conversation does not end with a tool result, the mock
//! calls the first tool with `{"<first schema property or "input">": "<last
//! user text>"}`; after a tool result it answers with text, so agent loops end.

use serde_json::Value;

use crate::tokens;

/// Longest argument fragment of a streamed tool call, in bytes.
const FRAGMENT: usize = 8;

pub(crate) enum Reply {
    Text(Text),
    Tool(ToolCall),
}

pub(crate) struct Text {
    /// One piece per token; concatenated they are the content. Every piece
    /// but the first starts with a space.
    pub pieces: Vec<String>,
    /// `max_tokens` cut the reply short.
    pub cut: bool,
}

pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    /// The complete JSON arguments.
    pub arguments: String,
    /// `arguments` split into pieces, one per stream event and token.
    pub fragments: Vec<String>,
}

impl Reply {
    pub(crate) fn completion_tokens(&self) -> u32 {
        let n = match self {
            Reply::Text(t) => t.pieces.len(),
            Reply::Tool(c) => c.fragments.len(),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

impl Text {
    pub(crate) fn new(model: &str, last_user: &str, max_tokens: Option<u32>) -> Text {
        let sentence = format!("Mock reply from {model}: {last_user}");
        let cap = max_tokens.map_or(usize::MAX, |m| m as usize);
        let mut words = sentence.split_whitespace();
        let pieces: Vec<String> = words
            .by_ref()
            .take(cap)
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    w.to_owned()
                } else {
                    format!(" {w}")
                }
            })
            .collect();
        let cut = words.next().is_some();
        Text { pieces, cut }
    }

    pub(crate) fn content(&self) -> String {
        self.pieces.concat()
    }
}

impl ToolCall {
    /// A call of tool `name` whose JSON schema is `parameters`.
    pub(crate) fn new(id: String, name: &str, parameters: &Value, last_user: &str) -> ToolCall {
        let key = parameters
            .get("properties")
            .and_then(Value::as_object)
            .and_then(|p| p.keys().next())
            .map_or("input", String::as_str);
        let mut args = serde_json::Map::new();
        args.insert(key.to_owned(), Value::String(last_user.to_owned()));
        let arguments = Value::Object(args).to_string();
        let fragments = split(&arguments, FRAGMENT);
        ToolCall {
            id,
            name: name.to_owned(),
            arguments,
            fragments,
        }
    }

    pub(crate) fn input(&self) -> Value {
        serde_json::from_str(&self.arguments).unwrap_or(Value::Null)
    }
}

/// Splits `s` into pieces of at most `max` bytes, on character boundaries.
fn split(s: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for ch in s.chars() {
        if piece.len() + ch.len_utf8() > max && !piece.is_empty() {
            pieces.push(std::mem::take(&mut piece));
        }
        piece.push(ch);
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// Tokens of a prompt made of these message texts.
pub(crate) fn prompt_tokens<'a>(texts: impl IntoIterator<Item = &'a str>) -> u32 {
    texts.into_iter().map(tokens::message_tokens).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_reply_echoes_the_last_user_message() {
        let t = Text::new("mock-gpt", "hello  there", None);
        assert_eq!(t.content(), "Mock reply from mock-gpt: hello there");
        assert_eq!(t.pieces.len(), 6);
        assert!(!t.cut);
    }

    #[test]
    fn max_tokens_cuts_the_reply() {
        let t = Text::new("mock-gpt", "hello there", Some(2));
        assert_eq!(t.content(), "Mock reply");
        assert!(t.cut);
        assert!(!Text::new("m", "", Some(4)).cut);
    }

    #[test]
    fn tool_call_fills_the_first_property_and_splits_on_char_boundaries() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let call = ToolCall::new("call_1".into(), "weather", &schema, "Zürich ünd");
        assert_eq!(call.input(), json!({"city": "Zürich ünd"}));
        assert_eq!(call.fragments.concat(), call.arguments);
        assert!(call.fragments.len() > 1);
        assert!(call.fragments.iter().all(|f| f.len() <= FRAGMENT));
        let bare = ToolCall::new("c".into(), "t", &Value::Null, "x");
        assert_eq!(bare.input(), json!({"input": "x"}));
    }
}
