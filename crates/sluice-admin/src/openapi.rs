//! The router and the OpenAPI document, built together from the handlers'
//! `#[utoipa::path]` annotations so the document cannot drift from what is
//! served.

use crate::context::AdminContext;
use crate::error::{method_not_allowed_fallback, not_found_fallback, ErrorBody};
use crate::extract::BODY_LIMIT_BYTES;
use crate::{
    audit, auth, backup, cluster, dashboard, health, idempotency, keys, node, providers, quotas,
    roles, routes, spend, tokens, usage,
};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, Method};
use axum::response::IntoResponse;
use axum::{middleware, Extension, Router};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Name of the bearer security scheme in the document.
pub const SECURITY_SCHEME: &str = "admin_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice admin API",
        description = "Configure providers, routes, virtual keys and admin tokens, and operate the cluster. \
                       Every error is `{\"error\":{\"type\",\"message\",\"field\"}}`.",
    ),
    modifiers(&BearerScheme),
    security(("admin_token" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "providers", description = "Upstream model APIs"),
        (name = "routes", description = "Public model names and their deployments"),
        (name = "keys", description = "Virtual API keys"),
        (name = "tokens", description = "Admin tokens"),
        (name = "audit", description = "Who changed what, when"),
        (name = "usage", description = "Usage and spend over time"),
        (name = "cluster", description = "Membership and leadership"),
        (name = "health", description = "Liveness and readiness"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin token: a bootstrap token from `sluice init`, or one made with `POST /admin/v1/tokens`."))
                    .build(),
            ),
        );
    }
}

/// The serialized document, shared by every request for it.
#[derive(Clone)]
struct Document(Arc<String>);

/// The admin API's OpenAPI 3 document.
#[utoipa::path(get, path = "/admin/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json(Extension(Document(doc)): Extension<Document>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.as_str().to_owned(),
    )
}

/// The paths and handlers that need an admin token.
fn protected() -> OpenApiRouter<AdminContext> {
    OpenApiRouter::new()
        .routes(routes!(
            providers::list_providers,
            providers::create_provider
        ))
        .routes(routes!(
            providers::get_provider,
            providers::update_provider,
            providers::delete_provider
        ))
        .routes(routes!(routes::list_routes, routes::create_route))
        .routes(routes!(
            routes::get_route,
            routes::update_route,
            routes::delete_route
        ))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::get_key, keys::delete_key, keys::patch_key))
        .routes(routes!(quotas::get_quota))
        .routes(routes!(spend::get_spend))
        .routes(routes!(usage::get_usage))
        .routes(routes!(quotas::set_route_quota))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::enable_key))
        .routes(routes!(keys::disable_key))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::delete_token))
        .routes(routes!(audit::list_audit))
        .routes(routes!(cluster::cluster_status))
        .routes(routes!(cluster::add_learner))
        .routes(routes!(cluster::promote))
        .routes(routes!(cluster::remove_member))
        .routes(routes!(cluster::transfer_leader))
        .routes(routes!(node::node_report))
        .routes(routes!(node::state_digest))
        .merge(
            // A backup file may be far larger than any JSON body: this
            // route's limit replaces the router-wide one.
            OpenApiRouter::new()
                .routes(routes!(backup::export_snapshot, backup::restore_snapshot))
                .layer(DefaultBodyLimit::max(backup::BACKUP_LIMIT_BYTES)),
        )
}

/// The paths anyone may call.
fn public() -> OpenApiRouter<AdminContext> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of every endpoint [`router`] serves.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = OpenApiRouter::<AdminContext>::with_openapi(ApiDoc::openapi())
        .merge(protected())
        .merge(public())
        .into_openapi();
    document_idempotency(&mut doc);
    document_roles(&mut doc);
    doc
}

/// Every protected write takes the `Idempotency-Key` header (one
/// middleware reads it for all of them), so the document says so on each.
fn document_idempotency(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    let header = ParameterBuilder::new()
        .name(idempotency::HEADER)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes the write safe to send again (to any node): applied at most once per key \
             within 24 h, every sending answers the first result. 1-255 printable ASCII \
             characters; a new key for each new request.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(sluice_core::idempotency::MAX_KEY_LEN)),
        ))
        .build();
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/admin/v1/") {
            continue;
        }
        for operation in [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(header.clone());
        }
    }
}

/// States on every operation under `/admin/v1/` that needs a token which
/// roles may call it (the table [`roles::allowed`] enforces).
fn document_roles(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/admin/v1/") || path == "/admin/v1/openapi.json" {
            continue;
        }
        for (method, operation) in [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::PATCH, &mut item.patch),
            (Method::DELETE, &mut item.delete),
        ] {
            let Some(operation) = operation else {
                continue;
            };
            let roles = roles::describe(roles::allowed(&method, path));
            let text = format!("Admin token roles: {roles}.");
            operation.description = Some(match operation.description.take() {
                Some(before) if !before.is_empty() => format!("{before}\n\n{text}"),
                _ => text,
            });
        }
    }
}

/// The admin API: `/admin/v1/…`, `/healthz` and `/readyz`, and the
/// dashboard at `/dashboard` (not in the document: it is no API), ready to
/// serve.
pub fn router(ctx: AdminContext) -> Router {
    // Authentication first (the outer layer): no body is read for a caller
    // without a token.
    let protected = protected()
        .route_layer(middleware::from_fn(idempotency::fingerprint))
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            auth::require_admin_token,
        ));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(protected)
        .merge(public())
        .split_for_parts();
    document_idempotency(&mut doc);
    document_roles(&mut doc);
    // Serializing a document built from our own types cannot fail; if it
    // ever did, serve the error rather than refuse to start the API.
    let doc = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot render the OpenAPI document: {e}\"}}"));
    router
        .merge(dashboard::routes())
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .layer(Extension(Document(Arc::new(doc))))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(ctx)
}
