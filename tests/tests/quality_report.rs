//! `medallion quality report`: its numbers (JSON, and the HTML page as headless Chromium
//! renders it) equal what DuckDB computes over the same tables and what a Kafka consumer
//! reads from the dead-letter topics; the page's charts are drawn (pixels of their colors in
//! the screenshot, kept in the test's scratch dir); the scheduler produces the report.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use e2e::{
    dirty_view_stream, medallion_output, medallion_stdout, own_broker, peer_json, read_topic,
    Workspace,
};
use serde_json::Value;

/// `records` of each `{table, reason, records}` entry of a JSON array.
fn by_table_and_reason(entries: &Value) -> Result<BTreeMap<(String, String), f64>> {
    entries
        .as_array()
        .context("no array of dead-letter reasons")?
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            Ok(((text("table"), text("reason")), num(&r["records"])?))
        })
        .collect()
}

const TABLES: [&str; 3] = ["bronze.web_events", "silver.views", "gold.views_per_minute"];

/// One number as JSON holds it (DuckDB's 128-bit sums come as text).
fn num(v: &Value) -> Result<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .context(format!("not a number: {v}"))
}

#[test]
fn report_numbers_equal_duckdb_and_the_dead_letter_topics_and_chromium_shows_the_charts(
) -> Result<()> {
    let _broker = own_broker()?;
    let ws = Workspace::new()?;
    // 20,000 events, 500 producer-retry copies, 40 records that are no JSON.
    let (topic, spec, ends) = dirty_view_stream(&ws, "quality")?;
    let total: i64 = ends.iter().sum();
    let spec_arg = spec.display().to_string();
    medallion_stdout(&["run", &spec_arg, "--once"], ws.path())?;

    let report_of = |format: &str, out: &str| -> Result<String> {
        medallion_stdout(
            &[
                "quality", "report", "--spec", &spec_arg, "--since", "1h", "--format", format,
                "--out", out,
            ],
            ws.path(),
        )
    };
    report_of("json", "report.json")?;
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(ws.path().join("report.json"))?)?;
    assert_eq!(report["kind"], "medallion.quality-report");
    assert_eq!(report["version"], 1);
    assert_eq!(report["missing_tables"], serde_json::json!([]));
    let tables: BTreeMap<String, &Value> = report["tables"]
        .as_array()
        .context("tables")?
        .iter()
        .map(|t| (t["name"].as_str().unwrap_or_default().to_string(), t))
        .collect();
    assert_eq!(tables.keys().cloned().collect::<Vec<_>>(), {
        let mut t = TABLES.map(String::from).to_vec();
        t.sort();
        t
    });

    // DuckDB over the same tables: row counts, the expectation sums, and per column nulls,
    // distinct values, min and max.
    let mut queries: Vec<(Vec<(&str, String)>, String)> = Vec::new();
    for table in TABLES {
        queries.push((
            vec![("t", table.to_string())],
            "SELECT count(*) FROM t".into(),
        ));
    }
    queries.push((
        vec![("b", "bronze.web_events".to_string())],
        "SELECT count(*) FILTER (WHERE user_id = 'u0'), count(*) FILTER (WHERE user_id = 'u1') FROM b".into(),
    ));
    queries.push((
        vec![("q", "quality.expectations".to_string())],
        "SELECT expectation, action, sum(passed), sum(failed) FROM q WHERE dataset = 'silver.views' GROUP BY ALL ORDER BY expectation".into(),
    ));
    let mut column_queries = Vec::new();
    for table in TABLES {
        for column in tables[table]["profile"]["columns"]
            .as_array()
            .context("columns")?
        {
            let name = column["name"].as_str().context("name")?;
            let kind = column["type"].as_str().context("type")?;
            let c = format!("\"{name}\"");
            let (lo, hi) = if kind.starts_with("datetime") {
                (format!("epoch_us(min({c}))"), format!("epoch_us(max({c}))"))
            } else {
                (format!("min({c})"), format!("max({c})"))
            };
            queries.push((
                vec![("t", table.to_string())],
                format!("SELECT count(*) - count({c}), count(DISTINCT {c}), {lo}, {hi} FROM t"),
            ));
            column_queries.push((table, name.to_string(), kind.to_string()));
        }
    }
    let results = ws.duckdb_many(&queries)?;
    let rows: BTreeMap<&str, f64> = TABLES
        .iter()
        .zip(&results)
        .map(|(t, r)| Ok((*t, num(&r[0][0])?)))
        .collect::<Result<_>>()?;
    let (u0, u1) = (num(&results[3][0][0])?, num(&results[3][0][1])?);
    let expectation_sums = &results[4];

    assert_eq!(rows["bronze.web_events"], 20_000.0);
    assert_eq!(rows["silver.views"], 20_000.0 - u0);
    for table in TABLES {
        let t = tables[table];
        assert_eq!(num(&t["rows"])?, rows[table], "{table} rows");
        assert_eq!(
            num(&t["rows_added_in_period"])?,
            rows[table],
            "{table} added"
        );
        let over_time = t["rows_over_time"].as_array().context("rows_over_time")?;
        assert_eq!(over_time.len(), 24);
        assert_eq!(
            num(&over_time[23]["rows"])?,
            rows[table],
            "{table} last bucket"
        );
        let commits: f64 = over_time
            .iter()
            .map(|p| num(&p["commits"]))
            .sum::<Result<f64>>()?;
        assert_eq!(commits, num(&t["commits_in_period"])?, "{table} commits");
        assert_eq!(num(&t["profile"]["rows"])?, rows[table], "{table} profiled");
        assert_eq!(t["profile"]["sampled"], false);
        let versions = t["schema_versions"].as_array().context("schema_versions")?;
        assert_eq!(versions.len(), 1, "{table}: {versions:?}");
        assert_eq!(versions[0]["current"], true);
        assert_eq!(
            versions[0]["added"].as_array().map(Vec::len),
            t["profile"]["columns"].as_array().map(Vec::len),
            "{table}: the first schema adds every column"
        );
    }
    let bronze = tables["bronze.web_events"];
    let ingest = &bronze["ingest"];
    assert_eq!(num(&ingest["consumed"])?, total as f64);
    assert_eq!(num(&ingest["rows"])?, 20_000.0);
    assert_eq!(num(&ingest["duplicates"])?, 500.0);
    assert_eq!(num(&ingest["dead_letters"])?, 40.0);
    assert!((num(&ingest["dedupe_rate"])? - 500.0 / total as f64).abs() < 1e-12);
    assert_eq!(bronze["kafka_lag"]["error"], Value::Null);
    assert_eq!(num(&bronze["kafka_lag"]["records"])?, 0.0);
    let partitions = bronze["kafka_lag"]["partitions"]
        .as_array()
        .context("partitions")?;
    let mut reported_ends: Vec<i64> = partitions
        .iter()
        .map(|p| p["end_offset"].as_i64().unwrap_or(-1))
        .collect();
    reported_ends.sort();
    let mut sorted_ends = ends.clone();
    sorted_ends.sort();
    assert_eq!(reported_ends, sorted_ends);
    for table in ["silver.views", "gold.views_per_minute"] {
        let lag = &tables[table]["upstream_lag"];
        assert_eq!(num(&lag["commits_behind"])?, 0.0, "{table}: {lag}");
        assert_eq!(lag["read_snapshot"], lag["source_snapshot"], "{table}");
    }

    // Expectations: the report's sums are DuckDB's over quality.expectations, and they count
    // what the data holds.
    let expectations = tables["silver.views"]["expectations"]
        .as_array()
        .context("expectations")?;
    assert_eq!(expectations.len(), expectation_sums.len());
    for (e, sum) in expectations.iter().zip(expectation_sums) {
        assert_eq!(e["name"], sum[0]);
        assert_eq!(e["action"], sum[1]);
        assert_eq!(num(&e["passed"])?, num(&sum[2])?);
        assert_eq!(num(&e["failed"])?, num(&sum[3])?);
        let checked = num(&sum[2])? + num(&sum[3])?;
        assert!((num(&e["pass_rate"])? - num(&sum[2])? / checked).abs() < 1e-12);
    }
    assert_eq!(num(&expectations[0]["failed"])?, u0);
    assert_eq!(num(&expectations[1]["failed"])?, u1);

    // Column profiles.
    for ((table, name, kind), result) in column_queries.iter().zip(&results[5..]) {
        let column = tables[*table]["profile"]["columns"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name.as_str()))
            .context("column")?;
        let duck = &result[0];
        let what = format!("{table}.{name} ({kind})");
        assert_eq!(num(&column["nulls"])?, num(&duck[0])?, "{what} nulls");
        assert_eq!(num(&column["distinct"])?, num(&duck[1])?, "{what} distinct");
        for (i, key) in [(2, "min"), (3, "max")] {
            let ours = &column[key];
            if ours.is_null() {
                assert!(duck[i].is_null(), "{what} {key}: {}", duck[i]);
            } else if kind.starts_with("datetime") {
                let micros = chrono::DateTime::parse_from_rfc3339(ours.as_str().context("time")?)?
                    .timestamp_micros();
                assert_eq!(micros as f64, num(&duck[i])?, "{what} {key}");
            } else if ours.is_number() {
                assert_eq!(num(ours)?, num(&duck[i])?, "{what} {key}");
            } else {
                assert_eq!(ours, &duck[i], "{what} {key}");
            }
        }
    }

    // Dead letters: what a consumer of the topics reads, by reason.
    let mut read: BTreeMap<(String, String), f64> = BTreeMap::new();
    let bronze_dlq = format!("{topic}.dlq");
    for (dlq, table) in [
        (bronze_dlq.as_str(), "bronze.web_events"),
        ("silver.views.dlq", "silver.views"),
    ] {
        for r in read_topic(dlq)? {
            *read
                .entry((
                    table.to_string(),
                    r.header("medallion.error.reason").to_string(),
                ))
                .or_default() += 1.0;
        }
    }
    let reported = by_table_and_reason(&report["dead_letters"]["reasons"])?;
    assert_eq!(reported, read);
    assert_eq!(
        reported.get(&("silver.views".to_string(), "expectation.not_u0".to_string())),
        Some(&u0)
    );
    let bronze_reasons: f64 = reported
        .iter()
        .filter(|((t, _), _)| t == "bronze.web_events")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(bronze_reasons, 40.0);
    for r in report["dead_letters"]["reasons"]
        .as_array()
        .context("reasons")?
    {
        let samples = r["samples"].as_array().context("samples")?;
        assert_eq!(samples.len() as f64, num(&r["records"])?.min(3.0), "{r}");
        if r["table"] == "bronze.web_events" {
            assert_eq!(samples[0]["payload"], "{not json");
            assert!(samples[0]["source"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&topic));
        }
    }

    // The HTML page, rendered by Chromium: the same numbers, and its charts drawn.
    report_of("html", "report.html")?;
    let screenshot = ws.path().join("quality-report.png");
    let page = peer_json(
        "html_report.py",
        &[
            "--html",
            &ws.path().join("report.html").display().to_string(),
            "--screenshot",
            &screenshot.display().to_string(),
        ],
    )?;
    eprintln!("screenshot: {}", screenshot.display());
    for table in TABLES {
        assert_eq!(
            num(&page["overview"][table]["rows"])?,
            rows[table],
            "{table}"
        );
        let section = &page["sections"][table];
        assert_eq!(num(&section["rows"])?, rows[table], "{table}");
        assert_eq!(num(&section["profiled_rows"])?, rows[table], "{table}");
        assert_eq!(
            section["polyline_points"],
            serde_json::json!([24]),
            "{table}: one rows-over-time line of 24 points"
        );
        for ((t, name, kind), result) in column_queries.iter().zip(&results[5..]) {
            if t != &table || kind.starts_with("datetime") {
                continue;
            }
            let shown = &section["columns"][name];
            assert_eq!(num(&shown["nulls"])?, num(&result[0][0])?, "{table}.{name}");
            assert_eq!(
                num(&shown["distinct"])?,
                num(&result[0][1])?,
                "{table}.{name}"
            );
        }
    }
    let shown_ingest = &page["sections"]["bronze.web_events"]["ingest"];
    assert_eq!(num(&shown_ingest["consumed"])?, total as f64);
    assert_eq!(num(&shown_ingest["written"])?, 20_000.0);
    assert_eq!(num(&shown_ingest["duplicates"])?, 500.0);
    assert_eq!(num(&shown_ingest["dead-letters"])?, 40.0);
    assert_eq!(num(&page["sections"]["bronze.web_events"]["lag"])?, 0.0);
    let shown_expectations = &page["sections"]["silver.views"]["expectations"];
    assert_eq!(num(&shown_expectations["not_u0"]["failed"])?, u0);
    assert_eq!(num(&shown_expectations["not_u1"]["failed"])?, u1);
    assert_eq!(by_table_and_reason(&page["dead_letters"])?, read);
    // Drawn: three rows-over-time lines (blue), the expectations' passed (green) and the
    // failures and dead letters (red) bars, each many pixels.
    let pixels = &page["screenshot"]["pixels"];
    for color in ["line", "pass", "fail"] {
        assert!(num(&pixels[color])? > 500.0, "{color}: {pixels}");
    }

    // Markdown on standard output.
    let md = medallion_stdout(
        &[
            "quality", "report", "--spec", &spec_arg, "--since", "1h", "--format", "md",
        ],
        ws.path(),
    )?;
    assert!(md.starts_with("# Data quality: "), "{md}");
    assert!(md.contains("| bronze.web_events | 20,000 |"), "{md}");

    // A bad `--out` pattern is refused before anything is read.
    let out = medallion_output(
        &[
            "quality",
            "report",
            "--spec",
            &spec_arg,
            "--out",
            "q-%Q.html",
        ],
        ws.path(),
    )?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--out \"q-%Q.html\": not a valid strftime pattern"),
        "{stderr}"
    );

    // Kafka unreachable: the report is still written, at once, saying why the lag and the
    // dead letters are missing.
    let spec_text = std::fs::read_to_string(&spec)?;
    let broker = e2e::broker();
    assert!(spec_text.contains(&broker));
    let offline = ws.write("offline.toml", &spec_text.replace(&broker, "127.0.0.1:9"))?;
    let started = std::time::Instant::now();
    let text = medallion_stdout(
        &[
            "quality",
            "report",
            "--spec",
            &offline.display().to_string(),
            "--format",
            "json",
        ],
        ws.path(),
    )?;
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let offline: Value = serde_json::from_str(&text)?;
    assert_eq!(num(&offline["tables"][0]["rows"])?, 20_000.0);
    let error = offline["tables"][0]["kafka_lag"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.starts_with("cannot reach Kafka at 127.0.0.1:9"),
        "{error}"
    );
    for topic in offline["dead_letters"]["topics"]
        .as_array()
        .context("topics")?
    {
        assert_eq!(topic["error"].as_str(), Some(error), "{topic}");
    }

    // Scheduled (daily in production; every 2 s here): one file per run, each run recorded.
    let schedule = ws.write(
        "schedule.toml",
        &format!(
            r#"[lakehouse]
warehouse = "{warehouse}"
catalog = "{catalog}"

[[job]]
name = "quality"
cron = "*/2 * * * * *"
args = ["quality", "report", "--spec", "{spec_arg}", "--since", "1h", "--format", "json", "--out", "reports/quality-%H%M%S.json"]
"#,
            warehouse = ws.warehouse().display(),
            catalog = ws.catalog_uri(),
        ),
    )?;
    medallion_stdout(
        &["schedule", &schedule.display().to_string(), "--for", "5s"],
        ws.path(),
    )?;
    let mut files = 0;
    for entry in std::fs::read_dir(ws.path().join("reports"))? {
        let scheduled: Value = serde_json::from_str(&std::fs::read_to_string(entry?.path())?)?;
        assert_eq!(scheduled["kind"], "medallion.quality-report");
        assert_eq!(num(&scheduled["tables"][0]["rows"])?, 20_000.0);
        files += 1;
    }
    let runs = ws.duckdb(
        "ops.runs",
        "SELECT count(*) FILTER (WHERE outcome = 'succeeded'), count(*) FILTER (WHERE outcome NOT IN ('succeeded', 'skipped')) FROM t WHERE job = 'quality'",
    )?;
    assert!(files >= 1);
    assert_eq!(num(&runs[0][0])?, files as f64, "{runs:?}");
    assert_eq!(num(&runs[0][1])?, 0.0, "{runs:?}");
    Ok(())
}
