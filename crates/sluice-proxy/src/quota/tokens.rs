//! A request's prompt tokens, counted with a real tokenizer (tiktoken's
//! `o200k_base`) for its reservation, with each text's count remembered
//! per worker thread.
//!
//! Loading the tokenizer takes a fraction of a second (seconds in a debug
//! build on a busy machine). It is loaded off the workers ([`warm_up`]),
//! and a request never waits for it: until it is loaded a text counts as
//! many tokens as it has bytes, never fewer than the tokenizer would say
//! (every token is at least one byte), and the answer's usage settles the
//! difference.

use std::cell::RefCell;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use serde_json::Value;

/// Tokens OpenAI adds per message (role and separators), and to prime the
/// reply.
const PER_MESSAGE: u64 = 4;
const PER_PROMPT: u64 = 3;
/// Fields whose strings are not prompt text (images, roles, ids).
const NOT_TEXT: [&str; 8] = [
    "image_url",
    "url",
    "data",
    "source",
    "type",
    "role",
    "id",
    "tool_call_id",
];

/// The tokenizer, once [`warm_up`] has loaded it.
static TOKENIZER: OnceLock<&'static tiktoken_rs::CoreBPE> = OnceLock::new();

/// Loads the tokenizer, blocking (a fraction of a second, once per
/// process; later calls return at once). Call it off the proxy's workers.
pub fn warm_up() {
    if TOKENIZER.get().is_some() {
        return;
    }
    let started = std::time::Instant::now();
    let mut here = false;
    let loaded = TOKENIZER.get_or_init(|| {
        here = true;
        tiktoken_rs::o200k_base_singleton()
    });
    // Another caller loading it at the same time waited for this one.
    if here {
        // Compile the pattern's matchers too: a first text pays for it
        // otherwise.
        loaded.encode_ordinary("warm up");
        tracing::info!(took = ?started.elapsed(), "tokenizer loaded");
    }
}

/// Whether [`warm_up`] has loaded the tokenizer.
pub fn tokenizer_loaded() -> bool {
    TOKENIZER.get().is_some()
}

/// Texts whose counts each thread remembers (a power of two).
const REMEMBERED: usize = 1024;

/// A remembered count: the text's hash and length, and its tokens.
#[derive(Clone, Copy, Default)]
struct Remembered {
    hash: u64,
    len: usize,
    tokens: u64,
}

thread_local! {
    /// Recent texts' token counts, direct-mapped by hash. A chat sends its
    /// system prompt and whole history again on every turn, and tools
    /// their definitions on every call: those are counted once per thread,
    /// then hashed (a few GB/s) instead of tokenized (tens of MB/s).
    static COUNTS: RefCell<Box<[Remembered; REMEMBERED]>> =
        RefCell::new(Box::new([Remembered::default(); REMEMBERED]));
    /// This thread's hash keys (random per thread and process).
    static HASHER: RandomState = RandomState::new();
}

/// `text`'s tokens in `o200k_base`, remembered per thread. Two texts of the
/// same length whose 64-bit keyed hashes collide would share a count: an
/// estimate off by their difference, settled at the real usage anyway.
/// Before the tokenizer is loaded: the text's length in bytes.
fn count(text: &str) -> u64 {
    count_with(TOKENIZER.get().copied(), text)
}

/// [`count`] with `tokenizer`, or without one (bytes).
fn count_with(tokenizer: Option<&tiktoken_rs::CoreBPE>, text: &str) -> u64 {
    let Some(tokenizer) = tokenizer else {
        return text.len() as u64;
    };
    let hash = HASHER.with(|h| h.hash_one(text));
    let slot = (hash as usize) & (REMEMBERED - 1);
    let remembered = COUNTS.with(|c| c.borrow()[slot]);
    if remembered.hash == hash && remembered.len == text.len() {
        return remembered.tokens;
    }
    let tokens = tokenizer.encode_ordinary(text).len() as u64;
    COUNTS.with(|c| {
        c.borrow_mut()[slot] = Remembered {
            hash,
            len: text.len(),
            tokens,
        }
    });
    tokens
}

