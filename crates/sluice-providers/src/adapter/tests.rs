use super::*;
use http::header::AUTHORIZATION;

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    h.insert("anthropic-beta", HeaderValue::from_static("tools-2024"));
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer client-key"),
    );
    h
}

fn target() -> Target {
    let mut extra_headers = HeaderMap::new();
    extra_headers.insert("x-org", HeaderValue::from_static("acme"));
    Target {
        name: "acct-a".into(),
        base_url: "https://api.example.com/v1/".into(),
        api_key: Some("sk-secret".into()),
        extra_headers,
        ..Target::default()
    }
}

fn request(endpoint: Endpoint, body: &str) -> ClientRequest {
    ClientRequest::parse(endpoint, body.as_bytes(), &headers()).unwrap()
}

fn sent(prepared: &Prepared) -> Value {
    serde_json::from_slice(prepared.request.body()).unwrap()
}

#[test]
fn openai_passthrough_rewrites_model_and_asks_for_stream_usage() {
    let r = request(
        Endpoint::ChatCompletions,
        r#"{"model":"public","messages":[{"role":"user","content":"hi"}],"stream":true,"seed":7}"#,
    );
    let p = prepare(&r, ProviderKind::OpenAi, &target(), "gpt-4o-mini", 1024).unwrap();
    assert_eq!(
        p.request.uri(),
        "https://api.example.com/v1/chat/completions"
    );
    assert_eq!(p.request.headers()[AUTHORIZATION], "Bearer sk-secret");
    assert!(p.request.headers()[AUTHORIZATION].is_sensitive());
    assert_eq!(p.request.headers()["x-org"], "acme");
    assert_eq!(p.request.headers()[ACCEPT], "text/event-stream");
    assert!(
        p.request.headers().get("anthropic-version").is_none(),
        "client headers are not sent to an OpenAI upstream"
    );
    let body = sent(&p);
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["seed"], 7, "unknown fields go through as sent");
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(p.exchange.conversion, Conversion::Passthrough);
    assert!(p.exchange.stream);
    assert!(!p.exchange.client_wants_usage);
}

#[test]
fn a_client_that_asked_for_usage_keeps_its_usage_chunk() {
    let r = request(
        Endpoint::Completions,
        r#"{"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":true}}"#,
    );
    let p = prepare(&r, ProviderKind::OpenAi, &target(), "m", 1024).unwrap();
    assert!(p.exchange.client_wants_usage);
    assert_eq!(p.request.uri(), "https://api.example.com/v1/completions");
}

#[test]
fn non_streaming_requests_get_no_stream_options() {
    let r = request(Endpoint::Embeddings, r#"{"model":"e","input":"x"}"#);
    let p = prepare(
        &r,
        ProviderKind::OpenAi,
        &target(),
        "text-embedding-3-small",
        1,
    )
    .unwrap();
    assert!(sent(&p).get("stream_options").is_none());
    assert_eq!(p.request.headers()[ACCEPT], "application/json");
}

#[test]
fn anthropic_passthrough_forwards_version_and_beta_and_uses_x_api_key() {
    let r = request(
        Endpoint::Messages,
        r#"{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    let p = prepare(
        &r,
        ProviderKind::Anthropic,
        &target(),
        "claude-3-5-haiku",
        1,
    )
    .unwrap();
    let h = p.request.headers();
    assert_eq!(p.request.uri(), "https://api.example.com/v1/messages");
    assert_eq!(h["x-api-key"], "sk-secret");
    assert!(h["x-api-key"].is_sensitive());
    assert!(
        h.get(AUTHORIZATION).is_none(),
        "the client's key never goes upstream"
    );
    assert_eq!(h["anthropic-version"], "2023-06-01");
    assert_eq!(h["anthropic-beta"], "tools-2024");
    assert_eq!(sent(&p)["model"], "claude-3-5-haiku");
}

#[test]
fn chat_to_anthropic_is_translated_with_a_default_max_tokens() {
    let r = request(
        Endpoint::ChatCompletions,
        r#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"stream":true}"#,
    );
    let p = prepare(&r, ProviderKind::Anthropic, &target(), "claude", 333).unwrap();
    let body = sent(&p);
    assert_eq!(body["model"], "claude");
    assert_eq!(body["max_tokens"], 333);
    assert_eq!(body["system"], "be brief");
    assert_eq!(p.exchange.conversion, Conversion::ChatToMessages);
    assert_eq!(
        p.request.headers()["anthropic-version"],
        ANTHROPIC_VERSION,
        "a default version when the client (an OpenAI one) sent none"
    );
    assert!(p.request.headers().get("anthropic-beta").is_none());
}

#[test]
fn messages_to_openai_is_translated() {
    let r = request(
        Endpoint::Messages,
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"stream":true}"#,
    );
    let p = prepare(&r, ProviderKind::OpenAi, &target(), "gpt", 1).unwrap();
    let body = sent(&p);
    assert_eq!(body["model"], "gpt");
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(p.exchange.conversion, Conversion::MessagesToChat);
    assert_eq!(
        p.request.uri(),
        "https://api.example.com/v1/chat/completions"
    );
}

