//! JWT client authentication on 3 nodes: tokens of the suite's own
//! identity provider (RS256, ES256 and EdDSA keys it made, its JWKS on
//! 127.0.0.1) are accepted on every node, each subject gets a key of its
//! own with its template's routes and quota, and bad tokens (expired,
//! another audience, an unknown issuer, `alg: none`, key confusion) are
//! refused with 401 and make no key.

use super::*;
use sluice_e2e::idp::{now_s, Idp, ISSUER};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

const AUDIENCE: &str = "sluice-e2e";
/// Team red's requests a minute, per subject.
const RED_RPM: u64 = 30;

/// A token's claims for `sub` in `team`, valid for ten minutes.
fn claims(sub: &str, team: &str) -> Value {
    let now = now_s();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "team": team,
        "iat": now, "nbf": now - 1, "exp": now + 600})
}

fn chat(proxy: &ProxyClient) -> Reply {
    proxy.post(
        "/v1/chat/completions",
        &json!({"model": GPT, "messages": [{"role": "user", "content": "hi"}]}),
    )
}

/// Subject keys the cluster holds, as node `id`'s admin API lists them.
fn subject_keys(plane: &DataPlane, id: u64) -> Vec<Value> {
    let (status, body) = plane.cluster.admin(id).get("/admin/v1/keys");
    assert_eq!(status, 200, "{body}");
    body["keys"]
        .as_array()
        .cloned()
        .expect("a key list")
        .into_iter()
        .filter(|k| !k["subject"].is_null())
        .collect()
}

/// Asserts `reply` is the 401 of a refused credential in OpenAI's format,
/// its message holding `why`.
fn assert_refused(reply: &Reply, why: &str) {
    assert_eq!(reply.status, 401, "{}", reply.text);
    let error = reply.openai_error();
    assert_eq!(error["code"], "invalid_api_key", "{}", reply.text);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{why:?} not in {message:?}");
}

