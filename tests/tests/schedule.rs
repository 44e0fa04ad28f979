//! `medallion schedule`: every fire time run or skipped exactly once, runs of a job never
//! overlapping, outcomes and missed fire times recorded in `ops.runs` (read back with DuckDB),
//! one scheduler per job, SIGTERM, and bad schedule files refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::{
    assert_exactly_once, broker, create_topic, end_offsets, medallion, medallion_output, produce,
    unique, web_event, Workspace,
};

/// A loaded broker can be slow to answer metadata requests.
const LOADED_BROKER: &str = r#"connect_timeout = "60s""#;

/// `medallion schedule FILE ARGS…` in the background; stdout (the window line) and stderr go
/// to files in the workspace named after `tag`.
fn spawn_schedule(ws: &Workspace, file: &Path, args: &[&str], tag: &str) -> Result<Child> {
    Ok(medallion()
        .arg("schedule")
        .arg(file)
        .args(args)
        .current_dir(ws.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(ws.path().join(format!("{tag}.out")))?)
        .stderr(std::fs::File::create(ws.path().join(format!("{tag}.log")))?)
        .spawn()?)
}

/// The window the scheduler printed: `scheduling N jobs from T0 until T1` (µs since the epoch;
/// `None` for `until stopped`).
fn window(ws: &Workspace, tag: &str) -> Result<(i64, Option<i64>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = std::fs::read_to_string(ws.path().join(format!("{tag}.out")))?;
        if let Some(line) = out.lines().find(|l| l.starts_with("scheduling ")) {
            let words: Vec<&str> = line.split(' ').collect();
            let at = |i: usize| -> Result<i64> {
                Ok(
                    chrono::DateTime::parse_from_rfc3339(words.get(i).context("short line")?)
                        .with_context(|| format!("{line:?}"))?
                        .timestamp_micros(),
                )
            };
            let until = match words.get(6) {
                Some(&"stopped") => None,
                _ => Some(at(6)?),
            };
            return Ok((at(4)?, until));
        }
        if Instant::now() > deadline {
            bail!("no window line; log:\n{}", log(ws, tag));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log(ws: &Workspace, tag: &str) -> String {
    std::fs::read_to_string(ws.path().join(format!("{tag}.log"))).unwrap_or_default()
}

fn wait_exit(child: &mut Child, limit: Duration) -> Result<Option<i32>> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    e2e::sigkill(child);
    bail!("still running after {limit:?}")
}

/// The fire times of "every `step_s` seconds" in `(from, to]` (µs); such a cron's seconds
/// field divides the minute, so they are the multiples of the step since the epoch.
fn fire_times(step_s: i64, from: i64, to: i64) -> Vec<i64> {
    let step = step_s * 1_000_000;
    let first = from.div_euclid(step) * step + step;
    (0..)
        .map(|k| first + k * step)
        .take_while(|t| *t <= to)
        .collect()
}

/// One row of `ops.runs`.
#[derive(Debug, Clone)]
struct Row {
    scheduled_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    outcome: String,
    exit_code: Option<i64>,
    duration_ms: Option<i64>,
    command: String,
    message: String,
}

/// The rows of `ops.runs` per job, by scheduled_at, as DuckDB reads them.
fn runs(ws: &Workspace) -> Result<BTreeMap<String, Vec<Row>>> {
    let rows = ws.duckdb(
        "ops.runs",
        "SELECT job, scheduled_at, started_at, finished_at, outcome, exit_code, duration_ms, command, \
         coalesce(message, ''), host FROM t ORDER BY job, scheduled_at, outcome",
    )?;
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in rows {
        let text = |i: usize| r[i].as_str().unwrap_or_default().to_string();
        assert!(!text(9).is_empty(), "no host in {r:?}");
        out.entry(text(0)).or_default().push(Row {
            scheduled_at: r[1].as_i64().context("scheduled_at")?,
            started_at: r[2].as_i64(),
            finished_at: r[3].as_i64(),
            outcome: text(4),
            exit_code: r[5].as_i64(),
            duration_ms: r[6].as_i64(),
            command: text(7),
            message: text(8),
        });
    }
    Ok(out)
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Runs never overlap, and every `skipped` row names the run of the job that was still going
/// at its fire time.
fn assert_no_overlap(job: &str, rows: &[Row]) {
    let mut ran: Vec<&Row> = rows.iter().filter(|r| r.started_at.is_some()).collect();
    ran.sort_by_key(|r| r.started_at);
    for pair in ran.windows(2) {
        assert!(
            pair[1].started_at >= pair[0].finished_at,
            "{job}: a run started before the previous one finished: {pair:#?}"
        );
    }
    for r in ran.iter() {
        let (Some(s), Some(f)) = (r.started_at, r.finished_at) else {
            panic!("{job}: run without start or finish: {r:?}");
        };
        assert!(
            s >= r.scheduled_at,
            "{job}: started before its fire time: {r:?}"
        );
        assert_eq!(
            r.duration_ms,
            Some((f - s) / 1000),
            "{job}: duration_ms of {r:?}"
        );
    }
    for skip in rows.iter().filter(|r| r.outcome == "skipped") {
        let Some(named) = skip
            .message
            .strip_prefix("overlap: the run scheduled at ")
            .and_then(|m| m.split(' ').next())
        else {
            panic!("{job}: skipped without an overlap: {skip:?}");
        };
        let Some(running) = ran.iter().find(|r| rfc3339(r.scheduled_at) == named) else {
            panic!("{job}: {skip:?} names no run of the job");
        };
        assert!(
            running.started_at.unwrap_or(i64::MAX) <= skip.scheduled_at + 1_000_000
                && running.finished_at.unwrap_or(0) >= skip.scheduled_at,
            "{job}: {skip:?} was not during {running:?}"
        );
    }
}

#[test]
fn fires_each_time_once_never_overlaps_records_outcomes_and_catches_up() -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("sched");
    create_topic(&topic, 1)?;
    let events: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| {
            let id = format!("e{i}");
            (id.clone(), web_event(&id, "u1", 1_767_225_600_000 + i))
        })
        .collect();
    produce(&topic, &events)?;
    let group = format!("group_id = \"{}\"", unique("sched"));
    let bronze = ws.write(
        "bronze.toml",
        &(ws.spec_head(LOADED_BROKER) + &ws.web_bronze(&topic, "bronze.web_events", &group)),
    )?;
    // Nothing listens on port 1: this job fails after its 3 s connect timeout.
    let unreachable = std::fs::read_to_string(&bronze)?
        .replace(&broker(), "127.0.0.1:1")
        .replace(LOADED_BROKER, r#"connect_timeout = "3s""#);
    ws.write("unreachable.toml", &unreachable)?;
    let schedule = schedule_file(
        &ws,
        &ws.catalog_uri(),
        r#"
[[job]]
name = "bronze"
cron = "*/3 * * * * *"
args = ["run", "--once", "bronze.toml"]
missed = "run_once"

[[job]]
name = "unreachable"
cron = "*/2 * * * * *"
args = ["run", "--once", "unreachable.toml"]

# Serves until stopped: always timed out, and every 3 s fire time during its 4 s overlaps.
[[job]]
name = "server"
cron = "*/3 * * * * *"
args = ["registry", "serve", "--addr", "127.0.0.1:0", "--store", "sqlite://./registry.db"]
timeout = "4s"
missed = "skip"
"#,
    )?;
    let steps = [("bronze", 3), ("server", 3), ("unreachable", 2)];

    let started = Instant::now();
    let mut first = spawn_schedule(&ws, &schedule, &["--for", "12s"], "first")?;
    let (t0, t1) = window(&ws, "first")?;
    let t1 = t1.context("--for gives an end")?;
    assert_eq!(t1 - t0, 12_000_000);

    // A second scheduler of the same jobs is refused before it runs anything.
    let out = medallion_output(
        &["schedule", schedule.to_str().unwrap_or_default()],
        ws.path(),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "job bronze is already scheduled by another scheduler (medallion schedule on"
        ) && stderr.contains(&format!("(pid {})", first.id())),
        "{stderr}"
    );

    assert_eq!(
        wait_exit(&mut first, Duration::from_secs(90))?,
        Some(0),
        "{}",
        log(&ws, "first")
    );
    // At least two fire times of every job pass with no scheduler.
    std::thread::sleep(Duration::from_secs(6));
    let mut second = spawn_schedule(&ws, &schedule, &["--for", "2s"], "second")?;
    let (t2, t3) = window(&ws, "second")?;
    let t3 = t3.context("--for gives an end")?;
    assert_eq!(
        wait_exit(&mut second, Duration::from_secs(90))?,
        Some(0),
        "{}",
        log(&ws, "second")
    );
    eprintln!("two schedulers ran in {:?}", started.elapsed());

    let runs = runs(&ws)?;
    assert_eq!(
        runs.keys().collect::<Vec<_>>(),
        ["bronze", "server", "unreachable"]
    );
    for (job, step) in steps {
        let rows = &runs[job];
        assert_no_overlap(job, rows);
        // Every fire time in each scheduler's window ran or was skipped, exactly once.
        let fired: Vec<i64> = rows
            .iter()
            .filter(|r| {
                r.outcome != "missed"
                    && ((r.scheduled_at > t0 && r.scheduled_at <= t1)
                        || (r.scheduled_at > t2 && r.scheduled_at <= t3))
            })
            .map(|r| r.scheduled_at)
            .collect();
        let mut expected = fire_times(step, t0, t1);
        expected.extend(fire_times(step, t2, t3));
        assert_eq!(fired, expected, "{job}: fire times run or skipped");
        // The gap: one `missed` row for all its fire times, or, with run_once, a run of the
        // latest at start and a `missed` row for the others.
        let gap = fire_times(step, t1, t2);
        let (latest, earlier) = gap.split_last().context("no fire time in the gap")?;
        assert!(
            !earlier.is_empty(),
            "{job}: one fire time in the gap {gap:?}"
        );
        let mut catch_up: Vec<(i64, &str)> = rows
            .iter()
            .filter(|r| r.outcome == "missed" || (r.scheduled_at > t1 && r.scheduled_at <= t2))
            .map(|r| (r.scheduled_at, r.outcome.as_str()))
            .collect();
        catch_up.sort();
        let expected: Vec<(i64, &str)> = match (job, earlier.last()) {
            ("bronze", Some(e)) => vec![(*e, "missed"), (*latest, "succeeded")],
            _ => vec![(*latest, "missed")],
        };
        assert_eq!(catch_up, expected, "{job}: rows of the gap {gap:?}");
        let missed = rows
            .iter()
            .find(|r| r.outcome == "missed")
            .context("no missed row")?;
        let (covered, policy) = match job {
            "bronze" => (earlier, "run_once"),
            _ => (&gap[..], "skip"),
        };
        let times = match covered {
            [one] => format!("1 fire time ({})", rfc3339(*one)),
            _ => format!(
                "{} fire times from {} to {}",
                covered.len(),
                rfc3339(covered[0]),
                rfc3339(covered[covered.len() - 1])
            ),
        };
        assert_eq!(
            missed.message,
            format!("{times} passed while no scheduler ran (missed = \"{policy}\")"),
            "{job}"
        );
        assert_eq!(
            (missed.started_at, missed.exit_code),
            (None, None),
            "{job}: {missed:?}"
        );
        assert_eq!(
            rows.len(),
            fired.len() + catch_up.len(),
            "{job}: rows {rows:#?}"
        );
    }

    // Outcomes.
    for r in runs["bronze"].iter().filter(|r| r.started_at.is_some()) {
        assert_eq!(
            (r.outcome.as_str(), r.exit_code),
            ("succeeded", Some(0)),
            "{r:?}"
        );
        assert_eq!(r.command, "medallion run --once bronze.toml");
    }
    for r in runs["unreachable"]
        .iter()
        .filter(|r| r.started_at.is_some())
    {
        assert_eq!(
            (r.outcome.as_str(), r.exit_code),
            ("failed", Some(1)),
            "{r:?}"
        );
        assert!(
            r.message.contains("cannot reach Kafka at 127.0.0.1:1"),
            "{r:?}"
        );
        assert!(
            r.message.len() <= 2048,
            "{} bytes of message",
            r.message.len()
        );
    }
    let server: Vec<&Row> = runs["server"]
        .iter()
        .filter(|r| r.started_at.is_some())
        .collect();
    for r in &server {
        assert_eq!(r.outcome, "timed_out", "{r:?}");
        assert!(
            r.message.starts_with("timed out after 4s: SIGTERM sent\n"),
            "{r:?}"
        );
        let d = r.duration_ms.unwrap_or_default();
        assert!((4_000..6_000).contains(&d), "{r:?}");
    }
    // 4 s runs every 3 s: run, skip, run, skip… in the first window.
    let first_window: Vec<&str> = runs["server"]
        .iter()
        .filter(|r| r.scheduled_at > t0 && r.scheduled_at <= t1)
        .map(|r| r.outcome.as_str())
        .collect();
    let alternating: Vec<&str> = (0..first_window.len())
        .map(|i| if i % 2 == 0 { "timed_out" } else { "skipped" })
        .collect();
    assert_eq!(first_window, alternating);
    assert!(runs["unreachable"].iter().any(|r| r.outcome == "skipped"));

    // The bronze runs loaded the topic once, whatever their number.
    assert_exactly_once(&ws, "bronze.web_events", &end_offsets(&topic, 1)?)?;
    Ok(())
}

