//! How `medallion run` is run: `--once` (cron, Airflow, Kubernetes CronJob) and stopped by a
//! signal, within a bound.

use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::{
    assert_exactly_once, assert_view_layers, create_topic, end_offsets, minute_events, own_broker,
    produce, run_once, spawn_run, unique, Workspace, VIEW_LAYERS,
};

/// A loaded broker can be slow to answer metadata requests.
const LOADED_BROKER: &str = r#"connect_timeout = "60s""#;

#[test]
fn once_commits_everything_and_a_second_once_commits_nothing() -> Result<()> {
    // A broker of its own: group and metadata timing must not depend on earlier tests' load.
    let _broker = own_broker()?;
    let ws = Workspace::new()?;
    let topic = unique("once");
    create_topic(&topic, 3)?;
    let spec = ws.web_spec(
        &topic,
        "bronze.web_events",
        r#"{ interval = "5s", max_rows = 20000 }"#,
        LOADED_BROKER,
    )?;
    std::fs::write(&spec, with_group(&spec, "once")? + VIEW_LAYERS)?;
    produce(&topic, &minute_events("a", 100_000))?;

    run_once(&ws, &spec)?;
    // 100,000 events 10 ms apart: 16 full minutes are final, the 17th is still open.
    assert_view_layers(&ws, &topic, 3, 100_000)?;

    let tables = ["bronze.web_events", "silver.views", "gold.views_per_minute"];
    let before = ws.current_snapshots(&tables)?;
    let started = Instant::now();
    run_once(&ws, &spec)?;
    let second = started.elapsed();
    assert_eq!(
        ws.current_snapshots(&tables)?,
        before,
        "a second --once with nothing new committed something"
    );
    assert!(
        second < Duration::from_secs(20),
        "the second --once took {second:?}"
    );
    eprintln!("second --once with nothing new: {second:?}");
    Ok(())
}

/// Starts a continuous run whose batches only commit at shutdown, lands 5,000 events in the
/// topic and gives it 8 s to consume them (nothing outside the process shows its progress
/// before a commit).
fn run_with_open_batch(ws: &Workspace, topic: &str, extra: &[&str]) -> Result<std::process::Child> {
    let spec = ws.web_spec(
        topic,
        "bronze.web_events",
        r#"{ interval = "1h", max_rows = 1000000 }"#,
        LOADED_BROKER,
    )?;
    // A group of its own (every test's is): a process that exits without leaving it keeps
    // its partitions until the broker evicts it, and other tests' runs must not wait for that.
    std::fs::write(&spec, with_group(&spec, "group")?)?;
    let child = spawn_run(&spec, &ws.path().join("run.log"), extra)?;
    produce(topic, &minute_events("b", 5_000))?;
    std::thread::sleep(Duration::from_secs(8));
    Ok(child)
}

/// The spec's text with the bronze table in a consumer group of its own.
fn with_group(spec: &std::path::Path, prefix: &str) -> Result<String> {
    let text: Vec<String> = std::fs::read_to_string(spec)?
        .lines()
        .filter(|l| !l.starts_with("group_id"))
        .map(|l| match l == "table = \"bronze.web_events\"" {
            true => format!("{l}\ngroup_id = \"{}\"", unique(prefix)),
            false => l.to_string(),
        })
        .collect();
    Ok(text.join("\n"))
}

fn sigterm(child: &std::process::Child) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    Ok(())
}

/// Waits for the child to exit; its status and how long it took.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Result<(Option<i32>, Duration)> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            return Ok((status.code(), started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("still running {limit:?} after SIGTERM")
}

#[test]
fn sigterm_commits_the_open_batch_within_the_bound_and_a_restart_goes_on_exactly() -> Result<()> {
    // A broker of its own: group and metadata timing must not depend on earlier tests' load.
    let _broker = own_broker()?;
    let ws = Workspace::new()?;
    let topic = unique("term");
    create_topic(&topic, 2)?;
    let mut child = run_with_open_batch(&ws, &topic, &["--shutdown-timeout", "20s"])?;
    assert_eq!(
        ws.current_snapshot("bronze.web_events")?,
        None,
        "committed before the signal"
    );
    sigterm(&child)?;
    let (code, took) = wait_exit(&mut child, Duration::from_secs(25))?;
    assert_eq!(code, Some(0), "exit status after SIGTERM");
    assert!(took < Duration::from_secs(20), "exited after {took:?}");
    // The open batch is committed whole: every record consumed before the signal (under
    // load, not necessarily all that were produced), once.
    let stored = ws.stored_offsets("bronze.web_events")?;
    let consumed: Vec<i64> = (0..2).map(|p| stored.get(&topic, p).unwrap_or(0)).collect();
    assert!(
        consumed.iter().sum::<i64>() > 0,
        "nothing committed at shutdown"
    );
    assert_exactly_once(&ws, "bronze.web_events", &consumed)?;

    // A restart goes on exactly where the table says.
    produce(&topic, &minute_events("c", 1_000))?;
    let spec = ws.path().join("bronze_web_events.toml");
    run_once(&ws, &spec)?;
    assert_exactly_once(&ws, "bronze.web_events", &end_offsets(&topic, 2)?)?;
    eprintln!("SIGTERM → exit 0 in {took:?}");
    Ok(())
}

#[test]
fn a_shutdown_that_outlasts_its_bound_exits_and_loses_nothing() -> Result<()> {
    // A broker of its own: group and metadata timing must not depend on earlier tests' load.
    let _broker = own_broker()?;
    let ws = Workspace::new()?;
    let topic = unique("bound");
    create_topic(&topic, 2)?;
    // A bound no commit can meet: the process exits without committing its open batch.
    let mut child = run_with_open_batch(&ws, &topic, &["--shutdown-timeout", "1ms"])?;
    sigterm(&child)?;
    let (code, took) = wait_exit(&mut child, Duration::from_secs(10))?;
    assert_eq!(code, Some(1), "exit status when the bound passes");
    let log = std::fs::read_to_string(ws.path().join("run.log"))?;
    assert!(
        log.contains("did not commit within the shutdown timeout"),
        "{log}"
    );
    // Nothing half-committed, and a restart lands every record once. The dead process did
    // not leave its consumer group, whose partitions stay with it until its session times
    // out, so the restart joins another group: positions come from the table either way.
    assert_eq!(ws.current_snapshot("bronze.web_events")?, None);
    let spec = ws.path().join("bronze_web_events.toml");
    let restart = ws.write("restart.toml", &with_group(&spec, "restart")?)?;
    run_once(&ws, &restart)?;
    assert_exactly_once(&ws, "bronze.web_events", &end_offsets(&topic, 2)?)?;
    eprintln!("bound passed → exit 1 in {took:?}");
    Ok(())
}
