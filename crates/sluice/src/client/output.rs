//! Human output of the admin client: aligned columns and readable times.

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Write as _;

/// Where a response goes: as JSON, or through a human renderer.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON, or decodes it as `T` and hands it to `human`.
    pub fn show<T: DeserializeOwned>(
        self,
        value: Value,
        human: impl FnOnce(T),
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            human(
                serde_json::from_value(value)
                    .context("the admin API answered with an unexpected shape")?,
            );
        }
        Ok(())
    }

    /// Confirms a change that has no response body.
    pub fn done(self, what: String) {
        if !self.json {
            println!("{what}");
        }
    }
}

/// Rows printed under a header with every column padded to its widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, no trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// `label: value` lines with the values aligned, for one entity.
pub fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(label, _)| label.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in fields {
        let _ = writeln!(out, "{:<width$}  {value}", format!("{label}:"));
    }
    out
}

pub fn print_fields(fields: &[(&str, String)]) {
    print!("{}", render_fields(fields));
}

/// `2025-03-01T12:00:00Z` for milliseconds since the Unix epoch.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `format_ms`, or `-` when there is no time.
pub fn format_opt_ms(ms: Option<u64>) -> String {
    ms.map(format_ms).unwrap_or_else(|| "-".to_string())
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A list of names as one cell (`-` when empty).
pub fn join_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut t = Table::new(&["NAME", "KIND"]);
        t.row(vec!["openai-main".into(), "openai".into()]);
        t.row(vec!["a".into(), "anthropic".into()]);
        assert_eq!(
            t.render(),
            "NAME         KIND\nopenai-main  openai\na            anthropic\n"
        );
    }

    #[test]
    fn fields_align() {
        let text = render_fields(&[("id", "key_1".into()), ("status", "active".into())]);
        assert_eq!(text, "id:      key_1\nstatus:  active\n");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_ms(1_735_689_599_999), "2024-12-31T23:59:59Z");
        assert_eq!(format_opt_ms(None), "-");
    }
}
