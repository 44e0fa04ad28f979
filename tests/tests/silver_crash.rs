//! Silver killed with SIGKILL again and again while it works through bronze's snapshots: the
//! table it ends with equals, as a multiset of rows, the one an uninterrupted run builds.

use anyhow::Result;
use e2e::{broker, create_topic, kill_repeatedly, medallion_output, run_once, unique, Workspace};
use rand::rngs::StdRng;
use rand::SeedableRng;

const KILLS: usize = 12;

fn silver_spec(ws: &Workspace, table: &str) -> Result<std::path::PathBuf> {
    ws.write(
        &format!("{table}.toml"),
        &format!(
            r#"{head}
[[silver]]
table = "{table}"
source = "bronze.web_events"
filter = "event_type <> 'click'"
columns = [
  {{ name = "event_id", expr = "event_id" }},
  {{ name = "kind", expr = "upper(event_type)" }},
  {{ name = "user_id", expr = "user_id" }},
  {{ name = "amount", expr = "COALESCE(amount, 0)" }},
  {{ name = "event_time", expr = "event_time" }},
]
batch_snapshots = 1
poll = "100ms"
"#,
            head = ws.spec_head(""),
        ),
    )
}

#[test]
fn silver_killed_repeatedly_equals_an_uninterrupted_run() -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("web");
    create_topic(&topic, 2)?;
    create_topic(&format!("{topic}.dlq"), 1)?;
    // Bronze first, in many small commits: about 120 snapshots for silver to work through.
    let bronze = ws.web_spec(
        &topic,
        "bronze.web_events",
        r#"{ interval = "1s", max_rows = 50 }"#,
        "",
    )?;
    let out = medallion_output(
        &[
            "generate",
            "--brokers",
            &broker(),
            "--topic",
            &topic,
            "--events",
            "6000",
            "--seed",
            "9",
        ],
        ws.path(),
    )?;
    anyhow::ensure!(out.status.success(), "generate failed");
    run_once(&ws, &bronze)?;

    let crashed = silver_spec(&ws, "silver.crashed")?;
    let log = ws.path().join("silver.log");
    let mut rng = StdRng::seed_from_u64(3);
    // At a random moment of its work: transforming, writing files, or committing.
    let mid_run = kill_repeatedly(&crashed, &log, KILLS, 150, &mut rng)?;
    assert!(
        mid_run >= 10,
        "only {mid_run} of {KILLS} kills came after a commit"
    );
    run_once(&ws, &crashed)?;

    run_once(&ws, &silver_spec(&ws, "silver.reference")?)?;
    let rows = |table: &str| ws.duckdb(table, "SELECT * FROM t ORDER BY ALL");
    let (crashed, reference) = (rows("silver.crashed")?, rows("silver.reference")?);
    let oracle = ws.duckdb(
        "bronze.web_events",
        "SELECT count(*) FROM t WHERE event_type <> 'click'",
    )?;
    assert_eq!(
        serde_json::json!(reference.len()),
        oracle[0][0],
        "uninterrupted run vs bronze"
    );
    assert_eq!(crashed.len(), reference.len());
    assert_eq!(crashed, reference);
    Ok(())
}
