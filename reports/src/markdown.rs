//! The report as Markdown (for a pull request, a wiki page or a chat message).

use std::fmt::Write;

use crate::model::{QualityReport, TableReport};
use crate::text::{count, duration, lag, percent, schema_line, signed, value};

pub(crate) fn render(r: &QualityReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Data quality: {}\n", r.spec);
    let _ = writeln!(
        out,
        "Period {} to {} (generated at the end).\n",
        r.since, r.generated_at
    );
    out.push_str("## Tables\n\n");
    out.push_str("| table | rows | added in period | commits in period | last commit | freshness | behind |\n");
    out.push_str("|---|---:|---:|---:|---|---:|---|\n");
    for t in &r.tables {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            t.name,
            count(t.rows),
            signed(t.rows_added_in_period),
            count(t.commits_in_period),
            t.last_commit.as_deref().unwrap_or("never"),
            t.freshness_seconds.map_or("-".to_string(), duration),
            lag(t),
        );
    }
    if !r.missing_tables.is_empty() {
        let _ = writeln!(out, "\nNot created yet: {}.", r.missing_tables.join(", "));
    }
    for (table, why) in &r.unreported_tables {
        let _ = writeln!(out, "\nNot reported: {table}: {why}.");
    }
    out.push_str("\n## Dead letters\n\n");
    for topic in &r.dead_letters.topics {
        match &topic.error {
            Some(e) => {
                let _ = writeln!(out, "- `{}`: not read: {e}", topic.topic);
            }
            None => {
                let _ = writeln!(out, "- `{}`: {} records", topic.topic, count(topic.records));
            }
        }
    }
    if !r.dead_letters.reasons.is_empty() {
        out.push_str(
            "\n| table | stage | reason | records | newest sample |\n|---|---|---|---:|---|\n",
        );
        for reason in &r.dead_letters.reasons {
            let sample = reason.samples.first().map_or(String::new(), |s| {
                format!("{} ({})", s.message, s.source).replace('|', "\\|")
            });
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} | {} |",
                reason.table,
                reason.stage,
                reason.reason,
                count(reason.records),
                sample
            );
        }
    }
    for t in &r.tables {
        table_section(&mut out, t);
    }
    out
}

fn table_section(out: &mut String, t: &TableReport) {
    let _ = writeln!(out, "\n## {}\n", t.name);
    let _ = writeln!(
        out,
        "{} rows in {} data files, {} snapshots.",
        count(t.rows),
        count(t.data_files),
        count(t.snapshots)
    );
    if let Some(i) = &t.ingest {
        let _ = writeln!(
            out,
            "\nIn the period: {} records consumed, {} rows written, {} duplicates dropped (dedupe rate {}), {} dead letters.",
            count(i.consumed),
            count(i.rows),
            count(i.duplicates),
            percent(i.dedupe_rate),
            count(i.dead_letters)
        );
    }
    if !t.expectations.is_empty() {
        out.push_str(
            "\n| expectation | action | passed | failed | pass rate |\n|---|---|---:|---:|---:|\n",
        );
        for e in &t.expectations {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                e.name,
                e.action,
                count(e.passed),
                count(e.failed),
                e.pass_rate.map_or("-".to_string(), percent)
            );
        }
    }
    let sampled = if t.profile.sampled { " (a sample)" } else { "" };
    let _ = writeln!(
        out,
        "\nColumns, over {} rows{sampled}:\n",
        count(t.profile.rows)
    );
    out.push_str("| column | type | nulls | null rate | distinct | min | max |\n|---|---|---:|---:|---:|---|---|\n");
    for c in &t.profile.columns {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.name,
            c.data_type,
            count(c.nulls),
            percent(c.null_rate),
            count(c.distinct),
            value(&c.min).replace('|', "\\|"),
            value(&c.max).replace('|', "\\|")
        );
    }
    out.push_str("\nSchema versions:\n\n");
    for v in &t.schema_versions {
        let _ = writeln!(out, "- {}", schema_line(v));
    }
}
