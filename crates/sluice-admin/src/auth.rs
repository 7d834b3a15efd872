//! Admin authentication and authorisation: `Authorization: Bearer <token>`
//! on everything under `/admin/v1/` except the OpenAPI document, and the
//! token's role allowed on the endpoint ([`crate::roles`]).
//!
//! A token is accepted when its SHA-256 is one of the bootstrap hashes from
//! this node's configuration (compared in constant time; role `admin`) or
//! belongs to an admin token in the replicated state (its own role). The state is read locally, without a
//! cluster round trip: authentication must keep working during an election,
//! and a deleted token stops working as soon as this node applies the delete.

use crate::{context::AdminContext, error::ApiError, roles};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use sluice_core::audit::Actor;
use sluice_core::secret::hash_secret;
use sluice_core::Role;
use std::net::SocketAddr;
use subtle::{Choice, ConstantTimeEq};

/// The audit log's name for a bootstrap token of a node's configuration
/// (its id and its name).
pub const BOOTSTRAP: &str = "bootstrap";

/// Middleware: lets the request through only with a valid admin token
/// whose role may call the endpoint (else 401, or 403 naming the roles that
/// may). The role and the [`Actor`] (the token and the caller's address,
/// for the audit log) go on in the request's extensions.
pub(crate) async fn require_admin_token(
    State(ctx): State<AdminContext>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())?;
    let hash = hash_secret(token);
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "unknown".to_owned(),
            |ConnectInfo(peer)| peer.to_string(),
        );
    let actor = if matches_bootstrap(&hash, ctx.bootstrap_token_hashes()) {
        Actor {
            token_id: BOOTSTRAP.to_owned(),
            token_name: BOOTSTRAP.to_owned(),
            role: Role::Admin,
            address,
        }
    } else {
        match ctx.node().local_state().admin_token_by_hash(&hash) {
            Some(token) => Actor {
                token_id: token.id.clone(),
                token_name: token.name.clone(),
                role: token.role,
                address,
            },
            None => return Err(ApiError::unauthorized("the admin token is not valid")),
        }
    };
    let role = actor.role;
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), MatchedPath::as_str);
    let allowed = roles::allowed(request.method(), path);
    if !allowed.contains(&role) {
        return Err(ApiError::forbidden(format!(
            "this admin token's role is `{role}`; {} {} needs {}",
            request.method(),
            request.uri().path(),
            roles::describe(allowed)
        )));
    }
    request.extensions_mut().insert(role);
    request.extensions_mut().insert(actor);
    Ok(next.run(request).await)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing `Authorization: Bearer <admin token>` header")
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        ApiError::unauthorized("the Authorization header must be `Bearer <admin token>`")
    })?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <admin token>`",
        ));
    }
    Ok(token)
}

/// Whether `hash` is one of `bootstrap`, looking at every entry in constant
/// time so the comparison leaks neither which entry matched nor how much of it.
fn matches_bootstrap(hash: &[u8; 32], bootstrap: &[[u8; 32]]) -> bool {
    bootstrap
        .iter()
        .fold(Choice::from(0), |found, candidate| {
            found | candidate.ct_eq(hash)
        })
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(&headers("Bearer abc")).ok(), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer abc")).ok(), Some("abc"));
        assert!(bearer_token(&headers("Basic abc")).is_err());
        assert!(bearer_token(&headers("Bearer ")).is_err());
        assert!(bearer_token(&headers("Bearer")).is_err());
        assert!(bearer_token(&HeaderMap::new()).is_err());
    }

    #[test]
    fn bootstrap_matching() {
        let a = hash_secret("a");
        let b = hash_secret("b");
        assert!(matches_bootstrap(&a, &[b, a]));
        assert!(!matches_bootstrap(&a, &[b]));
        assert!(!matches_bootstrap(&a, &[]));
    }
}
