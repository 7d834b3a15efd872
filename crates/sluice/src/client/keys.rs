//! `sluice keys …`: the secret is printed once, at creation.

use super::http::{v1_path as path, AdminClient};
use super::output::Output;
use super::output::{format_ms, format_opt_ms, join_or_dash, print_fields, Table};
use super::parse;
use sluice_admin::keys::{CreateKey, CreatedKey, KeyList, KeyStatus, KeyView};
use sluice_admin::quotas::{NoQuorumName, PeriodName, QuotaSpec, QuotaView};
use sluice_admin::spend::SpendView;
use std::collections::BTreeMap;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// A route the key may use (repeatable; none means every route).
        #[arg(long = "route", value_name = "ROUTE")]
        routes: Vec<String>,
        /// Lifetime, e.g. `30d`, `12h`, `90m`.
        #[arg(long, value_name = "DURATION", value_parser = parse::duration_secs)]
        expires_in: Option<u64>,
        /// A label, `KEY=VALUE` (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse::key_value)]
        metadata: Vec<(String, String)>,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Show a key's quota: its buckets, their levels, each node's lease.
    Quota { id: String },
    /// Show what a key spent in its current budget period, against its budget.
    Spend { id: String },
    /// Change a key's quota (or, with --route, its quota on one route).
    /// Limits not named are kept; `--rpm 0` style zeroes are refused, use
    /// `--clear` to remove a limit.
    SetQuota {
        id: String,
        /// Set the quota of the key on this route instead of the key's own.
        #[arg(long)]
        route: Option<String>,
        #[command(flatten)]
        quota: QuotaArgs,
        /// Remove these limits: `rpm`, `tpm`, `budget` (repeatable).
        #[arg(long = "clear", value_name = "LIMIT")]
        clear: Vec<ClearLimit>,
    },
    /// List keys (never their secrets).
    List,
    /// Show one key.
    Get { id: String },
    /// Revoke a key for good.
    Revoke { id: String },
    /// Disable a key (reversible).
    Disable { id: String },
    /// Enable a disabled key.
    Enable { id: String },
    /// Delete a key.
    Delete { id: String },
}
pub(super) async fn run(
    client: &AdminClient,
    out: Output,
    command: KeysCommand,
) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            name,
            routes,
            expires_in,
            metadata,
            quota,
        } => {
            let spec = quota.spec(&[]);
            let body = CreateKey {
                name,
                allowed_routes: routes,
                expires_at_ms: None,
                expires_in_s: expires_in,
                metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
                rpm: quota.rpm,
                tpm: quota.tpm,
                budget_usd: quota.budget_usd,
                budget_period: spec.budget_period,
                on_no_quorum: spec.on_no_quorum,
                limits: None,
            };
            let value = client.post(&path(&["keys"]), &body).await?;
            out.show(value, |created: CreatedKey| {
                print_key(created.view);
                println!();
                println!("key: {}", created.key);
                println!("(shown only this once: store it now)");
            })
        }
        KeysCommand::List => {
            let value = client.get(&path(&["keys"])).await?;
            out.show(value, |list: KeyList| {
                let mut table = Table::new(&[
                    "ID", "NAME", "PREFIX", "STATUS", "ROUTES", "EXPIRES", "CREATED",
                ]);
                for k in list.keys {
                    table.row(vec![
                        k.id,
                        k.name,
                        k.prefix,
                        status_name(k.status).to_string(),
                        routes_cell(&k.allowed_routes),
                        format_opt_ms(k.expires_at_ms),
                        format_ms(k.created_at_ms),
                    ]);
                }
                table.print();
            })
        }
        KeysCommand::Get { id } => {
            let value = client.get(&path(&["keys", &id])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Revoke { id } => {
            let value = client.post_empty(&path(&["keys", &id, "revoke"])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Disable { id } => {
            let value = client.post_empty(&path(&["keys", &id, "disable"])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Enable { id } => {
            let value = client.post_empty(&path(&["keys", &id, "enable"])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Quota { id } => {
            let value = client.get(&path(&["keys", &id, "quota"])).await?;
            out.show(value, print_quota)
        }
        KeysCommand::Spend { id } => {
            let value = client.get(&path(&["keys", &id, "spend"])).await?;
            out.show(value, print_spend)
        }
        KeysCommand::SetQuota {
            id,
            route,
            quota,
            clear,
        } => {
            let spec = quota.spec(&clear);
            let value = match &route {
                Some(route) => {
                    client
                        .call(
                            reqwest::Method::PUT,
                            &path(&["keys", &id, "routes", route, "quota"]),
                            Some(&spec),
                        )
                        .await?
                }
                None => {
                    client
                        .call(reqwest::Method::PATCH, &path(&["keys", &id]), Some(&spec))
                        .await?
                }
            };
            out.show(value, print_quota)
        }
        KeysCommand::Delete { id } => {
            client.delete(&path(&["keys", &id])).await?;
            out.done(format!("deleted key {id}"));
            Ok(())
        }
    }
}

/// The quota flags of `keys create` and `keys set-quota`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct QuotaArgs {
    /// Requests per minute across the whole cluster.
    #[arg(long)]
    rpm: Option<u64>,
    /// LLM tokens (prompt + completion) per minute across the cluster.
    #[arg(long)]
    tpm: Option<u64>,
    /// Spend allowed per budget period, in US dollars.
    #[arg(long, value_name = "USD")]
    budget_usd: Option<f64>,
    /// `day` or `month` (default), UTC calendar periods.
    #[arg(long, value_name = "PERIOD")]
    budget_period: Option<BudgetPeriod>,
    /// Without a reachable ledger: `deny` (default) or `local-share`.
    #[arg(long, value_name = "POLICY")]
    on_no_quorum: Option<NoQuorum>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BudgetPeriod {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum NoQuorum {
    Deny,
    LocalShare,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClearLimit {
    Rpm,
    Tpm,
    Budget,
}

impl QuotaArgs {
    fn spec(&self, clear: &[ClearLimit]) -> QuotaSpec {
        let pick = |set: Option<u64>, limit| {
            if clear.contains(&limit) {
                Some(None)
            } else {
                set.map(Some)
            }
        };
        QuotaSpec {
            rpm: pick(self.rpm, ClearLimit::Rpm),
            tpm: pick(self.tpm, ClearLimit::Tpm),
            budget_usd: if clear.contains(&ClearLimit::Budget) {
                Some(None)
            } else {
                self.budget_usd.map(Some)
            },
            budget_period: self.budget_period.map(|p| match p {
                BudgetPeriod::Day => PeriodName::Day,
                BudgetPeriod::Month => PeriodName::Month,
            }),
            on_no_quorum: self.on_no_quorum.map(|n| match n {
                NoQuorum::Deny => NoQuorumName::Deny,
                NoQuorum::LocalShare => NoQuorumName::LocalShare,
            }),
            limits: None,
        }
    }
}

fn print_spend(s: SpendView) {
    let usd = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.6}"));
    print_fields(&[
        ("key", s.key_id),
        ("period", format!("{} to {}", s.period_start, s.period_end)),
        ("spent usd", format!("{:.6}", s.spent_usd)),
        ("budget usd", usd(s.budget_usd)),
        ("remaining usd", usd(s.remaining_usd)),
        ("requests", s.usage.requests.to_string()),
        (
            "tokens",
            format!(
                "{} prompt, {} completion",
                s.usage.prompt_tokens, s.usage.completion_tokens
            ),
        ),
    ]);
}

fn print_quota(q: QuotaView) {
    println!("key {}", q.key_id);
    if q.buckets.is_empty() {
        println!("no quota");
        return;
    }
    let mut table = Table::new(&[
        "SCOPE",
        "UNIT",
        "CAPACITY",
        "REFILL",
        "LEVEL",
        "NODES (LEASE, ADMITTED/MIN)",
    ]);
    for b in q.buckets {
        let leases: Vec<String> = b
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "node {}: {}, {}/min",
                    n.node, n.last_grant, n.admitted_per_min
                )
            })
            .collect();
        table.row(vec![
            b.scope,
            b.unit,
            b.capacity.to_string(),
            b.refill,
            b.level.to_string(),
            join_or_dash(&leases),
        ]);
    }
    table.print();
}

fn status_name(status: KeyStatus) -> &'static str {
    match status {
        KeyStatus::Active => "active",
        KeyStatus::Disabled => "disabled",
        KeyStatus::Expired => "expired",
        KeyStatus::Revoked => "revoked",
    }
}

fn routes_cell(routes: &[String]) -> String {
    if routes.is_empty() {
        "(all)".to_string()
    } else {
        routes.join(",")
    }
}

fn print_key(k: KeyView) {
    let metadata: Vec<String> = k
        .metadata
        .iter()
        .map(|(key, v)| format!("{key}={v}"))
        .collect();
    print_fields(&[
        ("id", k.id),
        ("name", k.name),
        ("prefix", k.prefix),
        ("status", status_name(k.status).to_string()),
        ("routes", routes_cell(&k.allowed_routes)),
        ("expires", format_opt_ms(k.expires_at_ms)),
        ("revoked", format_opt_ms(k.revoked_at_ms)),
        ("metadata", join_or_dash(&metadata)),
        ("created", format_ms(k.created_at_ms)),
    ]);
}
