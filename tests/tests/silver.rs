//! Silver tables built from a bronze table by `medallion run`, checked against DuckDB
//! computing the same definition over bronze; incremental runs add exactly the new rows.

use anyhow::Result;
use e2e::{broker, create_topic, medallion_output, run_once, unique, Workspace};

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

[[silver]]
table = "silver.page_views"
source = "bronze.web_events"
filter = "event_type = 'page_view'"
columns = [
  { name = "event_id", expr = "event_id" },
  { name = "page", expr = "lower(page)" },
  { name = "user_id", expr = "user_id" },
  { name = "event_time", expr = "event_time" },
]
"#;

/// The same definitions, in DuckDB's SQL, over the bronze table.
const ORACLES: [(&str, &str); 2] = [
    (
        "silver.purchases",
        "SELECT event_id, upper(trim(user_id)), amount * 100, COALESCE(currency, 'EUR'), CASE country WHEN 'DE' THEN 'Germany' WHEN 'US' THEN 'United States' ELSE 'other' END, event_time FROM t WHERE event_type = 'purchase' ORDER BY event_id",
    ),
    (
        "silver.page_views",
        "SELECT event_id, lower(page), user_id, event_time FROM t WHERE event_type = 'page_view' ORDER BY event_id",
    ),
];

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

fn assert_silver_matches_bronze(ws: &Workspace) -> Result<usize> {
    let mut total = 0;
    for (table, oracle) in ORACLES {
        let expected = ws.duckdb("bronze.web_events", oracle)?;
        let got = ws.duckdb(table, "SELECT * FROM t ORDER BY event_id")?;
        assert!(!expected.is_empty(), "{table}: the oracle found no rows");
        assert_eq!(got.len(), expected.len(), "{table}: row count");
        assert_eq!(got, expected, "{table}: rows");
        total += got.len();
    }
    Ok(total)
}

#[test]
fn silver_tables_equal_their_definitions_over_bronze_run_after_run() -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("web");
    create_topic(&topic, 3)?;
    create_topic(&format!("{topic}.dlq"), 1)?;
    let spec = ws.web_spec(&topic, "bronze.web_events", r#"{ interval = "1s" }"#, "")?;
    let text = std::fs::read_to_string(&spec)? + PURCHASE_COLUMNS;
    std::fs::write(&spec, text)?;

    generate(&ws, &topic, "3000", "5")?;
    run_once(&ws, &spec)?;
    let first = assert_silver_matches_bronze(&ws)?;

    // A second run reads only the bronze snapshots committed since the first one.
    generate(&ws, &topic, "2000", "6")?;
    run_once(&ws, &spec)?;
    let second = assert_silver_matches_bronze(&ws)?;
    assert!(
        second > first,
        "{second} rows after the second run, {first} before"
    );

    // Nothing new: a third run commits nothing and changes nothing.
    run_once(&ws, &spec)?;
    assert_eq!(assert_silver_matches_bronze(&ws)?, second);
    Ok(())
}

#[test]
fn a_bad_expression_is_refused_at_start_naming_table_and_column() -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("web");
    create_topic(&topic, 1)?;
    let spec = ws.web_spec(&topic, "bronze.web_events", r#"{ interval = "1s" }"#, "")?;
    let bad = PURCHASE_COLUMNS.replace("upper(trim(user_id))", "upper(trim(user_idd))");
    std::fs::write(&spec, std::fs::read_to_string(&spec)? + &bad)?;
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
