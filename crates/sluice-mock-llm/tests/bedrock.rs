//! AWS Bedrock's Converse API as the mock speaks it, over HTTP, with every
//! request SigV4-signed by a signer written here from AWS's spec: what the
//! gateway's Bedrock provider is tested against.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use ring::{digest, hmac};
use serde_json::{json, Value};
use sluice_mock_llm::{Endpoint, MockAws, MockConfig, MockHandle};
use support::{bounded, client, start};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
/// `HAIKU` as a client puts it in a path.
const HAIKU_PATH: &str = "anthropic.claude-3-haiku-20240307-v1%3A0";

fn aws() -> MockAws {
    MockAws {
        access_key_id: "AKIDMOCK".into(),
        secret_access_key: "mock/secret+key".into(),
        session_token: None,
        region: "eu-west-3".into(),
    }
}

fn config(aws: MockAws) -> MockConfig {
    MockConfig {
        models: vec![HAIKU.into(), "mock-bedrock".into()],
        aws: Some(aws),
        ..MockConfig::default()
    }
}

/// What a client signs with; a field changed makes a wrong signature.
#[derive(Clone)]
struct Signer {
    key_id: String,
    secret: String,
    token: Option<String>,
    region: String,
    service: String,
    at: SystemTime,
}

impl Signer {
    fn of(aws: &MockAws) -> Signer {
        Signer {
            key_id: aws.access_key_id.clone(),
            secret: aws.secret_access_key.clone(),
            token: aws.session_token.clone(),
            region: aws.region.clone(),
            service: "bedrock".into(),
            at: SystemTime::now(),
        }
    }

    /// Adds `x-amz-date`, the session token and `Authorization` to `req`,
    /// signing `host`, `x-amz-date` and the token (AWS's "Create a signed
    /// AWS API request", header signing).
    fn sign(&self, req: &mut reqwest::Request) {
        let amz_date = amz_date(self.at);
        let day = &amz_date[..8];
        let url = req.url();
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap()),
            None => url.host_str().unwrap().to_owned(),
        };
        let mut headers = vec![("host", host), ("x-amz-date", amz_date.clone())];
        if let Some(token) = &self.token {
            headers.push(("x-amz-security-token", token.clone()));
        }
        let canonical_headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        let signed_headers = headers
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(";");
        let body = req.body().and_then(|b| b.as_bytes()).unwrap_or_default();
        let canonical = format!(
            "{}\n{}\n\n{canonical_headers}\n{signed_headers}\n{}",
            req.method(),
            uri_encode(url.path()),
            hex(digest::digest(&digest::SHA256, body).as_ref()),
        );
        let scope = format!("{day}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let mut key = format!("AWS4{}", self.secret).into_bytes();
        for part in [
            day,
            self.region.as_str(),
            self.service.as_str(),
            "aws4_request",
            to_sign.as_str(),
        ] {
            key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
                .as_ref()
                .to_vec();
        }
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={}",
            self.key_id,
            hex(&key)
        );
        let sent = req.headers_mut();
        for (name, value) in headers.into_iter().skip(1) {
            sent.insert(name, value.parse().unwrap());
        }
        sent.insert("authorization", authorization.parse().unwrap());
    }
}

