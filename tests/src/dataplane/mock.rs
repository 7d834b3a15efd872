//! A `sluice mock-llm` child on a port picked at run time: the upstream
//! every data plane test talks to, through the proxy or directly for its
//! `/_mock/stats`.

use crate::binary::sluice_bin;
use crate::deadline::Deadline;
use crate::process::Process;
use reqwest::blocking::Client;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The resource key of [`MockLlm::start_azure`].
pub const AZURE_RESOURCE_KEY: &str = "azure-resource-key-e2e";
/// The app registration [`MockLlm::start_azure`]'s Entra ID knows.
pub const ENTRA_TENANT: &str = "contoso-e2e";
pub const ENTRA_CLIENT_ID: &str = "0b9e3c43-84a1-4b5c-9d1e-5f7a2d6c8e01";
pub const ENTRA_CLIENT_SECRET: &str = "entra-client-secret-e2e";

/// The service account of [`MockLlm::start_google`].
pub const GOOGLE_SA_EMAIL: &str = "sluice-e2e@sluice-e2e.iam.gserviceaccount.com";
/// Its private key: made for tests only, shared with sluice-providers'.
pub const GOOGLE_SA_PRIVATE_KEY: &str =
    include_str!("../../../crates/sluice-providers/src/google/test-key.pem");
const GOOGLE_SA_PUBLIC_KEY: &str =
    include_str!("../../../crates/sluice-providers/src/google/test-key.pub.pem");

/// The IAM identity [`MockLlm::start_aws`] takes signatures of: AWS's own
/// documentation example keys, with a session token.
pub const AWS_ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
pub const AWS_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const AWS_SESSION_TOKEN: &str = "e2e-session-token-FwoGZXIvYXdzEXAMPLE";
/// The region its signatures must be for.
pub const AWS_REGION: &str = "us-east-1";

/// A `sluice mock-llm` child on a port picked at run time.
#[derive(Debug)]
pub struct MockLlm {
    process: Process,
    url: String,
    http: Client,
}

impl MockLlm {
    /// Starts `sluice mock-llm --listen 127.0.0.1:0` with its output in
    /// `log`, and waits (by `deadline`, at most 15 s) for the address it
    /// prints.
    pub fn start(log: &Path, deadline: Deadline) -> MockLlm {
        Self::start_with(log, deadline, &[], &[])
    }

