//! `ops.runs`: one row per fire time of every job (run, skipped or missed), appended when the
//! run ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use lakehouse::{Catalog, IcebergTable, TableDefinition};
use tokio::sync::mpsc;

pub const RUNS_TABLE: &str = "ops.runs";

/// How a fire time ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited with status 0.
    Succeeded,
    /// It exited with another status, was killed by a signal, or could not be started.
    Failed,
    /// It outlasted the job's timeout and was stopped.
    TimedOut,
    /// Not started: the job was still running (or its lock was lost).
    Skipped,
    /// Fire times that passed while no scheduler ran (found at start).
    Missed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Skipped => "skipped",
            Outcome::Missed => "missed",
        }
    }
}

/// One row of `ops.runs`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub job: String,
    /// The fire time (for a `missed` row: the latest fire time it stands for).
    pub scheduled_at: DateTime<Utc>,
    /// `None` for rows of fire times that did not run.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    /// The command line, `medallion …`.
    pub command: String,
    pub message: Option<String>,
}

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some(schemas::UTC.into()));
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("scheduled_at", ts.clone(), false),
        Field::new("started_at", ts.clone(), true),
        Field::new("finished_at", ts, true),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("exit_code", DataType::Int32, true),
        Field::new("duration_ms", DataType::Int64, true),
        Field::new("host", DataType::Utf8, false),
        Field::new("command", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, true),
    ]))
}

/// This machine's name, for the `host` column and the lock holder.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer outlives the call and its length is passed with it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match ok {
        true => String::from_utf8_lossy(&buf[..end]).into_owned(),
        false => "unknown".into(),
    }
}

/// Opens (creating on first use) `ops.runs`.
pub async fn open(catalog: Arc<Catalog>) -> Result<IcebergTable> {
    Ok(IcebergTable::open_or_create(
        catalog,
        &TableDefinition {
            name: RUNS_TABLE.to_string(),
            schema: schema(),
            partition_by_day: Some("scheduled_at".into()),
        },
    )
    .await?)
}

/// The latest `scheduled_at` recorded for each job: where a restarted scheduler's missed fire
/// times begin.
pub async fn last_scheduled(table: &IcebergTable) -> Result<HashMap<String, DateTime<Utc>>> {
    let batches = table
        .scan_columns(&["job".to_string(), "scheduled_at".to_string()])
        .await?;
    let mut last: HashMap<String, DateTime<Utc>> = HashMap::new();
    for b in &batches {
        let (Some(jobs), Some(times)) = (
            b.column(0).as_any().downcast_ref::<StringArray>(),
            b.column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>(),
        ) else {
            anyhow::bail!("{RUNS_TABLE}: job or scheduled_at has an unexpected type");
        };
        for i in (0..b.num_rows()).filter(|i| jobs.is_valid(*i) && times.is_valid(*i)) {
            let Some(t) = DateTime::from_timestamp_micros(times.value(i)) else {
                continue;
            };
            let entry = last.entry(jobs.value(i).to_string()).or_insert(t);
            *entry = (*entry).max(t);
        }
    }
    Ok(last)
}

fn batch(rows: &[RunRecord], host: &str) -> Result<RecordBatch> {
    let micros = |t: &Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros());
    let ts = |values: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(values).with_timezone(schemas::UTC))
    };
    let text = |f: fn(&RunRecord) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let duration = |r: &RunRecord| match (r.started_at, r.finished_at) {
        // From the stored microseconds, so that readers can check it.
        (Some(s), Some(f)) => Some((f.timestamp_micros() - s.timestamp_micros()) / 1000),
        _ => None,
    };
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            text(|_| uuid::Uuid::new_v4().to_string()),
            text(|r| r.job.clone()),
            ts(rows
                .iter()
                .map(|r| Some(r.scheduled_at.timestamp_micros()))
                .collect()),
            ts(rows.iter().map(|r| micros(&r.started_at)).collect()),
            ts(rows.iter().map(|r| micros(&r.finished_at)).collect()),
            text(|r| r.outcome.as_str().to_string()),
            Arc::new(Int32Array::from(
                rows.iter().map(|r| r.exit_code).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(duration).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec![host; rows.len()])),
            text(|r| r.command.clone()),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.message.clone()).collect::<Vec<_>>(),
            )),
        ],
    )?)
}

/// Appends the rows sent to it, in order, one commit per row (or per backlog). When the catalog
/// fails, the rows wait and are retried with backoff, so a catalog outage delays the records
/// but neither loses them nor holds up the jobs.
pub fn spawn_recorder(
    mut table: IcebergTable,
) -> (
    mpsc::UnboundedSender<RunRecord>,
    tokio::task::JoinHandle<Vec<RunRecord>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<RunRecord>();
    let handle = tokio::spawn(async move {
        let host = hostname();
        let mut pending: Vec<RunRecord> = Vec::new();
        let mut backoff = Duration::from_secs(1);
        let mut closed = false;
        // After the senders are gone (the scheduler is stopping), a few more tries only.
        let mut final_tries = 3;
        loop {
            if pending.is_empty() {
                match rx.recv().await {
                    Some(row) => pending.push(row),
                    None => return pending,
                }
            }
            while let Ok(row) = rx.try_recv() {
                pending.push(row);
            }
            let written = async {
                let staged = table.write(&batch(&pending, &host)?).await?;
                table.append(staged).await?;
                anyhow::Ok(())
            }
            .await;
            match written {
                Ok(()) => {
                    tracing::debug!(rows = pending.len(), "recorded in {RUNS_TABLE}");
                    pending.clear();
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    tracing::warn!(rows = pending.len(), error = %format!("{e:#}"), retry_in = ?backoff, "cannot record runs in {RUNS_TABLE}");
                    if closed {
                        final_tries -= 1;
                        if final_tries == 0 {
                            return pending;
                        }
                    }
                    // Wait for the backoff, taking new rows meanwhile; a closed channel ends
                    // the wait.
                    let wait = tokio::time::sleep(backoff);
                    tokio::pin!(wait);
                    while !closed {
                        tokio::select! {
                            _ = &mut wait => break,
                            row = rx.recv() => match row {
                                Some(row) => pending.push(row),
                                None => closed = true,
                            },
                        }
                    }
                    if closed {
                        wait.await;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    let _ = table.refresh().await;
                }
            }
        }
    });
    (tx, handle)
}
