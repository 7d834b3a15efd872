//! `sluice usage`: requests, tokens, cost, errors and latency over a time
//! range, by key, route or provider (`GET /admin/v1/usage`), as a table,
//! `--json` or `--csv`.

use super::http::{v1_path as path, AdminClient};
use super::output::{Output, Table};
use super::parse;
use sluice_admin::usage::UsageReport;

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
    /// Only this key id.
    #[arg(long, value_name = "ID")]
    pub key: Option<String>,
    /// Only this route.
    #[arg(long, value_name = "ROUTE")]
    pub route: Option<String>,
    /// Print the API's CSV.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
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
    let mut query = vec![("from", from.as_str()), ("group_by", args.by.as_str())];
    if let Some(until) = &until {
        query.push(("to", until));
    }
    if let Some(key) = &args.key {
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
        println!("{} to {}", report.from, report.to);
        let mut table = Table::new(&[
            "GROUP",
            "REQUESTS",
            "PROMPT",
            "COMPLETION",
            "COST USD",
            "ERRORS",
            "AVG MS",
        ]);
        let rows = report
            .groups
            .iter()
            .map(|g| (g.group.as_str(), &g.totals))
            .chain(std::iter::once(("TOTAL", &report.total)));
        for (group, t) in rows {
            table.row(vec![
                if group.is_empty() { "-" } else { group }.to_owned(),
                t.requests.to_string(),
                t.prompt_tokens.to_string(),
                t.completion_tokens.to_string(),
                format!("{:.6}", t.cost_usd),
                t.errors.to_string(),
                format!("{:.0}", t.avg_latency_ms),
            ]);
        }
        table.print();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_relative_times() {
        assert_eq!(when("1h"), "-3600s");
        assert_eq!(when("2026-05-01T00:00:00Z"), "2026-05-01T00:00:00Z");
    }
}
