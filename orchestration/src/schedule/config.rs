//! The schedule file: where `ops.runs` is kept (`[lakehouse]`) and the jobs (`[[job]]`).
//!
//! Checked whole before anything runs: unknown keys, bad cron expressions, repeated job names
//! and arguments that are not a `medallion` command are refused with the file and the key.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Parser;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use pipelines::spec::LakehouseSpec;
use serde::{Deserialize, Deserializer};

/// A whole schedule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// Where the `ops.runs` table lives (same keys as a pipeline spec's `[lakehouse]`); the
    /// job locks are taken in this catalog too.
    #[serde(default)]
    pub lakehouse: LakehouseSpec,
    /// The jobs, each fired by its own cron expression.
    #[serde(rename = "job", default)]
    pub jobs: Vec<JobSpec>,
}

/// One scheduled `medallion` command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique in the lakehouse: letters, digits, `_`, `-` and `.` (it names the job's lock and
    /// its rows in `ops.runs`).
    pub name: String,
    /// When it fires, in UTC: 5 fields (`min hour dom month dow`) or 6 with seconds first
    /// (`sec min hour dom month dow`); `@hourly`-style aliases too.
    pub cron: String,
    /// A `medallion` command line without the program name, e.g. `["run", "--once", "x.toml"]`;
    /// run as a child process of the scheduler's own binary, in the scheduler's directory.
    pub args: Vec<String>,
    /// A run still going after this long gets SIGTERM (then SIGKILL after the scheduler's
    /// `--shutdown-timeout`) and is recorded as `timed_out`. Default: no limit.
    #[serde(default, deserialize_with = "some_duration")]
    pub timeout: Option<Duration>,
    /// Fire times that passed while no scheduler ran (found from `ops.runs` at start).
    #[serde(default)]
    pub missed: MissedPolicy,
    /// A fire time that comes while the job still runs.
    #[serde(default)]
    pub overlap: OverlapPolicy,
}

/// What happens at start to fire times missed while no scheduler ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Record them as one `missed` row and wait for the next fire time.
    #[default]
    Skip,
    /// Run the job once at start for the latest of them (the earlier ones: one `missed` row).
    RunOnce,
}

/// What happens when a fire time comes while the job still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Do not start it; record a `skipped` row. Two runs of one job never overlap.
    #[default]
    Skip,
}

/// A checked job, ready to fire.
#[derive(Debug)]
pub struct Job {
    pub spec: JobSpec,
    pub cron: Cron,
}

impl Job {
    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t, false)
            .with_context(|| format!("job {}: no fire time after {t}", self.spec.name))
    }

    /// The latest fire time at or before `t`, if any.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&t, true).ok()
    }
}

impl ScheduleFile {
    /// Reads and checks a schedule file; its jobs, checked.
    pub fn load(path: &Path) -> Result<(Self, Vec<Job>)> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{origin}: cannot read"))?;
        Self::parse(&text, &origin)
    }

    /// Parses schedule text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<(Self, Vec<Job>)> {
        let mut file: Self = pipelines::spec::from_toml(text, origin)?;
        if file.jobs.is_empty() {
            bail!("{origin}: job: at least one [[job]] is required");
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let mut names = std::collections::HashSet::new();
        let mut jobs = Vec::new();
        for (i, spec) in std::mem::take(&mut file.jobs).into_iter().enumerate() {
            let key = |k: &str| format!("{origin}: job[{i}].{k} (job {:?})", spec.name);
            let valid = !spec.name.is_empty()
                && spec
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                bail!("{}: expected letters, digits, _, - and .", key("name"));
            }
            if !names.insert(spec.name.clone()) {
                bail!("{}: another job has this name", key("name"));
            }
            let cron = match parser.parse(&spec.cron) {
                Ok(cron) => cron,
                Err(e) => bail!(
                    "{}: {:?} is not a cron expression of 5 fields (min hour dom month dow) or 6 (sec min hour dom month dow): {e}",
                    key("cron"),
                    spec.cron
                ),
            };
            if let Err(e) = check_command(&spec.args) {
                bail!("{}: {e}", key("args"));
            }
            if spec.timeout.is_some_and(|t| t.is_zero()) {
                bail!("{}: must be longer than zero", key("timeout"));
            }
            jobs.push(Job { spec, cron });
        }
        Ok((file, jobs))
    }
}

