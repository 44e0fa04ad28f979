//! `medallion schedule`: fires `medallion` commands (`run --once`, maintenance, reports) on
//! cron expressions, as child processes of the same binary, and records every fire time in
//! `ops.runs`.
//!
//! Each job has its own task. A fire time that comes while the job's previous run still goes
//! on is not started but recorded as `skipped`, and a lock per job (see [`lock`]) keeps a
//! second scheduler from running the same job at all, so two runs of one job never overlap.
//! Fire times are taken one after the other from the cron expression (not from the clock), so
//! a late wake-up fires, or skips, every one of them: none goes unrecorded.

mod config;
mod lock;
mod runs;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::time::Instant;

use config::{Job, MissedPolicy, ScheduleFile};
use lock::JobLocks;
use runs::{Outcome, RunRecord};

/// How much of a run's stderr is kept as its `message`.
const TAIL_BYTES: usize = 2048;
/// How many missed fire times are counted at most (an every-second cron over a long gap).
const MAX_COUNTED: usize = 10_000;

#[derive(clap::Args)]
pub struct ScheduleArgs {
    /// The schedule file: `[lakehouse]` (where `ops.runs` is kept) and `[[job]]` entries.
    schedule: PathBuf,
    /// Fire only the fire times within this long from the start (e.g. 310s, 2h), let the runs
    /// finish, and exit; default: until SIGTERM or SIGINT.
    #[arg(long = "for", value_parser = pipelines::spec::parse_duration)]
    run_for: Option<Duration>,
    /// How long a job gets to exit after SIGTERM (sent at the scheduler's shutdown, or when the
    /// job's timeout passes) before it is killed (SIGKILL).
    #[arg(long, default_value = "30s", value_parser = pipelines::spec::parse_duration, env = "MEDALLION_SHUTDOWN_TIMEOUT")]
    shutdown_timeout: Duration,
}

/// What every job task shares.
struct Shared {
    exe: PathBuf,
    grace: Duration,
    /// No fire time after this.
    until: Option<DateTime<Utc>>,
    records: mpsc::UnboundedSender<RunRecord>,
    locks: Mutex<JobLocks>,
    /// 1 after the first SIGTERM or SIGINT (stop firing, SIGTERM the runs), 2 after the second
    /// (SIGKILL them).
    stop: watch::Receiver<u8>,
}

/// Runs the schedule until `--for` passes or a signal stops it; `Ok(false)` when a run had to
/// be killed at shutdown or could not be recorded.
impl ScheduleArgs {
    pub fn file(&self) -> &Path {
        &self.schedule
    }
}

/// Reads and checks the schedule file, as `run` does first; each job's command line.
pub fn check_file(args: &ScheduleArgs) -> Result<Vec<Vec<String>>> {
    let (_, jobs) = ScheduleFile::load(&args.schedule)?;
    Ok(jobs.into_iter().map(|job| job.spec.args).collect())
}

pub async fn run(args: ScheduleArgs) -> Result<bool> {
    let origin = args.schedule.display().to_string();
    let (file, jobs) = ScheduleFile::load(&args.schedule)?;
    let catalog = lakehouse::connect(&(&file.lakehouse).into())
        .await
        .with_context(|| format!("{origin}: lakehouse.catalog"))?;
    let names: Vec<&str> = jobs.iter().map(|j| j.spec.name.as_str()).collect();
    let locks = JobLocks::acquire(&file.lakehouse.catalog, &names).await?;
    let table = runs::open(catalog).await?;
    let last = runs::last_scheduled(&table).await?;
    let exe = std::env::current_exe().context("cannot find the medallion binary")?;
    let stop = stop_on_signal(args.shutdown_timeout)?;
    let start = Utc::now();
    let until = match args.run_for {
        Some(d) => Some(start + chrono::Duration::from_std(d).context("--for is too long")?),
        None => None,
    };
    // One line on stdout that scripts (and the tests) can read the window from.
    println!(
        "scheduling {} jobs from {} until {}",
        jobs.len(),
        rfc3339(start),
        until.map_or("stopped".to_string(), rfc3339)
    );
    let (records, recorder) = runs::spawn_recorder(table);
    let shared = Arc::new(Shared {
        exe,
        grace: args.shutdown_timeout,
        until,
        records,
        locks: Mutex::new(locks),
        stop,
    });
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let last = last.get(&job.spec.name).copied();
            tokio::spawn(job_loop(job, shared.clone(), start, last))
        })
        .collect();
    let mut clean = true;
    for task in futures::future::join_all(tasks).await {
        match task {
            Ok(Ok(c)) => clean &= c,
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "a job stopped");
                clean = false;
            }
            Err(e) => {
                tracing::error!(error = %e, "a job task failed");
                clean = false;
            }
        }
    }
    // The last sender goes with `shared`: the recorder writes what is left and ends.
    drop(shared);
    let unrecorded = recorder.await.context("the ops.runs recorder failed")?;
    for r in &unrecorded {
        tracing::error!(job = %r.job, scheduled_at = %rfc3339(r.scheduled_at), outcome = r.outcome.as_str(), message = ?r.message, "run not recorded in {}", runs::RUNS_TABLE);
    }
    Ok(clean && unrecorded.is_empty())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// 1 on the first SIGTERM or SIGINT, 2 on the second.
