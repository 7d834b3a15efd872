//! Server-Sent Events, as the WHATWG HTML spec parses them ("Parsing an event
//! stream"), fed incrementally: bytes arrive in chunks split anywhere, even in
//! the middle of a UTF-8 sequence or between the `\r` and `\n` of one line end.
//!
//! Two deliberate departures from a browser's `EventSource`, both because a
//! gateway relays events rather than consuming them:
//! * [`SseEvent::event`] is `None` when the stream named no type (a browser
//!   would say `"message"`), so a relayed event is re-encoded as it came.
//! * [`SseEvent::id`] is the `id` field of *this* event only. The spec's
//!   sticky "last event ID" is kept apart, in [`SseParser::last_event_id`].
//!
//! `retry` fields are accepted and ignored: reconnection is not this crate's job.

use thiserror::Error;

/// The default bound on what [`SseParser`] holds while waiting for an event's
/// end: 1 MiB, far above any chat chunk, far below what hurts a node.
pub const DEFAULT_MAX_BUFFERED: usize = 1 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if the stream sent one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field of this event, if it had one.
    pub id: Option<String>,
}

/// Why an event stream could not be parsed or an event could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SseError {
    /// The peer sent more than `limit` bytes without finishing an event. The
    /// parser refuses everything after this; the stream must be abandoned.
    #[error("event stream buffered more than {limit} bytes without completing an event")]
    TooLarge { limit: usize },
    /// `event` or `id` holds a line break (or `id` a NUL), which SSE cannot carry.
    #[error("the `{field}` field of an event cannot contain a line break or NUL")]
    Unencodable { field: &'static str },
}

impl SseEvent {
    /// An event with data only, the way OpenAI streams are framed.
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// A named event, the way Anthropic streams are framed.
    pub fn named(event: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            event: Some(event.into()),
            data: data.into(),
            id: None,
        }
    }

    /// Appends this event's wire form to `out`: `event:`, `id:`, one `data:`
    /// line per line of `data`, then a blank line. Line breaks in `data`
    /// (`\n`, `\r\n`, `\r`) all come back as `\n`, as any parser reads them.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), SseError> {
        if let Some(event) = &self.event {
            if event.contains(['\r', '\n']) {
                return Err(SseError::Unencodable { field: "event" });
            }
            push_field(out, "event", event);
        }
        if let Some(id) = &self.id {
            if id.contains(['\r', '\n', '\0']) {
                return Err(SseError::Unencodable { field: "id" });
            }
            push_field(out, "id", id);
        }
        for line in Lines::new(&self.data) {
            push_field(out, "data", line);
        }
        out.push(b'\n');
        Ok(())
    }

    /// This event's wire form; see [`SseEvent::encode_into`].
    pub fn encode(&self) -> Result<Vec<u8>, SseError> {
        let mut out = Vec::with_capacity(self.data.len() + 16);
        self.encode_into(&mut out)?;
        Ok(out)
    }
}

/// A comment line (`: text`), which parsers skip: used as a keep-alive.
/// Line breaks in `text` end the comment early, so they are replaced by spaces.
pub fn encode_comment(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 4);
    out.extend_from_slice(b": ");
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\n\n");
    out
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// Splits on `\r\n`, `\r` or `\n`, always yielding at least one (maybe empty) line.
struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self { rest: Some(text) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest?;
        match text.find(['\r', '\n']) {
            None => {
                self.rest = None;
                Some(text)
            }
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                self.rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
        }
    }
}

/// The incremental parser: [`SseParser::feed`] it bytes, get finished events.
///
/// An event still incomplete when the stream ends is discarded, as the spec
/// says; a caller that needs to know the stream was cut checks the protocol's
/// own end marker (`data: [DONE]`, `message_stop`).
#[derive(Debug, Clone)]
pub struct SseParser {
    max_buffered: usize,
    /// Bytes of the line being received (no line end yet).
    line: Vec<u8>,
    /// The last chunk ended on `\r`: a `\n` opening the next one belongs to it.
    after_cr: bool,
    /// No line has been completed yet (a leading BOM is still to be dropped).
    at_start: bool,
    event: Option<String>,
    data: String,
    id: Option<String>,
    last_event_id: String,
    failed: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser bounded by [`DEFAULT_MAX_BUFFERED`].
    pub fn new() -> Self {
        Self::with_max_buffered(DEFAULT_MAX_BUFFERED)
    }

    /// A parser that fails once a pending line plus a pending event's data
    /// exceed `max_buffered` bytes.
    pub fn with_max_buffered(max_buffered: usize) -> Self {
        Self {
            max_buffered,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: None,
            data: String::new(),
            id: None,
            last_event_id: String::new(),
            failed: false,
        }
    }

    /// The spec's last event ID: the latest `id` field seen, kept across events.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Consumes `chunk` and returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        self.feed_into(chunk, &mut events)?;
        Ok(events)
    }

    /// Like [`SseParser::feed`], appending to `events`. On error, the events
    /// completed before the offending byte are still in `events`.
    pub fn feed_into(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.failed {
            return Err(self.too_large());
        }
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(at) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..at]);
            self.check_size()?;
            let end = rest[at];
            rest = &rest[at + 1..];
            if end == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.process_line(&line) {
                events.push(event);
            }
            self.line = line;
            self.line.clear();
            self.check_size()?;
        }
        self.line.extend_from_slice(rest);
        self.check_size()
    }

    fn too_large(&self) -> SseError {
        SseError::TooLarge {
            limit: self.max_buffered,
        }
    }

    fn check_size(&mut self) -> Result<(), SseError> {
        if self.line.len() + self.data.len() > self.max_buffered {
            self.failed = true;
            self.line = Vec::new();
            self.data = String::new();
            return Err(self.too_large());
        }
        Ok(())
    }

    fn process_line(&mut self, raw: &[u8]) -> Option<SseEvent> {
        let mut raw = raw;
        if std::mem::take(&mut self.at_start) {
            if let Some(stripped) = raw.strip_prefix(b"\xEF\xBB\xBF") {
                raw = stripped;
            }
        }
        if raw.is_empty() {
            return self.dispatch();
        }
        let line = String::from_utf8_lossy(raw);
        if line.starts_with(':') {
            return None;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match name {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => {
                self.id = Some(value.to_owned());
                self.last_event_id = value.to_owned();
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let id = self.id.take();
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        Some(SseEvent { event, data, id })
    }
}

#[cfg(test)]
mod tests;