/// `schedule.toml` in the workspace: `jobs` (TOML) on its warehouse and `catalog`.
fn schedule_file(ws: &Workspace, catalog: &str, jobs: &str) -> Result<PathBuf> {
    let head = format!(
        "[lakehouse]\nwarehouse = \"{}\"\ncatalog = \"{catalog}\"\n",
        ws.warehouse().display()
    );
    ws.write("schedule.toml", &(head + jobs))
}

#[test]
fn sigterm_stops_the_running_job_records_it_and_exits_0() -> Result<()> {
    let ws = Workspace::new()?;
    let schedule = schedule_file(
        &ws,
        &ws.catalog_uri(),
        r#"
[[job]]
name = "server"
cron = "*/5 * * * * *"
args = ["registry", "serve", "--addr", "127.0.0.1:0", "--store", "sqlite://./registry.db"]
timeout = "1m"
"#,
    )?;
    let mut child = spawn_schedule(&ws, &schedule, &["--shutdown-timeout", "10s"], "term")?;
    let (_, until) = window(&ws, "term")?;
    assert_eq!(until, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log(&ws, "term").contains("registry serving") {
        ensure!(
            Instant::now() < deadline,
            "the job did not start:\n{}",
            log(&ws, "term")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    ensure!(status.success(), "kill -TERM failed");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30))?,
        Some(0),
        "{}",
        log(&ws, "term")
    );
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM"
    );

    let runs = runs(&ws)?;
    let rows = &runs["server"];
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = &rows[0];
    assert_eq!(
        (r.outcome.as_str(), r.exit_code),
        ("succeeded", Some(0)),
        "{r:?}"
    );
    assert!(
        r.message
            .starts_with("stopped by the scheduler's shutdown: SIGTERM sent\n")
            && r.message
                .contains("signal received: finishing open requests"),
        "{r:?}"
    );
    eprintln!("SIGTERM → run stopped, recorded, exit 0 in {took:?}");
    Ok(())
}

