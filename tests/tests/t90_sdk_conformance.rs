//! The official OpenAI and Anthropic Python SDKs against every node of a
//! real cluster: `tests/sdk/conformance.py`, run with the interpreter of a
//! virtualenv holding `tests/sdk/requirements.txt`.
//!
//! The interpreter is `$SLUICE_SDK_PYTHON`, else `target/sdk-venv/bin/python`
//! in the workspace. Without it the test is reported `ignored`, with a
//! note saying how to create it, except under CI (`$CI` set), where it
//! fails: CI must run it (see `sluice_e2e::needs`).

use sluice_e2e::dataplane::{
    DataPlane, MockLlm, AWS_ACCESS_KEY_ID, AWS_REGION, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
    CLAUDE, EMBED, ENTRA_CLIENT_SECRET, GOOGLE_SA_PRIVATE_KEY, GPT,
};
use sluice_e2e::needs::{sdk_python, workspace, Suite};
use sluice_e2e::{json, Cluster};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the whole script may run.
const SCRIPT_BUDGET: Duration = Duration::from_secs(240);
const RATE_LIMITED: &str = "rate-limited";
const BROKEN: &str = "broken";
const AZURE: &str = "azure-gpt";
const GEMINI: &str = "gemini-gpt";
const VERTEX: &str = "vertex-gpt";
const BEDROCK: &str = "bedrock-gpt";

fn main() -> std::process::ExitCode {
    Suite::new()
        .needing(
            "official_sdks_work_through_every_node",
            sdk_python(),
            official_sdks_work_through_every_node,
        )
        .run()
}

