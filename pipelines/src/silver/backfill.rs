//! `medallion backfill silver.<t>`: recompute a time range of a silver table from its source
//! and swap it in, in one replace-files commit.
//!
//! The range is recomputed from every source row up to the snapshot the silver table has
//! consumed (its cursor), so the result is what the live run would have produced with the
//! current spec; the commit is conditional on that cursor, so a live run committing meanwhile
//! makes the backfill start over rather than lose its rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::{cast, filter_record_batch, not};
use arrow::datatypes::DataType;
use lakehouse::Catalog;

use super::{open_dlq, refine, SilverConfig, CURSOR_PROPERTY};
use crate::bronze::KafkaConnection;
use crate::error::{Error, Result};
use crate::progress::{self, Unit};

/// How many times the backfill starts over after a live run moved the cursor under it.
const MAX_ATTEMPTS: u32 = 5;

/// Which rows a backfill rebuilds: those whose timestamp `column` is in `[from, to)`
/// (microseconds since the epoch, UTC; an open side is unbounded). With both sides open every
/// row is rebuilt, those with a null timestamp included.
#[derive(Debug, Clone)]
pub struct TimeRange {
    pub column: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl TimeRange {
    fn is_everything(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// Which rows of `batch` are in the range.
    fn mask(&self, batch: &RecordBatch) -> std::result::Result<BooleanArray, String> {
        if self.is_everything() {
            return Ok(BooleanArray::from(vec![true; batch.num_rows()]));
        }
        let column = batch
            .column_by_name(&self.column)
            .ok_or_else(|| format!("the table has no column {}", self.column))?;
        if !matches!(column.data_type(), DataType::Timestamp(_, _)) {
            return Err(format!(
                "column {} is {}, not a timestamp",
                self.column,
                column.data_type()
            ));
        }
        let micros = cast(
            &cast(
                column,
                &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            )
            .map_err(|e| e.to_string())?,
            &DataType::Int64,
        )
        .map_err(|e| e.to_string())?;
        let micros = micros
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("timestamp did not cast to microseconds")?;
        Ok(micros
            .iter()
            .map(|v| {
                Some(v.is_some_and(|v| {
                    self.from.is_none_or(|f| v >= f) && self.to.is_none_or(|t| v < t)
                }))
            })
            .collect())
    }

    /// The rows of `batch` in the range (`inside`) or out of it.
    fn select(&self, batch: RecordBatch, inside: bool) -> std::result::Result<RecordBatch, String> {
        let mask = self.mask(&batch)?;
        let mask = match inside {
            true => mask,
            false => not(&mask).map_err(|e| e.to_string())?,
        };
        filter_record_batch(&batch, &mask).map_err(|e| e.to_string())
    }
}

/// What a backfill did.
#[derive(Debug, Clone, Default)]
pub struct BackfillReport {
    pub table: String,
    /// The source snapshot the rebuilt rows are computed up to (the silver cursor).
    pub source_snapshot: i64,
    pub source_snapshots: u64,
    pub rows_read: u64,
    /// Rows of the range before the backfill, and after.
    pub rows_replaced: u64,
    pub rows_written: u64,
    /// Rows dropped by expectations (sent to the DLQ again).
    pub rows_dropped: u64,
    pub expectation_failures: BTreeMap<String, u64>,
    pub files_removed: u64,
    pub files_added: u64,
    /// How many times a live run moved the cursor and the backfill started over.
    pub restarts: u32,
}

/// Rebuilds the rows of `range` in the silver table of `config`.
pub async fn backfill(
    kafka: &KafkaConnection,
    catalog: Arc<Catalog>,
    config: &SilverConfig,
    range: &TimeRange,
) -> Result<BackfillReport> {
    let spec = &config.spec;
    let stage_err = |message: String| Error::Stage {
        table: spec.table.clone(),
        message,
    };
    let table = (spec.table.as_str(), spec.table_format);
    let (mut table, mut source) =
        crate::follow::open_for_backfill(&catalog, table, &spec.source).await?;
    let mut dlq = open_dlq(kafka, spec).await?;
    let mut report = BackfillReport {
        table: spec.table.clone(),
        ..Default::default()
    };
    let range_json = serde_json::json!({
        "column": range.column,
        "from_micros": range.from,
        "to_micros": range.to,
    })
    .to_string();
    // Source rows read, over every attempt.
    let progress = progress::start(format!("{} backfill", spec.table), Unit::Rows, None);
    for attempt in 0..MAX_ATTEMPTS {
        report.restarts = attempt;
        table.refresh().await?;
        source.refresh().await?;
        let cursor = table.cursor(CURSOR_PROPERTY).await?;
        let Some(upto) =
            crate::follow::parse_cursor(CURSOR_PROPERTY, cursor.as_deref()).map_err(stage_err)?
        else {
            return Err(stage_err(
                "the table has consumed nothing yet: nothing to backfill".to_string(),
            ));
        };
        let cursor = upto.to_string();
        let appends = source.appends_after(None).await?;
        let Some(end) = appends.iter().position(|s| *s == upto) else {
            return Err(stage_err(format!(
                "source snapshot {upto} (the table's cursor) is not in {}'s history any more",
                spec.source
            )));
        };
        let consumed = &appends[..=end];
        if let Some(rows) = source.added_rows(consumed) {
            progress.set_total(progress.done() + rows);
        }

        let mut rebuilt = Vec::new();
        let (mut rows_read, mut dropped) = (0, 0);
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        for chunk in consumed.chunks(spec.batch_snapshots) {
            let batches = source.scan_appended(chunk).await?;
            let read = batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            rows_read += read;
            progress.advance(read);
            let label = format!(
                "{}..={} (backfill of {range_json})",
                chunk[0],
                chunk[chunk.len() - 1]
            );
            let refined = refine(
                config,
                &batches,
                &label,
                |b| range.select(b, true),
                dlq.as_mut(),
            )
            .await?;
            for c in &refined.counts {
                *failures.entry(c.name.clone()).or_default() += c.failed;
            }
            dropped += refined.dropped;
            rebuilt.push(refined.rows);
        }

        // Both sides open: every file.
        let files = table
            .files_in_range(&range.column, range.from, range.to)
            .await?;
        let existing = table.scan_files(files.clone()).await?;
        let mut replaced = 0;
        let mut rows = Vec::new();
        for batch in existing {
            let before = batch.num_rows();
            let kept = range.select(batch, false).map_err(stage_err)?;
            replaced += (before - kept.num_rows()) as u64;
            rows.push(kept);
        }
        let written: u64 = rebuilt.iter().map(|b| b.num_rows() as u64).sum();
        rows.extend(rebuilt);
        let mut staged = table.stage_nothing();
        for batch in rows.iter().filter(|b| b.num_rows() > 0) {
            staged.extend(table.write(batch).await?)?;
        }
        let files_added = staged.len() as u64;
        let committed = crate::follow::commit_backfill(
            &mut table,
            &files,
            staged,
            (CURSOR_PROPERTY, &cursor),
            range_json.clone(),
        )
        .await?;
        match committed {
            true => {
                report.source_snapshot = upto;
                report.source_snapshots = consumed.len() as u64;
                report.rows_read = rows_read;
                report.rows_replaced = replaced;
                report.rows_written = written;
                report.rows_dropped = dropped;
                report.expectation_failures = failures;
                report.files_removed = files.len() as u64;
                report.files_added = files_added;
                progress.finish();
                tracing::info!(table = %spec.table, rows_replaced = replaced, rows = written, "backfill committed");
                return Ok(report);
            }
            false => {
                tracing::warn!(table = %spec.table, "a live run committed meanwhile: starting the backfill over");
            }
        }
    }
    Err(stage_err(format!(
        "a live run kept committing: the backfill started over {MAX_ATTEMPTS} times and committed nothing"
    )))
}