/// Every byte but `A-Za-z0-9-._~/` as `%XX`: the path encoded once more.
fn uri_encode(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDDTHHMMSSZ` of `t` (the civil date by days since 1970).
fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (mut days, rest) = (secs / 86_400, secs % 86_400);
    let mut year = 1970;
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while days >= lengths[month] {
        days -= lengths[month];
        month += 1;
    }
    format!(
        "{year:04}{:02}{:02}T{:02}{:02}{:02}Z",
        month + 1,
        days + 1,
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `POST {path}` with `body`, signed by `signer` (unsigned when `None`),
/// with `extra` headers added after signing.
async fn call(
    mock: &MockHandle,
    path: &str,
    body: &Value,
    signer: Option<&Signer>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let client = client();
    let mut builder = client
        .post(format!("{}{path}", mock.base_url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let mut req = builder.build().unwrap();
    if let Some(signer) = signer {
        signer.sign(&mut req);
    }
    client.execute(req).await.expect("request sent")
}

fn converse(model_path: &str) -> String {
    format!("/model/{model_path}/converse")
}

fn converse_stream(model_path: &str) -> String {
    format!("/model/{model_path}/converse-stream")
}

fn hello() -> Value {
    json!({
        "system": [{"text": "be brief"}],
        "messages": [{"role": "user", "content": [{"text": "hello bedrock"}]}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5},
    })
}

/// An error answer: its status, `x-amzn-ErrorType` type and message.
async fn error(res: reqwest::Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let kind = res.headers()["x-amzn-errortype"]
        .to_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let body: Value = res.json().await.unwrap();
    (status, kind, body["message"].as_str().unwrap().to_owned())
}

/// The frames of an event-stream body: event type and JSON payload. The
/// bytes must end on a frame boundary.
fn frames(mut bytes: &[u8]) -> Vec<(String, Value)> {
    let mut decoder = MessageFrameDecoder::new();
    let mut frames = Vec::new();
    while let DecodedFrame::Complete(message) = decoder.decode_frame(&mut bytes).unwrap() {
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
        };
        assert_eq!(header(":message-type").as_deref(), Some("event"));
        assert_eq!(header(":content-type").as_deref(), Some("application/json"));
        frames.push((
            header(":event-type").unwrap(),
            serde_json::from_slice(message.payload()).unwrap(),
        ));
    }
    assert!(
        bytes.is_empty(),
        "{} bytes after the last frame",
        bytes.len()
    );
    frames
}

#[tokio::test]
async fn a_signed_converse_answers_with_text_and_usage() {
    bounded(async {
        let mock = start(config(aws())).await;
        let res = call(&mock, &converse(HAIKU_PATH), &hello(), Some(&Signer::of(&aws())), &[]).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("x-amzn-requestid"));
        assert_eq!(res.headers()["content-type"], "application/json");
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["output"]["message"],
            json!({"role": "assistant", "content": [{"text": format!("Mock reply from {HAIKU}: hello bedrock")}]})
        );
        assert_eq!(body["stopReason"], "end_turn");
        // "be brief" and "hello bedrock" cost 3 each; the reply is 6 words.
        assert_eq!(
            body["usage"],
            json!({"inputTokens": 6, "outputTokens": 6, "totalTokens": 12})
        );
        assert_eq!(body["metrics"]["latencyMs"], 0);

        // A `:` sent as is is signed as `%3A`, and verifies as well.
        let res = call(&mock, &converse(HAIKU), &hello(), Some(&Signer::of(&aws())), &[]).await;
        assert_eq!(res.status(), 200);

        let stats = mock.stats();
        assert_eq!(stats.bedrock_requests, 2);
        assert_eq!(stats.requests_to(Endpoint::Converse), 2);
        assert_eq!(stats.unauthorized, 0);
    })
    .await;
}

#[tokio::test]
async fn max_tokens_cuts_the_reply() {
    bounded(async {
        let mock = start(config(aws())).await;
        let mut req = hello();
        req["inferenceConfig"]["maxTokens"] = json!(2);
        let res = call(
            &mock,
            &converse("mock-bedrock"),
            &req,
            Some(&Signer::of(&aws())),
            &[],
        )
        .await;
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["output"]["message"]["content"][0]["text"],
            "Mock reply"
        );
        assert_eq!(body["stopReason"], "max_tokens");
        assert_eq!(body["usage"]["outputTokens"], 2);
    })
    .await;
}

#[tokio::test]
async fn wrong_signatures_and_keys_are_refused_as_aws_does() {
    bounded(async {
        let mock = start(config(aws())).await;
        let path = converse(HAIKU_PATH);
        let wrong_secret = Signer {
            secret: "another secret".into(),
            ..Signer::of(&aws())
        };
        let (status, kind, message) =
            error(call(&mock, &path, &hello(), Some(&wrong_secret), &[]).await).await;
        assert_eq!((status, kind.as_str()), (403, "InvalidSignatureException"));
        assert!(message.starts_with("The request signature we calculated does not match"));
        let stats = mock.stats();
        assert_eq!((stats.signature_refusals, stats.unauthorized), (1, 1));

        let unknown_key = Signer {
            key_id: "AKIDOTHER".into(),
            ..Signer::of(&aws())
        };
        let (status, kind, message) =
            error(call(&mock, &path, &hello(), Some(&unknown_key), &[]).await).await;
        assert_eq!(
            (status, kind.as_str()),
            (403, "UnrecognizedClientException")
        );
        assert_eq!(
            message,
            "The security token included in the request is invalid."
        );

        let (status, kind, message) = error(call(&mock, &path, &hello(), None, &[]).await).await;
        assert_eq!(
            (status, kind.as_str(), message.as_str()),
            (
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token"
            )
        );

        let wrong_region = Signer {
            region: "us-east-1".into(),
            ..Signer::of(&aws())
        };
        let (_, kind, message) =
            error(call(&mock, &path, &hello(), Some(&wrong_region), &[]).await).await;
        assert_eq!(kind, "InvalidSignatureException");
        assert!(message.contains("valid region"), "{message}");

        let stale = Signer {
            at: SystemTime::now() - Duration::from_secs(600),
            ..Signer::of(&aws())
        };
        let (_, kind, message) = error(call(&mock, &path, &hello(), Some(&stale), &[]).await).await;
        assert_eq!(kind, "InvalidSignatureException");
        assert!(message.starts_with("Signature expired: "), "{message}");

        let stats = mock.stats();
        assert_eq!(stats.signature_refusals, 3);
        assert_eq!(stats.unauthorized, 5);
        assert_eq!(stats.bedrock_requests, 5);
    })
    .await;
}

#[tokio::test]
async fn a_required_session_token_must_be_sent_and_signed() {
    bounded(async {
        let identity = MockAws {
            session_token: Some("session/token==".into()),
            ..aws()
        };
        let mock = start(config(identity.clone())).await;
        let path = converse(HAIKU_PATH);
        let res = call(&mock, &path, &hello(), Some(&Signer::of(&identity)), &[]).await;
        assert_eq!(res.status(), 200);

        let without = Signer {
            token: None,
            ..Signer::of(&identity)
        };
        let (status, kind, _) =
            error(call(&mock, &path, &hello(), Some(&without), &[]).await).await;
        assert_eq!(
            (status, kind.as_str()),
            (403, "UnrecognizedClientException")
        );

        // Sent, but left out of the signed headers.
        let (status, kind, _) = error(
            call(
                &mock,
                &path,
                &hello(),
                Some(&without),
                &[("x-amz-security-token", "session/token==")],
            )
            .await,
        )
        .await;
        assert_eq!((status, kind.as_str()), (403, "InvalidSignatureException"));
    })
    .await;
}

#[tokio::test]
async fn without_an_aws_identity_any_request_is_taken() {
    bounded(async {
        let mock = start(MockConfig {
            models: vec!["mock-bedrock".into()],
            ..MockConfig::default()
        })
        .await;
        let res = call(&mock, &converse("mock-bedrock"), &hello(), None, &[]).await;
        assert_eq!(res.status(), 200);
    })
    .await;
}

#[tokio::test]
async fn converse_stream_is_event_stream_frames_from_message_start_to_metadata() {
    bounded(async {
        let mock = start(config(aws())).await;
        let res = call(&mock, &converse_stream(HAIKU_PATH), &hello(), Some(&Signer::of(&aws())), &[]).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"],
            "application/vnd.amazon.eventstream"
        );
        let frames = frames(&res.bytes().await.unwrap());
        let types: Vec<&str> = frames.iter().map(|(t, _)| t.as_str()).collect();
        let mut expected = vec!["messageStart"];
        expected.extend(["contentBlockDelta"; 6]);
        expected.extend(["contentBlockStop", "messageStop", "metadata"]);
        assert_eq!(types, expected);
        assert_eq!(frames[0].1, json!({"role": "assistant"}));
        let text: String = frames[1..7]
            .iter()
            .map(|(_, p)| {
                assert_eq!(p["contentBlockIndex"], 0);
                p["delta"]["text"].as_str().unwrap()
            })
            .collect();
        assert_eq!(text, format!("Mock reply from {HAIKU}: hello bedrock"));
        assert_eq!(frames[7].1, json!({"contentBlockIndex": 0}));
        assert_eq!(frames[8].1, json!({"stopReason": "end_turn"}));
        assert_eq!(
            frames[9].1,
            json!({"usage": {"inputTokens": 6, "outputTokens": 6, "totalTokens": 12}, "metrics": {"latencyMs": 0}})
        );
        let stats = mock
            .wait_for_stats(|s| s.streams_completed == 1 && s.in_flight == 0)
            .await;
        assert_eq!(stats.requests_to(Endpoint::ConverseStream), 1);
    })
    .await;
}

#[tokio::test]
async fn a_tool_round_calls_the_tool_then_answers_its_result_in_text() {
    bounded(async {
        let mock = start(config(aws())).await;
        let signer = Signer::of(&aws());
        let tool_config = json!({
            "tools": [
                {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}},
                {"toolSpec": {"name": "get_weather", "description": "Weather now",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}
            ],
            "toolChoice": {"tool": {"name": "get_weather"}}
        });
        let ask = json!({"role": "user", "content": [{"text": "Paris"}]});
        let req = json!({"messages": [ask], "toolConfig": tool_config});
        let res = call(&mock, &converse(HAIKU_PATH), &req, Some(&signer), &[]).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["stopReason"], "tool_use");
        let tool_use = &body["output"]["message"]["content"][0]["toolUse"];
        assert_eq!(tool_use["name"], "get_weather");
        assert_eq!(tool_use["input"], json!({"city": "Paris"}));
        let id = tool_use["toolUseId"].as_str().unwrap();
        assert!(id.starts_with("tooluse_mock"), "{id}");

        // The same request streamed: the input comes as JSON text in two halves.
        let res = call(&mock, &converse_stream(HAIKU_PATH), &req, Some(&signer), &[]).await;
        let frames = frames(&res.bytes().await.unwrap());
        let types: Vec<&str> = frames.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "messageStart",
                "contentBlockStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(frames[1].1["start"]["toolUse"]["name"], "get_weather");
        let input: String = frames[2..4]
            .iter()
            .map(|(_, p)| p["delta"]["toolUse"]["input"].as_str().unwrap())
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&input).unwrap(), json!({"city": "Paris"}));
        assert_eq!(frames[5].1["stopReason"], "tool_use");

        let answered = json!({
            "messages": [
                ask,
                {"role": "assistant", "content": [{"toolUse": tool_use}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": id, "content": [{"text": "22C"}], "status": "success"}}]}
            ],
            "toolConfig": tool_config
        });
        let res = call(&mock, &converse(HAIKU_PATH), &answered, Some(&signer), &[]).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["stopReason"], "end_turn");
        assert_eq!(
            body["output"]["message"]["content"][0]["text"],
            format!("Mock reply from {HAIKU}: 22C")
        );
    })
    .await;
}

#[tokio::test]
async fn a_dropped_stream_is_cut_between_frames() {
    bounded(async {
        let mock = start(config(aws())).await;
        let mut res = call(
            &mock,
            &converse_stream(HAIKU_PATH),
            &hello(),
            Some(&Signer::of(&aws())),
            &[("x-mock-drop-after-chunks", "3")],
        )
        .await;
        assert_eq!(res.status(), 200);
        let mut received = Vec::new();
        let outcome = loop {
            match res.chunk().await {
                Ok(Some(bytes)) => received.extend_from_slice(&bytes),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        assert!(outcome.is_err(), "the body must end in an error");
        let types: Vec<String> = frames(&received).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            types,
            ["messageStart", "contentBlockDelta", "contentBlockDelta"]
        );
        let stats = mock.wait_for_stats(|s| s.streams_dropped == 1).await;
        assert_eq!(stats.streams_completed, 0);
    })
    .await;
}

#[tokio::test]
async fn failures_are_in_bedrocks_error_shape() {
    bounded(async {
        let mock = start(config(aws())).await;
        let signer = Signer::of(&aws());
        let res = call(
            &mock,
            &converse(HAIKU_PATH),
            &hello(),
            Some(&signer),
            &[("x-mock-status", "429"), ("x-mock-retry-after-ms", "2500")],
        )
        .await;
        assert_eq!(res.headers()["retry-after"], "3");
        assert_eq!(res.headers()["retry-after-ms"], "2500");
        assert_eq!(
            res.headers()["x-amzn-errortype"],
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        );
        let (status, _, message) = error(res).await;
        assert_eq!(status, 429);
        assert_eq!(
            message,
            "Too many requests, please wait before trying again."
        );

        for (status, kind) in [
            ("500", "InternalServerException"),
            ("503", "ServiceUnavailableException"),
            ("400", "ValidationException"),
        ] {
            let res = call(
                &mock,
                &converse_stream(HAIKU_PATH),
                &hello(),
                Some(&signer),
                &[("x-mock-status", status)],
            )
            .await;
            let (got, got_kind, _) = error(res).await;
            assert_eq!(
                (got.to_string().as_str(), got_kind.as_str()),
                (status, kind)
            );
        }

        let (status, kind, message) =
            error(call(&mock, &converse("nope"), &hello(), Some(&signer), &[]).await).await;
        assert_eq!((status, kind.as_str()), (404, "ResourceNotFoundException"));
        assert_eq!(
            message,
            "Could not resolve the foundation model from the provided model identifier."
        );

        let twice = json!({"messages": [
            {"role": "user", "content": [{"text": "a"}]},
            {"role": "user", "content": [{"text": "b"}]}
        ]});
        let (status, kind, message) =
            error(call(&mock, &converse(HAIKU_PATH), &twice, Some(&signer), &[]).await).await;
        assert_eq!((status, kind.as_str()), (400, "ValidationException"));
        assert!(
            message.starts_with("A conversation must alternate"),
            "{message}"
        );

        // The signature is checked before the injected failure, as auth is.
        let (status, kind, _) = error(
            call(
                &mock,
                &converse(HAIKU_PATH),
                &hello(),
                None,
                &[("x-mock-status", "500")],
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, kind.as_str()),
            (403, "MissingAuthenticationTokenException")
        );
    })
    .await;
}
