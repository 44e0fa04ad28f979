//! An `s3://` warehouse on a real S3-protocol store (moto's server): every layer writes its
//! tables there, exactly once; pyiceberg, DuckDB and polars read them from the store;
//! `medallion tables`, `query` and maintenance work on them; nothing lands on local disk but
//! the catalog.

use std::path::Path;

use anyhow::{ensure, Result};
use e2e::{
    assert_exactly_once, assert_view_layers, create_topic, end_offsets, maintain, medallion_stdout,
    minute_events, own_broker, peer_json, produce, run_once, unique, CatalogServer, S3Store,
    Workspace, VIEW_LAYERS,
};
use serde_json::json;

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
    ws.append(&spec, VIEW_LAYERS)?;
    // 20,000 events 10 ms apart from a minute's start: 3 full minutes are final, the 4th is
    // open.
    produce(&topic, &minute_events("e", 20_000))?;

    run_once(&ws, &spec)?;
    assert_view_layers(&ws, &topic, 3, 20_000)?;
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
    let before = ws.current_snapshots(&TABLES)?;
    run_once(&ws, &spec)?;
    assert_eq!(
        ws.current_snapshots(&TABLES)?,
        before,
        "a second --once committed something"
    );

    // The catalog commands reach the store through the AWS environment alone.
    let catalog = ws.catalog_uri();
    let counted = medallion_stdout(
        &[
            "query",
            "SELECT count(*) AS n FROM silver.views",
            "--catalog",
            &catalog,
            "--format",
            "csv",
        ],
        ws.path(),
    )?;
    assert_eq!(counted.trim(), "n\n20000");
    // So does the REST catalog: DuckDB attached to it (with the store's secret) counts the
    // tables, as Trino does in the docker-compose stack.
    let server = CatalogServer::start(&catalog, &scratch.path().join("catalog.log"))?;
    let duck = peer_json("rest_catalog.py", &["--endpoint", &server.url])?;
    assert_eq!(
        duck["tables"],
        json!({"bronze.web_events": 20_000, "gold.views_per_minute": 3, "silver.views": 20_000})
    );

    // Compaction rewrites the bronze files in the store; the rows stay as they were.
    let compacted = maintain(
        &ws,
        &spec,
        &["compact", "--min-files", "2", "bronze.web_events"],
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
    let expired = maintain(
        &ws,
        &spec,
        &[
            "expire",
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
        let mut args = vec!["orphans", "--older-than", "0s"];
        args.extend_from_slice(extra);
        args.push("bronze.web_events");
        maintain(&ws, &spec, &args)
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
