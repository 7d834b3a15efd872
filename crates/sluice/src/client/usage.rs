//! `sluice usage`: requests, tokens, cost, errors and latency over a time
//! range, by key, route or provider (`GET /admin/v1/usage`), as a table,
//! `--json` or `--csv`.

use super::http::{v1_path as path, AdminClient};
use super::output::{Output, Table};
use super::{parse, resolve, ClientGlobal};
use sluice_admin::usage::{UsageReport, REFUSED_BEFORE_ROUTING};

/// What `sluice usage` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ByArg {
    Key,
    Route,
    Provider,
}

impl ByArg {
    fn as_str(self) -> &'static str {
        match self {
            ByArg::Key => "key",
            ByArg::Route => "route",
            ByArg::Provider => "provider",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct UsageArgs {
    /// Group by `key`, `route` or `provider`.
    #[arg(long, value_enum, default_value = "key")]
    pub by: ByArg,
    /// Start of the range: a duration back from now (`1h`, `30m`, `7d`) or
    /// an RFC 3339 time.
    #[arg(long, default_value = "24h", value_name = "WHEN")]
    pub since: String,
    /// End of the range (exclusive), in the same forms; default now.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only this key: its id or its unique name.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Only this route.
    #[arg(long, value_name = "ROUTE")]
    pub route: Option<String>,
    /// Print the API's CSV.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    #[command(flatten)]
    pub global: ClientGlobal,
}

/// `1h` becomes `-3600s` (relative to now, as the API takes it); anything
/// else goes as written (an RFC 3339 time, checked by the API).
fn when(text: &str) -> String {
    match parse::duration_secs(text) {
        Ok(secs) => format!("-{secs}s"),
        Err(_) => text.to_owned(),
    }
}

pub(super) async fn run(client: &AdminClient, out: Output, args: UsageArgs) -> anyhow::Result<()> {
    let (from, until) = (when(&args.since), args.until.as_deref().map(when));
    let key = match &args.key {
        Some(key) => Some(resolve::key_id(client, key).await?),
        None => None,
    };
    let mut query = vec![("from", from.as_str()), ("group_by", args.by.as_str())];
    if let Some(until) = &until {
        query.push(("to", until));
    }
    if let Some(key) = &key {
        query.push(("key", key));
    }
    if let Some(route) = &args.route {
        query.push(("route", route));
    }
    if args.csv {
        query.push(("format", "csv"));
        print!("{}", client.get_text(&path(&["usage"]), &query).await?);
        return Ok(());
    }
    let value = client.get_query(&path(&["usage"]), &query).await?;
    out.show(value, |report: UsageReport| {
        print!("{}", render(args.by, &report))
    })
}

/// The report as a table: one row per group, then the total. By key, each
/// id has its name beside it; the provider group of calls refused before
/// routing says so; errors are split into refusals and the upstream's.
fn render(by: ByArg, report: &UsageReport) -> String {
    let mut text = format!("{} to {}\n", report.from, report.to);
    let mut header = vec![match by {
        ByArg::Key => "KEY",
        ByArg::Route => "ROUTE",
        ByArg::Provider => "PROVIDER",
    }];
    if by == ByArg::Key {
        header.push("NAME");
    }
    header.extend([
        "REQUESTS",
        "PROMPT",
        "COMPLETION",
        "COST USD",
        "REFUSED",
        "UPSTREAM ERRORS",
        "AVG MS",
    ]);
    let mut table = Table::new(&header);
    let rows = report
        .groups
        .iter()
        .map(|g| (g.group.as_str(), g.name.as_deref(), &g.totals))
        .chain(std::iter::once(("TOTAL", None, &report.total)));
    for (group, name, t) in rows {
        let mut row = vec![match (group, name) {
            ("", Some(label)) => format!("({label})"),
            ("", None) => format!("({REFUSED_BEFORE_ROUTING})"),
            (group, _) => group.to_owned(),
        }];
        if by == ByArg::Key {
            row.push(match (group, name) {
                ("TOTAL", _) => String::new(),
                (_, Some(name)) => name.to_owned(),
                (_, None) => "(deleted)".to_owned(),
            });
        }
        row.extend([
            t.requests.to_string(),
            t.prompt_tokens.to_string(),
            t.completion_tokens.to_string(),
            format!("{:.6}", t.cost_usd),
            t.refused.to_string(),
            t.upstream_errors.to_string(),
            format!("{:.0}", t.avg_latency_ms),
        ]);
        table.row(row);
    }
    text.push_str(&table.render());
    if report.total.refused > 0 {
        text.push_str(
            "REFUSED: calls the gateway refused before trying a provider (over a quota: 429; no quorum: 503).\n",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_relative_times() {
        assert_eq!(when("1h"), "-3600s");
        assert_eq!(when("2026-05-01T00:00:00Z"), "2026-05-01T00:00:00Z");
    }

    fn report(group_by: &str, groups: serde_json::Value) -> UsageReport {
        let totals = serde_json::json!({
            "requests": 3, "prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30,
            "cost_micro_usd": 5, "cost_usd": 0.000005, "errors": 2, "refused": 1,
            "upstream_errors": 1, "latency_ms_sum": 30, "avg_latency_ms": 10.0
        });
        let groups: Vec<serde_json::Value> = groups
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let mut g = g.clone();
                for (k, v) in totals.as_object().unwrap() {
                    g[k] = v.clone();
                }
                g
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "from": "2026-05-01T10:00:00Z", "from_ms": 0, "to": "2026-05-01T11:00:00Z",
            "to_ms": 1, "group_by": group_by, "key": null, "route": null,
            "groups": groups, "total": totals
        }))
        .unwrap()
    }

    #[test]
    fn tables_name_keys_label_refusals_and_split_errors() {
        let by_key = render(
            ByArg::Key,
            &report(
                "key",
                serde_json::json!([
                    {"group": "key_0000000000000001", "name": "team-a"},
                    {"group": "key_0000000000000002", "name": null}
                ]),
            ),
        );
        let lines: Vec<&str> = by_key.lines().collect();
        assert!(lines[1].starts_with("KEY"), "{by_key}");
        assert!(
            lines[1].contains("NAME") && lines[1].contains("REFUSED"),
            "{by_key}"
        );
        assert!(lines[1].contains("UPSTREAM ERRORS"), "{by_key}");
        assert!(
            lines[2].contains("key_0000000000000001  team-a"),
            "{by_key}"
        );
        assert!(lines[3].contains("(deleted)"), "{by_key}");
        assert!(
            by_key.contains("REFUSED: calls the gateway refused"),
            "{by_key}"
        );
        let by_provider = render(
            ByArg::Provider,
            &report(
                "provider",
                serde_json::json!([
                    {"group": "", "name": "refused before routing"},
                    {"group": "openai", "name": null}
                ]),
            ),
        );
        assert!(
            by_provider.contains("\n(refused before routing)  3"),
            "{by_provider}"
        );
        assert!(!by_provider.contains("NAME"), "{by_provider}");
    }
}
