//! The silver stage: a source table's new rows → filter and typed, cleansed columns (polars
//! SQL) → `silver.<table>`, each commit recording the last source snapshot it consumed, so a
//! restart goes on from there and nothing is read twice or skipped.

mod backfill;
mod expect;
pub(crate) mod frame;
mod personal;
mod quality;
pub(crate) mod transform;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use lakehouse::{Catalog, Table, TableDefinition};
use tokio::sync::watch;

use crate::bronze::{KafkaConnection, RunOptions};
use crate::dlq::DeadLetter;
use crate::error::{Error, Result};
use crate::follow::{open_source, parse_cursor, wait};
use crate::progress::{self, Unit};
use crate::spec::{OnFail, SilverSpec};
pub use backfill::{backfill, BackfillReport, TimeRange};
use expect::Expectations;
pub use quality::{COUNTS_PROPERTY, QUALITY_TABLE};
use transform::Transform;

/// Snapshot property of a silver commit: the last source snapshot it consumed.
pub const CURSOR_PROPERTY: &str = "medallion.silver.source-snapshot";

/// A silver table's settings, checked against its source's columns.
#[derive(Debug)]
pub struct SilverConfig {
    pub spec: SilverSpec,
    transform: Transform,
    expectations: Expectations,
}

impl SilverConfig {
    /// Compiles the spec's filter and columns against the source's columns; a bad expression
    /// is refused naming the file, the table, the key and polars' message.
    pub fn new(spec: &SilverSpec, source: &SchemaRef, origin: &str, index: usize) -> Result<Self> {
        let refused = |(key, message): (String, String)| {
            Error::Spec(format!(
                "{origin}: silver[{index}].{key} (table {}): {message}",
                spec.table
            ))
        };
        let transform = Transform::new(spec, source).map_err(refused)?;
        if let Some(column) = &spec.partition_by_day {
            let is_timestamp = transform.output().field_with_name(column).is_ok_and(|f| {
                matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(_, _))
            });
            if !is_timestamp {
                return Err(refused((
                    "partition_by_day".to_string(),
                    format!("{column} is not a timestamp column of the table"),
                )));
            }
        }
        let expectations =
            Expectations::new(&spec.expectations, transform.output()).map_err(refused)?;
        Ok(Self {
            spec: spec.clone(),
            transform,
            expectations,
        })
    }

    /// The silver table's columns.
    pub fn output(&self) -> &SchemaRef {
        self.transform.output()
    }
}

/// What a silver run did.
#[derive(Debug, Clone, Default)]
pub struct SilverReport {
    pub table: String,
    pub source_snapshots: u64,
    pub rows_read: u64,
    pub rows_written: u64,
    /// Rows dropped by expectations (sent to the DLQ).
    pub rows_dropped: u64,
    /// Per expectation: rows that failed it.
    pub expectation_failures: std::collections::BTreeMap<String, u64>,
    pub commits: u64,
}

