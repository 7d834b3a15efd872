//! `GET /admin/v1/audit`: who changed what, when, from where, with each
//! object before and after (the replicated audit log, see
//! `sluice_core::audit`), filtered and paged.
//!
//! Objects are shown as their own endpoints show them (a provider as
//! `GET /admin/v1/providers/{name}` does), so no secret is ever shown: a
//! provider's credentials appear as `api_key_set` and
//! `secret_header_names`, and `secrets_replaced` names those a change
//! replaced.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::audit::{AuditEntry, AuditQuery, ClusterChange, Subject};
use sluice_core::quota::{QuotaPolicy, Scope};
use sluice_core::Provider;
use utoipa::{IntoParams, ToSchema};

use crate::backup::CountsView;
use crate::context::AdminContext;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{RawQuery, ReadConsistency, ReadParams};
use crate::keys::KeyView;
use crate::providers::ProviderView;
use crate::quotas::{describe_limit, NoQuorumName, ReserveName};
use crate::routes::RouteView;
use crate::tokens::{RoleBody, TokenView};

/// Entries a page holds unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// The most entries a page holds.
pub const MAX_PAGE: usize = 1_000;

/// The query string of `GET /admin/v1/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// `linearizable` (default) or `stale`, as for every admin read.
    #[param(inline)]
    pub consistency: Option<ReadConsistency>,
    /// Entries after this sequence number: the previous page's `next_after`.
    pub after: Option<u64>,
    /// At most this many entries (1-1000, default 100).
    pub limit: Option<usize>,
    /// Only this admin token's writes (`bootstrap` for a configured token).
    pub token_id: Option<String>,
    /// Only this action (`create_key`, `update_provider`, …).
    pub action: Option<String>,
    /// Only this target (`key:key_0123…`), or targets starting with a
    /// prefix that ends in `:` (`provider:`).
    pub target: Option<String>,
    /// Only entries at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Only entries before this time (ms since the Unix epoch).
    pub until_ms: Option<u64>,
}

impl AuditParams {
    /// Parses the query's pairs; an unknown parameter or a bad value is a
    /// 422 naming it.
    fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut params = AuditParams::default();
        let number = |name: &str, value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| ApiError::validation(name, "must be a whole number"))
        };
        for (name, value) in pairs {
            let (name, value) = (name.as_str(), value.as_str());
            match name {
                "consistency" => {
                    params.consistency = Some(match value {
                        "linearizable" => ReadConsistency::Linearizable,
                        "stale" => ReadConsistency::Stale,
                        _ => {
                            return Err(ApiError::validation(
                                "consistency",
                                "must be `linearizable` or `stale`",
                            ))
                        }
                    })
                }
                "after" => params.after = Some(number(name, value)?),
                "limit" => {
                    let limit = number(name, value)?;
                    if !(1..=MAX_PAGE as u64).contains(&limit) {
                        return Err(ApiError::validation(
                            "limit",
                            format!("must be between 1 and {MAX_PAGE}"),
                        ));
                    }
                    params.limit = Some(limit as usize);
                }
                "token_id" => params.token_id = Some(value.to_owned()),
                "action" => params.action = Some(value.to_owned()),
                "target" => params.target = Some(value.to_owned()),
                "since_ms" => params.since_ms = Some(number(name, value)?),
                "until_ms" => params.until_ms = Some(number(name, value)?),
                _ => {
                    return Err(ApiError::validation(
                        name,
                        "unknown query parameter (expected consistency, after, limit, \
                         token_id, action, target, since_ms or until_ms)",
                    ))
                }
            }
        }
        Ok(params)
    }

    fn query(&self) -> AuditQuery {
        AuditQuery {
            after_seq: self.after,
            token_id: self.token_id.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            since_ms: self.since_ms,
            until_ms: self.until_ms,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(pairs) = RawQuery::from_request_parts(parts, state).await?;
        AuditParams::parse(&pairs)
    }
}

/// Who made a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActorView {
    /// The admin token's id (`bootstrap`: a token of a node's configuration).
    pub token_id: String,
    pub token_name: String,
    pub role: RoleBody,
    /// The caller's address as the admin listener saw it.
    pub address: String,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    /// Increasing, never reused: page with `after`.
    pub seq: u64,
    /// When the leader proposed the write (ms since the Unix epoch).
    pub at_ms: u64,
    pub actor: ActorView,
    pub action: String,
    /// `provider:<name>`, `route:<name>`, `key:<id>`, `admin_token:<id>`,
    /// `quota:key:<id>`, `quota:key:<id>:route:<name>`, `config` or
    /// `node:<id>` (a membership or leadership change).
    pub target: String,
    /// The object before the change, as its endpoint shows it (`null`: it
    /// did not exist).
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The object after the change (`null`: deleted).
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    /// The provider secrets the change replaced (`api_key`, or a secret
    /// header's name), never their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_replaced: Vec<String>,
}

/// Response of `GET /admin/v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Oldest first.
    pub entries: Vec<AuditEntryView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
    /// The oldest entry the cluster still keeps (older ones are past the
    /// retention), absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_at_ms: Option<u64>,
}

/// A membership or leadership change as an entry shows it (its `after`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterChangeView {
    /// `add_learner`, `promote_voter`, `remove_member` or `transfer_leader`.
    pub action: String,
    /// The node (the new leader for a transfer).
    pub node: u64,
    /// A new learner's addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
}

impl From<&ClusterChange> for ClusterChangeView {
    fn from(c: &ClusterChange) -> Self {
        let [raft_addr, admin_url, proxy_url] = c
            .addresses
            .clone()
            .map_or([None, None, None], |a| a.map(Some));
        ClusterChangeView {
            action: c.action.as_str().to_owned(),
            node: c.node,
            raft_addr,
            admin_url,
            proxy_url,
        }
    }
}

