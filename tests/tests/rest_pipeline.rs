//! A pipeline whose catalog is an Iceberg REST endpoint (`medallion catalog serve
//! --read-write` over a SQLite catalog): bronze → silver → gold with `--once`, an idle rerun
//! that commits nothing, compaction and expiry through the endpoint, checked by DuckDB (over
//! the SQL catalog's metadata and attached to the endpoint) and pyiceberg; and pyiceberg's
//! RestCatalog writing through the endpoint, with stale commits refused with 409.

use std::path::PathBuf;

use anyhow::Result;
use e2e::{
    assert_exactly_once, create_topic, end_offsets, maintain, peer_json, produce, run_once, unique,
    web_event, CatalogServer, Workspace,
};
use serde_json::json;

const PARTITIONS: i32 = 2;
const EVENTS: usize = 3_000;
/// Events 20 s apart from 2026-01-01T00:00Z: 180 an hour, the last at 16:39:40.
const SPACING_MS: i64 = 20_000;
const START_MS: i64 = 1_767_225_600_000;
const TABLES: [&str; 3] = ["bronze.web_events", "silver.views", "gold.hourly"];

fn spec(ws: &Workspace, topic: &str, catalog_url: &str) -> Result<PathBuf> {
    let head = ws.spec_head("").replace(
        &format!("catalog = \"{}\"", ws.catalog_uri()),
        &format!("catalog = \"{catalog_url}\""),
    );
    let bronze = ws.web_bronze(
        topic,
        TABLES[0],
        &format!(
            "group_id = \"{}\"\ncommit = {{ interval = \"300ms\", max_rows = 700 }}",
            unique("rest")
        ),
    );
    let text = head
        + &bronze
        + r#"
[[silver]]
table = "silver.views"
source = "bronze.web_events"
partition_by_day = "event_time"
columns = [
  { name = "event_id", expr = "event_id" },
  { name = "event_time", expr = "event_time" },
  { name = "part", expr = "_kafka_partition" },
]
batch_snapshots = 1

[[gold]]
table = "gold.hourly"
source = "silver.views"
event_time = "event_time"
window = { tumbling = "1h" }
watermark = { max_out_of_orderness = "10s", partition_column = "part", partitions = 2 }
aggregates = [{ name = "events", fn = "count" }]
"#;
    assert!(
        text.contains(catalog_url),
        "the spec names the REST catalog"
    );
    ws.write("pipeline.toml", &text)
}

/// Rows, distinct ids and an order-free digest of each table, as DuckDB reads them.
fn contents(ws: &Workspace) -> Result<Vec<Vec<Vec<serde_json::Value>>>> {
    let digest =
        "SELECT count(*), count(DISTINCT event_id), CAST(sum(hash(event_id)) AS VARCHAR) FROM t";
    Ok(vec![
        ws.duckdb(TABLES[0], digest)?,
        ws.duckdb(TABLES[1], digest)?,
        ws.duckdb(
            TABLES[2],
            "SELECT count(*), CAST(sum(events) AS BIGINT), CAST(sum(hash(epoch_us(window_start), CAST(events AS BIGINT))) AS VARCHAR) FROM t",
        )?,
    ])
}

