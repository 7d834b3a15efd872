//! The query string of `GET /admin/v1/usage`, parsed so that every bad
//! value is a 422 naming its parameter.

use crate::error::ApiError;
use crate::extract::RawQuery;
use sluice_core::usage::GroupBy;
use sluice_raft::Consistency;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `group_by=key|route|provider`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GroupName {
    Key,
    Route,
    Provider,
}

impl From<GroupName> for GroupBy {
    fn from(g: GroupName) -> GroupBy {
        match g {
            GroupName::Key => GroupBy::Key,
            GroupName::Route => GroupBy::Route,
            GroupName::Provider => GroupBy::Provider,
        }
    }
}

/// `format=json|csv`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, utoipa::ToSchema)]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// A time in the query: RFC 3339 (`2026-05-01T00:00:00Z`), `now`, or
/// relative to now (`-90s`, `-30m`, `-1h`, `-7d`, `-2w`).
pub fn parse_time(field: &str, value: &str, now_ms: u64) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::validation(
            field,
            format!(
                "{value:?} is not a time: use RFC 3339 (2026-05-01T00:00:00Z), `now`, or a time relative to now like -1h, -30m, -7d"
            ),
        )
    };
    if value == "now" {
        return Ok(now_ms);
    }
    if let Some(relative) = value.strip_prefix('-') {
        let split = relative
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(relative.len());
        let (number, unit) = relative.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit_ms: u64 = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(bad()),
        };
        return Ok(now_ms.saturating_sub(number.saturating_mul(unit_ms)));
    }
    let at = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| bad())?;
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).map_err(|_| ApiError::validation(field, "is before 1970"))
}

/// `ms` as RFC 3339 (UTC).
pub fn format_time(ms: u64) -> String {
    i128::from(ms)
        .checked_mul(1_000_000)
        .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub from_ms: u64,
    pub to_ms: u64,
    pub group_by: GroupName,
    pub key: Option<String>,
    pub route: Option<String>,
    pub format: Format,
    pub consistency: Consistency,
}

/// Default range when `from` is left out: the last 24 hours.
const DEFAULT_SPAN_MS: u64 = 86_400_000;

impl UsageQuery {
    /// Parses `raw` at `now_ms`; the first bad parameter is named.
    pub fn parse(raw: &RawQuery, now_ms: u64) -> Result<Self, ApiError> {
        let (mut from, mut to) = (None, None);
        let mut query = UsageQuery {
            from_ms: 0,
            to_ms: now_ms,
            group_by: GroupName::Key,
            key: None,
            route: None,
            format: Format::Json,
            consistency: Consistency::Linearizable,
        };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in &raw.0 {
            if seen.contains(&name.as_str()) {
                return Err(ApiError::validation(name, "is given twice"));
            }
            seen.push(name);
            match name.as_str() {
                "from" => from = Some(parse_time("from", value, now_ms)?),
                "to" => to = Some(parse_time("to", value, now_ms)?),
                "group_by" => {
                    query.group_by = match value.as_str() {
                        "key" => GroupName::Key,
                        "route" => GroupName::Route,
                        "provider" => GroupName::Provider,
                        _ => {
                            return Err(ApiError::validation(
                                "group_by",
                                "must be `key`, `route` or `provider`",
                            ))
                        }
                    }
                }
                "key" | "route" if value.is_empty() => {
                    return Err(ApiError::validation(name, "must not be empty"))
                }
                "key" => query.key = Some(value.clone()),
                "route" => query.route = Some(value.clone()),
                "format" => {
                    query.format = match value.as_str() {
                        "json" => Format::Json,
                        "csv" => Format::Csv,
                        _ => return Err(ApiError::validation("format", "must be `json` or `csv`")),
                    }
                }
                "consistency" => {
                    query.consistency = match value.as_str() {
                        "linearizable" => Consistency::Linearizable,
                        "stale" => Consistency::Stale,
                        _ => {
                            return Err(ApiError::validation(
                                "consistency",
                                "must be `linearizable` or `stale`",
                            ))
                        }
                    }
                }
                other => {
                    return Err(ApiError::validation(
                        other,
                        "unknown query parameter (expected from, to, group_by, key, route, format, consistency)",
                    ))
                }
            }
        }
        query.to_ms = to.unwrap_or(now_ms);
        query.from_ms = from.unwrap_or(query.to_ms.saturating_sub(DEFAULT_SPAN_MS));
        if query.from_ms >= query.to_ms {
            return Err(ApiError::validation("from", "must be before `to`"));
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000_000;

    fn parse(q: &[(&str, &str)]) -> Result<UsageQuery, ApiError> {
        let raw = RawQuery(
            q.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        UsageQuery::parse(&raw, NOW)
    }

    fn field(q: &[(&str, &str)]) -> Option<String> {
        parse(q).unwrap_err().field
    }

    #[test]
    fn times_are_rfc3339_now_or_relative() {
        assert_eq!(parse_time("from", "now", NOW).unwrap(), NOW);
        assert_eq!(parse_time("from", "-1h", NOW).unwrap(), NOW - 3_600_000);
        assert_eq!(
            parse_time("from", "-7d", NOW).unwrap(),
            NOW - 7 * 86_400_000
        );
        assert_eq!(
            parse_time("from", "2026-05-01T00:00:00Z", NOW).unwrap(),
            1_777_593_600_000
        );
        assert_eq!(
            parse_time("from", "2026-05-01T02:00:00+02:00", NOW).unwrap(),
            1_777_593_600_000
        );
        assert_eq!(format_time(1_777_593_600_000), "2026-05-01T00:00:00Z");
        for bad in ["yesterday", "-1y", "-h", "1h", "2026-05-01"] {
            assert!(parse_time("from", bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_the_last_day_by_key_as_json() {
        let q = parse(&[]).unwrap();
        assert_eq!((q.from_ms, q.to_ms), (NOW - 86_400_000, NOW));
        assert_eq!((q.group_by, q.format), (GroupName::Key, Format::Json));
        let q = parse(&[
            ("from", "-1h"),
            ("group_by", "provider"),
            ("format", "csv"),
            ("key", "key_1"),
        ])
        .unwrap();
        assert_eq!(q.from_ms, NOW - 3_600_000);
        assert_eq!((q.group_by, q.format), (GroupName::Provider, Format::Csv));
        assert_eq!(q.key.as_deref(), Some("key_1"));
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(field(&[("from", "soon")]).as_deref(), Some("from"));
        assert_eq!(field(&[("to", "-1x")]).as_deref(), Some("to"));
        assert_eq!(field(&[("group_by", "model")]).as_deref(), Some("group_by"));
        assert_eq!(field(&[("format", "xml")]).as_deref(), Some("format"));
        assert_eq!(field(&[("key", "")]).as_deref(), Some("key"));
        assert_eq!(field(&[("limit", "5")]).as_deref(), Some("limit"));
        assert_eq!(
            field(&[("from", "-1h"), ("to", "-2h")]).as_deref(),
            Some("from")
        );
        assert_eq!(
            field(&[("route", "a"), ("route", "b")]).as_deref(),
            Some("route")
        );
    }
}
