//! Microsoft Entra ID's client credentials grant, as bytes: the token
//! request an app registration sends (the answer is read by
//! [`crate::oauth`]). Pure, like the rest of this crate: the proxy sends
//! the request with its upstream client, caches the token and refreshes it
//! before it expires.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method};
use sluice_core::provider::EntraSettings;

use crate::adapter::join;
use crate::oauth::TokenError;

/// The token request of `entra` with `client_secret` (the provider's
/// credential). The body holds the secret: it is only ever sent.
pub fn token_request(
    entra: &EntraSettings,
    client_secret: &str,
) -> Result<http::Request<Bytes>, TokenError> {
    let url = join(
        &entra.authority_url,
        &format!("/{}/oauth2/v2.0/token", entra.tenant_id),
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &entra.client_id)
        .append_pair("client_secret", client_secret)
        .append_pair("scope", &entra.scope)
        .finish();
    http::Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .body(Bytes::from(body))
        .map_err(|e| TokenError::Request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra() -> EntraSettings {
        EntraSettings {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "0b9e3c43".into(),
            authority_url: "https://login.microsoftonline.com/".into(),
            scope: "https://cognitiveservices.azure.com/.default".into(),
        }
    }

    #[test]
    fn the_request_is_a_client_credentials_form() {
        let request = token_request(&entra(), "s3cr&t=+").unwrap();
        assert_eq!(
            request.uri(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(request.method(), Method::POST);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(request.body())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            [
                ("grant_type".into(), "client_credentials".into()),
                ("client_id".into(), "0b9e3c43".into()),
                ("client_secret".into(), "s3cr&t=+".into()),
                (
                    "scope".into(),
                    "https://cognitiveservices.azure.com/.default".into()
                ),
            ]
        );
    }
}
