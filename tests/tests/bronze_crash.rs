//! Crash safety: the pipeline is SIGKILLed at random moments while records keep arriving and
//! restarted each time; in the end every offset is in the table exactly once, in an Iceberg
//! table and in a Delta table alike.

use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KILLS: usize = 20;
const PER_ROUND: usize = 1_500;

#[test]
fn every_offset_lands_exactly_once_across_sigkills() -> Result<()> {
    crash_and_restart("")
}

#[test]
fn every_offset_lands_exactly_once_in_a_delta_table_across_sigkills() -> Result<()> {
    crash_and_restart("table_format = \"delta\"\n")
}

#[test]
fn every_offset_lands_exactly_once_in_a_parquet_table_across_sigkills() -> Result<()> {
    crash_and_restart("table_format = \"parquet\"\n")
}

/// Files under `dir` whose names end with `suffix`.
fn walk(dir: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .map(|p| match p.is_dir() {
            true => walk(&p, suffix),
            false => usize::from(p.to_string_lossy().ends_with(suffix)),
        })
        .sum()
}

/// Kills and restarts a worker of a bronze table with the `table` settings added.
fn crash_and_restart(table: &str) -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("crash");
    create_topic(&topic, 3)?;
    let spec = ws.web_spec(
        &topic,
        "bronze.crash",
        r#"{ interval = "150ms", max_rows = 700 }"#,
        "",
    )?;
    ws.append(&spec, table)?;
    let log = ws.path().join("medallion.log");
    let mut rng = StdRng::seed_from_u64(7);
    let mut sent = 0usize;
    let batch = |n: usize, sent: &mut usize| -> Vec<(String, Vec<u8>)> {
        let out = (0..n)
            .map(|i| {
                let id = format!("c-{}", *sent + i);
                let user = format!("u{}", (*sent + i) % 97);
                let t = 1_767_225_600_000 + (*sent + i) as i64;
                (user.clone(), web_event(&id, &user, t))
            })
            .collect();
        *sent += n;
        out
    };

    let mut killed_after_commit = 0;
    for round in 0..KILLS {
        produce(&topic, &batch(PER_ROUND, &mut sent))?;
        let count = |what: &str| {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches(what)
                .count()
        };
        let before = count(" committed");
        // Each run joins its own consumer group: Tansu 0.6.0 keeps a SIGKILLed member's
        // partitions assigned to it instead of rebalancing them after its session times out.
        // Positions come from the table, not the group, so this changes nothing of what is
        // tested here; bronze_group covers sharing a group.
        let run_spec = ws.write(
            "crash-run.toml",
            &format!(
                "{}group_id = \"{topic}-{round}\"\n",
                std::fs::read_to_string(&spec)?
            ),
        )?;
        let mut child = spawn_run(&run_spec, &log, &[])?;
        if rng.gen_range(0..5) == 0 {
            // Sometimes during start-up (group join, dedupe rebuild).
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..1_500)));
        } else {
            // Otherwise once the worker is committing, at a random moment of its cycle:
            // decoding, writing data files, or between the files and the catalog commit.
            let deadline = Instant::now() + Duration::from_secs(60);
            while count(" committed") == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..600)));
        }
        sigkill(&mut child);
        let after = count(" committed");
        if after > before {
            killed_after_commit += 1;
        }
        eprintln!("round {round}: {} commits before the kill", after - before);
    }
    assert!(
        killed_after_commit >= KILLS / 2,
        "only {killed_after_commit} of {KILLS} runs committed before being killed: the kills do not exercise the commit path"
    );

    run_once(&ws, &spec)?;

    let ends = end_offsets(&topic, 3)?;
    assert_eq!(ends.iter().sum::<i64>() as usize, sent);
    assert_exactly_once(&ws, "bronze.crash", &ends)?;
    if table.contains("delta") {
        // The table is the Delta one (not an Iceberg table of the same name), and each
        // partition's `txn`, read by the deltalake package, holds its end offset.
        assert_eq!(ws.current_snapshot("bronze.crash")?, None);
        let stored = ws.delta_offsets("bronze.crash", &topic, 3)?;
        let ends: Vec<Option<i64>> = ends.iter().map(|e| Some(*e)).collect();
        assert_eq!(stored, ends);
    }
    if table.contains("parquet") {
        // DuckDB globbed the plain files above (`read_parquet(…/**/*.parquet, hive_partitioning
        // = true)`) and saw every offset once: no file of a killed, uncommitted batch.
        assert_eq!(ws.current_snapshot("bronze.crash")?, None);
        let days = ws.duckdb(
            "bronze.crash",
            "SELECT count(DISTINCT event_time_day) FROM t",
        )?;
        assert_eq!(days, vec![vec![serde_json::json!(1)]], "one day folder");
        let log = ws.parquet_log("bronze.crash")?;
        let last = log.iter().rev().find_map(|e| e.get("offsets")).cloned();
        let ends: serde_json::Map<String, serde_json::Value> = ends
            .iter()
            .enumerate()
            .map(|(p, e)| (p.to_string(), serde_json::json!(e)))
            .collect();
        let expected =
            serde_json::Map::from_iter([(topic.clone(), serde_json::Value::Object(ends))]);
        assert_eq!(
            last,
            Some(serde_json::Value::Object(expected)),
            "the log's offsets"
        );
        let staged = walk(&ws.warehouse().join("bronze").join("crash"), ".staged");
        eprintln!("{staged} staged files of killed batches left, unseen by DuckDB");
    }
    Ok(())
}