/// The prompt's tokens: every string of the messages (chat, Anthropic
/// `system`), the legacy `prompt`, embeddings `input` and tool definitions,
/// counted with `o200k_base` (each text's count remembered per thread); a
/// token id in an `input` array counts one.
pub fn prompt_tokens(body: &serde_json::Map<String, Value>) -> u64 {
    let mut total = PER_PROMPT;
    let mut add = |text: &str| total += count(text);
    for field in [
        "system",
        "instructions",
        "prompt",
        "input",
        "tools",
        "functions",
    ] {
        if let Some(value) = body.get(field) {
            walk(value, &mut add, &mut || {});
        }
    }
    let mut messages = 0u64;
    if let Some(Value::Array(list)) = body.get("messages") {
        for message in list {
            messages += 1;
            walk(message, &mut add, &mut || {});
        }
    }
    let mut numbers = 0u64;
    if let Some(value) = body.get("input") {
        walk(value, &mut |_| {}, &mut || numbers += 1);
    }
    total + messages * PER_MESSAGE + numbers
}

fn walk(value: &Value, text: &mut impl FnMut(&str), number: &mut impl FnMut()) {
    match value {
        Value::String(s) => text(s),
        Value::Number(_) => number(),
        Value::Array(items) => items.iter().for_each(|v| walk(v, text, number)),
        Value::Object(map) => {
            for (k, v) in map {
                if !NOT_TEXT.contains(&k.as_str()) {
                    walk(v, text, number);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_tokens_count_text_not_images_or_roles() {
        warm_up();
        let body = |v: Value| v.as_object().unwrap().clone();
        let short = prompt_tokens(&body(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hello there"}],
        })));
        assert_eq!(short, PER_PROMPT + PER_MESSAGE + 2);
        let image = prompt_tokens(&body(json!({
            "model": "m",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "hello there"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(100_000))}},
            ]}],
        })));
        assert_eq!(image, short, "an image's bytes are not text");
        let anthropic = prompt_tokens(&body(json!({
            "model": "m", "max_tokens": 5, "system": "be brief",
            "messages": [{"role": "user", "content": "hello there"}],
        })));
        assert_eq!(anthropic, short + 2);
        let ids = prompt_tokens(&body(json!({"model": "e", "input": [[1, 2, 3], [4]]})));
        assert_eq!(ids, PER_PROMPT + 4);
    }

    #[test]
    fn a_remembered_count_is_the_tokenizers() {
        warm_up();
        let text = "The quick brown fox jumps over the lazy dog, again and again.";
        let exact = tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(text)
            .len() as u64;
        assert_eq!(count(text), exact, "first seen: tokenized");
        assert_eq!(count(text), exact, "remembered");
        // Another text of the same slot or length is not mistaken for it.
        let other = "The quick brown fox jumps over the lazy cat, again and again.";
        assert_eq!(other.len(), text.len());
        let exact_other = tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(other)
            .len() as u64;
        assert_eq!(count(other), exact_other);
        assert_eq!(count(""), 0);
    }

    #[test]
    fn without_the_tokenizer_a_text_counts_its_bytes() {
        assert_eq!(count_with(None, "hello there"), 11);
        assert_eq!(count_with(None, "héllo"), 6);
    }

    proptest::proptest! {
        /// The count used before the tokenizer is loaded never reserves
        /// less than the tokenizer's count would.
        #[test]
        fn bytes_never_undercount_tokens(text in "\\PC{0,200}") {
            let tokenizer = tiktoken_rs::o200k_base_singleton();
            let tokens = tokenizer.encode_ordinary(&text).len() as u64;
            proptest::prop_assert!(count_with(None, &text) >= tokens);
        }
    }
}
