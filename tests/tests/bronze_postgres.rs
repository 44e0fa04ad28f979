//! Bronze on an Iceberg SQL catalog in PostgreSQL: the same tables pyiceberg's SqlCatalog and
//! Trino's JDBC catalog use.

use anyhow::Result;
use e2e::*;

#[test]
fn bronze_lands_in_a_postgres_catalog_that_peers_read() -> Result<()> {
    let ws = Workspace::with_postgres()?;
    let topic = unique("pg");
    create_topic(&topic, 2)?;
    let messages: Vec<(String, Vec<u8>)> = (0..5_000)
        .map(|i| {
            let user = format!("u{}", i % 13);
            (
                user.clone(),
                web_event(&format!("pg-{i}"), &user, 1_767_225_600_000 + i * 1_000),
            )
        })
        .collect();
    produce(&topic, &messages)?;
    // Tables share one database across tests and runs: give this one its own name.
    let table = format!("bronze.{}", topic.replace('-', "_"));
    let spec = ws.web_spec(
        &topic,
        &table,
        r#"{ interval = "1s", max_rows = 1500 }"#,
        "",
    )?;
    run_once(&ws, &spec)?;

    let views = ws.peer_views(
        &table,
        &[
            "event_id",
            "event_time",
            "user_id",
            "_kafka_partition",
            "_kafka_offset",
        ],
    )?;
    assert_eq!(views.len(), 3);
    for (reader, view) in &views {
        assert_eq!(view.rows, 5_000, "{reader}");
        assert_eq!(view.digest, views["pyiceberg"].digest, "{reader}");
    }
    let ends = end_offsets(&topic, 2)?;
    let stored = ws.stored_offsets(&table)?;
    for (p, end) in ends.iter().enumerate() {
        assert_eq!(stored.get(&topic, p as i32), Some(*end));
    }

    // The same catalog through `medallion catalog serve` (DuckDB attached to it) and
    // `medallion query`.
    let server = CatalogServer::start(&ws.catalog_uri(), &ws.path().join("catalog.log"))?;
    let duck = peer_json("rest_catalog.py", &["--endpoint", &server.url])?;
    assert_eq!(duck["tables"][&table], serde_json::json!(5_000), "{duck}");
    let sql = format!("SELECT count(DISTINCT event_id) AS n FROM {table}");
    let out = medallion_output(
        &[
            "query",
            &sql,
            "--catalog",
            &ws.catalog_uri(),
            "--format",
            "csv",
        ],
        ws.path(),
    )?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n5000\n", "{out:?}");
    Ok(())
}
