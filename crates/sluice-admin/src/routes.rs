//! `/admin/v1/routes`: public model names and where their traffic goes.
//!
//! Route names may contain `/` (`meta-llama/Llama-3-8b`); in a path they are
//! sent percent-encoded (`meta-llama%2FLlama-3-8b`).

use crate::context::{unexpected, AdminContext};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminJson, AdminPath, ReadParams};
use crate::idempotency::Idempotency;
use crate::pricing::PricingBody;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_core::{Applied, Command, Deployment, Route};
use utoipa::ToSchema;

/// One place a route's traffic can go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentBody {
    /// Name of an existing provider.
    #[schema(example = "openai")]
    pub provider: String,
    /// The model name the provider knows it by.
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
    /// Relative share of the route's traffic, 1-10000 (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl From<DeploymentBody> for Deployment {
    fn from(d: DeploymentBody) -> Self {
        Deployment {
            provider: d.provider,
            model: d.model,
            weight: d.weight,
        }
    }
}

impl From<&Deployment> for DeploymentBody {
    fn from(d: &Deployment) -> Self {
        DeploymentBody {
            provider: d.provider.clone(),
            model: d.model.clone(),
            weight: d.weight,
        }
    }
}

/// Body of `POST /admin/v1/routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoute {
    /// The model name clients send (1-128 of letters, digits, `-_.:/@`).
    #[schema(example = "gpt-4o-mini")]
    pub name: String,
    /// At least one deployment.
    pub deployments: Vec<DeploymentBody>,
    /// Routes to try, in order, when every deployment of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub pricing: PricingBody,
}

/// Body of `PUT /admin/v1/routes/{name}`: the route's new configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoute {
    pub deployments: Vec<DeploymentBody>,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub pricing: PricingBody,
}

/// A route as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteView {
    pub name: String,
    pub deployments: Vec<DeploymentBody>,
    pub fallbacks: Vec<String>,
    pub pricing: PricingBody,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

impl From<&Route> for RouteView {
    fn from(r: &Route) -> Self {
        RouteView {
            name: r.name.clone(),
            deployments: r.deployments.iter().map(DeploymentBody::from).collect(),
            fallbacks: r.fallbacks.clone(),
            pricing: PricingBody::from_core(&r.pricing),
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        }
    }
}

/// Response of `GET /admin/v1/routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteList {
    pub routes: Vec<RouteView>,
}

fn build(
    name: String,
    deployments: Vec<DeploymentBody>,
    fallbacks: Vec<String>,
    pricing: PricingBody,
) -> Result<Route, ApiError> {
    let route = Route {
        name,
        deployments: deployments.into_iter().map(Deployment::from).collect(),
        fallbacks,
        pricing: pricing.to_core("pricing")?,
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    route.validate()?;
    Ok(route)
}

fn applied_route(applied: Applied) -> Result<Json<RouteView>, ApiError> {
    match applied {
        Applied::Route(r) => Ok(Json(RouteView::from(&r))),
        other => Err(unexpected(&other)),
    }
}

/// List routes.
#[utoipa::path(get, path = "/admin/v1/routes", tag = "routes", params(ReadParams),
    responses(
        (status = 200, body = RouteList),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn list_routes(
    State(ctx): State<AdminContext>,
    params: ReadParams,
) -> Result<Json<RouteList>, ApiError> {
    let state = ctx.read(params.consistency()).await?;
    Ok(Json(RouteList {
        routes: state.routes().map(RouteView::from).collect(),
    }))
}

/// Create a route.
#[utoipa::path(post, path = "/admin/v1/routes", tag = "routes", request_body = CreateRoute,
    responses(
        (status = 201, body = RouteView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "a route with this name exists", body = ErrorBody),
        (status = 422, description = "invalid field, or a provider or fallback that does not exist", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create_route(
    State(ctx): State<AdminContext>,
    idempotency: Idempotency,
    AdminJson(body): AdminJson<CreateRoute>,
) -> Result<(StatusCode, Json<RouteView>), ApiError> {
    let route = build(body.name, body.deployments, body.fallbacks, body.pricing)?;
    let view = applied_route(ctx.write(&idempotency, Command::CreateRoute(route)).await?)?;
    Ok((StatusCode::CREATED, view))
}

/// Get one route.
#[utoipa::path(get, path = "/admin/v1/routes/{name}", tag = "routes",
    params(("name" = String, Path, description = "route name, percent-encoded (`/` as `%2F`)"), ReadParams),
    responses(
        (status = 200, body = RouteView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn get_route(
    State(ctx): State<AdminContext>,
    AdminPath(name): AdminPath<String>,
    params: ReadParams,
) -> Result<Json<RouteView>, ApiError> {
    let state = ctx.read(params.consistency()).await?;
    state
        .route(&name)
        .map(|r| Json(RouteView::from(r)))
        .ok_or_else(|| ApiError::not_found(format!("route {name:?} not found")))
}

/// Replace a route's configuration.
#[utoipa::path(put, path = "/admin/v1/routes/{name}", tag = "routes", request_body = UpdateRoute,
    params(("name" = String, Path, description = "route name, percent-encoded (`/` as `%2F`)")),
    responses(
        (status = 200, body = RouteView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn update_route(
    State(ctx): State<AdminContext>,
    AdminPath(name): AdminPath<String>,
    idempotency: Idempotency,
    AdminJson(body): AdminJson<UpdateRoute>,
) -> Result<Json<RouteView>, ApiError> {
    let route = build(name, body.deployments, body.fallbacks, body.pricing)?;
    applied_route(ctx.write(&idempotency, Command::UpdateRoute(route)).await?)
}

/// Delete a route (refused while another route falls back to it).
#[utoipa::path(delete, path = "/admin/v1/routes/{name}", tag = "routes",
    params(("name" = String, Path, description = "route name, percent-encoded (`/` as `%2F`)")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "another route falls back to it", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn delete_route(
    State(ctx): State<AdminContext>,
    AdminPath(name): AdminPath<String>,
    idempotency: Idempotency,
) -> Result<StatusCode, ApiError> {
    ctx.write(&idempotency, Command::DeleteRoute { name })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse_json;

    #[test]
    fn weight_defaults_to_one_and_bad_weight_names_the_field() {
        let body: CreateRoute =
            parse_json(br#"{"name":"gpt","deployments":[{"provider":"p","model":"m"}]}"#).unwrap();
        assert_eq!(body.deployments[0].weight, 1);
        let bad: CreateRoute = parse_json(
            br#"{"name":"gpt","deployments":[{"provider":"p","model":"m","weight":0}]}"#,
        )
        .unwrap();
        let err = build(bad.name, bad.deployments, bad.fallbacks, bad.pricing).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("deployments[0].weight"));
    }

    #[test]
    fn pricing_converts_exactly() {
        let body: CreateRoute = parse_json(
            br#"{"name":"gpt","deployments":[{"provider":"p","model":"m"}],
                 "pricing":{"prompt_usd_per_mtok":0.15,"completion_usd_per_mtok":0.6}}"#,
        )
        .unwrap();
        let route = build(body.name, body.deployments, body.fallbacks, body.pricing).unwrap();
        assert_eq!(route.pricing.prompt_micro_usd_per_mtok, 150_000);
        assert_eq!(route.pricing.completion_micro_usd_per_mtok, 600_000);
        let json = serde_json::to_value(RouteView::from(&route)).unwrap();
        assert_eq!(json["pricing"]["prompt_usd_per_mtok"], 0.15);
    }
}