fn official_sdks_work_through_every_node(python: PathBuf) {
    let plane = DataPlane::start(
        Cluster::builder()
            .nodes(3)
            .fast_elections()
            .config_extra("[proxy]\nbackoff_base_ms = 10\nbackoff_max_ms = 50\n")
            .budget(SCRIPT_BUDGET + Duration::from_secs(60)),
    );
    // The mock's 429 asks for 50 ms, so the proxy's own retries stay short.
    plane.create_provider(
        "limited",
        "openai",
        json!({"x-mock-status": "429", "x-mock-retry-after-ms": "50"}),
    );
    plane.create_provider("failing", "openai", json!({"x-mock-status": "500"}));
    plane.create_route(RATE_LIMITED, &[("limited", "mock-gpt", 1)], &[]);
    plane.create_route(BROKEN, &[("failing", "mock-gpt", 1)], &[]);
    // Azure OpenAI at a mock that checks Azure's credentials: Entra ID
    // tokens, renewed every few seconds while the script runs.
    let azure = MockLlm::start_azure(
        &plane.cluster.root().join("mock-azure.log"),
        plane.cluster.deadline(),
        5,
    );
    plane.create_azure_provider(
        "azure",
        &azure,
        json!({"api_version": "v1", "entra": azure.entra_settings()}),
        ENTRA_CLIENT_SECRET,
        json!({}),
    );
    plane.create_route(AZURE, &[("azure", "mock-gpt", 1)], &[]);
    // Gemini at the standard mock (its key unchecked there).
    plane.write(
        "/admin/v1/providers",
        &json!({"name": "gemini", "kind": "gemini", "api_key": "AIza-sdk",
                "base_url": format!("{}/v1beta", plane.mock.url())}),
    );
    plane.create_route(GEMINI, &[("gemini", "mock-gpt", 1)], &[]);
    // Vertex AI at a mock that verifies the service account's JWTs.
    let google = MockLlm::start_google(
        &plane.cluster.root().join("mock-google.log"),
        plane.cluster.deadline(),
        5,
    );
    plane.write(
        "/admin/v1/providers",
        &json!({"name": "vertex", "kind": "vertex", "base_url": google.vertex_base_url(),
                "api_key": google.service_account_key(GOOGLE_SA_PRIVATE_KEY)}),
    );
    plane.create_route(VERTEX, &[("vertex", "mock-gpt", 1)], &[]);
    // AWS Bedrock at a mock that verifies every SigV4 signature.
    let aws = MockLlm::start_aws(
        &plane.cluster.root().join("mock-aws.log"),
        plane.cluster.deadline(),
    );
    let keys = json!({"access_key_id": AWS_ACCESS_KEY_ID,
                      "secret_access_key": AWS_SECRET_ACCESS_KEY,
                      "session_token": AWS_SESSION_TOKEN});
    plane.write(
        "/admin/v1/providers",
        &json!({"name": "bedrock", "kind": "bedrock", "base_url": aws.url(),
                "bedrock": {"region": AWS_REGION}, "api_key": keys.to_string()}),
    );
    plane.create_route(BEDROCK, &[("bedrock", "mock-gpt", 1)], &[]);
    plane.wait_served(
        &plane.key,
        &[RATE_LIMITED, BROKEN, AZURE, GEMINI, VERTEX, BEDROCK],
    );

    let urls: Vec<String> = plane
        .cluster
        .ids()
        .into_iter()
        .map(|id| plane.cluster.proxy_url(id))
        .collect();
    let script = workspace().join("tests/sdk/conformance.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env("PYTHONUNBUFFERED", "1")
        .env("SLUICE_PROXY_URLS", urls.join(","))
        .env("SLUICE_API_KEY", &plane.key)
        .env("SLUICE_RESTRICTED_KEY", &plane.restricted_key)
        .env("SLUICE_ROUTE_GPT", GPT)
        .env("SLUICE_ROUTE_CLAUDE", CLAUDE)
        .env("SLUICE_ROUTE_EMBED", EMBED)
        .env("SLUICE_ROUTE_RATE_LIMITED", RATE_LIMITED)
        .env("SLUICE_ROUTE_BROKEN", BROKEN)
        .env("SLUICE_ROUTE_AZURE", AZURE)
        .env("SLUICE_ROUTE_GEMINI", GEMINI)
        .env("SLUICE_ROUTE_VERTEX", VERTEX)
        .env("SLUICE_ROUTE_BEDROCK", BEDROCK)
        // The SDKs must talk to the proxy, never to a configured proxy server.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} {}: {e}", python.display(), script.display()));

    // The script's lines as they come (so that a time-out shows how far it
    // got); stderr is read whole.
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let stdout_reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => {
                    if lines_tx.send(line).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = plane.cluster.deadline().within(SCRIPT_BUDGET);
    let mut output = String::new();
    let mut timed_out = false;
    loop {
        match lines.recv_timeout(deadline.remaining().max(Duration::from_millis(1))) {
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().expect("waiting for the SDK script");
    let _ = stdout_reader.join();
    let stderr = stderr_reader.join().unwrap_or_default();
    assert!(
        !timed_out,
        "the SDK script did not finish within {SCRIPT_BUDGET:?}\n{output}\n--- stderr ---\n{stderr}"
    );
    assert!(
        status.success(),
        "the SDK script failed ({status})\n{output}\n--- stderr ---\n{stderr}"
    );
    // The Azure cases reached the Azure mock by its paths, every one with
    // a credential it accepted: a token of its own Entra ID.
    let stats = azure.stats();
    assert!(stats["azure_requests"].as_u64() > Some(0), "{stats}");
    assert_eq!(stats["unauthorized"], 0, "{stats}");
    assert!(stats["tokens_issued"].as_u64() >= Some(1), "{stats}");
    // The Bedrock cases reached the Converse API, streamed and not, every
    // one signed as the mock's own SigV4 verifier expects.
    let stats = aws.stats();
    for path in [
        "/model/{modelId}/converse",
        "/model/{modelId}/converse-stream",
    ] {
        assert!(
            stats["requests"][path].as_u64() > Some(0),
            "{path}: {stats}"
        );
    }
    assert_eq!(stats["unauthorized"], 0, "{stats}");
    // And the Gemini cases reached Gemini's API, streamed and not.
    let stats = plane.mock.stats();
    for method in ["generateContent", "streamGenerateContent"] {
        let path = format!("/v1beta/models:{method}");
        assert!(
            stats["requests"][&path].as_u64() > Some(0),
            "{path}: {stats}"
        );
    }
}