/// The arguments must parse as a `medallion` command other than `schedule` (a scheduler
/// started by a scheduler would escape its overlap and shutdown rules).
fn check_command(args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        return Err(
            "expected a medallion command, e.g. [\"run\", \"--once\", \"spec.toml\"]".into(),
        );
    }
    let argv = std::iter::once("medallion").chain(args.iter().map(String::as_str));
    match crate::Cli::try_parse_from(argv) {
        Ok(cli) if matches!(cli.command, crate::Command::Schedule(_)) => {
            Err("a job cannot run `medallion schedule`".into())
        }
        Ok(_) => Ok(()),
        // clap's message without its usage lines.
        Err(e) => Err(format!(
            "not a medallion command: {}",
            e.to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
        )),
    }
}

fn some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    pipelines::spec::parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[lakehouse]
warehouse = "./w"
catalog = "sqlite://./w/catalog.db"

[[job]]
name = "bronze"
cron = "*/5 * * * *"
args = ["run", "--once", "spec.toml"]
timeout = "10m"
missed = "run_once"

[[job]]
name = "every-2s"
cron = "*/2 * * * * *"
args = ["run", "spec.toml", "--once", "--stage", "silver"]
"#;

    fn err(text: &str) -> String {
        match ScheduleFile::parse(text, "s.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn parses_five_and_six_field_crons() {
        let (file, jobs) = ScheduleFile::parse(GOOD, "s.toml").unwrap();
        assert_eq!(file.lakehouse.catalog, "sqlite://./w/catalog.db");
        assert_eq!(jobs[0].spec.timeout, Some(Duration::from_secs(600)));
        assert_eq!(jobs[0].spec.missed, MissedPolicy::RunOnce);
        assert_eq!(jobs[1].spec.missed, MissedPolicy::Skip);
        let t: DateTime<Utc> = "2026-01-01T10:02:01Z".parse().unwrap();
        assert_eq!(
            jobs[0].next_after(t).unwrap().to_rfc3339(),
            "2026-01-01T10:05:00+00:00"
        );
        assert_eq!(
            jobs[1].next_after(t).unwrap().to_rfc3339(),
            "2026-01-01T10:02:02+00:00"
        );
        let on: DateTime<Utc> = "2026-01-01T10:05:00Z".parse().unwrap();
        assert_eq!(jobs[0].latest_at_or_before(on), Some(on));
    }

    #[test]
    fn the_example_schedule_is_valid() {
        let text = include_str!("../../schedules/example.toml");
        let (_, jobs) = ScheduleFile::parse(text, "example.toml").unwrap();
        let names: Vec<&str> = jobs.iter().map(|j| j.spec.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "web-bronze",
                "web-silver",
                "web-analytics-gold",
                "compact",
                "expire",
                "orphans",
                "retention"
            ]
        );
    }

    #[test]
    fn refuses_bad_files_naming_the_key() {
        let e = err(&GOOD.replace("timeout = \"10m\"", "timeout = \"10m\"\ncolour = 1"));
        assert!(e.starts_with("s.toml") && e.contains("colour"), "{e}");
        let e = err(&GOOD.replace("*/5 * * * *", "*/5 * * *"));
        assert!(e.contains("job[0].cron (job \"bronze\")"), "{e}");
        let e = err(&GOOD.replace("every-2s", "bronze"));
        assert!(
            e.contains("job[1].name") && e.contains("another job"),
            "{e}"
        );
        let e = err(&GOOD.replace("\"--once\", \"spec.toml\"]", "\"--onse\", \"spec.toml\"]"));
        assert!(e.contains("job[0].args") && e.contains("--onse"), "{e}");
        let e = err(&GOOD.replace(
            "[\"run\", \"--once\", \"spec.toml\"]",
            "[\"schedule\", \"x.toml\"]",
        ));
        assert!(e.contains("job[0].args") && e.contains("cannot run"), "{e}");
        let e = err(&GOOD.replace("\"run_once\"", "\"catch_up\""));
        assert!(e.contains("job.missed") && e.contains("run_once"), "{e}");
        let e = err("[lakehouse]\n");
        assert!(e.contains("at least one [[job]]"), "{e}");
    }
}
