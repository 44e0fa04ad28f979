//! 100,000 events (20,000 into Delta and into Parquet) on 3 partitions with known duplicates and malformed records: bronze holds
//! exactly the distinct valid ones, the DLQ exactly the malformed ones, and the readers we did
//! not write agree on the table: pyiceberg, DuckDB and polars on Iceberg, DuckDB's delta
//! extension and polars on Delta, DuckDB's read_parquet and polars' scan_parquet (hive
//! partitioning) on plain Parquet.

use std::collections::BTreeMap;

use anyhow::Result;
use e2e::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

#[test]
fn distinct_valid_events_land_once_and_malformed_ones_in_the_dlq() -> Result<()> {
    exact("", 100_000)
}

#[test]
fn distinct_valid_events_land_once_in_a_delta_table() -> Result<()> {
    // Fewer events: Tansu on SQLite slows down sharply once it holds the other run's 100,000.
    exact("table_format = \"delta\"\n", 20_000)
}

#[test]
fn distinct_valid_events_land_once_in_a_parquet_table() -> Result<()> {
    exact("table_format = \"parquet\"\n", 20_000)
}

/// Writes a copy of some of Parquet table `table`'s rows as a batch that is never committed,
/// with the writer medallion uses, and checks that its staged files are on disk.
fn stage_uncommitted_copy(ws: &Workspace, table: &str) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let catalog = lakehouse::connect(&ws.lakehouse()).await?;
        let format = lakehouse::TableFormat::Parquet;
        let parquet = lakehouse::Table::open_if_exists(catalog, table, format).await?;
        let parquet = parquet.ok_or_else(|| anyhow::anyhow!("no Parquet table {table}"))?;
        let columns: Vec<String> = parquet
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let rows = parquet.scan_since(&columns, "event_time", 0).await?;
        let copy = rows
            .first()
            .ok_or_else(|| anyhow::anyhow!("{table} is empty"))?;
        let _staged = parquet.write(copy).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    let dir = ws.warehouse().join(table.replace('.', "/"));
    let staged = std::fs::read_dir(&dir)?
        .flatten()
        .filter(|day| day.path().is_dir())
        .flat_map(|day| {
            std::fs::read_dir(day.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|f| f.path().to_string_lossy().ends_with(".parquet.staged"))
        .count();
    anyhow::ensure!(staged > 0, "no staged file in {}", dir.display());
    Ok(())
}

/// The run of `events` events, with the `table` settings added to the bronze table.
fn exact(table: &str, events: usize) -> Result<()> {
    let delta = table.contains("delta");
    let parquet = table.contains("parquet");
    let ws = Workspace::new()?;
    let topic = unique("exact");
    create_topic(&topic, 3)?;

    let mut rng = StdRng::seed_from_u64(42);
    let mut messages: Vec<(String, Vec<u8>)> = Vec::with_capacity(events);
    // For each message: Some(reason) when it must be dead-lettered.
    let mut expected_reason: Vec<Option<&str>> = Vec::with_capacity(events);
    // Index of the message each valid event id was first sent in.
    let mut first_sent: BTreeMap<String, usize> = BTreeMap::new();
    let mut valid: Vec<usize> = Vec::new();
    for i in 0..events {
        let roll = rng.gen_range(0..100);
        let user = format!("u{}", rng.gen_range(0..1000));
        // About 2 % of events arrive up to a minute out of order.
        let t = BASE_MS + i as i64 * 10
            - if roll % 50 == 7 {
                rng.gen_range(0..60_000)
            } else {
                0
            };
        if roll < 3 && valid.len() > 10 {
            // A producer retry: the same key and bytes again, a little later.
            let j = valid[valid.len() - 1 - rng.gen_range(0..10)];
            messages.push(messages[j].clone());
            expected_reason.push(None);
            continue;
        }
        if roll < 7 {
            let (payload, reason) = match roll % 4 {
                0 => (format!("{{\"event_id\": \"bad-{i}\", \"event_ty").into_bytes(), "decode.json"),
                1 => (
                    serde_json::json!({"event_id": format!("bad-{i}"), "event_type": "click", "event_time": "yesterday", "user_id": user}).to_string().into_bytes(),
                    "validate.event_time",
                ),
                2 => (
                    serde_json::json!({"event_id": format!("bad-{i}"), "event_type": "click", "event_time": t}).to_string().into_bytes(),
                    "validate.missing_field",
                ),
                _ => (
                    serde_json::json!({"event_id": format!("bad-{i}"), "event_type": "click", "event_time": t, "user_id": user, "amount": "ten"}).to_string().into_bytes(),
                    "validate.type",
                ),
            };
            messages.push((user, payload));
            expected_reason.push(Some(reason));
            continue;
        }
        let id = format!("ev-{i:06}");
        first_sent.insert(id.clone(), i);
        valid.push(i);
        messages.push((user.clone(), web_event(&id, &user, t)));
        expected_reason.push(None);
    }
    let landed = produce(&topic, &messages)?;

    let spec = ws.web_spec(
        &topic,
        "bronze.web_events",
        r#"{ interval = "2s", max_rows = 20000 }"#,
        "",
    )?;
    // A group of its own: Tansu 0.6.0 is slow to let a new member into a group another test's
    // consumer just left, and a rebalance mid-run dead-letters records twice (at-least-once).
    ws.append(&spec, &format!("{table}group_id = \"{topic}\"\n"))?;
    run_once(&ws, &spec)?;
    if parquet {
        // What a worker killed before its commit leaves: a batch of files written but not in
        // the log. The readers below must not see these copies.
        stage_uncommitted_copy(&ws, "bronze.web_events")?;
    }

    // Bronze holds each distinct valid event once, the first copy sent.
    let rows = ws.duckdb(
        "bronze.web_events",
        "SELECT event_id, _kafka_partition, _kafka_offset FROM t ORDER BY event_id",
    )?;
    let expected: Vec<(String, i64, i64)> = first_sent
        .iter()
        .map(|(id, &i)| (id.clone(), i64::from(landed[i].partition), landed[i].offset))
        .collect();
    let got: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_string(),
                r[1].as_i64().unwrap_or(-1),
                r[2].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "row count");
    assert!(
        got == expected,
        "bronze rows differ from the distinct valid events"
    );

    // pyiceberg, DuckDB and polars read identical rows.
    let views = ws.peer_views(
        "bronze.web_events",
        &[
            "event_id",
            "event_type",
            "event_time",
            "user_id",
            "page",
            "amount",
            "payload",
            "_kafka_topic",
            "_kafka_partition",
            "_kafka_offset",
        ],
    )?;
    assert_eq!(
        views.len(),
        if delta || parquet { 2 } else { 3 },
        "{views:?}"
    );
    for (reader, view) in &views {
        assert_eq!(view.rows as usize, expected.len(), "{reader} row count");
        assert_eq!(
            view.digest, views["duckdb"].digest,
            "{reader} disagrees with DuckDB"
        );
    }

    // The DLQ holds exactly the malformed records, with their reasons and original bytes.
    let dead = read_topic(&format!("{topic}.dlq"))?;
    let mut expected_dead: BTreeMap<Landed, (&str, &[u8])> = BTreeMap::new();
    for (i, reason) in expected_reason.iter().enumerate() {
        if let Some(r) = reason {
            expected_dead.insert(landed[i], (r, messages[i].1.as_slice()));
        }
    }
    let mut got_dead: BTreeMap<Landed, (String, Vec<u8>)> = BTreeMap::new();
    for d in &dead {
        assert_eq!(d.header("medallion.error.stage"), "bronze");
        assert_eq!(d.header("medallion.error.source.topic"), topic);
        assert!(!d.header("medallion.error.message").is_empty());
        let previous = got_dead.insert(
            d.source(),
            (
                d.header("medallion.error.reason").to_string(),
                d.value.clone().unwrap_or_default(),
            ),
        );
        assert!(previous.is_none(), "{:?} dead-lettered twice", d.source());
    }
    assert_eq!(got_dead.len(), expected_dead.len(), "dead-letter count");
    for (at, (reason, bytes)) in &expected_dead {
        let (got_reason, got_bytes) = &got_dead[at];
        assert_eq!(got_reason, reason, "reason of {at:?}");
        assert_eq!(got_bytes.as_slice(), *bytes, "bytes of {at:?}");
    }

    // The table's offsets say every partition was read to its end.
    let ends = end_offsets(&topic, 3)?;
    let stored: Vec<Option<i64>> = if delta {
        // The deltalake package reads the `txn` actions; no Iceberg table has the name.
        assert_eq!(ws.current_snapshot("bronze.web_events")?, None);
        ws.delta_offsets("bronze.web_events", &topic, 3)?
    } else if parquet {
        // The newest entry of the table's own commit log holds every partition's offset.
        assert_eq!(ws.current_snapshot("bronze.web_events")?, None);
        let log = ws.parquet_log("bronze.web_events")?;
        let last = log.iter().rev().find_map(|e| e.get("offsets")).cloned();
        let last = last.unwrap_or_default();
        (0..3)
            .map(|p| last[&topic][p.to_string()].as_i64())
            .collect()
    } else {
        let stored = ws.stored_offsets("bronze.web_events")?;
        (0..3).map(|p| stored.get(&topic, p)).collect()
    };
    let ends: Vec<Option<i64>> = ends.iter().map(|e| Some(*e)).collect();
    assert_eq!(stored, ends, "each partition's next offset");
    Ok(())
}
