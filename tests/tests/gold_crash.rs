//! Gold killed with SIGKILL again and again while it works through silver's snapshots: the
//! tables, alerts and late output it ends with equal those of an uninterrupted run, for
//! Iceberg gold tables and for Delta ones (against the uninterrupted run's Iceberg tables).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use e2e::{create_topic, kill_repeatedly, produce, read_topic, run_once, unique, Workspace};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KILLS: usize = 12;

/// Two gold tables over `silver.events`: tumbling windows in update mode (replace-files
/// commits) and sessions in final mode (restored final sessions), named `<prefix>_…`, with the
/// `table` settings added to each.
fn gold_spec(ws: &Workspace, prefix: &str, table: &str) -> Result<std::path::PathBuf> {
    let dlq = format!("{}.dlq", unique(prefix));
    let text = format!(
        r#"{head}
[[gold]]
table = "gold.{prefix}_minute"
source = "silver.events"
event_time = "event_time"
window = {{ tumbling = "1m" }}
watermark = {{ max_out_of_orderness = "10s", partition_column = "part", partitions = 2 }}
allowed_lateness = "1m"
emit = "update"
group_by = ["country"]
aggregates = [{{ name = "events", fn = "count" }}, {{ name = "revenue", fn = "sum", expr = "amount" }}]
alerts = [{{ name = "busy", when = "events >= 20", severity = "warning" }}]
dlq_topic = "{dlq}"
batch_snapshots = 1
poll = "100ms"

[[gold]]
table = "gold.{prefix}_sessions"
source = "silver.events"
event_time = "event_time"
window = {{ session = "20s" }}
watermark = {{ max_out_of_orderness = "10s", partition_column = "part", partitions = 2 }}
allowed_lateness = "10s"
group_by = ["user_id"]
aggregates = [{{ name = "events", fn = "count" }}, {{ name = "users", fn = "approx_count_distinct", expr = "event_id" }}]
alerts = [{{ name = "long", when = "events >= 4", severity = "info" }}]
dlq_topic = "{dlq}"
batch_snapshots = 1
poll = "100ms"
"#,
        head = ws.spec_head(""),
    );
    let text = text.replace("[[gold]]\n", &format!("[[gold]]\n{table}"));
    ws.write(&format!("{prefix}.toml"), &text)
}

/// The late output of a spec's gold tables: (table, event id) pairs (the DLQ is
/// at-least-once, so a record sent again before a crash's commit shows once here).
fn late(spec: &std::path::Path) -> Result<BTreeSet<(String, String)>> {
    let text = std::fs::read_to_string(spec)?;
    let topic = text
        .lines()
        .find_map(|l| l.strip_prefix("dlq_topic = \""))
        .and_then(|l| l.strip_suffix('"'))
        .context("no dlq_topic")?;
    let mut out = BTreeSet::new();
    for d in read_topic(topic)? {
        let row: serde_json::Value =
            serde_json::from_slice(d.value.as_deref().unwrap_or_default())?;
        let table = d
            .header("medallion.error.table")
            .split('_')
            .nth(1)
            .unwrap_or_default();
        out.insert((
            table.to_string(),
            row["event_id"].as_str().unwrap_or_default().to_string(),
        ));
    }
    Ok(out)
}

#[test]
fn gold_killed_repeatedly_equals_an_uninterrupted_run() -> Result<()> {
    killed_repeatedly("")
}

#[test]
fn delta_gold_killed_repeatedly_equals_an_uninterrupted_run() -> Result<()> {
    killed_repeatedly("table_format = \"delta\"\n")
}

/// The crashed run's gold tables have the `table` settings; the reference is Iceberg.
fn killed_repeatedly(table: &str) -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("gold");
    create_topic(&topic, 2)?;
    // Bronze and silver first, in many small commits: about 100 snapshots for gold.
    let spec = ws.web_spec(
        &topic,
        "bronze.web_events",
        r#"{ interval = "1s", max_rows = 30 }"#,
        "",
    )?;
    let silver = r#"
[[silver]]
table = "silver.events"
source = "bronze.web_events"
columns = [
  { name = "event_id", expr = "event_id" },
  { name = "user_id", expr = "user_id" },
  { name = "country", expr = "country" },
  { name = "amount", expr = "amount" },
  { name = "event_time", expr = "event_time" },
  { name = "part", expr = "_kafka_partition" },
]
batch_snapshots = 1
"#;
    ws.append(&spec, silver)?;
    let mut rng = StdRng::seed_from_u64(17);
    let base = 1_767_225_600_000i64;
    let events: Vec<(String, Vec<u8>)> = (0..3000)
        .map(|i| {
            let mut t = base + i * 400;
            if rng.gen_bool(0.2) {
                t -= rng.gen_range(0..30_000);
            } else if rng.gen_bool(0.03) {
                t -= rng.gen_range(60_000..240_000);
            }
            let user = format!("u{}", rng.gen_range(0..30));
            let country = ["DE", "FR", "US"][(i % 3) as usize];
            let event = serde_json::json!({
                "event_id": format!("e{i}"), "event_type": "purchase", "event_time": t,
                "user_id": user, "country": country,
                "amount": f64::from(rng.gen_range(1..100)),
            });
            (user, event.to_string().into_bytes())
        })
        .collect();
    produce(&topic, &events)?;
    run_once(&ws, &spec)?;

    let crashed = gold_spec(&ws, "crashed", table)?;
    let log = ws.path().join("gold.log");
    // At a random moment: replaying, aggregating, writing files or committing.
    let mid_run = kill_repeatedly(&crashed, &log, KILLS, 300, &mut rng)?;
    assert!(
        mid_run >= 10,
        "only {mid_run} of {KILLS} kills came after a commit"
    );
    run_once(&ws, &crashed)?;
    let reference = gold_spec(&ws, "reference", "")?;
    run_once(&ws, &reference)?;

    for table in ["minute", "sessions"] {
        let rows = |prefix: &str| {
            ws.duckdb(
                &format!("gold.{prefix}_{table}"),
                "SELECT epoch_us(window_start), epoch_us(window_end), * EXCLUDE (window_start, window_end) FROM t ORDER BY ALL",
            )
        };
        let (got, want) = (rows("crashed")?, rows("reference")?);
        assert!(!want.is_empty(), "{table}: the reference has no rows");
        assert_eq!(got.len(), want.len(), "{table}");
        assert_eq!(got, want, "{table}");
    }
    // Each alert once, as in the uninterrupted run.
    let alerts = |prefix: &str| {
        ws.duckdb(
            "gold.alerts",
            &format!(
                "SELECT replace(dataset, '{prefix}', ''), alert, epoch_us(window_start), epoch_us(window_end), group_key \
                 FROM t WHERE dataset LIKE 'gold.{prefix}%' ORDER BY ALL"
            ),
        )
    };
    let (got, want) = (alerts("crashed")?, alerts("reference")?);
    assert!(want.len() > 10, "{} alerts", want.len());
    assert_eq!(got, want, "alerts");
    let (got, want) = (late(&crashed)?, late(&reference)?);
    assert!(!want.is_empty(), "the reference has no late records");
    assert_eq!(got, want, "late output");
    if !table.is_empty() {
        // The crashed run's tables are Delta tables, not Iceberg ones of the same names.
        assert_eq!(ws.current_snapshot("gold.crashed_minute")?, None);
        assert!(ws.delta_log("gold.crashed_minute", &[])?["version"].as_i64() > Some(10));
    }
    Ok(())
}
