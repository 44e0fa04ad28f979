//! The lakehouse as query engines see it, over the demo's tables: DuckDB attaching
//! `medallion catalog serve` (the Iceberg REST catalog) counts what `medallion query` and
//! `medallion tables` count, and the endpoint answers what it does not have in the REST spec's
//! error shape; and the README's query recipes (pyiceberg, polars, DuckDB's `iceberg_scan`
//! and its REST attach), run as written, count what `medallion query` counts.

use anyhow::{ensure, Context, Result};
use e2e::{medallion_output, medallion_stdout, peer_json, readme, CatalogServer, Workspace};
use serde_json::{json, Value};

/// Every table the demo writes.
const DEMO_TABLES: [&str; 16] = [
    "bronze.sensor_readings",
    "bronze.web_events",
    "gold.alerts",
    "gold.cart_abandonment",
    "gold.conversion_funnel",
    "gold.page_views_per_minute",
    "gold.popular_pages",
    "gold.revenue_per_minute",
    "gold.top_products",
    "gold.unique_visitors_per_hour",
    "quality.expectations",
    "silver.page_views",
    "silver.purchases",
    "silver.sensor_readings",
    "silver.shop_actions",
    "silver.web_visits",
];

fn medallion_json(ws: &Workspace, args: &[&str]) -> Result<Value> {
    serde_json::from_str(&medallion_stdout(args, ws.path())?)
        .with_context(|| format!("medallion {args:?} printed no JSON"))
}

#[test]
fn duckdb_attaches_the_rest_catalog_and_counts_what_medallion_query_counts() -> Result<()> {
    let ws = Workspace::new()?;
    // Where the README's recipes expect it: `./warehouse`.
    let warehouse = ws.path().join("warehouse");
    let demo = medallion_output(
        &[
            "demo",
            "--warehouse",
            &warehouse.display().to_string(),
            "--events",
            "3000",
        ],
        ws.path(),
    )?;
    ensure!(
        demo.status.success(),
        "demo: {}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let catalog = format!("sqlite://{}/catalog.db", warehouse.display());

    // `medallion tables`: every table, with its current row count from the snapshot summary.
    let listed = medallion_json(&ws, &["tables", "--catalog", &catalog, "--format", "json"])?;
    let listed = listed.as_array().context("tables: not an array")?;
    let names: Vec<&str> = listed.iter().filter_map(|t| t["table"].as_str()).collect();
    assert_eq!(names, DEMO_TABLES);
    let summary: Vec<i64> = listed
        .iter()
        .map(|t| t["rows"].as_i64().unwrap_or(-1))
        .collect();

    // `medallion query`: one polars query counting every table by its catalog name.
    let sql = DEMO_TABLES
        .iter()
        .map(|t| format!("SELECT '{t}' AS t, count(*) AS n FROM {t}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let counted = medallion_json(
        &ws,
        &["query", &sql, "--catalog", &catalog, "--format", "json"],
    )?;
    let counted: Vec<(String, i64)> = counted
        .as_array()
        .context("query: not an array")?
        .iter()
        .map(|r| {
            (
                r["t"].as_str().unwrap_or_default().to_string(),
                r["n"].as_i64().unwrap_or(-1),
            )
        })
        .collect();

    // DuckDB's iceberg extension, attached to the REST endpoint.
    let server = CatalogServer::start(&catalog, &ws.path().join("catalog.log"))?;
    let duck = peer_json("rest_catalog.py", &["--endpoint", &server.url])?;
    let duck_tables = duck["tables"].as_object().context("no tables")?;
    let duck_names: Vec<&str> = duck_tables.keys().map(String::as_str).collect();
    assert_eq!(duck_names, DEMO_TABLES, "DuckDB lists every table by name");
    for ((table, n), rows) in counted.iter().zip(&summary) {
        assert_eq!(
            Some(*n),
            duck_tables[table].as_i64(),
            "{table}: DuckDB vs medallion query"
        );
        assert_eq!(n, rows, "{table}: medallion query vs the snapshot summary");
    }
    let total: i64 = counted.iter().map(|(_, n)| n).sum();
    assert!(total > 10_000, "the demo tables hold rows: {counted:?}");

    // What the endpoint does not have, in the REST spec's error shape and status.
    let probes = &duck["probes"];
    let error = |probe: &str, status: u16, kind: &str| {
        let p = &probes[probe];
        assert_eq!(p["status"], json!(status), "{probe}: {p}");
        assert_eq!(p["body"]["error"]["code"], json!(status), "{probe}: {p}");
        assert_eq!(p["body"]["error"]["type"], json!(kind), "{probe}: {p}");
        assert!(p["body"]["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    };
    error(
        "GET /v1/namespaces/no_such_ns",
        404,
        "NoSuchNamespaceException",
    );
    error(
        "GET /v1/namespaces/no_such_ns/tables",
        404,
        "NoSuchNamespaceException",
    );
    error(
        "GET /v1/namespaces/bronze/tables/no_such_table",
        404,
        "NoSuchTableException",
    );
    error("POST /v1/namespaces", 405, "UnsupportedOperationException");
    error(
        "DELETE /v1/namespaces/bronze/tables/web_events",
        405,
        "UnsupportedOperationException",
    );
    error("GET /v2/unknown", 404, "NoSuchEndpointException");
    assert_eq!(
        probes["GET /v1/namespaces"]["body"],
        json!({"namespaces": [["bronze"], ["gold"], ["quality"], ["silver"]]})
    );

    // The README's recipes, as written (run in the workspace, beside `./warehouse`).
    let purchases = counted
        .iter()
        .find(|(t, _)| t == "silver.purchases")
        .map(|(_, n)| n.to_string());
    let recipes = peer_json(
        "recipes.py",
        &[
            "--readme",
            &readme().display().to_string(),
            "--dir",
            &ws.path().display().to_string(),
            "--endpoint",
            &server.url,
        ],
    )?;
    let recipes = recipes.as_array().context("recipes: not an array")?;
    let kinds: Vec<&str> = recipes.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds, ["python", "python", "python", "sql"], "{recipes:?}");
    for recipe in recipes {
        assert_eq!(
            recipe["output"].as_str().map(str::to_string),
            purchases,
            "README recipe starting {}",
            recipe["first_line"]
        );
    }

    // A query naming a table the catalog does not have fails, saying which.
    let out = medallion_output(
        &[
            "query",
            "SELECT count(*) FROM bronze.nope",
            "--catalog",
            &catalog,
        ],
        ws.path(),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: query: ") && stderr.contains("bronze"),
        "{stderr}"
    );
    Ok(())
}
