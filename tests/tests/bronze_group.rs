//! Two pipeline processes in one consumer group split the partitions; stopping and restarting
//! one mid-run loses and duplicates nothing.

use std::time::Duration;

use anyhow::Result;
use e2e::*;

const PARTITIONS: i32 = 4;

fn events(from: usize, n: usize) -> Vec<(String, Vec<u8>)> {
    (from..from + n)
        .map(|i| {
            let user = format!("u{}", i % 101);
            (
                user.clone(),
                web_event(&format!("g-{i}"), &user, 1_767_225_600_000 + i as i64),
            )
        })
        .collect()
}

#[test]
fn two_workers_split_partitions_and_survive_a_restart() -> Result<()> {
    // Tansu's group coordinator answers heartbeats slowly once earlier tests have loaded the
    // shared broker, which turns into spurious rebalances: this test gets a fresh broker.
    let _broker = own_broker()?;
    let ws = Workspace::new()?;
    let topic = unique("group");
    create_topic(&topic, PARTITIONS)?;
    let spec = ws.web_spec(
        &topic,
        "bronze.group",
        r#"{ interval = "300ms", max_rows = 2000 }"#,
        GROUP_SETTINGS,
    )?;
    let log_a = ws.path().join("a.log");
    let log_b = ws.path().join("b.log");

    produce(&topic, &events(0, 10_000))?;
    let mut a = spawn_run(&spec, &log_a, &[])?;
    let mut b = spawn_run(&spec, &log_b, &[])?;
    std::thread::sleep(Duration::from_secs(8));
    produce(&topic, &events(10_000, 10_000))?;
    // Stopped the way an operator or Kubernetes stops it: SIGTERM, then gone. (Tansu 0.6.0
    // does not reliably rebalance away from a SIGKILLed member; bronze_crash covers SIGKILL.)
    terminate(&mut b)?;
    produce(&topic, &events(20_000, 10_000))?;
    std::thread::sleep(Duration::from_secs(2));
    let mut b = spawn_run(&spec, &log_b, &[])?;
    produce(&topic, &events(30_000, 10_000))?;

    let ends = end_offsets(&topic, PARTITIONS)?;
    let waited = ws.wait_for_offsets("bronze.group", &topic, &ends, Duration::from_secs(180));
    sigkill(&mut a);
    sigkill(&mut b);
    waited?;

    // Each worker owned a strict subset of the partitions at some point.
    for log in [&log_a, &log_b] {
        let text = std::fs::read_to_string(log)?;
        let split = text
            .lines()
            .filter(|l| l.contains("partitions assigned"))
            .any(|l| {
                let n = l.matches(&format!("\"{topic}\"")).count() as i32;
                n > 0 && n < PARTITIONS
            });
        assert!(
            split,
            "{} never held a share of the partitions:\n{text}",
            log.display()
        );
    }

    assert_exactly_once(&ws, "bronze.group", &ends)?;
    Ok(())
}