fn stop_on_signal(grace: Duration) -> Result<watch::Receiver<u8>> {
    let (tx, rx) = watch::channel(0u8);
    let mut signals = crate::signals::StopSignals::listen()?;
    tokio::spawn(async move {
        for level in 1..=2u8 {
            signals.recv().await;
            match level {
                1 => {
                    tracing::info!(grace = ?grace, "signal received: no more fire times; stopping the running jobs (SIGTERM)")
                }
                _ => tracing::warn!("second signal: killing the running jobs"),
            }
            let _ = tx.send(level);
        }
        // Keep the sender: a closed channel would read as a change.
        std::future::pending::<()>().await;
    });
    Ok(rx)
}

/// A run under way.
struct Running {
    child: tokio::process::Child,
    scheduled_at: DateTime<Utc>,
    started_at: DateTime<Utc>,
    started: Instant,
    /// The last [`TAIL_BYTES`] of its stderr, once the pipe closes.
    tail: tokio::task::JoinHandle<Vec<u8>>,
    timed_out: bool,
    shutdown: bool,
    /// When SIGKILL follows the SIGTERM sent.
    kill_at: Option<Instant>,
    killed: bool,
}

impl Running {
    /// The next moment something is due: SIGTERM at the timeout, or SIGKILL after the grace.
    fn deadline(&self, timeout: Option<Duration>) -> Option<Instant> {
        match (self.killed, self.kill_at) {
            (true, _) => None,
            (false, Some(at)) => Some(at),
            (false, None) => timeout.map(|t| self.started + t),
        }
    }

