//! `sluice audit`: who changed what, when (`GET /admin/v1/audit`), oldest
//! first, as a table or `--json`; `--all` follows the pages.

use super::http::{v1_path as path, AdminClient};
use super::output::{format_ms, Output, Table};
use super::{parse, ClientGlobal, UsageError};
use sluice_admin::audit::{AuditEntryView, AuditPage, MAX_PAGE};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Only changes at or after this: a duration back from now (`1h`,
    /// `7d`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only changes before this, in the same forms.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only this admin token's changes (`tok_…`, or `bootstrap`).
    #[arg(long, value_name = "ID")]
    pub token_id: Option<String>,
    /// Only this action (`create_key`, `update_provider`, `set_quota`, …).
    #[arg(long)]
    pub action: Option<String>,
    /// Only this target (`key:key_…`, `provider:openai`), or every target
    /// starting with a prefix that ends in `:` (`provider:`).
    #[arg(long)]
    pub target: Option<String>,
    /// Entries after this sequence number (a page's `next_after`).
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
    /// At most this many entries (1-1000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Every page, not only the first.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub global: ClientGlobal,
}

/// `when` as milliseconds since the Unix epoch: `now_ms` less a duration,
/// or an RFC 3339 time.
fn when_ms(flag: &str, when: &str, now_ms: u64) -> Result<u64, UsageError> {
    if let Ok(secs) = parse::duration_secs(when) {
        return Ok(now_ms.saturating_sub(secs.saturating_mul(1000)));
    }
    let at = OffsetDateTime::parse(when, &Rfc3339).map_err(|_| {
        UsageError::new(format!(
            "{flag} {when:?}: give a duration back from now (1h, 7d) or an RFC 3339 time"
        ))
    })?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| UsageError::new(format!("{flag} {when:?} is before 1970")))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What an entry changed, in a few words.
fn summary(entry: &AuditEntryView) -> String {
    let mut notes = Vec::new();
    if let (Some(before), Some(after)) = (
        entry.before.as_ref().and_then(|v| v.as_object()),
        entry.after.as_ref().and_then(|v| v.as_object()),
    ) {
        let changed: Vec<&str> = after
            .iter()
            .filter(|(name, value)| {
                !name.ends_with("_at_ms") && before.get(name.as_str()) != Some(value)
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if !changed.is_empty() {
            notes.push(format!("changed {}", changed.join(", ")));
        }
    }
    if !entry.secrets_replaced.is_empty() {
        notes.push(format!("replaced {}", entry.secrets_replaced.join(", ")));
    }
    if notes.is_empty() {
        "-".to_owned()
    } else {
        notes.join("; ")
    }
}

pub(super) async fn run(client: &AdminClient, out: Output, args: AuditArgs) -> anyhow::Result<()> {
    if !(1..=MAX_PAGE).contains(&args.limit) {
        return Err(UsageError::new(format!("--limit must be between 1 and {MAX_PAGE}")).into());
    }
    let now = now_ms();
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    if let Some(since) = &args.since {
        query.push(("since_ms", when_ms("--since", since, now)?.to_string()));
    }
    if let Some(until) = &args.until {
        query.push(("until_ms", when_ms("--until", until, now)?.to_string()));
    }
    for (name, value) in [
        ("token_id", &args.token_id),
        ("action", &args.action),
        ("target", &args.target),
    ] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    let mut after = args.after;
    let mut pages = Vec::new();
    loop {
        let mut page_query: Vec<(&str, &str)> =
            query.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let after_text = after.map(|seq| seq.to_string());
        if let Some(after) = &after_text {
            page_query.push(("after", after));
        }
        let page: AuditPage =
            serde_json::from_value(client.get_query(&path(&["audit"]), &page_query).await?)?;
        after = page.next_after;
        pages.push(page);
        if !args.all || after.is_none() {
            break;
        }
    }
    // With --all, every page's entries in one page.
    let oldest_at_ms = pages.first().and_then(|p| p.oldest_at_ms);
    let whole = AuditPage {
        entries: pages.into_iter().flat_map(|p| p.entries).collect(),
        next_after: after,
        oldest_at_ms,
    };
    let value = serde_json::to_value(whole)?;
    out.show(value, |page: AuditPage| {
        let mut table = Table::new(&["SEQ", "WHEN", "WHO", "FROM", "ACTION", "TARGET", "WHAT"]);
        for e in &page.entries {
            table.row(vec![
                e.seq.to_string(),
                format_ms(e.at_ms),
                format!("{} ({})", e.actor.token_name, e.actor.token_id),
                e.actor.address.clone(),
                e.action.clone(),
                e.target.clone(),
                summary(e),
            ]);
        }
        table.print();
        if let Some(next) = page.next_after {
            println!("more: sluice audit --after {next} (or --all)");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_admin::audit::ActorView;
    use sluice_admin::tokens::RoleBody;

    #[test]
    fn times_are_durations_back_or_rfc3339() {
        assert_eq!(when_ms("--since", "1h", 10_000_000).unwrap(), 6_400_000);
        assert_eq!(
            when_ms("--since", "2026-12-06T00:00:00Z", 0).unwrap(),
            1_796_515_200_000
        );
        assert!(when_ms("--since", "yesterday", 0).is_err());
    }

    #[test]
    fn a_summary_names_what_changed() {
        let entry = AuditEntryView {
            seq: 1,
            at_ms: 0,
            actor: ActorView {
                token_id: "bootstrap".into(),
                token_name: "bootstrap".into(),
                role: RoleBody::Admin,
                address: "127.0.0.1:1".into(),
            },
            action: "update_provider".into(),
            target: "provider:p".into(),
            before: Some(json!({"base_url": "a", "api_key_set": true, "updated_at_ms": 1})),
            after: Some(json!({"base_url": "b", "api_key_set": true, "updated_at_ms": 2})),
            secrets_replaced: vec!["api_key".into()],
        };
        assert_eq!(summary(&entry), "changed base_url; replaced api_key");
    }
}