/// Runs one silver table until `once` has caught up with the source's current snapshot, or
/// `stop` turns true.
pub async fn run(
    kafka: &KafkaConnection,
    catalog: Arc<Catalog>,
    config: &SilverConfig,
    options: RunOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<SilverReport> {
    let spec = &config.spec;
    let mut report = SilverReport {
        table: spec.table.clone(),
        ..Default::default()
    };
    crate::metrics::stage_starting(&spec.table);
    let source = open_source(
        &catalog,
        &spec.source,
        &spec.table,
        options.once,
        spec.poll,
        &mut stop,
    )
    .await?;
    let Some(mut source) = source else {
        return Ok(report);
    };
    let mut table = Table::open_or_create(
        catalog.clone(),
        &TableDefinition {
            name: spec.table.clone(),
            schema: config.output().clone(),
            partition_by_day: spec.partition_by_day.clone(),
        },
        spec.table_format,
    )
    .await?;
    let mut dlq = open_dlq(kafka, spec).await?;
    let mut quality = match config.expectations.is_empty() {
        true => None,
        false => Some(quality::Recorder::open(catalog.clone(), &mut table).await?),
    };
    crate::metrics::stage_ready(&spec.table);
    let progress = progress::start(&spec.table, Unit::Rows, None);
    loop {
        source.refresh().await?;
        // Read once per round; each commit of the round moves it (a Delta read replays the log).
        let mut cursor = table.cursor(CURSOR_PROPERTY).await?;
        let after =
            parse_cursor(CURSOR_PROPERTY, cursor.as_deref()).map_err(|message| Error::Stage {
                table: spec.table.clone(),
                message,
            })?;
        let pending = source.appends_after(after).await?;
        if pending.is_empty() {
            if options.once || wait(&mut stop, spec.poll).await {
                break;
            }
            continue;
        }
        if let Some(rows) = source.added_rows(&pending) {
            progress.set_total(progress.done() + rows);
        }
        for chunk in pending.chunks(spec.batch_snapshots) {
            let started = Instant::now();
            let batches = source.scan_appended(chunk).await?;
            let rows_read: usize = batches.iter().map(|b| b.num_rows()).sum();
            let last = chunk[chunk.len() - 1].to_string();
            let range = format!("{}..={last}", chunk[0]);
            let refined = refine(config, &batches, &range, Ok, dlq.as_mut()).await?;
            for c in &refined.counts {
                *report
                    .expectation_failures
                    .entry(c.name.clone())
                    .or_default() += c.failed;
            }
            let out = refined.rows;
            let staged = table.write(&out).await?;
            // The quality table is filled from each commit's counts and the cursor it reached.
            let info = match config.expectations.is_empty() {
                true => Vec::new(),
                false => vec![
                    (
                        COUNTS_PROPERTY.to_string(),
                        serde_json::to_string(&refined.counts).map_err(|e| Error::Stage {
                            table: spec.table.clone(),
                            message: e.to_string(),
                        })?,
                    ),
                    (CURSOR_PROPERTY.to_string(), last.clone()),
                ],
            };
            let moved = (CURSOR_PROPERTY, cursor.as_deref(), last.as_str());
            if !table
                .commit_cursor(&HashSet::new(), staged, moved, &[], &info)
                .await?
            {
                tracing::warn!(table = %spec.table, "another worker moved the cursor: starting over from it");
                table.refresh().await?;
                break;
            }
            cursor = Some(last.clone());
            report.source_snapshots += chunk.len() as u64;
            report.rows_read += rows_read as u64;
            progress.advance(rows_read as u64);
            report.rows_written += out.num_rows() as u64;
            report.rows_dropped += refined.dropped;
            report.commits += 1;
            crate::metrics::committed(&spec.table, out.num_rows() as u64, started.elapsed());
            for c in &refined.counts {
                crate::metrics::count(
                    "medallion_expectation_failures_total",
                    "Rows that failed an expectation (whatever its action)",
                    &[("table", &spec.table), ("expectation", &c.name)],
                    c.failed,
                );
            }
            crate::TABLE_COMMITS.notify_waiters();
            if let Some(quality) = quality.as_mut() {
                quality.sync(&mut table).await?;
            }
            tracing::info!(
                table = %spec.table,
                source_snapshot = %last,
                rows_read,
                rows = out.num_rows(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "committed"
            );
        }
        if *stop.borrow() {
            break;
        }
    }
    progress.finish();
    Ok(report)
}

/// The DLQ producer, when an expectation drops rows.
async fn open_dlq(kafka: &KafkaConnection, spec: &SilverSpec) -> Result<Option<DeadLetter>> {
    if !spec.expectations.iter().any(|e| e.on_fail == OnFail::Drop) {
        return Ok(None);
    }
    let dlq = DeadLetter::connect(
        &kafka.brokers,
        &kafka.producer_properties,
        &spec.dlq_topic(),
        "silver",
        &spec.table,
        kafka.connect_timeout,
    )
    .await?;
    Ok(Some(dlq))
}

/// Source rows made into silver rows.
struct Refined {
    /// The rows to commit.
    rows: RecordBatch,
    /// Per expectation, over the rows judged.
    counts: Vec<expect::Count>,
    /// Rows an expectation dropped (now in the DLQ).
    dropped: u64,
}

/// Filters and types `batches`, read from the source snapshots `range`, keeps the rows
/// `select` keeps and judges them: rows a `drop` expectation fails go to `dlq`; a `fail`
/// expectation stops the stage with an example row.
async fn refine(
    config: &SilverConfig,
    batches: &[RecordBatch],
    range: &str,
    select: impl Fn(RecordBatch) -> std::result::Result<RecordBatch, String>,
    dlq: Option<&mut DeadLetter>,
) -> Result<Refined> {
    let spec = &config.spec;
    let stage_err = |message: String| Error::Stage {
        table: spec.table.clone(),
        message,
    };
    let out = batches
        .iter()
        .map(|b| config.transform.apply(b))
        .collect::<std::result::Result<Vec<_>, String>>()
        .and_then(|out| transform::concat(&config.transform, &out))
        .and_then(select)
        .map_err(stage_err)?;
    let read = out.num_rows();
    let judged = config.expectations.judge(out).map_err(stage_err)?;
    if let Some((name, failed, row)) = &judged.failure {
        let example = crate::dlq::rows_as_json(row)
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .unwrap_or_default();
        return Err(stage_err(format!(
            "expectation `{name}` (on_fail = fail) failed on {failed} of {read} rows read from {} snapshots {range}, e.g. {example}; nothing of them was committed",
            spec.source
        )));
    }
    let mut dropped = 0;
    if let Some(dlq) = dlq {
        for (rows, name) in &judged.dropped {
            let check = spec
                .expectations
                .iter()
                .find(|e| &e.name == name)
                .map_or("", |e| e.check.as_str());
            let reason = format!("expectation.{name}");
            let message = format!("`{check}` is not true");
            for json in crate::dlq::rows_as_json(rows).map_err(stage_err)? {
                dlq.send_row(&json, &spec.table, &reason, &message, (&spec.source, range))?;
                dropped += 1;
            }
        }
        dlq.flush().await?;
    }
    for c in judged.counts.iter().filter(|c| c.failed > 0) {
        tracing::warn!(table = %spec.table, expectation = %c.name, action = %c.action, failed = c.failed, passed = c.passed, "expectation not met");
    }
    Ok(Refined {
        rows: judged.kept,
        counts: judged.counts,
        dropped,
    })
}