    fn terminate(&mut self, grace: Duration) {
        if self.kill_at.is_none() {
            if let Some(pid) = self.child.id() {
                // SAFETY: a plain kill(2) of our own child, which has not been reaped yet (its
                // id is still known), so the pid cannot belong to another process.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
            self.kill_at = Some(Instant::now() + grace);
        }
    }

    fn kill(&mut self) {
        if !self.killed {
            let _ = self.child.start_kill();
            self.killed = true;
        }
    }
}

enum Event {
    Wake,
    Exited(std::io::Result<ExitStatus>),
    Deadline,
    Stop(u8),
}

/// Fires one job until the schedule ends; `Ok(false)` if a run had to be killed at shutdown.
async fn job_loop(
    job: Job,
    shared: Arc<Shared>,
    start: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
) -> Result<bool> {
    let name = job.spec.name.clone();
    let mut next = job.next_after(start)?;
    tracing::info!(job = %name, cron = %job.spec.cron, next = %rfc3339(next), timeout = ?job.spec.timeout, missed = ?job.spec.missed, overlap = ?job.spec.overlap, "job scheduled");
    let mut running = catch_up(&job, &shared, start, last).await;
    let mut stop = shared.stop.clone();
    let mut stopping = *stop.borrow_and_update();
    let mut clean = true;
    loop {
        let firing = stopping == 0 && shared.until.is_none_or(|u| next <= u);
        if !firing && running.is_none() {
            return Ok(clean);
        }
        let wake = (next - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            // Re-read the wall clock at least every minute: a long monotonic sleep drifts.
            .min(Duration::from_secs(60));
        let deadline = running.as_ref().and_then(|r| r.deadline(job.spec.timeout));
        let event = tokio::select! {
            _ = tokio::time::sleep(wake), if firing => Event::Wake,
            status = wait(&mut running), if running.is_some() => Event::Exited(status),
            _ = sleep_until(deadline), if deadline.is_some() => Event::Deadline,
            changed = stop.changed(), if stopping < 2 => match changed {
                Ok(()) => Event::Stop(*stop.borrow_and_update()),
                Err(_) => Event::Stop(2),
            },
        };
        match event {
            Event::Wake if Utc::now() >= next => {
                let scheduled = next;
                next = job.next_after(next)?;
                match &running {
                    Some(r) => record(
                        &shared,
                        skipped(
                            &job,
                            scheduled,
                            format!(
                                "overlap: the run scheduled at {} (started {}) was still running",
                                rfc3339(r.scheduled_at),
                                rfc3339(r.started_at)
                            ),
                        ),
                    ),
                    None => running = start_run(&job, &shared, scheduled).await,
                }
            }
            Event::Wake => {}
            Event::Exited(status) => {
                if let Some(r) = running.take() {
                    finish(&job, &shared, r, status).await;
                }
            }
            Event::Deadline => {
                if let Some(r) = running.as_mut() {
                    if r.kill_at.is_none() {
                        tracing::warn!(job = %name, timeout = ?job.spec.timeout, "run timed out: SIGTERM");
                        r.timed_out = true;
                        r.terminate(shared.grace);
                    } else {
                        tracing::warn!(job = %name, grace = ?shared.grace, "run did not exit after SIGTERM: SIGKILL");
                        clean &= !r.shutdown;
                        r.kill();
                    }
                }
            }
            Event::Stop(level) => {
                stopping = level;
                if let Some(r) = running.as_mut() {
                    r.shutdown = true;
                    r.terminate(shared.grace);
                    if level >= 2 {
                        clean = false;
                        r.kill();
                    }
                }
            }
        }
    }
}

async fn wait(running: &mut Option<Running>) -> std::io::Result<ExitStatus> {
    match running {
        Some(r) => r.child.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// At start: the fire times that passed since the job's last row in `ops.runs` while no
/// scheduler ran are recorded as `missed`, or, with `missed = "run_once"`, the latest of them
/// runs now.
async fn catch_up(
    job: &Job,
    shared: &Shared,
    start: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
) -> Option<Running> {
    let last = last?;
    let latest = job.latest_at_or_before(start).filter(|t| *t > last)?;
    let mut missed = Vec::new();
    let mut t = last;
    while missed.len() < MAX_COUNTED {
        match job.next_after(t) {
            Ok(n) if n <= latest => {
                missed.push(n);
                t = n;
            }
            _ => break,
        }
    }
    let (run_latest, skipped) = match job.spec.missed {
        MissedPolicy::Skip => (false, &missed[..]),
        MissedPolicy::RunOnce => (true, &missed[..missed.len().saturating_sub(1)]),
    };
    if let (Some(first), Some(end)) = (skipped.first(), skipped.last()) {
        let times = match (skipped.len(), missed.len() >= MAX_COUNTED) {
            (1, _) => format!("1 fire time ({})", rfc3339(*end)),
            (n, capped) => format!(
                "{}{n} fire times from {} to {}",
                if capped { "at least " } else { "" },
                rfc3339(*first),
                rfc3339(*end)
            ),
        };
        let message = format!(
            "{times} passed while no scheduler ran (missed = {:?})",
            match job.spec.missed {
                MissedPolicy::Skip => "skip",
                MissedPolicy::RunOnce => "run_once",
            }
        );
        tracing::warn!(job = %job.spec.name, "{message}");
        record(
            shared,
            RunRecord {
                job: job.spec.name.clone(),
                scheduled_at: *end,
                started_at: None,
                finished_at: None,
                outcome: Outcome::Missed,
                exit_code: None,
                command: command_line(&job.spec.args),
                message: Some(message),
            },
        );
    }
    match run_latest {
        true => {
            tracing::info!(job = %job.spec.name, scheduled_at = %rfc3339(latest), "running the latest missed fire time now");
            start_run(job, shared, latest).await
        }
        false => None,
    }
}

fn skipped(job: &Job, scheduled_at: DateTime<Utc>, message: String) -> RunRecord {
    tracing::warn!(job = %job.spec.name, scheduled_at = %rfc3339(scheduled_at), "not started: {message}");
    RunRecord {
        job: job.spec.name.clone(),
        scheduled_at,
        started_at: None,
        finished_at: None,
        outcome: Outcome::Skipped,
        exit_code: None,
        command: command_line(&job.spec.args),
        message: Some(message),
    }
}

fn record(shared: &Shared, row: RunRecord) {
    if let Err(e) = shared.records.send(row) {
        tracing::error!(job = %e.0.job, "the ops.runs recorder is gone: run not recorded");
    }
}

/// `medallion ARGS…` as a shell would take it back.
fn command_line(args: &[String]) -> String {
    let quoted = args.iter().map(|a| {
        match a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
            true => format!("'{}'", a.replace('\'', r"'\''")),
            false => a.clone(),
        }
    });
    std::iter::once("medallion".to_string())
        .chain(quoted)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts a run of the job for `scheduled_at`, if its lock is still held; a run that cannot
/// start is recorded at once.
async fn start_run(job: &Job, shared: &Shared, scheduled_at: DateTime<Utc>) -> Option<Running> {
    let name = &job.spec.name;
    if let Err(e) = shared.locks.lock().await.still_held(name).await {
        record(
            shared,
            skipped(job, scheduled_at, format!("the job's lock is lost: {e:#}")),
        );
        return None;
    }
    let started_at = Utc::now();
    let mut command = tokio::process::Command::new(&shared.exe);
    command
        .args(&job.spec.args)
        .env("MEDALLION_JOB", name)
        .env("MEDALLION_SCHEDULED_AT", rfc3339(scheduled_at))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C in the terminal reaches the scheduler only, which
        // stops the runs itself.
        .process_group(0)
        .kill_on_drop(true);
    let scheduler = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and raise are async-signal-safe, as a pre_exec hook must be.
    unsafe {
        command.pre_exec(move || {
            // A run outliving a killed scheduler (SIGKILL, OOM) could overlap the run a
            // restarted scheduler starts: the kernel kills it with its scheduler.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The scheduler died before the prctl.
            if libc::getppid() != scheduler {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(job = %name, error = %e, "cannot start the run");
            record(
                shared,
                RunRecord {
                    job: name.clone(),
                    scheduled_at,
                    started_at: Some(started_at),
                    finished_at: Some(Utc::now()),
                    outcome: Outcome::Failed,
                    exit_code: None,
                    command: command_line(&job.spec.args),
                    message: Some(format!("cannot start {}: {e}", shared.exe.display())),
                },
            );
            return None;
        }
    };
    tracing::info!(job = %name, scheduled_at = %rfc3339(scheduled_at), pid = child.id(), "run started");
    let stderr = child.stderr.take();
    let prefix = format!("[{name}] ");
    let tail = tokio::spawn(async move {
        let mut tail = Vec::new();
        let Some(stderr) = stderr else {
            return tail;
        };
        let mut lines = tokio::io::BufReader::new(stderr);
        let mut line = Vec::new();
        let mut out = tokio::io::stderr();
        while matches!(lines.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
            // The run's log goes on in the scheduler's, each line marked with the job.
            let _ = out.write_all(prefix.as_bytes()).await;
            let _ = out.write_all(&line).await;
            tail.extend_from_slice(&line);
            if tail.len() > 2 * TAIL_BYTES {
                tail.drain(..tail.len() - TAIL_BYTES);
            }
            line.clear();
        }
        if tail.len() > TAIL_BYTES {
            tail.drain(..tail.len() - TAIL_BYTES);
        }
        tail
    });
    Some(Running {
        child,
        scheduled_at,
        started_at,
        started: Instant::now(),
        tail,
        timed_out: false,
        shutdown: false,
        kill_at: None,
        killed: false,
    })
}

/// Records a run that ended.
async fn finish(job: &Job, shared: &Shared, r: Running, status: std::io::Result<ExitStatus>) {
    use std::os::unix::process::ExitStatusExt;
    let finished_at = Utc::now();
    // The pipe closes when the child exits (a grandchild could hold it: not for long).
    let tail = match tokio::time::timeout(Duration::from_secs(2), r.tail).await {
        Ok(Ok(tail)) => String::from_utf8_lossy(&tail).into_owned(),
        _ => String::new(),
    };
    let mut notes = Vec::new();
    if r.timed_out {
        notes.push(format!(
            "timed out after {:?}: SIGTERM sent",
            job.spec.timeout.unwrap_or_default()
        ));
    }
    if r.shutdown {
        notes.push("stopped by the scheduler's shutdown: SIGTERM sent".to_string());
    }
    if r.killed {
        notes.push(format!(
            "SIGKILL sent after {:?} without exiting",
            shared.grace
        ));
    }
    let (outcome, exit_code) = match &status {
        Ok(s) => {
            if let Some(signal) = s.signal() {
                notes.push(format!("ended by signal {signal}"));
            }
            let outcome = match (r.timed_out, s.success()) {
                (true, _) => Outcome::TimedOut,
                (false, true) => Outcome::Succeeded,
                (false, false) => Outcome::Failed,
            };
            (outcome, s.code())
        }
        Err(e) => {
            notes.push(format!("cannot wait for the run: {e}"));
            (Outcome::Failed, None)
        }
    };
    // A line break keeps the tail's first line whole.
    let tail = match tail.find('\n') {
        Some(i) if tail.len() >= TAIL_BYTES => &tail[i + 1..],
        _ => &tail[..],
    };
    notes.push(tail.trim_end().to_string());
    let message = notes
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let duration_ms = (finished_at - r.started_at).num_milliseconds();
    let scheduled_at = rfc3339(r.scheduled_at);
    match outcome {
        Outcome::Succeeded => {
            tracing::info!(job = %job.spec.name, %scheduled_at, duration_ms, outcome = outcome.as_str(), exit_code, "run finished")
        }
        _ => {
            tracing::warn!(job = %job.spec.name, %scheduled_at, duration_ms, outcome = outcome.as_str(), exit_code, "run finished")
        }
    }
    record(
        shared,
        RunRecord {
            job: job.spec.name.clone(),
            scheduled_at: r.scheduled_at,
            started_at: Some(r.started_at),
            finished_at: Some(finished_at),
            outcome,
            exit_code,
            command: command_line(&job.spec.args),
            message: (!message.is_empty()).then_some(message),
        },
    );
}
