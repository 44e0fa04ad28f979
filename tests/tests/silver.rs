//! Silver tables built from a bronze table by `medallion run`, checked against DuckDB
//! computing the same definition over bronze; incremental runs add exactly the new rows.

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

use e2e::{
    broker, create_topic, medallion_output, produce, read_topic, run_once, spawn_run, terminate,
    unique, web_event, Workspace,
};

const PURCHASE_COLUMNS: &str = r#"
[[silver]]
table = "silver.purchases"
source = "bronze.web_events"
filter = "event_type = 'purchase'"
columns = [
  { name = "event_id", expr = "event_id" },
  { name = "user_key", expr = "upper(trim(user_id))" },
  { name = "amount_cents", expr = "amount * 100" },
  { name = "currency", expr = "COALESCE(currency, 'EUR')" },
  { name = "country", expr = "CASE country WHEN 'DE' THEN 'Germany' WHEN 'US' THEN 'United States' ELSE 'other' END" },
  { name = "event_time", expr = "event_time" },
]
partition_by_day = "event_time"
dlq_topic = "DLQ_TOPIC"
expectations = [
  { name = "known_country", check = "country <> 'other'", on_fail = "warn" },
  { name = "big_enough", check = "amount_cents >= 500", on_fail = "drop" },
]

[[silver]]
table = "silver.page_views"
source = "bronze.web_events"
filter = "event_type = 'page_view'"
columns = [
  { name = "event_id", expr = "event_id" },
  { name = "page", expr = "lower(page)" },
  { name = "user_id", expr = "user_id" },
  { name = "user_hash", expr = "user_id", pii = "hash" },
  { name = "user_mask", expr = "user_id", pii = "mask" },
  { name = "referrer", expr = "json_get(payload, 'referrer')" },
  { name = "event_time", expr = "event_time" },
]
"#;

/// The same definitions, in DuckDB's SQL, over the bronze table.
const ORACLES: [(&str, &str); 2] = [
    (
        "silver.purchases",
        "SELECT event_id, upper(trim(user_id)), amount * 100, COALESCE(currency, 'EUR'), CASE country WHEN 'DE' THEN 'Germany' WHEN 'US' THEN 'United States' ELSE 'other' END, event_time FROM t WHERE event_type = 'purchase' AND amount * 100 >= 500 ORDER BY event_id",
    ),
    (
        "silver.page_views",
        "SELECT event_id, lower(page), user_id, sha256('test-salt' || user_id), CASE WHEN length(user_id) <= 4 THEN repeat('*', length(user_id)) ELSE repeat('*', length(user_id) - 4) || right(user_id, 4) END, json_extract_string(payload, '$.referrer'), event_time FROM t WHERE event_type = 'page_view' ORDER BY event_id",
    ),
];

/// The expectations' counts, computed by DuckDB over bronze with the same predicates.
const COUNTS_ORACLE: &str = "SELECT 'big_enough', count(*) FILTER (WHERE amount * 100 >= 500), count(*) FILTER (WHERE NOT coalesce(amount * 100 >= 500, false)) FROM t WHERE event_type = 'purchase' UNION ALL SELECT 'known_country', count(*) FILTER (WHERE country IN ('DE', 'US')), count(*) FILTER (WHERE country IS NULL OR country NOT IN ('DE', 'US')) FROM t WHERE event_type = 'purchase' ORDER BY 1";

