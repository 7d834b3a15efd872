//! The Responses API on deployments that do not have it (Anthropic,
//! Gemini): translated through chat completions both ways, whole and
//! streamed, with tools, usage, and clear refusals of what cannot be
//! translated.

use super::*;

fn gemini_route(plane: &DataPlane) {
    plane.write(
        "/admin/v1/providers",
        &json!({"name": "gem", "kind": "gemini", "api_key": "AIza-any",
                "base_url": format!("{}/v1beta", plane.mock.url())}),
    );
    plane.create_route("gem", &[("gem", "mock-gpt", 1)], &[]);
    plane.wait_served(&plane.key, &["gem"]);
}

#[test]
fn the_responses_api_is_translated_for_anthropic_and_gemini_deployments() {
    let plane = start();
    gemini_route(&plane);
    for id in plane.cluster.ids() {
        for route in [CLAUDE, "gem"] {
            let what = format!("node {id}, responses on {route}");
            let reply = plane.proxy(id).post(
                "/v1/responses",
                &json!({"model": route, "instructions": "be brief",
                        "input": "hello from the responses api", "max_output_tokens": 100}),
            );
            assert_json_ok(&reply, &what);
            let response_id = reply.body["id"].as_str().unwrap_or("").to_owned();
            assert!(response_id.starts_with("resp_"), "{what}: {}", reply.text);
            assert_eq!(reply.body["object"], "response", "{what}: {}", reply.text);
            assert_eq!(reply.body["status"], "completed", "{what}: {}", reply.text);
            let text = reply.body["output"][0]["content"][0]["text"]
                .as_str()
                .unwrap_or("");
            assert!(
                text.contains("hello from the responses api"),
                "{what}: {}",
                reply.text
            );
            assert!(
                reply.body["usage"]["output_tokens"].as_u64() > Some(0),
                "{what}: {}",
                reply.text
            );

            // Streamed: typed events, text deltas, the completed response.
            let mut request =
                json!({"model": route, "input": "stream these words", "stream": true});
            let stream = read_stream(
                plane.proxy(id).stream("/v1/responses", &request),
                &format!("{what}, streamed"),
            );
            assert_responses_stream_whole(&stream);
            let deltas: String = stream
                .events
                .iter()
                .filter(|e| e.event.as_deref() == Some("response.output_text.delta"))
                .filter_map(|e| e.json()["delta"].as_str().map(str::to_owned))
                .collect();
            assert!(deltas.contains("stream these words"), "{}", stream.dump());
            let last = stream.events.last().expect("events").json();
            assert!(
                last["response"]["usage"]["total_tokens"].as_u64() > Some(0),
                "{}",
                stream.dump()
            );

            // A function call comes back as a function_call item.
            request = json!({"model": route, "input": "Paris", "tools": [
                {"type": "function", "name": "get_weather",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]});
            let reply = plane.proxy(id).post("/v1/responses", &request);
            assert_json_ok(&reply, &format!("{what}, tools"));
            let call = reply.body["output"]
                .as_array()
                .and_then(|o| o.iter().find(|i| i["type"] == "function_call"))
                .unwrap_or_else(|| panic!("{what}: no function call: {}", reply.text));
            assert_eq!(call["name"], "get_weather");
            assert_eq!(call["arguments"], "{\"city\":\"Paris\"}");

            // Nothing is stored: no follow-up by id, no read back.
            let reply = plane.proxy(id).post(
                "/v1/responses",
                &json!({"model": route, "input": "and then", "previous_response_id": "resp_x"}),
            );
            assert_eq!(reply.status, 400, "{what}: {}", reply.text);
            assert_eq!(
                reply.body["error"]["param"], "previous_response_id",
                "{what}: {}",
                reply.text
            );
            let response_id = call["id"]
                .as_str()
                .unwrap_or("fc_x")
                .replacen("fc_", "resp_", 1);
            let stored = plane.proxy(id).get(&format!("/v1/responses/{response_id}"));
            assert_eq!(stored.status, 404, "{what}: {}", stored.text);
        }
    }
}