/// A quota policy as an entry shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// `key:<id>` or `key:<id>:route:<name>`.
    pub scope: String,
    /// In words (`"600 requests a minute"`); empty: no quota.
    pub limits: Vec<String>,
    pub on_no_quorum: Option<NoQuorumName>,
    pub reserve: Option<ReserveName>,
}

fn policy_view(scope: &Scope, policy: Option<&QuotaPolicy>) -> PolicyView {
    PolicyView {
        scope: match scope {
            Scope::Key { key_id } => format!("key:{key_id}"),
            Scope::KeyRoute { key_id, route } => format!("key:{key_id}:route:{route}"),
        },
        limits: policy
            .map(|p| p.limits.iter().map(describe_limit).collect())
            .unwrap_or_default(),
        on_no_quorum: policy.map(|p| p.on_no_quorum.into()),
        reserve: policy.map(|p| p.reserve.into()),
    }
}

fn show<T: Serialize>(view: T) -> Value {
    // Views are plain data: serialising them cannot fail.
    serde_json::to_value(view).unwrap_or(Value::Null)
}

fn subject_view(subject: &Subject, at_ms: u64) -> Value {
    match subject {
        Subject::Provider(p) => show(ProviderView::from(p)),
        Subject::Route(r) => show(RouteView::from(r)),
        // As it was when the entry was made.
        Subject::Key(k) => show(KeyView::new(k, at_ms)),
        Subject::KeyWithQuota(k, policy) => show(KeyView {
            limits: policy.limits.iter().map(describe_limit).collect(),
            reserve: Some(policy.reserve.into()),
            ..KeyView::new(k, at_ms)
        }),
        Subject::AdminToken(t) => show(TokenView::from(t)),
        Subject::Quota { scope, policy } => show(policy_view(scope, policy.as_ref())),
        Subject::Config(counts) => show(CountsView::from(*counts)),
        Subject::Cluster(change) => show(ClusterChangeView::from(change)),
    }
}

/// The sealed fields of a provider whose seal differs between `before`
/// and `after` (a new nonce is a new credential), or that appeared.
fn secrets_replaced(before: Option<&Subject>, after: Option<&Subject>) -> Vec<String> {
    let provider = |s: Option<&Subject>| match s {
        Some(Subject::Provider(p)) => Some(p.clone()),
        _ => None,
    };
    let (Some(before), Some(after)) = (provider(before), provider(after)) else {
        return Vec::new();
    };
    let nonces = |p: &Provider| -> Vec<(String, [u8; 12])> {
        p.sealed()
            .into_iter()
            .map(|f| (f.field, f.sealed.nonce))
            .collect()
    };
    let old = nonces(&before);
    nonces(&after)
        .into_iter()
        .filter(|field| !old.contains(field))
        .map(|(name, _)| name)
        .collect()
}

fn entry_view(entry: &AuditEntry) -> AuditEntryView {
    AuditEntryView {
        seq: entry.seq,
        at_ms: entry.at_ms,
        actor: ActorView {
            token_id: entry.actor.token_id.clone(),
            token_name: entry.actor.token_name.clone(),
            role: entry.actor.role.into(),
            address: entry.actor.address.clone(),
        },
        action: entry.action.clone(),
        target: entry.target.clone(),
        before: entry.before.as_ref().map(|s| subject_view(s, entry.at_ms)),
        after: entry.after.as_ref().map(|s| subject_view(s, entry.at_ms)),
        secrets_replaced: secrets_replaced(entry.before.as_ref(), entry.after.as_ref()),
    }
}

/// List admin writes: who did what, when, with each object before and after.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit", params(AuditParams),
    responses(
        (status = 200, body = AuditPage),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn list_audit(
    State(ctx): State<AdminContext>,
    params: AuditParams,
) -> Result<Json<AuditPage>, ApiError> {
    let read = ReadParams {
        consistency: params.consistency,
    };
    let state = ctx.read(read.consistency()).await?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    let log = state.audit();
    // One more than the page, to know whether another follows.
    let mut found = log.query(&params.query(), limit + 1);
    let more = found.len() > limit;
    found.truncate(limit);
    Ok(Json(AuditPage {
        next_after: more.then(|| found.last().map(|e| e.seq)).flatten(),
        entries: found.into_iter().map(entry_view).collect(),
        oldest_at_ms: log.oldest_at_ms(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_and_bad_ones_name_themselves() {
        let parse = |q: &str| {
            let uri: axum::http::Uri = format!("/admin/v1/audit?{q}").parse().unwrap();
            let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).unwrap();
            AuditParams::parse(&pairs.0)
        };
        let p = parse(
            "after=7&limit=20&token_id=tok_1&action=create_key&target=provider%3A&since_ms=5&until_ms=9&consistency=stale",
        )
        .unwrap();
        assert_eq!(p.after, Some(7));
        assert_eq!(p.limit, Some(20));
        assert_eq!(p.target.as_deref(), Some("provider:"));
        assert_eq!(p.consistency, Some(ReadConsistency::Stale));
        let field = |q: &str| parse(q).unwrap_err().field;
        assert_eq!(field("limit=0").as_deref(), Some("limit"));
        assert_eq!(field("limit=1001").as_deref(), Some("limit"));
        assert_eq!(field("after=x").as_deref(), Some("after"));
        assert_eq!(field("who=me").as_deref(), Some("who"));
        // Decoded as every admin query is: a broken escape stays as sent.
        assert_eq!(parse("target=%zz").unwrap().target.as_deref(), Some("%zz"));
        assert_eq!(
            field("consistency=eventual").as_deref(),
            Some("consistency")
        );
    }
}
