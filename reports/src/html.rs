//! The report as one self-contained HTML page: inline CSS and SVG charts, no script and no
//! network, so it can be mailed, archived or opened from disk.

use std::fmt::Write;

use crate::model::{DeadLetterReason, ExpectationResult, QualityReport, RowsAt, TableReport};
use crate::text::{count, duration, lag, percent, schema_line, signed, value};

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2937;max-width:1200px}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #e5e7eb}h3{font-size:15px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #e5e7eb;padding:3px 8px;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f4f6}\
.muted{color:#6b7280}.bad{color:#b91c1c}.sample{font-family:monospace;font-size:12px;white-space:pre-wrap;word-break:break-all}\
svg text{font:11px system-ui,sans-serif;fill:#374151}";

/// Colors of the charts (the browser test looks for the line's).
const LINE: &str = "#2563eb";
const BAR: &str = "#f59e0b";
const PASS: &str = "#16a34a";
const FAIL: &str = "#dc2626";

pub(crate) fn render(r: &QualityReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Data quality: {}</title><style>{STYLE}</style></head><body>",
        esc(&r.spec)
    );
    let _ = write!(
        out,
        "<h1>Data quality: {}</h1><p class=\"muted\">Period <span id=\"since\">{}</span> to <span id=\"generated-at\">{}</span>. Report shape {} v{}.</p>",
        esc(&r.spec),
        esc(&r.since),
        esc(&r.generated_at),
        esc(&r.kind),
        r.version
    );
    overview(&mut out, r);
    dead_letters(&mut out, r);
    for t in &r.tables {
        table_section(&mut out, t);
    }
    out.push_str("</body></html>\n");
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn overview(out: &mut String, r: &QualityReport) {
    out.push_str("<h2>Tables</h2><table id=\"tables\"><tr><th>table</th><th>rows</th><th>added in period</th><th>commits in period</th><th>last commit</th><th>freshness</th><th>behind</th></tr>");
    for t in &r.tables {
        let _ = write!(
            out,
            "<tr data-table=\"{name}\"><td><a href=\"#{name}\">{name}</a></td><td class=\"n rows\">{}</td><td class=\"n added\">{}</td><td class=\"n commits\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            count(t.rows),
            signed(t.rows_added_in_period),
            count(t.commits_in_period),
            esc(t.last_commit.as_deref().unwrap_or("never")),
            t.freshness_seconds.map_or("-".to_string(), duration),
            esc(&lag(t)),
            name = esc(&t.name),
        );
    }
    out.push_str("</table>");
    if !r.missing_tables.is_empty() {
        let _ = write!(
            out,
            "<p class=\"muted\">Not created yet: {}.</p>",
            esc(&r.missing_tables.join(", "))
        );
    }
    for (table, why) in &r.unreported_tables {
        let _ = write!(
            out,
            "<p class=\"muted\">Not reported: {}: {}.</p>",
            esc(table),
            esc(why)
        );
    }
}

fn dead_letters(out: &mut String, r: &QualityReport) {
    out.push_str("<h2>Dead letters</h2><ul>");
    for topic in &r.dead_letters.topics {
        match &topic.error {
            Some(e) => {
                let _ = write!(
                    out,
                    "<li><code>{}</code>: <span class=\"bad\">not read: {}</span></li>",
                    esc(&topic.topic),
                    esc(e)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<li><code>{}</code>: <span class=\"dlq-topic-records\" data-topic=\"{}\">{}</span> records</li>",
                    esc(&topic.topic),
                    esc(&topic.topic),
                    count(topic.records)
                );
            }
        }
    }
    out.push_str("</ul>");
    let reasons = &r.dead_letters.reasons;
    if reasons.is_empty() {
        return;
    }
    out.push_str(&reason_chart(reasons));
    out.push_str("<table id=\"dead-letters\"><tr><th>table</th><th>stage</th><th>reason</th><th>records</th><th>newest samples</th></tr>");
    for reason in reasons {
        let samples: String = reason
            .samples
            .iter()
            .map(|s| {
                format!(
                    "<div class=\"sample\">{}: {} ({} at {}[{}]@{})\n{}</div>",
                    esc(s.timestamp.as_deref().unwrap_or("-")),
                    esc(&s.message),
                    esc(&s.source),
                    esc(&s.topic),
                    s.partition,
                    s.offset,
                    esc(&s.payload)
                )
            })
            .collect();
        let _ = write!(
            out,
            "<tr data-table=\"{}\" data-reason=\"{}\"><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"n records\">{}</td><td>{samples}</td></tr>",
            esc(&reason.table),
            esc(&reason.reason),
            esc(&reason.table),
            esc(&reason.stage),
            esc(&reason.reason),
            count(reason.records),
        );
    }
    out.push_str("</table>");
}

fn table_section(out: &mut String, t: &TableReport) {
    let _ = write!(
        out,
        "<section id=\"{name}\" data-table=\"{name}\"><h2>{name}</h2><p><span class=\"rows\">{}</span> rows in {} data files, {} snapshots; last commit {}.</p>",
        count(t.rows),
        count(t.data_files),
        count(t.snapshots),
        esc(t.last_commit.as_deref().unwrap_or("never")),
        name = esc(&t.name),
    );
    out.push_str("<h3>Rows over the period</h3>");
    out.push_str(&rows_chart(&t.rows_over_time));
    if let Some(i) = &t.ingest {
        let _ = write!(
            out,
            "<h3>Ingest in the period</h3><table class=\"ingest\"><tr><th>consumed</th><th>rows written</th><th>duplicates dropped</th><th>dedupe rate</th><th>dead letters</th></tr><tr><td class=\"n consumed\">{}</td><td class=\"n written\">{}</td><td class=\"n duplicates\">{}</td><td class=\"n dedupe-rate\">{}</td><td class=\"n dead-letters\">{}</td></tr></table>",
            count(i.consumed),
            count(i.rows),
            count(i.duplicates),
            percent(i.dedupe_rate),
            count(i.dead_letters)
        );
    }
    if let Some(k) = &t.kafka_lag {
        match &k.error {
            Some(e) => {
                let _ = write!(out, "<p class=\"bad\">Kafka lag unknown: {}</p>", esc(e));
            }
            None => {
                let _ = write!(
                    out,
                    "<h3>Kafka lag</h3><p><span class=\"lag\">{}</span> records not in the table yet.</p><table><tr><th>topic</th><th>partition</th><th>table offset</th><th>end offset</th><th>lag</th></tr>",
                    count(k.records)
                );
                for p in &k.partitions {
                    let _ = write!(
                        out,
                        "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                        esc(&p.topic),
                        p.partition,
                        p.table_offset.map_or("-".to_string(), |o| o.to_string()),
                        p.end_offset,
                        count(p.lag)
                    );
                }
                out.push_str("</table>");
            }
        }
    }
    if let Some(u) = &t.upstream_lag {
        let _ = write!(
            out,
            "<p>Behind {}: <span class=\"commits-behind\">{}</span> commits, <span class=\"rows-behind\">{}</span> rows.</p>",
            esc(&u.source),
            count(u.commits_behind),
            count(u.rows_behind)
        );
    }
    if !t.expectations.is_empty() {
        out.push_str("<h3>Expectations in the period</h3>");
        out.push_str(&expectation_chart(&t.expectations));
        out.push_str("<table class=\"expectations\"><tr><th>expectation</th><th>action</th><th>passed</th><th>failed</th><th>pass rate</th></tr>");
        for e in &t.expectations {
            let _ = write!(
                out,
                "<tr data-expectation=\"{}\"><td>{}</td><td>{}</td><td class=\"n passed\">{}</td><td class=\"n failed\">{}</td><td class=\"n pass-rate\">{}</td></tr>",
                esc(&e.name),
                esc(&e.name),
                esc(&e.action),
                count(e.passed),
                count(e.failed),
                e.pass_rate.map_or("-".to_string(), percent)
            );
        }
        out.push_str("</table>");
    }
    let _ = write!(
        out,
        "<h3>Columns</h3><p class=\"muted\">Over <span class=\"profiled-rows\">{}</span> rows{}.</p><table class=\"columns\"><tr><th>column</th><th>type</th><th>nulls</th><th>null rate</th><th>distinct</th><th>min</th><th>max</th></tr>",
        count(t.profile.rows),
        if t.profile.sampled { " (the first rows of the table: a sample)" } else { "" }
    );
    for c in &t.profile.columns {
        let _ = write!(
            out,
            "<tr data-column=\"{}\"><td>{}</td><td>{}</td><td class=\"n nulls\">{}</td><td class=\"n null-rate\">{}</td><td class=\"n distinct\">{}</td><td class=\"min\">{}</td><td class=\"max\">{}</td></tr>",
            esc(&c.name),
            esc(&c.name),
            esc(&c.data_type),
            count(c.nulls),
            percent(c.null_rate),
            count(c.distinct),
            esc(&value(&c.min)),
            esc(&value(&c.max))
        );
    }
    out.push_str("</table><h3>Schema versions</h3><ul>");
    for v in &t.schema_versions {
        let _ = write!(out, "<li>{}</li>", esc(&schema_line(v)));
    }
    out.push_str("</ul></section>");
}

/// Rows at the end of each bucket (line) over the commits in it (bars).
fn rows_chart(points: &[RowsAt]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 180.0;
    const LEFT: f64 = 70.0;
    const BOTTOM: f64 = 30.0;
    const TOP: f64 = 12.0;
    let plot_w = W - LEFT - 10.0;
    let plot_h = H - TOP - BOTTOM;
    let max_rows = points.iter().map(|p| p.rows).max().unwrap_or(0).max(1) as f64;
    let max_commits = points.iter().map(|p| p.commits).max().unwrap_or(0).max(1) as f64;
    let n = points.len().max(1) as f64;
    let step = plot_w / n;
    let mut svg = format!(
        "<svg class=\"chart rows-chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"rows over time\">"
    );
    let base = TOP + plot_h;
    for (i, p) in points.iter().enumerate() {
        let h = p.commits as f64 / max_commits * plot_h * 0.35;
        if h > 0.0 {
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{BAR}\" opacity=\"0.5\"><title>{} commits</title></rect>",
                LEFT + i as f64 * step + step * 0.2,
                base - h,
                step * 0.6,
                p.commits
            );
        }
    }
    let coords: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{:.1},{:.1}",
                LEFT + (i as f64 + 0.5) * step,
                base - p.rows as f64 / max_rows * plot_h
            )
        })
        .collect();
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#9ca3af\"/><line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#9ca3af\"/>\
<polyline points=\"{}\" fill=\"none\" stroke=\"{LINE}\" stroke-width=\"3\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        LEFT + plot_w,
        coords.join(" "),
        LEFT - 6.0,
        TOP + 8.0,
        count(max_rows as u64),
        LEFT - 6.0,
    );
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            svg,
            "<text x=\"{LEFT}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            H - 8.0,
            esc(&first.at),
            LEFT + plot_w,
            H - 8.0,
            esc(&last.at)
        );
    }
    svg.push_str("</svg><p class=\"muted\">Line: rows in the table; bars: commits.</p>");
    svg
}

