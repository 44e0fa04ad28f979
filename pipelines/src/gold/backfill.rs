//! `medallion backfill gold.<t>`: recompute the final windows starting in a time range from
//! what the source holds now, and swap them in with one replace-files commit.
//!
//! The windows are computed as one batch over complete data: every source row the gold table
//! has consumed (its cursor) counts, including records the live run sent to the late output,
//! and rows a silver backfill has rewritten since count as they are now. Only final windows
//! can be backfilled: open ones are still the live run's. The commit is conditional on the
//! cursor, so a live run committing meanwhile makes the backfill start over.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use lakehouse::Catalog;

use super::alerts::Alerts;
use super::window::{Clock, WindowKind, WindowOperator, WindowRow};
use super::{rows, top_n, Checkpoint, GoldConfig, Output, CURSOR_PROPERTY, STATE_PROPERTY};
use crate::error::{Error, Result};
use crate::progress::{self, Unit};

/// How many times the backfill starts over after a live run moved the cursor under it.
const MAX_ATTEMPTS: u32 = 5;

/// What a gold backfill did.
#[derive(Debug, Clone, Default)]
pub struct GoldBackfillReport {
    pub table: String,
    /// The range of window starts rebuilt, microseconds (`to` exclusive).
    pub from: Option<i64>,
    pub to: i64,
    /// The last source snapshot the rows come from (the gold table's cursor).
    pub source_snapshot: i64,
    pub rows_read: u64,
    pub rows_replaced: u64,
    pub rows_written: u64,
    pub alerts: u64,
    pub files_removed: u64,
    pub files_added: u64,
    pub restarts: u32,
}

