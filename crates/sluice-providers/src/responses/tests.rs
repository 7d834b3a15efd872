use super::*;
use proptest::prelude::*;

fn wire() -> String {
    let response = |status: &str, usage: Value| serde_json::json!({"id": "resp_up1", "object": "response", "status": status, "output": [], "usage": usage});
    let event = |kind: &str, mut data: Value| {
        data["type"] = Value::String(kind.into());
        format!("event: {kind}\ndata: {data}\n\n")
    };
    [
        event("response.created", serde_json::json!({"response": response("in_progress", Value::Null)})),
        event("response.output_text.delta", serde_json::json!({"item_id": "msg_1", "delta": "Hel"})),
        event("response.output_text.delta", serde_json::json!({"item_id": "msg_1", "delta": "lo"})),
        event(
            "response.completed",
            serde_json::json!({"response": response("completed", serde_json::json!({"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}))}),
        ),
    ]
    .concat()
}

fn run(wire: &[u8], cuts: &[usize]) -> (Result<Vec<u8>, RelayError>, ResponsesPassthrough) {
    let mut relay = ResponsesPassthrough::new("openai-a");
    let mut out = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.sort_unstable();
    points.push(wire.len());
    for point in points {
        if point < at {
            continue;
        }
        if let Err(e) = relay.feed(&wire[at..point], &mut out) {
            return (Err(e), relay);
        }
        at = point;
    }
    (Ok(out), relay)
}

#[test]
fn ids_round_trip_and_foreign_ids_are_left_alone() {
    let id = client_id("openai-a", "resp_abc123");
    assert!(id.starts_with("resp_"));
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    assert_eq!(
        upstream_of(&id),
        Some(("openai-a".to_owned(), "resp_abc123".to_owned()))
    );
    for foreign in ["resp_abc123", "resp_sl1!!", "chatcmpl-1", "", "resp_sl1"] {
        assert_eq!(upstream_of(foreign), None, "{foreign}");
    }
}

#[test]
fn a_stream_goes_through_with_its_id_wrapped_and_its_usage_read() {
    let (out, relay) = run(wire().as_bytes(), &[]);
    let out = String::from_utf8(out.unwrap()).unwrap();
    let wrapped = client_id("openai-a", "resp_up1");
    assert_eq!(out.matches(&wrapped).count(), 2, "{out}");
    assert!(!out.contains("\"resp_up1\""), "{out}");
    assert!(out.contains("\"delta\":\"Hel\""), "{out}");
    assert!(relay.is_done());
    assert_eq!(
        relay.usage(),
        Some(TokenUsage {
            prompt_tokens: 7,
            completion_tokens: 2
        })
    );
    assert!(relay.finish().is_ok());
}

#[test]
fn a_cut_stream_is_truncated_and_an_error_event_is_the_upstreams() {
    let whole = wire();
    let cut = &whole[..whole.find("event: response.completed").unwrap()];
    let (out, relay) = run(cut.as_bytes(), &[]);
    assert!(out.is_ok());
    assert_eq!(relay.finish(), Err(RelayError::Truncated));
    let failing = "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\"}\n\n";
    let (out, _) = run(failing.as_bytes(), &[]);
    assert_eq!(
        out.unwrap_err(),
        RelayError::Upstream {
            kind: "server_error".into(),
            message: "boom".into()
        }
    );
}

#[test]
fn a_whole_answer_has_its_id_wrapped_and_its_usage_read() {
    let body = br#"{"id":"resp_up9","object":"response","usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}"#;
    let (bytes, usage) = convert(body, "p").unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        upstream_of(value["id"].as_str().unwrap()).unwrap().1,
        "resp_up9"
    );
    assert_eq!(usage.unwrap().total_tokens(), 7);
    assert!(convert(b"not json", "p").is_err());
}

proptest! {
    /// Any provider name and upstream id come back out of the client id.
    #[test]
    fn any_id_round_trips(provider in "[a-z][a-z0-9_-]{0,40}", upstream in "\\PC{1,80}") {
        let id = client_id(&provider, &upstream);
        prop_assert_eq!(upstream_of(&id), Some((provider, upstream)));
    }

    /// However the stream is split, the client gets the same bytes and the
    /// same usage.
    #[test]
    fn any_chunking_relays_the_same(cuts in proptest::collection::vec(0usize..2000, 0..12)) {
        let whole = wire();
        let (expected, _) = run(whole.as_bytes(), &[]);
        let (got, relay) = run(whole.as_bytes(), &cuts);
        prop_assert_eq!(got.unwrap(), expected.unwrap());
        prop_assert_eq!(relay.usage().map(|u| u.total_tokens()), Some(9));
    }
}
