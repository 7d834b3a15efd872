use super::*;
use proptest::prelude::*;

fn parse_all(bytes: &[u8]) -> Vec<SseEvent> {
    SseParser::new().feed(bytes).expect("within limits")
}

/// Feeds `bytes` cut at the given points (taken modulo the length).
fn parse_chunked(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        parser
            .feed_into(&bytes[from..cut], &mut events)
            .expect("within limits");
        from = cut;
    }
    events
}

#[test]
fn anthropic_named_events_are_parsed() {
    let wire = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n";
    assert_eq!(
        parse_all(wire),
        vec![
            SseEvent::named("message_start", "{\"type\":\"message_start\"}"),
            SseEvent::named("ping", "{\"type\": \"ping\"}"),
        ]
    );
}

#[test]
fn openai_data_only_stream_ends_with_done() {
    let wire = b"data: {\"id\":\"chatcmpl-1\"}\n\ndata: [DONE]\n\n";
    assert_eq!(
        parse_all(wire),
        vec![
            SseEvent::data("{\"id\":\"chatcmpl-1\"}"),
            SseEvent::data("[DONE]")
        ]
    );
}

#[test]
fn every_line_ending_is_a_line_ending() {
    for wire in [
        &b"data: a\r\ndata: b\r\n\r\n"[..],
        b"data: a\rdata: b\r\r",
        b"data: a\ndata: b\n\n",
    ] {
        assert_eq!(parse_all(wire), vec![SseEvent::data("a\nb")], "{wire:?}");
    }
}

#[test]
fn crlf_split_across_chunks_is_one_line_end() {
    let mut parser = SseParser::new();
    assert!(parser.feed(b"data: a\r").unwrap().is_empty());
    // Had the `\n` been read as a second line end, "a" would be dispatched here.
    assert!(parser.feed(b"\ndata: b\r").unwrap().is_empty());
    assert_eq!(
        parser.feed(b"\n\r\n").unwrap(),
        vec![SseEvent::data("a\nb")]
    );
}

#[test]
fn utf8_split_inside_a_character_survives() {
    let wire = "data: héllo ✓\n\n".as_bytes();
    for cut in 0..wire.len() {
        assert_eq!(
            parse_chunked(wire, &[cut]),
            vec![SseEvent::data("héllo ✓")],
            "cut at {cut}"
        );
    }
}

#[test]
fn comments_fields_without_colon_and_spaces_follow_the_spec() {
    let wire = b": keep-alive\n\
data\n\
data:no space\n\
data:  two spaces\n\
unknown: ignored\n\
retry: 3000\n\
\n";
    assert_eq!(
        parse_all(wire),
        vec![SseEvent::data("\nno space\n two spaces")]
    );
}

#[test]
fn event_without_data_is_not_dispatched_and_does_not_leak() {
    let wire = b"event: lonely\n\ndata: x\n\n";
    assert_eq!(parse_all(wire), vec![SseEvent::data("x")]);
}

#[test]
fn empty_data_field_dispatches_an_empty_event() {
    assert_eq!(parse_all(b"data:\n\n"), vec![SseEvent::data("")]);
}

#[test]
fn id_is_per_event_and_last_event_id_is_sticky() {
    let mut parser = SseParser::new();
    let events = parser
        .feed(b"id: 7\ndata: a\n\ndata: b\n\nid: 1\0\ndata: c\n\n")
        .unwrap();
    assert_eq!(events[0].id.as_deref(), Some("7"));
    assert_eq!(events[1].id, None);
    assert_eq!(events[2].id, None, "ids holding NUL are ignored");
    assert_eq!(parser.last_event_id(), "7");
}

#[test]
fn leading_bom_is_dropped_even_when_split() {
    let wire = b"\xEF\xBB\xBFdata: x\n\n";
    assert_eq!(parse_chunked(wire, &[1, 2]), vec![SseEvent::data("x")]);
}

#[test]
fn incomplete_event_at_end_of_stream_is_not_dispatched() {
    assert!(parse_all(b"data: cut off\n").is_empty());
}

#[test]
fn oversized_line_is_refused_and_parser_stays_failed() {
    let mut parser = SseParser::with_max_buffered(16);
    assert_eq!(parser.feed(b"data: 0123456789").unwrap(), vec![]);
    assert_eq!(
        parser.feed(b"abcdef"),
        Err(SseError::TooLarge { limit: 16 })
    );
    assert_eq!(parser.feed(b"\n\n"), Err(SseError::TooLarge { limit: 16 }));
}

#[test]
fn oversized_event_across_many_lines_is_refused() {
    let mut parser = SseParser::with_max_buffered(32);
    let mut result = Ok(Vec::new());
    for _ in 0..10 {
        result = parser.feed(b"data: 0123456789\n");
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(SseError::TooLarge { limit: 32 }));
}

#[test]
fn encoder_splits_multiline_data_and_refuses_broken_fields() {
    let event = SseEvent {
        event: Some("message_delta".into()),
        data: "a\r\nb\rc".into(),
        id: Some("9".into()),
    };
    assert_eq!(
        event.encode().unwrap(),
        b"event: message_delta\nid: 9\ndata: a\ndata: b\ndata: c\n\n"
    );
    let broken = SseEvent::named("a\nb", "x");
    assert_eq!(
        broken.encode(),
        Err(SseError::Unencodable { field: "event" })
    );
    assert_eq!(encode_comment("ping\nx"), b": ping x\n\n");
    assert!(parse_all(&encode_comment("ping")).is_empty());
}

fn arb_event() -> impl Strategy<Value = SseEvent> {
    (
        proptest::option::of("[^\r\n]{0,12}"),
        // Any text but `\r`: the parser normalises `\r` line breaks to `\n`.
        "[^\r]{0,40}",
        proptest::option::of("[^\r\n\0]{0,8}"),
    )
        .prop_map(|(event, data, id)| SseEvent { event, data, id })
}

proptest! {
    #[test]
    fn encoded_events_parse_back_whatever_the_chunking(
        events in proptest::collection::vec(arb_event(), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for event in &events {
            event.encode_into(&mut wire).unwrap();
        }
        prop_assert_eq!(parse_chunked(&wire, &cuts), events);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), cut in any::<usize>()) {
        let _ = parse_chunked(&bytes, &[cut]);
    }
}
