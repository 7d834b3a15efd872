use super::*;
use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

const NOW_MS: u64 = 1_800_000_000_000;
const NOW_S: u64 = NOW_MS / 1000;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key made for the test, and its JWK.
struct TestKey {
    encoding: EncodingKey,
    jwk: Value,
    alg: Algorithm,
}

fn ed25519(kid: &str) -> TestKey {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    TestKey {
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pair.public_key().as_ref())}),
        alg: Algorithm::EdDSA,
    }
}

fn es256(kid: &str) -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    TestKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..])}),
        alg: Algorithm::ES256,
    }
}

fn issuer() -> JwtIssuer {
    JwtIssuer {
        name: "corp".into(),
        issuer: "https://idp.example".into(),
        // Nothing listens there: a fetch fails at once.
        jwks_url: "http://127.0.0.1:1/jwks".parse().unwrap(),
        audience: "sluice".into(),
        subject_claim: "sub".into(),
        template_claim: Some("team".into()),
        templates: [("red".to_string(), "key_red".to_string())].into(),
        default_template: None,
        clock_skew: Duration::from_secs(30),
    }
}

/// A proxy's JWT checker for `issuer`, holding `keys` as fetched now.
fn checker(issuer: JwtIssuer, keys: &[&TestKey]) -> Jwt {
    let jwt = Jwt::new(&[issuer]).unwrap();
    let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    let now = Instant::now();
    *jwt.issuers[0].keys.write().unwrap() = Arc::new(KeySet {
        keys: read_jwks(set.to_string().as_bytes()).unwrap(),
        fetched_at: Some(now),
        tried_at: Some(now),
        failure: None,
    });
    jwt
}

fn claims() -> Value {
    json!({"iss": "https://idp.example", "aud": "sluice", "sub": "alice",
        "team": "red", "exp": NOW_S + 600, "nbf": NOW_S - 5})
}

fn sign(key: &TestKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn client() -> UpstreamClient {
    UpstreamClient::new(Default::default()).unwrap()
}

async fn verify(jwt: &Jwt, token: &str) -> Result<KeySubject, ProxyError> {
    jwt.verify(&client(), token, NOW_MS).await
}

async fn refusal(jwt: &Jwt, token: &str) -> String {
    let error = verify(jwt, token).await.unwrap_err();
    assert_eq!(error.status(), 401, "{}", error.message());
    error.message().to_owned()
}

#[tokio::test]
async fn a_good_token_names_its_subject_and_template() {
    for key in [ed25519("k1"), es256("k1")] {
        let jwt = checker(issuer(), &[&key]);
        let subject = verify(&jwt, &sign(&key, "k1", &claims())).await.unwrap();
        assert_eq!(
            subject,
            KeySubject {
                issuer: "corp".into(),
                subject: "alice".into(),
                template: "key_red".into()
            }
        );
    }
}

#[tokio::test]
async fn expiry_not_before_audience_and_issuer_are_checked_within_the_skew() {
    let key = ed25519("k1");
    let jwt = checker(issuer(), &[&key]);
    let with = |field: &str, value: Value| {
        let mut c = claims();
        c[field] = value;
        sign(&key, "k1", &c)
    };
    // Within the 30 s skew either side: accepted.
    assert!(verify(&jwt, &with("exp", json!(NOW_S - 29))).await.is_ok());
    assert!(verify(&jwt, &with("nbf", json!(NOW_S + 29))).await.is_ok());
    assert!(refusal(&jwt, &with("exp", json!(NOW_S - 30)))
        .await
        .contains("expired"));
    assert!(refusal(&jwt, &with("nbf", json!(NOW_S + 31)))
        .await
        .contains("not valid yet"));
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(refusal(&jwt, &sign(&key, "k1", &no_exp))
        .await
        .contains("`exp`"));
    assert!(refusal(&jwt, &with("aud", json!("someone-else")))
        .await
        .contains("audience"));
    // An audience list holding ours is fine.
    assert!(verify(&jwt, &with("aud", json!(["x", "sluice"])))
        .await
        .is_ok());
    let unknown = refusal(&jwt, &with("iss", json!("https://evil.example"))).await;
    assert!(unknown.contains("not trusted"), "{unknown}");
}

#[tokio::test]
async fn the_template_claim_selects_a_template_or_the_token_is_refused() {
    let key = ed25519("k1");
    let jwt = checker(issuer(), &[&key]);
    let mut c = claims();
    c["team"] = json!(["blue", "red"]);
    let subject = verify(&jwt, &sign(&key, "k1", &c)).await.unwrap();
    assert_eq!(subject.template, "key_red");
    c["team"] = json!("blue");
    let refused = refusal(&jwt, &sign(&key, "k1", &c)).await;
    assert!(
        refused.contains("`team` claim selects no key template"),
        "{refused}"
    );
    // With a default template, the same token is that template's.
    let jwt = checker(
        JwtIssuer {
            default_template: Some("key_default".into()),
            ..issuer()
        },
        &[&key],
    );
    let subject = verify(&jwt, &sign(&key, "k1", &c)).await.unwrap();
    assert_eq!(subject.template, "key_default");
    // A numeric subject is its digits; no subject is refused.
    c["sub"] = json!(42);
    assert_eq!(
        verify(&jwt, &sign(&key, "k1", &c)).await.unwrap().subject,
        "42"
    );
    c.as_object_mut().unwrap().remove("sub");
    assert!(refusal(&jwt, &sign(&key, "k1", &c)).await.contains("`sub`"));
}

#[tokio::test]
async fn alg_none_hmac_and_key_confusion_are_refused() {
    let ed = ed25519("ed");
    let ec = es256("ec");
    let jwt = checker(issuer(), &[&ed, &ec]);
    let good = sign(&ed, "ed", &claims());
    let (_, rest) = good.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();

    // `alg: none`, with and without a signature.
    let none = b64(br#"{"alg":"none","typ":"JWT","kid":"ed"}"#);
    assert!(refusal(&jwt, &format!("{none}.{payload}."))
        .await
        .contains("header"));
    assert!(refusal(&jwt, &format!("{none}.{payload}.c2ln"))
        .await
        .contains("header"));

    // HS256 keyed with the public key's bytes (the classic confusion).
    let x = ed.jwk["x"].as_str().unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("ed".into());
    let hmac =
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(x.as_bytes())).unwrap();
    assert!(refusal(&jwt, &hmac).await.contains("is for EdDSA"));

    // Signed by the EC key but naming the Ed25519 key, and the reverse.
    assert!(refusal(&jwt, &sign(&ec, "ed", &claims()))
        .await
        .contains("is for EdDSA"));
    assert!(refusal(&jwt, &sign(&ed, "ec", &claims()))
        .await
        .contains("is for ES256"));

    // Another key of the same type under a listed kid: the signature fails.
    let impostor = ed25519("ed");
    assert!(refusal(&jwt, &sign(&impostor, "ed", &claims()))
        .await
        .contains("signature does not verify"));

    // A kid the set does not hold (the refetch fails: nothing listens).
    assert!(refusal(&jwt, &sign(&ed, "nope", &claims()))
        .await
        .contains("not one of"));
}

#[test]
fn only_asymmetric_signing_keys_of_a_jwks_are_kept() {
    let ed = ed25519("ed");
    let set = json!({"keys": [
        ed.jwk,
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
            "x": es256("x").jwk["x"], "y": es256("x").jwk["y"]},
        {"kty": "OKP", "crv": "Ed25519", "kid": "wrong-alg", "alg": "RS256", "x": "AAAA"},
        {"kty": "RSA", "kid": "broken"},
        {"kty": "something-new", "kid": "future"},
    ]});
    let keys = read_jwks(set.to_string().as_bytes()).unwrap();
    assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ed"]);
    assert_eq!(keys["ed"].1, Algorithm::EdDSA);
    assert!(read_jwks(b"{\"keys\": 3}").is_err());
    assert!(read_jwks(b"not json").is_err());
}

