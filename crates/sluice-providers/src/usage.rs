//! Token usage, read from whichever format a response came in, in one
//! provider-neutral shape for quota reconciliation.

use serde::Deserialize;

use crate::{anthropic, openai};

/// Prompt and completion tokens of one request.
///
/// `prompt_tokens` counts every input token the provider processed, cached or
/// not: OpenAI already reports it so; for Anthropic it is `input_tokens` plus
/// the cache creation and cache read counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl TokenUsage {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// The `usage` of an OpenAI response body or of the final usage chunk's
    /// `data:`; `None` if the JSON has no usable `usage` object. Reads nothing
    /// else, so it works on bodies from any OpenAI-compatible server.
    pub fn from_openai_json(body: &[u8]) -> Option<Self> {
        // The two counts only: `openai::Usage` keeps the details it does
        // not know (a flattened map), which costs a buffered pass over the
        // object on every answer.
        #[derive(Deserialize)]
        struct Counts {
            prompt_tokens: u64,
            #[serde(default)]
            completion_tokens: u64,
        }
        #[derive(Deserialize)]
        struct WithUsage {
            usage: Option<Counts>,
        }
        let parsed: WithUsage = serde_json::from_slice(body).ok()?;
        parsed.usage.map(|usage| Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        })
    }

    /// The `usage` of an Anthropic response body; `None` if it has none.
    pub fn from_anthropic_json(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct WithUsage {
            usage: Option<anthropic::Usage>,
        }
        let parsed: WithUsage = serde_json::from_slice(body).ok()?;
        parsed.usage.as_ref().map(Self::from)
    }

    /// In OpenAI's shape, with `total_tokens` filled in.
    pub fn to_openai(self) -> openai::Usage {
        openai::Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens(),
            extra: serde_json::Map::new(),
        }
    }
}

impl From<&openai::Usage> for TokenUsage {
    fn from(usage: &openai::Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        }
    }
}

impl From<&anthropic::Usage> for TokenUsage {
    fn from(usage: &anthropic::Usage) -> Self {
        Self {
            prompt_tokens: usage
                .input_tokens
                .saturating_add(usage.cache_creation_input_tokens.unwrap_or(0))
                .saturating_add(usage.cache_read_input_tokens.unwrap_or(0)),
            completion_tokens: usage.output_tokens,
        }
    }
}

/// Usage of an Anthropic stream, as its events arrive: `message_start` brings
/// the input counts, each `message_delta` the cumulative output count (and,
/// from newer API versions, updated input counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnthropicStreamUsage {
    usage: Option<anthropic::Usage>,
}

impl AnthropicStreamUsage {
    pub fn observe(&mut self, event: &anthropic::StreamEvent) {
        match event {
            anthropic::StreamEvent::MessageStart { message } => self.usage = Some(message.usage),
            anthropic::StreamEvent::MessageDelta { usage: delta, .. } => {
                let usage = self.usage.get_or_insert_with(anthropic::Usage::default);
                usage.output_tokens = delta.output_tokens;
                if let Some(input) = delta.input_tokens {
                    usage.input_tokens = input;
                }
                if let Some(created) = delta.cache_creation_input_tokens {
                    usage.cache_creation_input_tokens = Some(created);
                }
                if let Some(read) = delta.cache_read_input_tokens {
                    usage.cache_read_input_tokens = Some(read);
                }
            }
            _ => {}
        }
    }

    /// The totals so far; `None` before any event that carries usage.
    pub fn total(&self) -> Option<TokenUsage> {
        self.usage.as_ref().map(TokenUsage::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_usage_is_read_from_response_and_final_chunk() {
        let response = br#"{"id":"x","object":"chat.completion","choices":[{"weird":true}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;
        let chunk = br#"{"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        assert_eq!(
            TokenUsage::from_openai_json(response),
            Some(TokenUsage {
                prompt_tokens: 11,
                completion_tokens: 7
            })
        );
        assert_eq!(
            TokenUsage::from_openai_json(chunk).unwrap().total_tokens(),
            7
        );
        assert_eq!(TokenUsage::from_openai_json(br#"{"usage":null}"#), None);
        assert_eq!(TokenUsage::from_openai_json(b"[DONE]"), None);
    }

    #[test]
    fn anthropic_prompt_tokens_include_cache_reads_and_writes() {
        let body = br#"{"id":"msg","type":"message","usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":5}}"#;
        assert_eq!(
            TokenUsage::from_anthropic_json(body),
            Some(TokenUsage {
                prompt_tokens: 1110,
                completion_tokens: 5
            })
        );
    }

    #[test]
    fn anthropic_stream_usage_takes_cumulative_output_from_the_last_delta() {
        let mut tally = AnthropicStreamUsage::default();
        for raw in crate::anthropic::tests::TOOL_STREAM {
            tally.observe(&serde_json::from_str(raw).unwrap());
        }
        assert_eq!(
            tally.total(),
            Some(TokenUsage {
                prompt_tokens: 472,
                completion_tokens: 89
            })
        );
    }
}
