//! Server-sent events as a client reads them: one event at a time, each
//! stamped with when it arrived, so tests can tell a stream from a buffer.

use reqwest::blocking::Response;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `event:` name, if any.
    pub event: Option<String>,
    /// The `data:` lines, joined by `\n`.
    pub data: String,
    /// When it was read, since the request was sent.
    pub at: Duration,
}

impl SseEvent {
    /// `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }

    /// The data parsed as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }

    /// An in-stream error: OpenAI's `data: {"error": …}` or Anthropic's
    /// `event: error`.
    pub fn is_error(&self) -> bool {
        self.event.as_deref() == Some("error") || self.json().get("error").is_some()
    }
}

/// A streamed answer, read event by event.
#[derive(Debug)]
pub struct SseStream {
    pub status: u16,
    pub headers: HeaderMap,
    reader: BufReader<Response>,
    started: Instant,
}

/// Everything a stream carried.
#[derive(Debug, Default)]
pub struct Transcript {
    pub events: Vec<SseEvent>,
    /// Why reading stopped early (a broken connection), if it did.
    pub read_error: Option<String>,
}

impl Transcript {
    /// Data chunks: every event but `[DONE]` and errors.
    pub fn chunks(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| !e.is_done() && !e.is_error())
            .map(SseEvent::json)
            .collect()
    }

    /// Whether the last event is `data: [DONE]`.
    pub fn ends_with_done(&self) -> bool {
        self.events.last().is_some_and(SseEvent::is_done)
    }

    /// How many `[DONE]` events there are.
    pub fn done_count(&self) -> usize {
        self.events.iter().filter(|e| e.is_done()).count()
    }

    /// The names of the events (`event:` lines), in order.
    pub fn names(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|e| e.event.as_deref().unwrap_or(""))
            .collect()
    }

    /// The text of a chat stream (`choices[0].delta.content`), or of a
    /// completions stream (`choices[0].text`), concatenated.
    pub fn openai_text(&self) -> String {
        self.chunks()
            .iter()
            .filter_map(|c| {
                let choice = &c["choices"][0];
                choice["delta"]["content"]
                    .as_str()
                    .or_else(|| choice["text"].as_str())
                    .map(str::to_string)
            })
            .collect()
    }

    /// The text of an Anthropic stream (`text_delta`s), concatenated.
    pub fn anthropic_text(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.event.as_deref() == Some("content_block_delta"))
            .filter_map(|e| e.json()["delta"]["text"].as_str().map(str::to_string))
            .collect()
    }

    /// A description for assertion messages.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            if let Some(name) = &e.event {
                out.push_str(&format!("event: {name}\n"));
            }
            out.push_str(&format!("data: {}   (+{:?})\n", e.data, e.at));
        }
        if let Some(error) = &self.read_error {
            out.push_str(&format!("<read error: {error}>\n"));
        }
        out
    }
}

impl SseStream {
    /// Reads `response`, sent at `started`, as a stream.
    pub fn new(response: Response, started: Instant) -> SseStream {
        SseStream {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            reader: BufReader::new(response),
            started,
        }
    }

    /// The answer's `content-type`.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The next event; `Ok(None)` at a clean end of the body, `Err` when the
    /// connection broke.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, String> {
        let mut event = None;
        let mut data: Option<String> = None;
        let mut line = String::new();
        loop {
            line.clear();
            let read = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("reading the stream: {e}"))?;
            if read == 0 {
                // A last event without its blank line still counts.
                return Ok(data.map(|data| SseEvent {
                    event,
                    data,
                    at: self.started.elapsed(),
                }));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if let Some(data) = data.take() {
                    return Ok(Some(SseEvent {
                        event,
                        data,
                        at: self.started.elapsed(),
                    }));
                }
                event = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = Some(value.to_string()),
                "data" => match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                _ => {}
            }
        }
    }

    /// Reads every remaining event.
    pub fn read_to_end(mut self) -> Transcript {
        let mut transcript = Transcript::default();
        loop {
            match self.next_event() {
                Ok(Some(event)) => transcript.events.push(event),
                Ok(None) => return transcript,
                Err(e) => {
                    transcript.read_error = Some(e);
                    return transcript;
                }
            }
        }
    }

    /// The rest of the body as text (for a non-stream answer, e.g. an error).
    pub fn text(mut self) -> String {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut self.reader, &mut text);
        text
    }
}