#[test]
fn only_jwt_shaped_credentials_are_checked_as_tokens() {
    assert!(looks_like_jwt("eyJhbGciOi.eyJzdWIi.sig"));
    assert!(!looks_like_jwt("sk-sluice-0123456789abcdef"));
    assert!(!looks_like_jwt("eyJhbGciOi.eyJzdWIi"));
    assert!(!looks_like_jwt("a.b.c"));
}

#[tokio::test]
async fn a_failed_fetch_with_no_keys_is_unavailable_not_unauthenticated() {
    let key = ed25519("k1");
    let jwt = Jwt::new(&[issuer()]).unwrap();
    let error = verify(&jwt, &sign(&key, "k1", &claims()))
        .await
        .unwrap_err();
    assert_eq!(error.status(), 503, "{}", error.message());
    assert!(error.message().contains("cannot be fetched"));
    // Within the refetch interval the failure is answered from the cache.
    let again = verify(&jwt, &sign(&key, "k1", &claims()))
        .await
        .unwrap_err();
    assert_eq!(again.status(), 503);
}

#[tokio::test]
async fn an_old_cache_serves_its_keys_while_a_refresh_fails_beside() {
    let key = ed25519("k1");
    let jwt = checker(issuer(), &[&key]);
    let issuer = &jwt.issuers[0];
    let long_ago = Instant::now() - REFRESH_AFTER - Duration::from_secs(1);
    {
        let mut slot = issuer.keys.write().unwrap();
        let keys = slot.keys.clone();
        *slot = Arc::new(KeySet {
            keys,
            fetched_at: Some(long_ago),
            tried_at: Some(long_ago),
            failure: None,
        });
    }
    let token = sign(&key, "k1", &claims());
    assert!(verify(&jwt, &token).await.is_ok());
    // The refresh started beside it fails (nothing listens), and the keys
    // stay.
    let deadline = Instant::now() + Duration::from_secs(10);
    while issuer.cached().failure.is_none() {
        assert!(Instant::now() < deadline, "no refresh was tried");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(issuer.cached().fetched_at, Some(long_ago));
    assert!(verify(&jwt, &token).await.is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any change to a signed token's bytes (header, claims or signature)
    /// gets it refused: no tampered token is ever accepted.
    #[test]
    fn a_tampered_token_is_never_accepted(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let key = ed25519("k1");
        let jwt = checker(issuer(), &[&key]);
        let token = sign(&key, "k1", &claims());
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let Ok(tampered) = String::from_utf8(bytes) else { return Ok(()) };
        // Base64url's last character may carry unused bits: a change that
        // decodes to the same bytes is the same token.
        let same = |t: &str| -> Vec<Vec<u8>> {
            t.split('.')
                .map(|part| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap_or_default())
                .collect()
        };
        prop_assume!(same(&tampered) != same(&token) || tampered.split('.').count() != 3);
        let verdict = runtime.block_on(verify(&jwt, &tampered));
        prop_assert!(verdict.is_err(), "accepted {tampered}");
    }
}
