//! Azure OpenAI's paths and Microsoft Entra ID's token endpoint: what the
//! mock checks is what the gateway must get right.

mod support;

use serde_json::{json, Value};
use sluice_mock_llm::{MockConfig, MockEntra};
use support::{bounded, client, post, start};

fn config() -> MockConfig {
    MockConfig {
        require_api_key: Some("resource-key".into()),
        entra: Some(MockEntra {
            tenant_id: "tenant".into(),
            client_id: "client".into(),
            client_secret: "secret".into(),
            token_ttl_s: 60,
        }),
        ..MockConfig::default()
    }
}

fn chat() -> Value {
    json!({"model": "ignored", "messages": [{"role": "user", "content": "hi"}]})
}

const DATED: &str = "/openai/deployments/mock-gpt/chat/completions?api-version=2024-10-21";

async fn token(mock: &sluice_mock_llm::MockHandle, tenant: &str, secret: &str) -> (u16, Value) {
    let res = client()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", mock.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "client"),
            ("client_secret", secret),
            ("scope", "https://cognitiveservices.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn the_deployment_in_the_path_is_the_model_and_api_version_is_required() {
    bounded(async {
        let mock = start(config()).await;
        let key = [("api-key", "resource-key")];
        let res = post(&mock, DATED, chat(), &key).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["model"], "mock-gpt", "{body}");
        let res = post(
            &mock,
            "/openai/deployments/mock-gpt/chat/completions",
            chat(),
            &key,
        )
        .await;
        assert_eq!(res.status(), 400);
        let res = post(
            &mock,
            "/openai/deployments/no-such/chat/completions?api-version=2024-10-21",
            chat(),
            &key,
        )
        .await;
        assert_eq!(res.status(), 404);
        let mut v1 = chat();
        v1["model"] = json!("mock-gpt");
        let res = post(&mock, "/openai/v1/chat/completions", v1, &key).await;
        assert_eq!(res.status(), 200);
        assert_eq!(mock.stats().azure_requests, 3);
    })
    .await;
}

#[tokio::test]
async fn azure_takes_the_key_only_in_api_key() {
    bounded(async {
        let mock = start(config()).await;
        for headers in [
            vec![("authorization", "Bearer resource-key")],
            vec![("x-api-key", "resource-key")],
            vec![("api-key", "wrong")],
            vec![],
        ] {
            let res = post(&mock, DATED, chat(), &headers).await;
            assert_eq!(res.status(), 401, "{headers:?}");
        }
        assert_eq!(mock.stats().unauthorized, 4);
        assert_eq!(mock.stats().azure_requests, 0);
    })
    .await;
}

#[tokio::test]
async fn entra_issues_tokens_to_its_app_only_and_accepts_them_as_bearer() {
    bounded(async {
        let mock = start(config()).await;
        let (status, refused) = token(&mock, "tenant", "not-the-secret").await;
        assert_eq!(status, 401);
        assert_eq!(refused["error"], "invalid_client");
        let (status, refused) = token(&mock, "other-tenant", "secret").await;
        assert_eq!(status, 400);
        assert_eq!(refused["error"], "invalid_request");
        assert_eq!(mock.stats().token_refusals, 2);

        let (status, issued) = token(&mock, "tenant", "secret").await;
        assert_eq!(status, 200, "{issued}");
        assert_eq!(issued["token_type"], "Bearer");
        assert_eq!(issued["expires_in"], 60);
        let bearer = format!("Bearer {}", issued["access_token"].as_str().unwrap());
        let res = post(&mock, DATED, chat(), &[("authorization", &bearer)]).await;
        assert_eq!(res.status(), 200);
        let res = post(
            &mock,
            DATED,
            chat(),
            &[("authorization", "Bearer mock-entra-999")],
        )
        .await;
        assert_eq!(res.status(), 401);
        assert_eq!(mock.stats().tokens_issued, 1);
    })
    .await;
}