fn spec_with_silver(ws: &Workspace, topic: &str, silver: &str) -> Result<std::path::PathBuf> {
    let spec = ws.web_spec(topic, "bronze.web_events", r#"{ interval = "1s" }"#, "")?;
    let silver = silver.replace("DLQ_TOPIC", &format!("{topic}.silver.dlq"));
    ws.append(&spec, &silver)?;
    Ok(spec)
}

/// A workspace and a new topic (with its DLQ topic) of `partitions` partitions.
fn workspace_with_topic(partitions: i32) -> Result<(Workspace, String)> {
    let ws = Workspace::new()?;
    let topic = unique("web");
    create_topic(&topic, partitions)?;
    create_topic(&format!("{topic}.dlq"), 1)?;
    Ok((ws, topic))
}

/// A silver table of the bronze event ids, checking for new bronze snapshots every `POLL`.
const VIEWS: &str = r#"
[[silver]]
table = "silver.views"
source = "bronze.web_events"
columns = [{ name = "event_id", expr = "event_id" }]
poll = "POLL"
"#;

/// `silver.views` holds `n` rows, each event once.
fn assert_views(ws: &Workspace, n: i64) -> Result<()> {
    let rows = ws.duckdb(
        "silver.views",
        "SELECT count(*), count(DISTINCT event_id) FROM t",
    )?;
    assert_eq!(rows, [[serde_json::json!(n), serde_json::json!(n)]]);
    Ok(())
}

/// Produces `n` page views, waits until bronze has them, then up to 15 s for `silver.views`
/// to commit.
fn land_and_wait_for_silver(ws: &Workspace, topic: &str, n: i64) -> Result<()> {
    let events: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let user = format!("u{i}");
            let event = web_event(&format!("f-{i}"), &user, 1_767_225_600_000 + i);
            (user, event)
        })
        .collect();
    produce(topic, &events)?;
    let end = [n];
    ws.wait_for_offsets("bronze.web_events", topic, &end, Duration::from_secs(60))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while ws.current_snapshot("silver.views")?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn generate(ws: &Workspace, topic: &str, events: &str, seed: &str) -> Result<()> {
    let b = broker();
    let out = medallion_output(
        &[
            "generate",
            "--brokers",
            &b,
            "--topic",
            topic,
            "--events",
            events,
            "--seed",
            seed,
        ],
        ws.path(),
    )?;
    anyhow::ensure!(
        out.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Each silver table equals its definition over bronze; the rows they hold. `columns` selects
/// the purchases' columns (all but a Parquet table's partition folder column).
fn assert_silver_matches_bronze(ws: &Workspace, columns: &str) -> Result<usize> {
    let mut total = 0;
    for (table, oracle) in ORACLES {
        let expected = ws.duckdb("bronze.web_events", oracle)?;
        let columns = match table {
            "silver.purchases" => columns,
            _ => "*",
        };
        let got = ws.duckdb(table, &format!("SELECT {columns} FROM t ORDER BY event_id"))?;
        assert!(!expected.is_empty(), "{table}: the oracle found no rows");
        assert_eq!(got.len(), expected.len(), "{table}: row count");
        assert_eq!(got, expected, "{table}: rows");
        total += got.len();
    }
    Ok(total)
}

#[test]
fn silver_tables_equal_their_definitions_over_bronze_run_after_run() -> Result<()> {
    silver_run_after_run("iceberg", "iceberg")
}

#[test]
fn delta_silver_tables_follow_a_parquet_bronze_table_run_after_run() -> Result<()> {
    silver_run_after_run("parquet", "delta")
}

#[test]
fn parquet_silver_tables_follow_a_delta_bronze_table_run_after_run() -> Result<()> {
    silver_run_after_run("delta", "parquet")
}

/// Silver tables kept as `silver_format` over a bronze table kept as `bronze_format`: three
/// runs, each checked against DuckDB's recomputation over bronze, with the expectations'
/// counts in the quality table and the dropped rows in the DLQ.
fn silver_run_after_run(bronze_format: &str, silver_format: &str) -> Result<()> {
    // The salt of `pii = "hash"` columns, inherited by `medallion`.
    std::env::set_var("MEDALLION_PII_SALT", "test-salt");
    let (ws, topic) = workspace_with_topic(3)?;
    let spec = spec_with_silver(&ws, &topic, PURCHASE_COLUMNS)?;
    let mut text = std::fs::read_to_string(&spec)?
        .replace(
            "[[bronze]]\n",
            &format!("[[bronze]]\ntable_format = \"{bronze_format}\"\n"),
        )
        .replace(
            "[[silver]]\n",
            &format!("[[silver]]\ntable_format = \"{silver_format}\"\n"),
        );
    if silver_format == "delta" {
        // Delta tables are not partitioned.
        text = text.replace("partition_by_day = \"event_time\"\n", "");
    }
    std::fs::write(&spec, text)?;
    // DuckDB's hive partitioning adds the day folders' column to a Parquet table's rows.
    let columns = match silver_format {
        "parquet" => "* EXCLUDE (event_time_day)",
        _ => "*",
    };

    generate(&ws, &topic, "3000", "5")?;
    run_once(&ws, &spec)?;
    let first = assert_silver_matches_bronze(&ws, columns)?;

    // A second run reads only the bronze snapshots committed since the first one.
    generate(&ws, &topic, "2000", "6")?;
    run_once(&ws, &spec)?;
    let second = assert_silver_matches_bronze(&ws, columns)?;
    assert!(
        second > first,
        "{second} rows after the second run, {first} before"
    );

    // Nothing new: a third run commits nothing and changes nothing.
    run_once(&ws, &spec)?;
    assert_eq!(assert_silver_matches_bronze(&ws, columns)?, second);

    // `medallion tables` and `medallion query` see every table, in its format.
    let (catalog, warehouse) = (ws.catalog_uri(), ws.warehouse().display().to_string());
    let at = [
        "--catalog",
        &catalog,
        "--warehouse",
        &warehouse,
        "--format",
        "json",
    ];
    let json = |args: &[&str]| -> Result<serde_json::Value> {
        let args = [args, &at[..]].concat();
        let out = e2e::medallion_stdout(&args, ws.path())?;
        serde_json::from_str(&out).with_context(|| format!("medallion {args:?}: {out}"))
    };
    let listed = json(&["tables"])?;
    let counted = json(&["query", "SELECT count(*) AS n FROM silver.purchases"])?;
    let purchases = ws.duckdb("silver.purchases", "SELECT count(*) FROM t")?;
    assert_eq!(counted[0]["n"], purchases[0][0], "{counted}");
    for (table, format) in [
        ("bronze.web_events", bronze_format),
        ("silver.purchases", silver_format),
    ] {
        let line = listed
            .as_array()
            .and_then(|l| l.iter().find(|t| t["table"] == table))
            .with_context(|| format!("{table} is not in {listed}"))?;
        assert_eq!(line["format"], format, "{line}");
        if table == "silver.purchases" {
            assert_eq!(line["rows"], purchases[0][0], "{line}");
        }
    }
    for (table, format) in [
        ("bronze.web_events", bronze_format),
        ("silver.purchases", silver_format),
    ] {
        let in_iceberg = ws.current_snapshot(table)?.is_some();
        assert_eq!(
            in_iceberg,
            format == "iceberg",
            "{table} is kept as {format}"
        );
    }

    // Expectation counts, summed over the commits, equal DuckDB's over bronze.
    let expected = ws.duckdb("bronze.web_events", COUNTS_ORACLE)?;
    let got = ws.duckdb(
        "quality.expectations",
        "SELECT expectation, CAST(sum(passed) AS BIGINT), CAST(sum(failed) AS BIGINT) FROM t WHERE dataset = 'silver.purchases' GROUP BY 1 ORDER BY 1",
    )?;
    assert_eq!(got, expected);
    // The dropped rows are in the DLQ with their reason, as JSON, each once.
    let mut dropped: Vec<String> = read_topic(&format!("{topic}.silver.dlq"))?
        .iter()
        .map(|d| {
            assert_eq!(d.header("medallion.error.reason"), "expectation.big_enough");
            assert_eq!(
                d.header("medallion.error.source.table"),
                "bronze.web_events"
            );
            let row: serde_json::Value =
                serde_json::from_slice(d.value.as_deref().unwrap_or_default()).unwrap_or_default();
            row["event_id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    dropped.sort();
    let small = ws.duckdb(
        "bronze.web_events",
        "SELECT event_id FROM t WHERE event_type = 'purchase' AND amount * 100 < 500 ORDER BY event_id",
    )?;
    let small: Vec<String> = small
        .iter()
        .map(|r| r[0].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(!small.is_empty());
    assert_eq!(dropped, small);
    Ok(())
}

#[test]
fn a_failing_fail_expectation_stops_the_stage_and_commits_nothing() -> Result<()> {
    let (ws, topic) = workspace_with_topic(1)?;
    let strict = r#"
[[silver]]
table = "silver.strict"
source = "bronze.web_events"
filter = "event_type = 'purchase'"
columns = [{ name = "event_id", expr = "event_id" }, { name = "cents", expr = "amount * 100" }]
expectations = [{ name = "under_100", check = "cents < 10000", on_fail = "fail" }]
"#;
    let spec = spec_with_silver(&ws, &topic, strict)?;
    generate(&ws, &topic, "1000", "7")?;
    let out = medallion_output(
        &["run", spec.to_str().unwrap_or_default(), "--once"],
        ws.path(),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let counts = ws.duckdb(
        "bronze.web_events",
        "SELECT count(*) FILTER (WHERE NOT coalesce(amount * 100 < 10000, false)), count(*) FROM t WHERE event_type = 'purchase'",
    )?;
    let (failed, read) = (&counts[0][0], &counts[0][1]);
    assert!(
        stderr.contains(&format!(
            "expectation `under_100` (on_fail = fail) failed on {failed} of {read} rows read from bronze.web_events snapshots "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("nothing of them was committed"), "{stderr}");
    assert_eq!(ws.current_snapshot("silver.strict")?, None);
    Ok(())
}

#[test]
fn a_bad_expression_is_refused_at_start_naming_table_and_column() -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("web");
    create_topic(&topic, 1)?;
    let bad = PURCHASE_COLUMNS.replace("upper(trim(user_id))", "upper(trim(user_idd))");
    let spec = spec_with_silver(&ws, &topic, &bad)?;
    let out = medallion_output(
        &["run", spec.to_str().unwrap_or_default(), "--once"],
        ws.path(),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let prefix = format!(
        "error: {}: silver[0].columns.user_key (table silver.purchases): ",
        spec.display()
    );
    assert!(stderr.starts_with(&prefix), "{stderr}");
    assert!(stderr.contains("user_idd"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    Ok(())
}

#[test]
fn in_one_process_a_bronze_commit_wakes_silver_at_once() -> Result<()> {
    let (ws, topic) = workspace_with_topic(1)?;
    // Polling once an hour: only being woken by bronze's commit gets the rows through in time.
    let spec = spec_with_silver(&ws, &topic, &VIEWS.replace("POLL", "1h"))?;
    let mut run = spawn_run(&spec, &ws.path().join("run.log"), &[])?;
    land_and_wait_for_silver(&ws, &topic, 100)?;
    terminate(&mut run)?;
    assert_views(&ws, 100)
}

#[test]
fn across_processes_silver_follows_bronze_by_polling() -> Result<()> {
    let (ws, topic) = workspace_with_topic(1)?;
    let spec = spec_with_silver(&ws, &topic, &VIEWS.replace("POLL", "200ms"))?;
    let log = ws.path().join("run.log");
    let mut bronze = spawn_run(&spec, &log, &["--stage", "bronze"])?;
    let mut silver = spawn_run(&spec, &log, &["--stage", "silver"])?;
    land_and_wait_for_silver(&ws, &topic, 50)?;
    terminate(&mut silver)?;
    terminate(&mut bronze)?;
    assert_views(&ws, 50)
}

/// `medallion backfill` with the test's spec; its one-line summary.
fn backfill(ws: &Workspace, spec: &std::path::Path, range: &[&str]) -> Result<String> {
    let mut args = vec![
        "backfill",
        "silver.purchases",
        "--spec",
        spec.to_str().unwrap_or_default(),
    ];
    args.extend_from_slice(range);
    let out = medallion_output(&args, ws.path())?;
    anyhow::ensure!(
        out.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn backfill_rebuilds_a_range_as_the_live_run_built_it_and_applies_a_new_definition() -> Result<()> {
    backfill_rebuilds(false)
}

#[test]
fn backfill_rebuilds_a_range_of_a_delta_silver_table() -> Result<()> {
    backfill_rebuilds(true)
}

/// The silver spec of `silver`, kept as a Delta table (not partitioned) with `delta`.
fn silver_spec(
    ws: &Workspace,
    topic: &str,
    silver: &str,
    delta: bool,
) -> Result<std::path::PathBuf> {
    let spec = spec_with_silver(ws, topic, silver)?;
    if delta {
        let text = std::fs::read_to_string(&spec)?
            .replace("[[silver]]\n", "[[silver]]\ntable_format = \"delta\"\n")
            .replace("partition_by_day = \"event_time\"\n", "");
        std::fs::write(&spec, text)?;
    }
    Ok(spec)
}

/// A live run's silver table (Delta with `delta`), backfilled over the middle third of its
/// span: the same rows with the same definition, the new rows with a new one.
fn backfill_rebuilds(delta: bool) -> Result<()> {
    std::env::set_var("MEDALLION_PII_SALT", "test-salt");
    let (ws, topic) = workspace_with_topic(3)?;
    let spec = silver_spec(&ws, &topic, PURCHASE_COLUMNS, delta)?;
    generate(&ws, &topic, "3000", "11")?;
    run_once(&ws, &spec)?;
    generate(&ws, &topic, "2000", "12")?;
    run_once(&ws, &spec)?;
    let live = ws.duckdb("silver.purchases", "SELECT * FROM t ORDER BY event_id")?;

    // The middle third of the event-time span, on whole seconds, in RFC 3339.
    let at = |third: i64| -> Result<String> {
        let sql = format!("SELECT strftime(make_timestamp(epoch_us(min(event_time)) + {third} * (epoch_us(max(event_time)) - epoch_us(min(event_time))) // 3), '%Y-%m-%dT%H:%M:%SZ') FROM t");
        let rows = ws.duckdb("silver.purchases", &sql)?;
        Ok(rows[0][0].as_str().unwrap_or_default().to_string())
    };
    let (from, to) = (at(1)?, at(2)?);
    // A Delta table has no day partitions to name the column.
    let range = match delta {
        true => vec!["--from", &from, "--to", &to, "--column", "event_time"],
        false => vec!["--from", &from, "--to", &to],
    };
    let in_range =
        format!("event_time >= TIMESTAMPTZ '{from}' AND event_time < TIMESTAMPTZ '{to}'");
    let expected_in_range = ws.duckdb(
        "silver.purchases",
        &format!("SELECT count(*) FROM t WHERE {in_range}"),
    )?[0][0]
        .as_i64()
        .unwrap_or_default();
    assert!(expected_in_range > 0);
    let small_in_range = ws.duckdb(
        "bronze.web_events",
        &format!("SELECT count(*) FROM t WHERE event_type = 'purchase' AND amount * 100 < 500 AND {in_range}"),
    )?[0][0]
        .as_i64()
        .unwrap_or_default();
    let dlq = format!("{topic}.silver.dlq");
    let dlq_before = read_topic(&dlq)?.len() as i64;

    // Same definition: the same rows, in a new snapshot that replaced files.
    let out = backfill(&ws, &spec, &range)?;
    assert!(
        out.contains(&format!(
            "{expected_in_range} rows replaced by {expected_in_range} ({small_in_range} dropped by expectations)"
        )),
        "{out}"
    );
    let after = ws.duckdb("silver.purchases", "SELECT * FROM t ORDER BY event_id")?;
    assert_eq!(after.len(), live.len());
    assert_eq!(after, live);
    // Rows dropped again are in the DLQ again: a changed definition must not lose any.
    assert_eq!(read_topic(&dlq)?.len() as i64, dlq_before + small_in_range);

    // Every snapshot, the replacing one included, reads alike in pyiceberg and DuckDB (Delta:
    // every version in polars and the deltalake package).
    if delta {
        let versions = ws.delta_versions("silver.purchases")?;
        for v in &versions {
            assert_eq!(v.1, v.2, "{versions:?}");
        }
        let last = &versions[versions.len() - 1];
        assert_eq!((last.0.as_str(), last.1), ("UPDATE", live.len() as u64));
    }
    let snapshots = match delta {
        true => Vec::new(),
        false => ws.snapshot_reads("silver.purchases")?,
    };
    for s in &snapshots {
        assert_eq!(
            s.pyiceberg, s.duckdb,
            "{s:?}: pyiceberg and DuckDB disagree"
        );
        assert_eq!(
            s.total_records,
            Some(s.pyiceberg),
            "{s:?}: summary total-records"
        );
    }
    if let Some(last) = snapshots.last() {
        assert_eq!(last.operation, "overwrite");
        assert_eq!(last.pyiceberg, live.len() as u64);
    }

    // A new definition, backfilled over the range only: rows in it follow the new one, the
    // others keep the old one, and a live run afterwards has nothing to redo.
    let lowered = PURCHASE_COLUMNS.replace(
        "COALESCE(currency, 'EUR')",
        "lower(COALESCE(currency, 'EUR'))",
    );
    let spec2 = silver_spec(&ws, &topic, &lowered, delta)?;
    backfill(&ws, &spec2, &range)?;
    let oracle = ORACLES[0].1.replace(
        "COALESCE(currency, 'EUR')",
        &format!("CASE WHEN {in_range} THEN lower(COALESCE(currency, 'EUR')) ELSE COALESCE(currency, 'EUR') END"),
    );
    let expected = ws.duckdb("bronze.web_events", &oracle)?;
    let got = ws.duckdb("silver.purchases", "SELECT * FROM t ORDER BY event_id")?;
    assert_eq!(got, expected);
    let lower_rows = ws.duckdb(
        "silver.purchases",
        "SELECT count(*) FROM t WHERE currency = lower(currency)",
    )?[0][0]
        .as_i64()
        .unwrap_or_default();
    assert_eq!(lower_rows, expected_in_range);
    let version = |ws: &Workspace| -> Result<Option<i64>> {
        match delta {
            true => Ok(ws.delta_log("silver.purchases", &[])?["version"].as_i64()),
            false => ws.current_snapshot("silver.purchases"),
        }
    };
    let before_run = version(&ws)?;
    run_once(&ws, &spec2)?;
    assert_eq!(version(&ws)?, before_run);
    Ok(())
}