    /// [`MockLlm::start`] with more `args` (`--api-key-env VAR` …) and
    /// environment variables `env` (the secrets those name).
    pub fn start_with(
        log: &Path,
        deadline: Deadline,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> MockLlm {
        let mut command = Command::new(sluice_bin());
        command
            .arg("mock-llm")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1");
        let mut process = Process::spawn("sluice mock-llm", command, log);
        let mut exited = None;
        let mut url = None;
        let found = deadline.within(Duration::from_secs(15)).poll(
            "sluice mock-llm to print its address",
            || {
                exited = process.try_exit();
                url = mock_url(&process.log_text());
                exited.is_some() || url.is_some()
            },
        );
        let url = match (url, exited, found) {
            (Some(url), _, _) => url,
            (None, Some(status), _) => panic!(
                "sluice mock-llm exited ({status}) before it listened\n{}",
                process.log_tail(30)
            ),
            (None, None, Err(timed_out)) => {
                panic!("{timed_out}\n{}", process.log_tail(30))
            }
            (None, None, Ok(_)) => unreachable!("the poll ends with an address or an exit"),
        };
        let http = Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("building the HTTP client");
        MockLlm { process, url, http }
    }

    /// A mock that checks Azure OpenAI's credentials: the resource key
    /// [`AZURE_RESOURCE_KEY`] in `api-key`, or tokens of its own Entra ID
    /// for the app registration [`ENTRA_TENANT`] / [`ENTRA_CLIENT_ID`] /
    /// [`ENTRA_CLIENT_SECRET`], which expire after `token_ttl_s`.
    pub fn start_azure(log: &Path, deadline: Deadline, token_ttl_s: u64) -> MockLlm {
        let ttl = token_ttl_s.to_string();
        Self::start_with(
            log,
            deadline,
            &[
                "--api-key-env",
                "MOCK_AZURE_KEY",
                "--entra-tenant-id",
                ENTRA_TENANT,
                "--entra-client-id",
                ENTRA_CLIENT_ID,
                "--entra-secret-env",
                "MOCK_ENTRA_SECRET",
                "--entra-token-ttl-s",
                &ttl,
            ],
            &[
                ("MOCK_AZURE_KEY", AZURE_RESOURCE_KEY),
                ("MOCK_ENTRA_SECRET", ENTRA_CLIENT_SECRET),
            ],
        )
    }

    /// A mock that is Google's token endpoint for the service account
    /// [`GOOGLE_SA_EMAIL`] (whose key [`MockLlm::service_account_key`]
    /// holds), its tokens expiring after `token_ttl_s`, and serves Vertex
    /// AI's paths with those tokens only.
    pub fn start_google(log: &Path, deadline: Deadline, token_ttl_s: u64) -> MockLlm {
        let public_key = log.with_file_name("google-sa.pub.pem");
        std::fs::write(&public_key, GOOGLE_SA_PUBLIC_KEY).expect("writing the public key");
        let ttl = token_ttl_s.to_string();
        Self::start_with(
            log,
            deadline,
            &[
                "--google-sa-email",
                GOOGLE_SA_EMAIL,
                "--google-sa-public-key",
                public_key.to_str().expect("a UTF-8 path"),
                "--google-token-ttl-s",
                &ttl,
            ],
            &[],
        )
    }

    /// A mock whose Bedrock paths take only requests SigV4-signed by
    /// [`AWS_ACCESS_KEY_ID`] with [`AWS_SESSION_TOKEN`] for [`AWS_REGION`]
    /// (verified by the mock's own SigV4 implementation).
    pub fn start_aws(log: &Path, deadline: Deadline) -> MockLlm {
        Self::start_with(
            log,
            deadline,
            &[
                "--aws-access-key-id",
                AWS_ACCESS_KEY_ID,
                "--aws-secret-env",
                "MOCK_AWS_SECRET",
                "--aws-session-token-env",
                "MOCK_AWS_TOKEN",
                "--aws-region",
                AWS_REGION,
            ],
            &[
                ("MOCK_AWS_SECRET", AWS_SECRET_ACCESS_KEY),
                ("MOCK_AWS_TOKEN", AWS_SESSION_TOKEN),
            ],
        )
    }

    /// A service account key file for [`GOOGLE_SA_EMAIL`] whose
    /// `token_uri` is this mock's, signed with `private_key` (the
    /// account's own, or another to be refused).
    pub fn service_account_key(&self, private_key: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "sluice-e2e",
            "private_key_id": "e2e-key-1",
            "private_key": private_key,
            "client_email": GOOGLE_SA_EMAIL,
            "client_id": "100000000000000000001",
            "token_uri": format!("{}/token", self.url),
        })
        .to_string()
    }

    /// A Vertex AI base URL on this mock.
    pub fn vertex_base_url(&self) -> String {
        format!(
            "{}/v1/projects/sluice-e2e/locations/us-central1/publishers/google",
            self.url
        )
    }

    /// The `azure.entra` settings of a provider on this mock's Entra ID.
    pub fn entra_settings(&self) -> Value {
        serde_json::json!({
            "tenant_id": ENTRA_TENANT,
            "client_id": ENTRA_CLIENT_ID,
            "authority_url": self.url,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The base URL a provider points at: `http://127.0.0.1:PORT/v1`.
    pub fn v1(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// `GET /_mock/stats`.
    pub fn stats(&self) -> Value {
        let response = self
            .http
            .get(format!("{}/_mock/stats", self.url))
            .send()
            .unwrap_or_else(|e| panic!("GET /_mock/stats: {e}\n{}", self.log_tail()));
        response.json().expect("/_mock/stats is JSON")
    }

    /// One counter of [`MockLlm::stats`] (`streams_cancelled` …).
    pub fn counter(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }

    /// Requests received on `path` (`/v1/chat/completions` …).
    pub fn requests_to(&self, path: &str) -> u64 {
        self.stats()["requests"][path].as_u64().unwrap_or(0)
    }

    /// The last lines of the mock's output.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(30)
    }
}

/// The base URL in `sluice mock-llm`'s start line, `mock model provider on URL (…`.
fn mock_url(log: &str) -> Option<String> {
    let rest = log.split("mock model provider on ").nth(1)?;
    let url = rest.split_whitespace().next()?;
    url.starts_with("http://").then(|| url.to_string())
}