#[test]
fn a_killed_scheduler_takes_its_runs_with_it() -> Result<()> {
    let ws = Workspace::new()?;
    let schedule = schedule_file(
        &ws,
        &ws.catalog_uri(),
        r#"
[[job]]
name = "server"
cron = "*/2 * * * * *"
args = ["registry", "serve", "--addr", "127.0.0.1:0", "--store", "sqlite://./registry.db"]
"#,
    )?;
    let mut child = spawn_schedule(&ws, &schedule, &[], "kill")?;
    window(&ws, "kill")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        let text = log(&ws, "kill");
        let pid = text
            .lines()
            .find(|l| l.contains("run started") && text.contains("registry serving"))
            .and_then(|l| l.split("pid=").nth(1))
            .and_then(|p| p.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            break pid;
        }
        ensure!(Instant::now() < deadline, "the job did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                !stat
                    .rsplit(") ")
                    .next()
                    .unwrap_or_default()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    };
    assert!(alive(run), "the run {run} is not running");
    e2e::sigkill(&mut child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(run) {
        ensure!(
            Instant::now() < deadline,
            "the run {run} outlived its scheduler"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its lock went with it too.
    let out = medallion_output(&["schedule", "schedule.toml", "--for", "1s"], ws.path())?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn one_scheduler_per_job_on_a_postgresql_catalog_too() -> Result<()> {
    let ws = Workspace::new()?;
    let catalog = e2e::postgres_database("sched")?;
    let schedule = schedule_file(
        &ws,
        &catalog,
        r#"
[[job]]
name = "server"
cron = "*/2 * * * * *"
args = ["registry", "serve", "--addr", "127.0.0.1:0", "--store", "sqlite://./registry.db"]
timeout = "1s"
"#,
    )?;
    let mut first = spawn_schedule(&ws, &schedule, &["--for", "5s"], "pg-first")?;
    window(&ws, "pg-first")?;
    let out = medallion_output(&["schedule", "schedule.toml", "--for", "1s"], ws.path())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "job server is already scheduled by another scheduler (medallion schedule on"
        ) && stderr.contains(&format!("(pid {})", first.id())),
        "{stderr}"
    );
    assert_eq!(
        wait_exit(&mut first, Duration::from_secs(60))?,
        Some(0),
        "{}",
        log(&ws, "pg-first")
    );
    // The lock went with the process.
    let out = medallion_output(&["schedule", "schedule.toml", "--for", "1s"], ws.path())?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn bad_schedule_files_are_refused_naming_the_file_and_key() -> Result<()> {
    let ws = Workspace::new()?;
    let good = format!(
        r#"
[lakehouse]
warehouse = "{warehouse}"

[[job]]
name = "a"
cron = "0 */5 * * * *"
args = ["run", "--once", "spec.toml"]

[[job]]
name = "b"
cron = "*/5 * * * *"
args = ["run", "--once", "spec.toml"]
timeout = "10m"
"#,
        warehouse = ws.warehouse().display(),
    );
    let refused = |text: &str, expect: &[&str]| -> Result<()> {
        let file: PathBuf = ws.write("bad.toml", text)?;
        let out = medallion_output(&["schedule", file.to_str().unwrap_or_default()], ws.path())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for e in expect {
            assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
        }
        Ok(())
    };
    refused(
        &good.replace("timeout = \"10m\"", "timeout = \"10m\"\nretries = 3"),
        &["bad.toml (line 15, key `job`): unknown field `retries`"],
    )?;
    refused(
        &good.replace("*/5 * * * *\"", "*/5 * * *\""),
        &["bad.toml: job[1].cron (job \"b\")", "not a cron expression"],
    )?;
    refused(
        &good.replace("0 */5 * * * *", "0 */5 * * * * 2026"),
        &["bad.toml: job[0].cron (job \"a\")"],
    )?;
    refused(
        &good.replace("name = \"b\"", "name = \"a\""),
        &[
            "bad.toml: job[1].name (job \"a\")",
            "another job has this name",
        ],
    )?;
    refused(
        &good.replace("name = \"b\"", "name = \"b/c\""),
        &["bad.toml: job[1].name", "letters, digits"],
    )?;
    refused(
        &good.replace(
            "[\"run\", \"--once\", \"spec.toml\"]\n\n",
            "[\"run\", \"--onse\", \"spec.toml\"]\n\n",
        ),
        &[
            "bad.toml: job[0].args (job \"a\")",
            "not a medallion command",
            "--onse",
        ],
    )?;
    refused(
        &good.replace(
            "[\"run\", \"--once\", \"spec.toml\"]\n\n",
            "[\"frobnicate\"]\n\n",
        ),
        &["bad.toml: job[0].args", "frobnicate"],
    )?;
    refused(
        &good.replace(
            "[\"run\", \"--once\", \"spec.toml\"]\n\n",
            "[\"schedule\", \"other.toml\"]\n\n",
        ),
        &["bad.toml: job[0].args", "cannot run `medallion schedule`"],
    )?;
    refused(
        &good.replace("\"10m\"", "\"10 minutes\""),
        &["bad.toml", "job.timeout", "unknown unit"],
    )?;
    refused(
        &good.replace("timeout = \"10m\"", "missed = \"catch_up\""),
        &["bad.toml", "job.missed", "run_once"],
    )?;
    refused(
        &good.replace("timeout = \"10m\"", "overlap = \"allow\""),
        &["bad.toml", "job.overlap", "skip"],
    )?;
    refused(
        "[lakehouse]\nwarehouse = \"./w\"\n",
        &["bad.toml: job: at least one [[job]]"],
    )?;
    refused("[[job]\nname=", &["bad.toml"])?;
    let out = medallion_output(&["schedule", "nope.toml"], ws.path())?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml: cannot read"));
    // Refused before anything ran: no catalog, no ops.runs.
    assert!(!ws.warehouse().exists(), "the warehouse was created");
    Ok(())
}
