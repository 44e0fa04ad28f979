//! Table maintenance against live pipelines: compaction while bronze and silver append,
//! then snapshot expiry and orphan removal, checked by DuckDB and pyiceberg.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use e2e::{
    assert_exactly_once, create_topic, end_offsets, maintain, produce, run_once, spawn_run,
    terminate, unique, web_event, Workspace,
};
use serde_json::json;

const PARTITIONS: i32 = 2;
/// Events 20 s apart: 9,000 of them span three day partitions.
const SPACING_MS: i64 = 20_000;
const START_MS: i64 = 1_767_225_600_000;

fn spec(ws: &Workspace, topic: &str) -> Result<std::path::PathBuf> {
    let bronze = ws.web_bronze(
        topic,
        "bronze.web_events",
        &format!(
            "group_id = \"{}\"\ncommit = {{ interval = \"300ms\", max_rows = 400 }}",
            unique("maintain")
        ),
    );
    let text = ws.spec_head(r#"connect_timeout = "60s""#)
        + &bronze
        + r#"
[[silver]]
table = "silver.views"
source = "bronze.web_events"
partition_by_day = "event_time"
columns = [{ name = "event_id", expr = "event_id" }, { name = "event_time", expr = "event_time" }]
"#;
    ws.write("pipeline.toml", &text)
}

fn events(from: usize, to: usize) -> Vec<(String, Vec<u8>)> {
    (from..to)
        .map(|i| {
            let user = format!("u{}", i % 31);
            let event = web_event(&format!("e{i}"), &user, START_MS + i as i64 * SPACING_MS);
            (user, event)
        })
        .collect()
}

/// Rows, distinct ids and an order-free digest of the ids, as DuckDB reads the table.
fn content(ws: &Workspace, table: &str) -> Result<Vec<Vec<serde_json::Value>>> {
    ws.duckdb(
        table,
        "SELECT count(*), count(DISTINCT event_id), CAST(sum(hash(event_id)) AS VARCHAR) FROM t",
    )
}

fn data_files(ws: &Workspace, table: &str) -> Result<u64> {
    let files = ws.snapshot_property(table, "total-data-files")?;
    Ok(files.and_then(|f| f.parse().ok()).unwrap_or(0))
}

fn wait_for_rows(ws: &Workspace, table: &str, rows: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = ws.duckdb(table, "SELECT count(*) FROM t")?;
        if got == [[json!(rows)]] {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{table} has {got:?} rows, not {rows}, after 120 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn compaction_while_pipelines_append_then_expiry_and_orphans() -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("maintain");
    create_topic(&topic, PARTITIONS)?;
    let spec = spec(&ws, &topic)?;
    let tables = ["bronze.web_events", "silver.views"];

    // Compactions run while bronze and silver commit small batches.
    let mut run = spawn_run(&spec, &ws.path().join("run.log"), &[])?;
    let mut compacted = 0;
    for wave in 0..6 {
        produce(&topic, &events(wave * 1_500, (wave + 1) * 1_500))?;
        std::thread::sleep(Duration::from_millis(1_500));
        let out = maintain(
            &ws,
            &spec,
            &["compact", "--min-files", "2", tables[0], tables[1]],
        )?;
        compacted += out
            .lines()
            .filter_map(|l| {
                l.split("compacted ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum::<u64>();
    }
    ws.wait_for_offsets(
        tables[0],
        &topic,
        &end_offsets(&topic, PARTITIONS)?,
        Duration::from_secs(120),
    )?;
    wait_for_rows(&ws, tables[1], 9_000)?;
    terminate(&mut run)?;
    assert!(
        compacted > 0,
        "some compaction ran while the pipeline appended"
    );

    // Then a last compaction: the same rows, one file per day partition.
    let before: Vec<_> = tables
        .iter()
        .map(|t| content(&ws, t))
        .collect::<Result<_>>()?;
    let expected = ws.duckdb(
        tables[0],
        "SELECT count(*), count(DISTINCT event_id), CAST(sum(hash(event_id)) AS VARCHAR) FROM (SELECT 'e' || CAST(i AS VARCHAR) AS event_id FROM range(9000) r(i))",
    )?;
    for (table, rows) in tables.iter().zip(&before) {
        assert_eq!(rows, &expected, "{table}: every event once");
    }
    maintain(
        &ws,
        &spec,
        &["compact", "--min-files", "2", tables[0], tables[1]],
    )?;
    let days = ws.duckdb(
        tables[0],
        "SELECT count(DISTINCT CAST(event_time AS DATE)) FROM t",
    )?;
    assert_eq!(days, [[json!(3)]]);
    for (table, rows) in tables.iter().zip(&before) {
        assert_eq!(
            &content(&ws, table)?,
            rows,
            "{table}: same rows after compaction"
        );
        assert_eq!(data_files(&ws, table)?, 3, "{table}: one file per day");
    }
    assert_exactly_once(&ws, tables[0], &end_offsets(&topic, PARTITIONS)?)?;

    // Expiry keeps silver's cursor on bronze (and everything after it); orphan removal
    // deletes only what no snapshot references. Every snapshot left reads in full.
    for table in tables {
        maintain(
            &ws,
            &spec,
            &["expire", "--keep-last", "3", "--max-age", "0s", table],
        )?;
        maintain(&ws, &spec, &["orphans", "--older-than", "0s", table])?;
        let reads = ws.snapshot_reads(table)?;
        assert!(reads.len() >= 3, "{table}: {reads:?}");
        for read in &reads {
            assert_eq!(
                read.total_records,
                Some(read.pyiceberg),
                "{table}: {read:?}"
            );
            assert_eq!(read.pyiceberg, read.duckdb, "{table}: {read:?}");
        }
        assert_eq!(
            &content(&ws, table)?,
            &expected,
            "{table} after expiry and orphan removal"
        );
    }

    // The pipeline goes on from where it was: 1,000 more events, each once in both layers.
    produce(&topic, &events(9_000, 10_000))?;
    run_once(&ws, &spec)?;
    assert_exactly_once(&ws, tables[0], &end_offsets(&topic, PARTITIONS)?)?;
    let rows = ws.duckdb(
        tables[1],
        "SELECT count(*), count(DISTINCT event_id) FROM t",
    )?;
    assert_eq!(rows, [[json!(10_000), json!(10_000)]]);
    Ok(())
}

/// The first number after `word` in a `medallion maintain` line.
fn number_after(out: &str, word: &str) -> u64 {
    out.split(word)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
fn delta_maintenance_keeps_what_silver_has_not_read() -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("maintain-delta");
    create_topic(&topic, PARTITIONS)?;
    let spec = spec(&ws, &topic)?;
    let text = std::fs::read_to_string(&spec)?
        .replace("[[bronze]]\n", "[[bronze]]\ntable_format = \"delta\"\n")
        .replace("[[silver]]\n", "[[silver]]\ntable_format = \"delta\"\n")
        .replace("partition_by_day = \"event_time\"\n", "");
    std::fs::write(&spec, text)?;
    let (bronze, silver) = ("bronze.web_events", "silver.views");
    let spec_arg = spec.display().to_string();
    let bronze_only = ["run", spec_arg.as_str(), "--once", "--stage", "bronze"];

    // Silver reads 2,000 events; bronze then lands 2,000 more that silver has not read, and is
    // compacted: the files silver still has to read are removed from the current version.
    produce(&topic, &events(0, 2_000))?;
    run_once(&ws, &spec)?;
    produce(&topic, &events(2_000, 4_000))?;
    let out = e2e::medallion_output(&bronze_only, ws.path())?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(content(&ws, silver)?[0][0], json!(2_000));
    let out = maintain(&ws, &spec, &["compact", "--min-files", "2", bronze])?;
    assert!(number_after(&out, "compacted ") > 2, "{out}");
    let expected = ws.duckdb(
        bronze,
        "SELECT count(*), count(DISTINCT event_id), CAST(sum(hash(event_id)) AS VARCHAR) FROM (SELECT 'e' || CAST(i AS VARCHAR) AS event_id FROM range(4000) r(i))",
    )?;
    assert_eq!(content(&ws, bronze)?, expected, "compaction keeps the rows");
    let versions = ws.delta_versions(bronze)?;
    assert!(versions.iter().any(|v| v.0 == "OPTIMIZE"), "{versions:?}");

    // Vacuum with no retention of its own: silver's cursor keeps every removed file.
    ws.set_delta_properties(
        bronze,
        &[("delta.deletedFileRetentionDuration", "interval 0 seconds")],
    )?;
    std::thread::sleep(Duration::from_millis(20));
    let expire = ["expire", "--keep-last", "1", "--max-age", "0s", bronze];
    let out = maintain(&ws, &spec, &expire)?;
    assert_eq!(number_after(&out, "vacuumed "), 0, "{out}");
    run_once(&ws, &spec)?;
    assert_eq!(
        content(&ws, silver)?,
        expected,
        "silver read on past the compaction"
    );

    // Once silver has read a commit after the compaction, the files it removed go, and both
    // tables still read in full (DuckDB's delta extension and polars alike).
    let now_ms = chrono::Utc::now().timestamp_millis();
    let recent: Vec<(String, Vec<u8>)> = (4_000..4_100)
        .map(|i| {
            (
                format!("u{i}"),
                web_event(&format!("e{i}"), "u", now_ms + i),
            )
        })
        .collect();
    produce(&topic, &recent)?;
    run_once(&ws, &spec)?;
    std::thread::sleep(Duration::from_millis(20));
    let out = maintain(&ws, &spec, &expire)?;
    assert!(number_after(&out, "vacuumed ") > 2, "{out}");
    let all = ws.duckdb(
        bronze,
        "SELECT count(*), count(DISTINCT event_id), CAST(sum(hash(event_id)) AS VARCHAR) FROM (SELECT 'e' || CAST(i AS VARCHAR) AS event_id FROM range(4100) r(i))",
    )?;
    for table in [bronze, silver] {
        assert_eq!(content(&ws, table)?, all, "{table} after the vacuum");
        let views = ws.peer_views(table, &[])?;
        assert_eq!(views["duckdb"].digest, views["polars"].digest, "{table}");
    }
    assert_exactly_once(&ws, bronze, &end_offsets(&topic, PARTITIONS)?)?;

    // Retention of 30 days: the compacted file of January's 4,000 events goes, wholly before
    // the cutoff, in one DELETE commit that silver does not read as new rows; today's 100 stay.
    let out = maintain(&ws, &spec, &["retention", "--keep", "30d", bronze])?;
    assert_eq!(number_after(&out, "files ("), 4_000, "{out}");
    let left = ws.duckdb(bronze, "SELECT count(*), min(event_id) FROM t")?;
    assert_eq!(left, [[json!(100), json!("e4000")]], "{out}");
    run_once(&ws, &spec)?;
    assert_eq!(
        content(&ws, silver)?,
        all,
        "retention on bronze leaves silver as it was"
    );
    Ok(())
}