#[test]
fn jwt_subjects_get_keys_of_their_own_and_bad_tokens_are_refused() {
    let idp = Idp::start();
    idp.add_key(Algorithm::RS256, "rsa-1");
    idp.add_key(Algorithm::ES256, "ec-1");
    idp.add_key(Algorithm::EdDSA, "ed-1");
    let mut plane = start();
    // Team red: the GPT route only, RED_RPM requests a minute per subject.
    // Team blue: every route, no quota.
    let (red, _) =
        plane.create_key_with("team-red", json!({"allowed_routes": [GPT], "rpm": RED_RPM}));
    let (blue, _) = plane.create_key("team-blue", &[]);

    // Every node trusts the issuer: its config, then a rolling restart.
    for id in plane.cluster.ids() {
        plane.cluster.edit_config(id, |config| {
            let issuer: toml::Table = toml::from_str(&format!(
                r#"
                name = "corp"
                issuer = "{ISSUER}"
                jwks_url = "{}"
                audience = "{AUDIENCE}"
                template_claim = "team"
                templates = {{ red = "{red}", blue = "{blue}" }}
                "#,
                idp.jwks_url()
            ))
            .expect("issuer TOML");
            let proxy = config
                .entry("proxy")
                .or_insert_with(|| toml::Value::Table(Default::default()));
            proxy.as_table_mut().expect("[proxy]").insert(
                "jwt_issuers".into(),
                toml::Value::Array(vec![toml::Value::Table(issuer)]),
            );
        });
        plane.cluster.restart(id);
    }
    plane.wait_served(&plane.key, &[GPT]);
    let proxy = |id: u64, token: &str| ProxyClient::new(plane.cluster.proxy_url(id), Some(token));
    // Alice (red) with each algorithm, through each node: her key is made
    // on her first request and used on every node after.
    let alice = claims("alice", "red");
    for (id, kid) in [(1, "rsa-1"), (2, "ec-1"), (3, "ed-1")] {
        let reply = chat(&proxy(id, &idp.sign(kid, &alice)));
        assert_eq!(reply.status, 200, "node {id}, {kid}: {}", reply.text);
    }
    let token = idp.sign("ed-1", &alice);
    // Red's routes: GPT, not CLAUDE (refused before any quota is taken).
    let other_route = proxy(1, &token).post(
        "/v1/chat/completions",
        &json!({"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(other_route.status, 403, "{}", other_route.text);
    // Red's quota, per subject: Alice's requests on node 1 meet her own
    // limit (her 3 above count), and no more than it are admitted. (A unit
    // or two of hers leased to nodes 2 and 3 by her requests there may not
    // come back within the second node 1 waits: the lower bound allows it.)
    let started = Instant::now();
    let mut admitted = 3;
    let refused = loop {
        let reply = chat(&proxy(1, &token));
        match reply.status {
            200 => admitted += 1,
            429 => break reply,
            other => panic!("alice's request {}: {other} {}", admitted + 1, reply.text),
        }
        assert!(admitted <= 2 * RED_RPM, "alice's limit never refused her");
    };
    let refill = started.elapsed().as_secs() * RED_RPM / 60 + 1;
    assert!(
        (RED_RPM - 2..=RED_RPM + refill).contains(&admitted),
        "alice was admitted {admitted} times with a limit of {RED_RPM} a minute: {}",
        refused.text
    );
    // ...and Bob, on red too, is owed his own.
    let bob = idp.sign("rsa-1", &claims("bob", "red"));
    for id in [2, 3, 1] {
        let reply = chat(&proxy(id, &bob));
        assert_eq!(reply.status, 200, "bob on node {id}: {}", reply.text);
    }
    // Carol (blue) as an Anthropic client, the token as `x-api-key`.
    let carol = idp.sign("ec-1", &claims("carol", "blue"));
    let messages = ProxyClient::new(plane.cluster.proxy_url(2), None).post_with(
        "/v1/messages",
        &json!({"model": CLAUDE, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-api-key", &carol), ANTHROPIC_VERSION],
    );
    assert_eq!(messages.status, 200, "{}", messages.text);
    // A token lists the models its template allows.
    let models = proxy(3, &carol).get("/v1/models");
    assert!(model_ids(&models.body).contains(&CLAUDE), "{}", models.text);

    // The keys: one per subject, the same on every node, each with its
    // template's quota.
    for id in plane.cluster.ids() {
        let keys = subject_keys(&plane, id);
        let mut subjects: Vec<&str> = keys
            .iter()
            .map(|k| k["subject"]["subject"].as_str().unwrap_or_default())
            .collect();
        subjects.sort_unstable();
        assert_eq!(subjects, ["alice", "bob", "carol"], "node {id}");
        let alice_key = keys
            .iter()
            .find(|k| k["subject"]["subject"] == "alice")
            .expect("alice's key");
        assert_eq!(alice_key["subject"]["issuer"], "corp");
        assert_eq!(alice_key["subject"]["template"], red.as_str());
        assert_eq!(alice_key["allowed_routes"], json!([GPT]));
        assert_eq!(
            alice_key["limits"],
            json!([format!("{RED_RPM} requests a minute")])
        );
    }

    // Refused, each with 401 in OpenAI's format, and no key made.
    let stranger = |claims: &Value| idp.sign("rsa-1", claims);
    let mut expired = claims("mallory", "red");
    expired["exp"] = json!(now_s() - 3600);
    assert_refused(&chat(&proxy(1, &stranger(&expired))), "expired");
    let mut audience = claims("mallory", "red");
    audience["aud"] = json!("another-service");
    assert_refused(&chat(&proxy(2, &stranger(&audience))), "audience");
    let mut issuer = claims("mallory", "red");
    issuer["iss"] = json!("https://evil.example");
    assert_refused(&chat(&proxy(3, &stranger(&issuer))), "not trusted");
    assert_refused(
        &chat(&proxy(1, &stranger(&claims("mallory", "green")))),
        "selects no key template",
    );
    // `alg: none`, unsigned.
    let payload = idp.sign("rsa-1", &claims("mallory", "blue"));
    let payload = payload.split('.').nth(1).expect("claims part");
    let none = base64_url(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    assert_refused(&chat(&proxy(2, &format!("{none}.{payload}."))), "header");
    // Key confusion: HS256 keyed with the RSA key's public modulus, naming
    // the RSA key.
    let modulus = idp.with_key("rsa-1", |k| k.public_bytes.clone());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &claims("mallory", "blue"),
        &EncodingKey::from_secret(&modulus),
    )
    .expect("an HS256 token");
    assert_refused(&chat(&proxy(3, &confused)), "is for RS256");
    // Signed with the EC key but naming the RSA one.
    let swapped = idp.with_key("ec-1", |k| k.sign("rsa-1", &claims("mallory", "blue")));
    assert_refused(&chat(&proxy(1, &swapped)), "is for RS256");
    // A byte of the signature changed.
    // (Not the last character: its low bits are padding.)
    let mut tampered = idp.sign("ed-1", &claims("mallory", "blue")).into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("base64url");
    assert_refused(&chat(&proxy(2, &tampered)), "signature");
    assert_eq!(
        subject_keys(&plane, 1).len(),
        3,
        "a refused token made a key"
    );

    // A key the provider adds later: fetched when a token names it (a node
    // fetches an issuer's keys at most every 10 s, so within that).
    let fetched = idp.fetches();
    idp.add_key(Algorithm::EdDSA, "ed-2");
    let dave = idp.sign("ed-2", &claims("dave", "blue"));
    let mut last = String::new();
    let accepted = plane
        .cluster
        .deadline()
        .within(Duration::from_secs(20))
        .poll("", || {
            let reply = chat(&proxy(1, &dave));
            last = format!("{} {}", reply.status, reply.text);
            reply.status == 200
        });
    assert!(
        accepted.is_ok(),
        "the provider's new key is refused: {last}"
    );
    assert!(idp.fetches() > fetched, "the new key came without a fetch");

    // Alice's key revoked: she is refused on every node, Bob is not.
    let alice_id = subject_keys(&plane, 1)
        .into_iter()
        .find(|k| k["subject"]["subject"] == "alice")
        .and_then(|k| k["id"].as_str().map(str::to_owned))
        .expect("alice's key id");
    plane.write(&format!("/admin/v1/keys/{alice_id}/revoke"), &json!({}));
    for id in plane.cluster.ids() {
        let alice = idp.sign("rsa-1", &claims("alice", "red"));
        let refused = plane
            .cluster
            .deadline()
            .within(Duration::from_secs(15))
            .poll("", || chat(&proxy(id, &alice)).status == 401);
        assert!(refused.is_ok(), "node {id} still serves alice");
        assert_refused(&chat(&proxy(id, &alice)), "revoked");
    }
    let carol_again = chat(&proxy(3, &carol));
    assert_eq!(carol_again.status, 200, "{}", carol_again.text);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