#[test]
fn endpoints_an_api_lacks_are_unsupported_not_client_errors() {
    for endpoint in [Endpoint::Embeddings, Endpoint::Completions] {
        let r = request(endpoint, r#"{"model":"m","input":"x","prompt":"x"}"#);
        assert!(matches!(
            prepare(&r, ProviderKind::Anthropic, &target(), "m", 1),
            Err(PrepareError::Unsupported { .. })
        ));
    }
}

#[test]
fn untranslatable_requests_name_the_field() {
    let r = request(
        Endpoint::ChatCompletions,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":3}"#,
    );
    match prepare(&r, ProviderKind::Anthropic, &target(), "m", 1) {
        Err(PrepareError::Invalid(e)) => assert_eq!(e.param.as_deref(), Some("n")),
        other => panic!("{other:?}"),
    }
    let r = request(Endpoint::ChatCompletions, r#"{"model":"m","messages":7}"#);
    match prepare(&r, ProviderKind::Anthropic, &target(), "m", 1) {
        Err(PrepareError::Invalid(e)) => assert_eq!(e.param.as_deref(), Some("messages")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_request_checks_name_the_field() {
    let h = HeaderMap::new();
    let err = |body: &str| {
        ClientRequest::parse(Endpoint::ChatCompletions, body.as_bytes(), &h).unwrap_err()
    };
    assert_eq!(err("{").param, None);
    assert_eq!(err("[1]").param, None);
    assert_eq!(err(r#"{"messages":[]}"#).param.as_deref(), Some("model"));
    assert_eq!(err(r#"{"model":""}"#).param.as_deref(), Some("model"));
    assert_eq!(err(r#"{"model":1}"#).param.as_deref(), Some("model"));
    assert_eq!(
        err(r#"{"model":"m","stream":"yes"}"#).param.as_deref(),
        Some("stream")
    );
    let e = ClientRequest::parse(
        Endpoint::Embeddings,
        br#"{"model":"m","input":"x","stream":true}"#,
        &h,
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("stream"));
}

#[test]
fn keyless_targets_send_no_auth_and_the_key_never_prints() {
    let r = request(Endpoint::ChatCompletions, r#"{"model":"m","messages":[]}"#);
    let t = Target {
        base_url: "http://127.0.0.1:1/v1".into(),
        ..Target::default()
    };
    let p = prepare(&r, ProviderKind::OpenAi, &t, "m", 1).unwrap();
    assert!(p.request.headers().get(AUTHORIZATION).is_none());
    assert!(!format!("{:?}", target()).contains("sk-secret"));
}

#[test]
fn a_responses_follow_up_goes_with_the_upstreams_id() {
    let wrapped = crate::responses::client_id("acct-a", "resp_up7");
    let r = request(
        Endpoint::Responses,
        &format!(
            r#"{{"model":"gpt","input":"more","previous_response_id":"{wrapped}","max_output_tokens":9}}"#
        ),
    );
    assert_eq!(r.pinned_provider(), Some("acct-a"));
    assert_eq!(r.max_tokens(), Some(9));
    let p = prepare(&r, ProviderKind::OpenAi, &target(), "gpt-4.1", 1).unwrap();
    assert_eq!(p.request.uri(), "https://api.example.com/v1/responses");
    let body = sent(&p);
    assert_eq!(body["previous_response_id"], "resp_up7");
    assert_eq!(body["model"], "gpt-4.1");
    assert_eq!(&*p.exchange.provider, "acct-a");
    // A first request goes as sent; an id the gateway did not wrap too.
    let r = request(
        Endpoint::Responses,
        r#"{"model":"gpt","input":"hi","previous_response_id":"resp_direct"}"#,
    );
    assert_eq!(r.pinned_provider(), None);
    let p = prepare(&r, ProviderKind::OpenAi, &target(), "m", 1).unwrap();
    assert_eq!(sent(&p)["previous_response_id"], "resp_direct");
    // Anthropic is served through chat completions, which keeps no
    // response to follow up: the client's to know, naming the field.
    match prepare(&r, ProviderKind::Anthropic, &target(), "m", 1) {
        Err(PrepareError::Invalid(e)) => {
            assert_eq!(e.param.as_deref(), Some("previous_response_id"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn input_items_are_asked_with_the_clients_query() {
    let items = |query| {
        prepare_stored_response(
            ProviderKind::OpenAi,
            &target(),
            Method::GET,
            "resp_up7",
            Stored::InputItems { query },
        )
    };
    assert_eq!(
        items(None).unwrap().uri(),
        "https://api.example.com/v1/responses/resp_up7/input_items"
    );
    assert_eq!(
        items(Some("limit=2&order=asc&include[]=message.input_image.image_url")).unwrap().uri(),
        "https://api.example.com/v1/responses/resp_up7/input_items?limit=2&order=asc&include[]=message.input_image.image_url"
    );
    for bad in ["a=b#c", "a=b c", "a=/x", "x=\n"] {
        assert!(
            matches!(items(Some(bad)), Err(PrepareError::Invalid(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn a_stored_response_is_asked_of_its_provider_with_its_credential() {
    let get = prepare_stored_response(
        ProviderKind::OpenAi,
        &target(),
        Method::GET,
        "resp_up7",
        Stored::Response,
    )
    .unwrap();
    assert_eq!(get.uri(), "https://api.example.com/v1/responses/resp_up7");
    assert_eq!(get.method(), Method::GET);
    assert_eq!(get.headers()[AUTHORIZATION], "Bearer sk-secret");
    assert_eq!(get.headers()["x-org"], "acme");
    for bad in ["", "resp/../x", "resp?x=1", "resp up"] {
        assert!(
            prepare_stored_response(
                ProviderKind::OpenAi,
                &target(),
                Method::DELETE,
                bad,
                Stored::Response
            )
            .is_err(),
            "{bad:?}"
        );
    }
    assert!(matches!(
        prepare_stored_response(
            ProviderKind::Anthropic,
            &target(),
            Method::GET,
            "resp_1",
            Stored::Response
        ),
        Err(PrepareError::Unsupported { .. })
    ));
}
