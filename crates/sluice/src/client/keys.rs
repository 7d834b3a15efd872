//! `sluice keys …`: the secret is printed once, at creation.

use super::http::{v1_path as path, AdminClient, ApiFailure};
use super::output::Output;
use super::output::{format_ms, format_opt_ms, join_or_dash, print_fields, Table};
use super::{parse, resolve};
use reqwest::StatusCode;
use sluice_admin::keys::{CreateKey, CreatedKey, KeyList, KeyStatus, KeyView};
use sluice_admin::quotas::{NoQuorumName, PeriodName, QuotaSpec, QuotaView, ReserveName};
use sluice_admin::spend::SpendView;
use std::collections::BTreeMap;

/// A key on the command line: its id or its name.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArg {
    /// The key: its id (`key_` + 16 hex digits) or its name, when no other
    /// key has that name (`sluice keys list` shows both).
    #[arg(value_name = "KEY")]
    pub key: String,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown only this once). A name
    /// another key has is refused unless --allow-duplicate-name: other
    /// commands find keys by name.
    Create {
        /// The key's label (letters, digits, `-_.`; at most 64), by which
        /// other commands can name it.
        #[arg(long)]
        name: String,
        /// Create the key even if another key has this name (then commands
        /// must name either by its id).
        #[arg(long)]
        allow_duplicate_name: bool,
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
    Quota(KeyArg),
    /// Show what a key spent in its current budget period, against its budget.
    Spend(KeyArg),
    /// Change a key's quota (or, with --route, its quota on one route).
    /// Limits not named are kept; `--rpm 0` style zeroes are refused, use
    /// `--clear` to remove a limit.
    SetQuota {
        #[command(flatten)]
        key: KeyArg,
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
    /// Show one key, with its limits.
    Get(KeyArg),
    /// Revoke a key for good.
    Revoke(KeyArg),
    /// Disable a key (reversible).
    Disable(KeyArg),
    /// Enable a disabled key.
    Enable(KeyArg),
    /// Delete a key.
    Delete(KeyArg),
}

pub(super) async fn run(
    client: &AdminClient,
    out: Output,
    command: KeysCommand,
) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            name,
            allow_duplicate_name,
            routes,
            expires_in,
            metadata,
            quota,
        } => {
            if !allow_duplicate_name {
                refuse_duplicate_name(client, &name).await?;
            }
            quota.note_defaults(out);
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
                reserve: spec.reserve,
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
                    "ID", "NAME", "PREFIX", "STATUS", "ROUTES", "LIMITS", "EXPIRES", "CREATED",
                ]);
                for k in list.keys {
                    let prefix = prefix_cell(&k);
                    table.row(vec![
                        k.id,
                        k.name,
                        prefix,
                        status_name(k.status).to_string(),
                        routes_cell(&k.allowed_routes),
                        limits_cell(&k.limits),
                        format_opt_ms(k.expires_at_ms),
                        format_ms(k.created_at_ms),
                    ]);
                }
                table.print();
            })
        }
        KeysCommand::Get(key) => {
            let id = resolve::key_id(client, &key.key).await?;
            let value = client.get(&path(&["keys", &id])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Revoke(key) => {
            let id = resolve::key_id(client, &key.key).await?;
            let value = client.post_empty(&path(&["keys", &id, "revoke"])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Disable(key) => {
            let id = resolve::key_id(client, &key.key).await?;
            let value = client.post_empty(&path(&["keys", &id, "disable"])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Enable(key) => {
            let id = resolve::key_id(client, &key.key).await?;
            let value = client.post_empty(&path(&["keys", &id, "enable"])).await?;
            out.show(value, print_key)
        }
        KeysCommand::Quota(key) => {
            let id = resolve::key_id(client, &key.key).await?;
            let value = client.get(&path(&["keys", &id, "quota"])).await?;
            out.show(value, print_quota)
        }
        KeysCommand::Spend(key) => {
            let id = resolve::key_id(client, &key.key).await?;
            let value = client.get(&path(&["keys", &id, "spend"])).await?;
            out.show(value, print_spend)
        }
        KeysCommand::SetQuota {
            key,
            route,
            quota,
            clear,
        } => {
            let id = resolve::key_id(client, &key.key).await?;
            quota.note_defaults(out);
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
        KeysCommand::Delete(key) => {
            let id = resolve::key_id(client, &key.key).await?;
            client.delete(&path(&["keys", &id])).await?;
            out.done(format!("deleted key {id}"));
            Ok(())
        }
    }
}

/// Refuses a name another key has: names pick keys in other commands.
async fn refuse_duplicate_name(client: &AdminClient, name: &str) -> anyhow::Result<()> {
    let keys = resolve::all_keys(client).await?;
    let taken: Vec<&str> = keys
        .iter()
        .filter(|k| k.name == name)
        .map(|k| k.id.as_str())
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(ApiFailure {
        status: StatusCode::CONFLICT,
        kind: "conflict".to_owned(),
        message: format!("a key named {name:?} exists already ({})", taken.join(", ")),
        field: Some("name".to_owned()),
        hint: Some(format!(
            "other commands find keys by name (`sluice keys quota {name}`), so names should be \
             unique: choose another name, or pass --allow-duplicate-name"
        )),
    }
    .into())
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
    /// Spend allowed per budget period, in US dollars (a month unless
    /// --budget-period says otherwise).
    #[arg(long, value_name = "USD")]
    budget_usd: Option<f64>,
    /// `day` or `month` (default), UTC calendar periods.
    #[arg(long, value_name = "PERIOD")]
    budget_period: Option<BudgetPeriod>,
    /// Without a reachable ledger: `deny` (default) or `local-share`.
    #[arg(long, value_name = "POLICY")]
    on_no_quorum: Option<NoQuorum>,
    /// What a request reserves of --tpm and --budget-usd before its answer:
    /// `max-tokens` (default: all of its max_tokens, never exceeded) or
    /// `estimate` (what the key's answers recently used; a bounded
    /// overshoot, see docs/quotas.md).
    #[arg(long, value_name = "MODE")]
    reserve: Option<ReserveMode>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReserveMode {
    MaxTokens,
    Estimate,
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
    /// Says on stderr what an unnamed choice defaults to: a budget without
    /// a period is monthly.
    fn note_defaults(&self, out: Output) {
        if self.budget_usd.is_some() && self.budget_period.is_none() && !out.json {
            eprintln!(
                "note: --budget-usd without --budget-period is a monthly budget (UTC calendar \
                 month); pass --budget-period day for a daily one"
            );
        }
    }

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
            reserve: self.reserve.map(|r| match r {
                ReserveMode::MaxTokens => ReserveName::MaxTokens,
                ReserveMode::Estimate => ReserveName::Estimate,
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
    if let Some(reserve) = q.reserve {
        println!(
            "reserves {}",
            match reserve {
                ReserveName::MaxTokens => "all of max_tokens",
                ReserveName::Estimate => "an estimate of each answer",
            }
        );
    }
    let mut table = Table::new(&[
        "SCOPE",
        "LIMIT",
        "REMAINING",
        "NODES (HOLDING, ADMITTED/MIN)",
    ]);
    for b in q.buckets {
        let nodes: Vec<String> = b
            .nodes
            .iter()
            .map(|n| format!("node {}: {}, {}/min", n.node, n.holding, n.admitted_per_min))
            .collect();
        table.row(vec![b.scope, b.limit, b.remaining, join_or_dash(&nodes)]);
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
    let prefix = prefix_cell(&k);
    print_fields(&[
        ("id", k.id),
        ("name", k.name),
        ("prefix", prefix),
        ("status", status_name(k.status).to_string()),
        ("routes", routes_cell(&k.allowed_routes)),
        ("expires", format_opt_ms(k.expires_at_ms)),
        ("revoked", format_opt_ms(k.revoked_at_ms)),
        ("metadata", join_or_dash(&metadata)),
        ("created", format_ms(k.created_at_ms)),
        ("limits", limits_cell(&k.limits)),
    ]);
}

/// What a key is recognised by: its secret's first characters, or for a
/// JWT subject's key (no secret) its issuer and subject, and its template.
fn prefix_cell(k: &KeyView) -> String {
    match &k.subject {
        Some(s) => format!("jwt {}:{} (template {})", s.issuer, s.subject, s.template),
        None => k.prefix.clone(),
    }
}

/// A key's limits in words, `; `-separated (a limit may hold a comma), or
/// `none`.
fn limits_cell(limits: &[String]) -> String {
    if limits.is_empty() {
        "none".to_string()
    } else {
        limits.join("; ")
    }
}