/// One horizontal bar per table and reason.
fn reason_chart(reasons: &[DeadLetterReason]) -> String {
    let max = reasons.iter().map(|r| r.records).max().unwrap_or(0).max(1) as f64;
    let row = 22.0;
    let h = row * reasons.len() as f64 + 8.0;
    let mut svg = format!(
        "<svg class=\"chart dlq-chart\" width=\"640\" height=\"{h}\" viewBox=\"0 0 640 {h}\" role=\"img\" aria-label=\"dead letters by reason\">"
    );
    for (i, r) in reasons.iter().enumerate() {
        let y = 4.0 + i as f64 * row;
        let w = r.records as f64 / max * 300.0;
        let _ = write!(
            svg,
            "<text x=\"240\" y=\"{:.1}\" text-anchor=\"end\">{} · {}</text><rect x=\"248\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\" fill=\"{FAIL}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y + 12.0,
            esc(&r.table),
            esc(&r.reason),
            252.0 + w,
            y + 12.0,
            count(r.records)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One bar per expectation: passed (green) then failed (red).
fn expectation_chart(results: &[ExpectationResult]) -> String {
    let row = 22.0;
    let h = row * results.len() as f64 + 8.0;
    let mut svg = format!(
        "<svg class=\"chart expectation-chart\" width=\"640\" height=\"{h}\" viewBox=\"0 0 640 {h}\" role=\"img\" aria-label=\"expectation pass rates\">"
    );
    for (i, e) in results.iter().enumerate() {
        let y = 4.0 + i as f64 * row;
        let total = (e.passed + e.failed).max(1) as f64;
        let pass_w = e.passed as f64 / total * 300.0;
        let fail_w = e.failed as f64 / total * 300.0;
        let _ = write!(
            svg,
            "<text x=\"240\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"248\" y=\"{y:.1}\" width=\"{pass_w:.1}\" height=\"16\" fill=\"{PASS}\"/><rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{fail_w:.1}\" height=\"16\" fill=\"{FAIL}\"/><text x=\"556\" y=\"{:.1}\">{}</text>",
            y + 12.0,
            esc(&e.name),
            248.0 + pass_w,
            y + 12.0,
            e.pass_rate.map_or("-".to_string(), percent)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
