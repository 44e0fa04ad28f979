//! An `s3://` warehouse on a real S3-protocol store (moto's server): every layer writes its
//! tables there, exactly once; pyiceberg, DuckDB and polars read them from the store;
//! `medallion tables`, `query` and maintenance work on them; nothing lands on local disk but
//! the catalog.

use std::path::Path;

use anyhow::{ensure, Result};
use e2e::{
    assert_exactly_once, create_topic, end_offsets, medallion_output, own_broker, produce,
    run_once, unique, web_event, S3Store, Workspace,
};
use serde_json::json;

const LAYERS: &str = r#"
[[silver]]
table = "silver.views"
source = "bronze.web_events"
columns = [{ name = "event_id", expr = "event_id" }, { name = "user_id", expr = "user_id" }, { name = "event_time", expr = "event_time" }]

[[gold]]
table = "gold.views_per_minute"
source = "silver.views"
event_time = "event_time"
window = { tumbling = "1m" }
aggregates = [{ name = "views", fn = "count" }, { name = "users", fn = "count_distinct", expr = "user_id" }]
"#;

const TABLES: [&str; 3] = ["bronze.web_events", "silver.views", "gold.views_per_minute"];

/// Files under `dir` whose names end in `suffix`.
fn local_files(dir: &Path, suffix: &str) -> Result<usize> {
    let mut count = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                count += 1;
            }
        }
    }
    Ok(count)
}

fn medallion_ok(ws: &Workspace, args: &[&str]) -> Result<String> {
    let out = medallion_output(args, ws.path())?;
    ensure!(
        out.status.success(),
        "medallion {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn every_layer_lands_in_an_s3_warehouse_once_and_readers_find_it_there() -> Result<()> {
    // A broker of its own: metadata timing must not depend on other tests' load.
    let _broker = own_broker()?;
    let scratch = tempfile::tempdir()?;
    let store = S3Store::start(&scratch.path().join("s3.log"))?;
    store.create_bucket("lake")?;
    let ws = Workspace::with_s3(&store.endpoint, "lake")?;
    let topic = unique("s3");
    create_topic(&topic, 3)?;
    let spec = ws.web_spec(
        &topic,
        "bronze.web_events",
        r#"{ interval = "5s", max_rows = 5000 }"#,
        r#"connect_timeout = "60s""#,
    )?;
    std::fs::write(&spec, std::fs::read_to_string(&spec)? + LAYERS)?;
    // 20,000 events 10 ms apart from a minute's start: 3 full minutes are final, the 4th is
    // open.
    let events: Vec<(String, Vec<u8>)> = (0..20_000)
        .map(|i| {
            let user = format!("u{}", i % 97);
            let event = web_event(&format!("e{i}"), &user, 1_767_225_600_000 + i * 10);
            (user, event)
        })
        .collect();
    produce(&topic, &events)?;

    run_once(&ws, &spec)?;
    assert_exactly_once(&ws, "bronze.web_events", &end_offsets(&topic, 3)?)?;
    let silver = ws.duckdb(
        "silver.views",
        "SELECT count(*), count(DISTINCT event_id) FROM t",
    )?;
    assert_eq!(silver, [[json!(20_000), json!(20_000)]]);
    let gold = ws.duckdb(
        "gold.views_per_minute",
        "SELECT count(*), CAST(sum(views) AS BIGINT) FROM t",
    )?;
    assert_eq!(gold, [[json!(3), json!(18_000)]]);
    for table in TABLES {
        let views = ws.peer_views(table, &[])?;
        let digests: Vec<_> = views.values().map(|v| (v.rows, v.digest.clone())).collect();
        ensure!(
            views.len() == 3 && digests.windows(2).all(|w| w[0] == w[1]),
            "{table}: the readers disagree: {views:?}"
        );
    }
    // The data and metadata are in the store, not on local disk.
    assert_eq!(local_files(ws.path(), ".parquet")?, 0);
    assert_eq!(local_files(ws.path(), ".metadata.json")?, 0);

    // A second run finds nothing new.
    let before: Vec<Option<i64>> = TABLES
        .iter()
        .map(|t| ws.current_snapshot(t))
        .collect::<Result<_>>()?;
    run_once(&ws, &spec)?;
    let after: Vec<Option<i64>> = TABLES
        .iter()
        .map(|t| ws.current_snapshot(t))
        .collect::<Result<_>>()?;
    assert_eq!(after, before, "a second --once committed something");

    // The catalog commands reach the store through the AWS environment alone.
    let catalog = ws.catalog_uri();
    let counted = medallion_ok(
        &ws,
        &[
            "query",
            "SELECT count(*) AS n FROM silver.views",
            "--catalog",
            &catalog,
            "--format",
            "csv",
        ],
    )?;
    assert_eq!(counted.trim(), "n\n20000");

    // Compaction rewrites the bronze files in the store; the rows stay as they were.
    let spec_arg = spec.display().to_string();
    let compacted = medallion_ok(
        &ws,
        &[
            "maintain",
            "compact",
            "--spec",
            &spec_arg,
            "--min-files",
            "2",
            "bronze.web_events",
        ],
    )?;
    let files: Option<(u32, u32)> = compacted
        .split_once("compacted ")
        .and_then(|(_, rest)| rest.split_once(" files into "))
        .and_then(|(from, rest)| Some((from.parse().ok()?, rest.split(' ').next()?.parse().ok()?)));
    ensure!(
        matches!(files, Some((from, to)) if from > to && to > 0),
        "compact did not merge files: {compacted}"
    );
    assert_exactly_once(&ws, "bronze.web_events", &end_offsets(&topic, 3)?)?;

    // Expiry deletes the files only the expired snapshots held, from the store.
    let expired = medallion_ok(
        &ws,
        &[
            "maintain",
            "expire",
            "--spec",
            &spec_arg,
            "--keep-last",
            "1",
            "--max-age",
            "0s",
            "bronze.web_events",
        ],
    )?;
    eprintln!("{compacted}{expired}");
    assert_exactly_once(&ws, "bronze.web_events", &end_offsets(&topic, 3)?)?;

    // Orphan removal lists the table's objects: a stray one goes (not on a dry run), every
    // object a snapshot needs stays.
    let stray = format!(
        "{}/bronze/web_events/data/stray.parquet",
        ws.warehouse_uri()
    );
    store.put(&stray, "not a table file")?;
    let orphans = |extra: &[&str]| {
        let mut args = vec![
            "maintain",
            "orphans",
            "--spec",
            &spec_arg,
            "--older-than",
            "0s",
        ];
        args.extend_from_slice(extra);
        args.push("bronze.web_events");
        medallion_ok(&ws, &args)
    };
    let listed = orphans(&["--dry-run"])?;
    ensure!(
        listed.contains(&stray),
        "dry run did not list {stray}: {listed}"
    );
    assert!(store.exists(&stray)?);
    let removed = orphans(&[])?;
    ensure!(removed.contains(&stray), "orphans: {removed}");
    assert!(!store.exists(&stray)?);
    assert_exactly_once(&ws, "bronze.web_events", &end_offsets(&topic, 3)?)?;
    let snapshots = ws.snapshot_reads("bronze.web_events")?;
    for s in &snapshots {
        assert_eq!(
            (s.pyiceberg, s.duckdb),
            (s.total_records.unwrap_or(0), s.total_records.unwrap_or(0))
        );
    }
    Ok(())
}
