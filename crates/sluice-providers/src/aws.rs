//! AWS credentials and SigV4 request signing (AWS Bedrock), with the AWS
//! SDK's own signer (`aws-sigv4`): never a hand-written one. Pure like the
//! rest of the crate: the signing time is an argument.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign as sigv4_sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use serde::Deserialize;

use crate::adapter::PrepareError;

/// The service name Bedrock's runtime API is signed for.
pub const BEDROCK_SERVICE: &str = "bedrock";

/// An IAM identity's keys, as a provider's sealed credential holds them:
/// `{"access_key_id": "AKIA…", "secret_access_key": "…"}`, with
/// `"session_token"` for temporary credentials.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key id names the identity and is no secret; the rest is.
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl AwsCredentials {
    /// Reads the JSON credential; the error says what is wrong without
    /// repeating any of it.
    pub fn parse(json: &str) -> Result<Self, String> {
        let credentials: Self = serde_json::from_str(json).map_err(|e| {
            // serde names the field at fault, never a value of a string.
            let what = if e.is_syntax() || e.is_eof() {
                "is not JSON".to_owned()
            } else {
                let text = e.to_string();
                let cut = text.find(" at line").unwrap_or(text.len());
                format!("is not the keys expected: {}", &text[..cut])
            };
            format!(
                "{what} (expected {{\"access_key_id\", \"secret_access_key\"[, \"session_token\"]}})"
            )
        })?;
        let printable = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
        if !(1..=128).contains(&credentials.access_key_id.len())
            || !credentials
                .access_key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        {
            return Err("has an `access_key_id` that is not an AWS access key id \
                 (up to 128 letters and digits, such as AKIA…)"
                .into());
        }
        if !printable(&credentials.secret_access_key) {
            return Err("has an empty or unprintable `secret_access_key`".into());
        }
        if credentials
            .session_token
            .as_deref()
            .is_some_and(|t| !printable(t))
        {
            return Err("has an empty or unprintable `session_token`".into());
        }
        Ok(credentials)
    }

    /// The access key id (no secret: it names the identity in logs).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    fn identity(&self) -> Identity {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "sluice",
        )
        .into()
    }
}

/// Signs `request` (its method, URI, every header it has now and its
/// body) for `service` in `region` at `time`: adds `x-amz-date`,
/// `authorization` and, with temporary credentials,
/// `x-amz-security-token`, the last two marked sensitive. Headers added
/// afterwards are not signed.
pub fn sign(
    request: &mut http::Request<Bytes>,
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), PrepareError> {
    let identity = credentials.identity();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| PrepareError::Target(format!("cannot sign for AWS: {e}")))?
        .into();
    let uri = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
        .collect::<Result<Vec<_>, http::header::ToStrError>>()
        .map_err(|_| PrepareError::Target("a header to sign is not text".into()))?;
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| PrepareError::Target(format!("cannot sign for AWS: {e}")))?;
    let (instructions, _signature) = sigv4_sign(signable, &params)
        .map_err(|e| PrepareError::Target(format!("cannot sign for AWS: {e}")))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    // Never indexed by HTTP/2's header compression, as every credential.
    for name in ["authorization", "x-amz-security-token"] {
        if let Some(value) = request.headers_mut().get_mut(name) {
            value.set_sensitive(true);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const EXAMPLE: &str = r#"{"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}"#;

    /// AWS's published SigV4 test suite, `get-vanilla` and `post-vanilla`
    /// (credentials AKIDEXAMPLE, us-east-1, service `service`,
    /// 2015-08-30T12:36:00Z): the signer signs as AWS documents.
    #[test]
    fn signs_the_published_test_vectors() {
        let credentials = AwsCredentials::parse(EXAMPLE).unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        for (method, signature) in [
            (
                "GET",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
        ] {
            let mut request = http::Request::builder()
                .method(method)
                .uri("https://example.amazonaws.com/")
                .body(Bytes::new())
                .unwrap();
            sign(&mut request, &credentials, "us-east-1", "service", at).unwrap();
            assert_eq!(request.headers()["x-amz-date"], "20150830T123600Z");
            let authorization = &request.headers()["authorization"];
            assert!(authorization.is_sensitive());
            assert_eq!(
                authorization.to_str().unwrap(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature={signature}"
                ),
                "{method}"
            );
        }
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let credentials = AwsCredentials::parse(
            r#"{"access_key_id": "ASIAEXAMPLEEXAMPLE", "secret_access_key": "s", "session_token": "tok"}"#,
        )
        .unwrap();
        let mut request = http::Request::builder()
            .method("POST")
            .uri("https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse")
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        sign(
            &mut request,
            &credentials,
            "eu-west-1",
            BEDROCK_SERVICE,
            SystemTime::now(),
        )
        .unwrap();
        let token = &request.headers()["x-amz-security-token"];
        assert_eq!(token, "tok");
        assert!(token.is_sensitive());
        let authorization = request.headers()["authorization"].to_str().unwrap();
        assert!(
            authorization.contains("/eu-west-1/bedrock/aws4_request"),
            "{authorization}"
        );
        assert!(
            authorization
                .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{authorization}"
        );
    }

    #[test]
    fn credentials_are_checked_without_being_repeated() {
        for (bad, says) in [
            ("AKIDEXAMPLE", "not JSON"),
            (r#"{"access_key_id": "AKIDEXAMPLE"}"#, "secret_access_key"),
            (
                r#"{"access_key_id": "AK-1", "secret_access_key": "hunter2-secret"}"#,
                "access_key_id",
            ),
            (
                r#"{"access_key_id": "AKIDEXAMPLE", "secret_access_key": "hunter2-secret", "region": "x"}"#,
                "region",
            ),
            (
                r#"{"access_key_id": "AKIDEXAMPLE", "secret_access_key": "a b"}"#,
                "secret_access_key",
            ),
        ] {
            let error = AwsCredentials::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        let debug = format!("{:?}", AwsCredentials::parse(EXAMPLE).unwrap());
        assert!(!debug.contains("wJalr"), "{debug}");
    }
}
