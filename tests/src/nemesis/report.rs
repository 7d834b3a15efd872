//! The table per nemesis, in Markdown (as `docs/reliability.md` shows it).

use super::checker::Verdict;
use super::run::PhaseRecord;
use std::fmt::Write;

/// The table: one row per phase, then a totals row, then the global
/// checks in a line each.
pub fn table(phases: &[PhaseRecord], verdict: &Verdict) -> String {
    let mut out = String::new();
    out.push_str(
        "| # | nemesis | writes | acked | failed | ambiguous | lost | unavailable s | recovery s | quota admitted / bound |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut total = [0u64; 5];
    for (i, phase) in phases.iter().enumerate() {
        let counts = verdict.phases.get(i).cloned().unwrap_or_default();
        let quota = verdict
            .quota
            .get(&i)
            .map(|t| format!("{} / {}", t.admitted, t.bound()))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "| {i} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {quota} |",
            phase.name,
            counts.attempted,
            counts.acked,
            counts.failed,
            counts.ambiguous,
            counts.lost,
            counts.unavailable.as_secs_f64(),
            phase.recovery.as_secs_f64(),
        );
        for (t, v) in total.iter_mut().zip([
            counts.attempted,
            counts.acked,
            counts.failed,
            counts.ambiguous,
            counts.lost,
        ]) {
            *t += v;
        }
    }
    let _ = writeln!(
        out,
        "| | **all** | {} | {} | {} | {} | {} | | | |",
        total[0], total[1], total[2], total[3], total[4]
    );
    let _ = writeln!(
        out,
        "\nobjects checked: {} on members {:?}; lost writes: {}; anomalies: {}",
        verdict.objects,
        verdict.members,
        verdict.lost.len(),
        verdict.anomalies.len()
    );
    let _ = match &verdict.digest {
        Ok((index, digest)) => writeln!(
            out,
            "state digest: equal on every member at applied index {index} ({})",
            &digest[..digest.len().min(16)]
        ),
        Err(e) => writeln!(out, "state digest: DIFFERENT: {e}"),
    };
    let conflicts = verdict.terms.conflicts();
    let _ = writeln!(
        out,
        "leaders: {} terms seen in {} samples, {} with two leaders",
        verdict.terms.named.len().max(verdict.terms.claimed.len()),
        verdict.terms.samples,
        conflicts.len()
    );
    let violations = verdict.quota_violations();
    let _ = writeln!(out, "quota: {} phases over their bound", violations.len());
    out
}