/// Rebuilds the windows of `config`'s table starting in `[from, to)` (microseconds; `from`
/// open: from the first window; `to` open: up to the last final window).
pub async fn backfill(
    catalog: Arc<Catalog>,
    config: &GoldConfig,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<GoldBackfillReport> {
    let spec = &config.spec;
    let stage_err = |message: String| Error::Stage {
        table: spec.table.clone(),
        message,
    };
    let table = (spec.table.as_str(), spec.table_format);
    let (mut table, mut source) =
        crate::follow::open_for_backfill(&catalog, table, &spec.source).await?;
    let mut alerts = Alerts::open(catalog, &spec.table, &spec.alerts, &spec.group_by).await?;
    let settings = &config.settings;
    let lateness = settings.allowed_lateness;
    let keys = spec.group_by.len();
    // Source rows read, over every attempt; their number is not known before the scan.
    let progress = progress::start(format!("{} backfill", spec.table), Unit::Rows, None);
    for attempt in 0..MAX_ATTEMPTS {
        table.refresh().await?;
        source.refresh().await?;
        let cursor = table.cursor(CURSOR_PROPERTY).await?;
        let Some(consumed) =
            crate::follow::parse_cursor(CURSOR_PROPERTY, cursor.as_deref()).map_err(stage_err)?
        else {
            return Err(stage_err(
                "the table has consumed nothing yet: nothing to backfill".to_string(),
            ));
        };
        let cursor = consumed.to_string();
        let checkpoint: Checkpoint = table
            .commit_property(STATE_PROPERTY)
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| stage_err(format!("snapshot property {STATE_PROPERTY}: {e}")))?
            .unwrap_or_default();
        let Some(watermark) = checkpoint.watermark else {
            return Err(stage_err(
                "the live run has no watermark yet, so no window is final: nothing to backfill"
                    .to_string(),
            ));
        };
        let to = final_bound(settings.kind, watermark, lateness, to).map_err(stage_err)?;

        // The source as the gold table has consumed it: its current rows minus those of the
        // appends after the cursor.
        let pending = source.appends_after(Some(consumed)).await?;
        if !pending.is_empty() && source.rewritten_after(consumed).await? {
            return Err(stage_err(format!(
                "{} was rewritten (compacted or backfilled) after the last snapshot this table consumed, and has newer rows it has not: let the live run catch up (`medallion run --once --stage gold`) and try again",
                spec.source
            )));
        }
        let unconsumed: HashSet<String> = source
            .files_added_by(&pending)
            .await?
            .into_values()
            .flat_map(|files| files.into_paths())
            .collect();
        let reach = match settings.kind {
            WindowKind::Tumbling { size } | WindowKind::Sliding { size, .. } => {
                Some((from, Some(to.saturating_add(size))))
            }
            // A session can start long before the range and go on long after it.
            WindowKind::Session { .. } => None,
        };
        let files: HashSet<String> = match reach {
            Some((low, high)) => source.files_in_range(&spec.event_time, low, high).await?,
            None => source.files_in_range(&spec.event_time, None, None).await?,
        }
        .difference(&unconsumed)
        .cloned()
        .collect();
        let mut records = Vec::new();
        let mut rows_read = 0;
        for batch in source.scan_files(files).await? {
            rows_read += batch.num_rows() as u64;
            progress.advance(batch.num_rows() as u64);
            let projected = config.projection.apply(&batch).map_err(stage_err)?;
            let (r, _) =
                rows::records(&projected, keys, spec.aggregates.len()).map_err(stage_err)?;
            records.extend(r);
        }

        let in_range = |start: i64| from.is_none_or(|f| start >= f) && start < to;
        let mut operator = WindowOperator::new(settings.clone(), Clock::default());
        let mut output = Output::default();
        let first = operator.snapshot(0, 0, &records);
        for change in first.changes.into_iter().chain(operator.finish().changes) {
            output.apply(change);
        }
        let mut rebuilt: Vec<WindowRow> = output
            .changes
            .into_values()
            .flatten()
            .filter(|row| in_range(row.start))
            .collect();
        if let Some(open) = rebuilt.iter().find(|r| r.end + lateness > watermark) {
            return Err(stage_err(format!(
                "the session starting at {} is still open in the live run (it ends at {}, the watermark is {watermark} µs, allowed lateness {lateness} µs): choose an earlier --to",
                open.start, open.end
            )));
        }
        if let Some(top) = &spec.top {
            rebuilt = top_n(rebuilt, top, spec);
        }
        rebuilt.sort_by(|a, b| (a.start, &a.key).cmp(&(b.start, &b.key)));

        let old_files = table.files_in_range("window_start", from, Some(to)).await?;
        let mut staged = table.stage_nothing();
        let mut replaced = 0;
        for old in table.scan_files(old_files.clone()).await? {
            let ids = rows::row_ids(&old, keys).map_err(stage_err)?;
            let keep: BooleanArray = ids.iter().map(|(s, _, _)| Some(!in_range(*s))).collect();
            let kept = filter_record_batch(&old, &keep).map_err(|e| stage_err(e.to_string()))?;
            replaced += (old.num_rows() - kept.num_rows()) as u64;
            staged.extend(table.write(&kept).await?)?;
        }
        let batch = rows::to_batch(&rebuilt, config.output()).map_err(stage_err)?;
        staged.extend(table.write(&batch).await?)?;
        let raised = alerts.raise(&batch, &rebuilt, consumed).await? as u64;
        let range = serde_json::json!({
            "column": "window_start",
            "from_micros": from,
            "to_micros": to,
        })
        .to_string();
        let files_added = staged.len() as u64;
        let committed = crate::follow::commit_backfill(
            &mut table,
            &old_files,
            staged,
            (CURSOR_PROPERTY, &cursor),
            range,
        )
        .await?;
        match committed {
            true => {
                progress.finish();
                tracing::info!(table = %spec.table, rows_replaced = replaced, rows = rebuilt.len(), "backfill committed");
                return Ok(GoldBackfillReport {
                    table: spec.table.clone(),
                    from,
                    to,
                    source_snapshot: consumed,
                    rows_read,
                    rows_replaced: replaced,
                    rows_written: rebuilt.len() as u64,
                    alerts: raised,
                    files_removed: old_files.len() as u64,
                    files_added,
                    restarts: attempt,
                });
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

/// The exclusive end of the window starts to rebuild: `to`, if every window starting before
/// it is final at `watermark`, else an error naming the bound; without `to`, the bound.
/// Sessions have no fixed length: they are checked once computed.
fn final_bound(
    kind: WindowKind,
    watermark: i64,
    lateness: i64,
    to: Option<i64>,
) -> std::result::Result<i64, String> {
    let (size, slide) = match kind {
        WindowKind::Tumbling { size } => (size, size),
        WindowKind::Sliding { size, slide } => (size, slide),
        WindowKind::Session { .. } => {
            return to.ok_or_else(|| {
                "session windows need --to (sessions starting before it must be final)".to_string()
            })
        }
    };
    // The first window start that is not final yet.
    let bound = (watermark - lateness - size).div_euclid(slide) * slide + slide;
    match to {
        None => Ok(bound),
        Some(to) if to <= bound => Ok(to),
        Some(to) => Err(format!(
            "windows starting at or after {bound} µs are not final yet (watermark {watermark} µs, allowed lateness {lateness} µs): --to must be at most that (got {to})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    #[test]
    fn only_final_windows_can_be_rebuilt() {
        let tumbling = WindowKind::Tumbling { size: MIN };
        // Watermark 10:30, lateness 1 min: 08:00-09:00 is final (09:00 + 1 min ≤ 10:30),
        // 09:00-10:00 is not.
        let wm = 10 * MIN + MIN / 2;
        assert_eq!(final_bound(tumbling, wm, MIN, None), Ok(9 * MIN));
        assert_eq!(final_bound(tumbling, wm, MIN, Some(5 * MIN)), Ok(5 * MIN));
        assert!(final_bound(tumbling, wm, MIN, Some(10 * MIN))
            .unwrap_err()
            .starts_with("windows starting at or after 540000000 µs are not final yet"));
        let sliding = WindowKind::Sliding {
            size: 5 * MIN,
            slide: MIN,
        };
        // Final: start + 5 min + 1 min ≤ 10:30, so starts up to 04:00.
        assert_eq!(final_bound(sliding, wm, MIN, None), Ok(5 * MIN));
        let session = WindowKind::Session { gap: MIN };
        assert!(final_bound(session, wm, MIN, None).is_err());
        assert_eq!(final_bound(session, wm, MIN, Some(3 * MIN)), Ok(3 * MIN));
    }
}