#[test]
fn pipeline_on_the_rest_catalog_and_pyiceberg_writes_through_it() -> Result<()> {
    let ws = Workspace::new()?;
    let server = CatalogServer::start_read_write(
        &ws.catalog_uri(),
        &ws.warehouse(),
        &ws.path().join("catalog.log"),
    )?;
    let topic = unique("rest");
    create_topic(&topic, PARTITIONS)?;
    let spec = spec(&ws, &topic, &server.url)?;
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            let user = format!("u{}", i % 31);
            let event = web_event(&format!("e{i}"), &user, START_MS + i as i64 * SPACING_MS);
            (user, event)
        })
        .collect();
    produce(&topic, &events)?;

    // One run: every layer committed through the endpoint, read back from the SQL catalog.
    run_once(&ws, &spec)?;
    let ends = end_offsets(&topic, PARTITIONS)?;
    assert_exactly_once(&ws, TABLES[0], &ends)?;
    let expected_ids = ws.duckdb(
        TABLES[0],
        "SELECT count(*), count(DISTINCT event_id), CAST(sum(hash(event_id)) AS VARCHAR) FROM (SELECT 'e' || CAST(i AS VARCHAR) AS event_id FROM range(3000) r(i))",
    )?;
    // Gold: the 16 hours that closed before the watermark (16:39:30), 180 events each,
    // equal to a DuckDB recount of silver.
    let expected_gold = ws.duckdb(
        TABLES[1],
        "SELECT count(*), CAST(sum(n) AS BIGINT), CAST(sum(hash(epoch_us(w), n)) AS VARCHAR) FROM \
         (SELECT time_bucket(INTERVAL 1 HOUR, event_time) AS w, count(*) AS n FROM t GROUP BY 1) \
         WHERE w < TIMESTAMPTZ '2026-01-01 16:00:00+00'",
    )?;
    assert_eq!(expected_gold[0][..2], [json!(16), json!(2_880)]);
    let first = contents(&ws)?;
    assert_eq!(
        first,
        vec![expected_ids.clone(), expected_ids.clone(), expected_gold]
    );

    // A second run finds nothing new and commits nothing.
    let before = ws.current_snapshots(&TABLES)?;
    assert!(before.iter().all(Option::is_some), "{before:?}");
    run_once(&ws, &spec)?;
    assert_eq!(
        ws.current_snapshots(&TABLES)?,
        before,
        "an idle run commits nothing"
    );

    // Compaction and expiry, through the endpoint: the same rows, fewer files and snapshots.
    let files_before = ws.snapshot_property(TABLES[0], "total-data-files")?;
    maintain(
        &ws,
        &spec,
        &["compact", "--min-files", "2", TABLES[0], TABLES[1]],
    )?;
    let files_after = ws.snapshot_property(TABLES[0], "total-data-files")?;
    assert_ne!(files_before, files_after, "bronze was compacted");
    for table in TABLES {
        maintain(
            &ws,
            &spec,
            &["expire", "--keep-last", "1", "--max-age", "0s", table],
        )?;
        let reads = ws.snapshot_reads(table)?;
        for read in &reads {
            assert_eq!(read.pyiceberg, read.duckdb, "{table}: {read:?}");
            assert_eq!(
                read.total_records,
                Some(read.pyiceberg),
                "{table}: {read:?}"
            );
        }
    }
    assert_eq!(
        contents(&ws)?,
        first,
        "the same rows after compaction and expiry"
    );
    assert_exactly_once(&ws, TABLES[0], &ends)?;
    let bronze_reads = ws.snapshot_reads(TABLES[0])?;
    assert_eq!(
        bronze_reads.last().map(|r| r.operation.as_str()),
        Some("replace"),
        "the compaction is bronze's newest snapshot: {bronze_reads:?}"
    );

    // pyiceberg writes through the endpoint; stale commits are refused.
    let written = peer_json(
        "rest_write.py",
        &[
            "--endpoint",
            &server.url,
            "--table",
            "peer.written",
            "--stale-table",
            TABLES[0],
        ],
    )?;
    assert_eq!(written["rows"], json!(5), "{written}");
    assert_eq!(written["snapshots"], json!(2), "{written}");
    assert_eq!(written["stale_append"], json!("CommitFailedException"));
    let stale = &written["stale_commit"];
    assert_eq!(stale["status"], json!(409), "{stale}");
    assert_eq!(stale["body"]["error"]["code"], json!(409), "{stale}");
    assert_eq!(
        stale["body"]["error"]["type"],
        json!("CommitFailedException"),
        "{stale}"
    );
    assert_eq!(written["stale_property"], json!(null), "nothing committed");
    assert_eq!(
        ws.duckdb(
            "peer.written",
            "SELECT count(*), CAST(sum(id) AS BIGINT) FROM t"
        )?,
        [[json!(5), json!(9)]]
    );

    // DuckDB attached to the endpoint counts every table.
    let duck = peer_json("rest_catalog.py", &["--endpoint", &server.url])?;
    assert_eq!(
        duck["tables"],
        json!({
            "bronze.web_events": 3_000,
            "gold.hourly": 16,
            "peer.written": 5,
            "silver.views": 3_000,
        })
    );
    assert_eq!(
        duck["probes"]["GET /v1/config"]["body"]["endpoints"],
        json!([
            "GET /v1/{prefix}/namespaces",
            "GET /v1/{prefix}/namespaces/{namespace}",
            "HEAD /v1/{prefix}/namespaces/{namespace}",
            "GET /v1/{prefix}/namespaces/{namespace}/tables",
            "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
            "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
            "POST /v1/{prefix}/namespaces",
            "POST /v1/{prefix}/namespaces/{namespace}/tables",
            "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
        ])
    );
    Ok(())
}
