//! `medallion run --metrics-addr`: scraped while the pipeline runs, the metrics equal what
//! the tables and the dead-letter topics hold, as DuckDB, pyiceberg and a Kafka consumer read
//! them; `/healthz` answers and `/readyz` turns ready once every stage is.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::{
    dirty_view_stream, http, medallion, own_broker, read_topic, sigkill, terminate, Workspace,
};
use serde_json::json;

/// `name{labels}` → value, from Prometheus' text format.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

#[test]
fn scraped_metrics_equal_the_tables_and_the_dead_letter_topics() -> Result<()> {
    // A broker of its own: the default DLQ topics (`silver.views.dlq`) are this test's alone.
    let _broker = own_broker()?;
    let ws = Workspace::new()?;
    // 20,000 events, 500 producer-retry copies, 40 records that are no JSON.
    let (topic, spec, ends) = dirty_view_stream(&ws, "metrics")?;
    let total: i64 = ends.iter().sum();

    let log = std::fs::File::create(ws.path().join("run.log"))?;
    let mut child = medallion()
        .args([
            "run",
            &spec.display().to_string(),
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()?;
    let result = (|| -> Result<()> {
        let mut line = String::new();
        let stdout = child.stdout.take().context("no stdout")?;
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("metrics listening on ")
            .context(format!("first line {line:?}"))?
            .to_string();
        assert_eq!(
            http(&url, "GET", "/healthz", "", "")?,
            (200, "ok\n".to_string())
        );

        // Ready once every stage has its assignment or its tables; then caught up.
        let deadline = Instant::now() + Duration::from_secs(90);
        while http(&url, "GET", "/readyz", "", "")?.0 != 200 {
            if Instant::now() > deadline {
                bail!("/readyz: {:?}", http(&url, "GET", "/readyz", "", "")?);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let metric = |m: &BTreeMap<String, f64>, key: &str| m.get(key).copied().unwrap_or(0.0);
        let metrics = loop {
            let m = parse(&http(&url, "GET", "/metrics", "", "")?.1);
            let silver = metric(&m, r#"medallion_rows_written_total{table="silver.views"}"#)
                + metric(
                    &m,
                    r#"medallion_dead_letters_total{table="silver.views",reason="expectation.not_u0"}"#,
                );
            let consumed = metric(
                &m,
                r#"medallion_records_consumed_total{table="bronze.web_events"}"#,
            );
            let gold = metric(
                &m,
                r#"medallion_rows_written_total{table="gold.views_per_minute"}"#,
            );
            if consumed == total as f64 && silver == 20_000.0 && gold == 3.0 {
                break m;
            }
            if Instant::now() > deadline {
                bail!(
                    "not caught up: consumed {consumed} of {total}, silver {silver}, gold {gold}"
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };

        // What the readers count.
        let count = |table: &str, sql: &str| -> Result<f64> {
            let rows = ws.duckdb(table, sql)?;
            rows.first()
                .and_then(|r| r.first())
                .and_then(|v| v.as_f64())
                .context(format!("{table}: {rows:?}"))
        };
        let bronze_rows = count("bronze.web_events", "SELECT count(*) FROM t")?;
        let silver_rows = count("silver.views", "SELECT count(*) FROM t")?;
        let gold_rows = count("gold.views_per_minute", "SELECT count(*) FROM t")?;
        let u0 = count(
            "bronze.web_events",
            "SELECT count(*) FROM t WHERE user_id = 'u0'",
        )?;
        let u1 = count(
            "bronze.web_events",
            "SELECT count(*) FROM t WHERE user_id = 'u1'",
        )?;
        let by_reason = |topic: &str| -> Result<BTreeMap<String, f64>> {
            let mut out = BTreeMap::new();
            for r in read_topic(topic)? {
                *out.entry(r.header("medallion.error.reason").to_string())
                    .or_default() += 1.0;
            }
            Ok(out)
        };
        let bronze_dlq = by_reason(&format!("{topic}.dlq"))?;
        let silver_dlq = by_reason("silver.views.dlq")?;
        let bronze_commits = ws.snapshot_reads("bronze.web_events")?.len() as f64;

        let scraped = |key: String| metric(&metrics, &key);
        assert_eq!(bronze_rows, 20_000.0);
        assert_eq!(
            scraped(r#"medallion_rows_written_total{table="bronze.web_events"}"#.into()),
            bronze_rows
        );
        assert_eq!(
            scraped(r#"medallion_rows_written_total{table="silver.views"}"#.into()),
            silver_rows
        );
        assert_eq!(
            scraped(r#"medallion_rows_written_total{table="gold.views_per_minute"}"#.into()),
            gold_rows
        );
        assert_eq!(
            scraped(r#"medallion_records_consumed_total{table="bronze.web_events"}"#.into()),
            total as f64
        );
        assert_eq!(
            scraped(r#"medallion_duplicates_dropped_total{table="bronze.web_events"}"#.into()),
            500.0
        );
        assert_eq!(
            scraped(r#"medallion_commits_total{table="bronze.web_events"}"#.into()),
            bronze_commits
        );
        assert_eq!(bronze_dlq.values().sum::<f64>(), 40.0);
        for (reason, n) in &bronze_dlq {
            let key = format!(
                r#"medallion_dead_letters_total{{table="bronze.web_events",reason="{reason}"}}"#
            );
            assert_eq!(scraped(key), *n, "bronze DLQ {reason}");
        }
        assert_eq!(
            silver_dlq,
            BTreeMap::from([("expectation.not_u0".to_string(), u0)])
        );
        assert_eq!(silver_rows, 20_000.0 - u0);
        for (expectation, n) in [("not_u0", u0), ("not_u1", u1)] {
            let key = format!(
                r#"medallion_expectation_failures_total{{table="silver.views",expectation="{expectation}"}}"#
            );
            assert_eq!(scraped(key), n, "{expectation}");
        }
        let histogram =
            scraped(r#"medallion_commit_seconds_count{table="bronze.web_events"}"#.into());
        assert_eq!(histogram, bronze_commits);

        // Gold's watermark is behind the wall clock by the age of the newest event (the
        // events are from 2026-01-01), less than a minute off.
        let newest = count("silver.views", "SELECT epoch(max(event_time)) FROM t")?;
        let now = chrono::Utc::now().timestamp() as f64;
        let delay =
            scraped(r#"medallion_watermark_delay_seconds{table="gold.views_per_minute"}"#.into());
        assert!(
            (delay - (now - newest)).abs() < 60.0,
            "watermark delay {delay} s, newest event {} s ago",
            now - newest
        );

        // The lag of each partition, measured every 5 s: none once caught up.
        let lag = |partition: i32| -> Result<f64> {
            let m = parse(&http(&url, "GET", "/metrics", "", "")?.1);
            let key = format!(
                r#"medallion_consumer_lag{{table="bronze.web_events",topic="{topic}",partition="{partition}"}}"#
            );
            m.get(&key).copied().context(format!("no {key}"))
        };
        let settled = Instant::now() + Duration::from_secs(15);
        while (0..3).map(lag).collect::<Result<Vec<_>>>().ok() != Some(vec![0.0; 3]) {
            if Instant::now() > settled {
                bail!(
                    "lag did not settle at 0: {:?}",
                    (0..3).map(lag).collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!(
            "{}",
            json!({"bronze_commits": bronze_commits, "u0": u0, "bronze_dlq": bronze_dlq})
        );
        Ok(())
    })();
    if let Err(e) = result {
        sigkill(&mut child);
        return Err(e);
    }
    terminate(&mut child)?;
    // `--log-format json`: every log line is one JSON object; each commit is one of them.
    let log = std::fs::read_to_string(ws.path().join("run.log"))?;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a log line is no JSON object")?;
    let commits = lines
        .iter()
        .filter(|l| {
            l["fields"]["message"] == "committed" && l["fields"]["table"] == "bronze.web_events"
        })
        .count();
    assert!(
        commits >= 1,
        "no bronze commit among {} JSON log lines",
        lines.len()
    );
    Ok(())
}
