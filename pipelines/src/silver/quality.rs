//! `quality.expectations`: one row per expectation per silver commit, with its counts.
//!
//! The counts travel in the silver commit itself (Iceberg's snapshot summary, Delta's
//! `commitInfo`, the Parquet log's entry), so they are exactly
//! those of the rows committed; this table is filled from the silver table's history after
//! each commit and at start, so a crash between the two loses nothing and repeats nothing.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use lakehouse::{Catalog, IcebergTable, Table, TableDefinition};

use super::expect::Count;
use super::CURSOR_PROPERTY;
use crate::error::{Error, Result};

pub const QUALITY_TABLE: &str = "quality.expectations";
/// Snapshot property of a silver commit: its expectation counts (JSON).
pub const COUNTS_PROPERTY: &str = "medallion.silver.expectations";

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some(schemas::UTC.into()));
    Arc::new(Schema::new(vec![
        Field::new("dataset", DataType::Utf8, false),
        Field::new("expectation", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("passed", DataType::Int64, false),
        Field::new("failed", DataType::Int64, false),
        Field::new("upstream_snapshot", DataType::Int64, false),
        Field::new("silver_snapshot", DataType::Int64, false),
        Field::new("committed_at", ts, false),
    ]))
}

/// Keeps `quality.expectations` up to date with one silver table's commits.
pub(crate) struct Recorder {
    quality: IcebergTable,
    dataset: String,
    /// Silver snapshots whose counts the quality table holds.
    recorded: HashSet<i64>,
}

impl Recorder {
    /// Opens (or creates) the quality table and records the commits of `silver` it misses
    /// (those of a run that stopped between a silver commit and its record).
    pub async fn open(catalog: Arc<Catalog>, silver: &mut Table) -> Result<Self> {
        let dataset = silver.name();
        let quality = IcebergTable::open_or_create(
            catalog,
            &TableDefinition {
                name: QUALITY_TABLE.to_string(),
                schema: schema(),
                partition_by_day: None,
            },
        )
        .await?;
        let recorded = recorded_snapshots(&quality, &dataset).await?;
        let mut recorder = Self {
            quality,
            dataset,
            recorded,
        };
        recorder.sync(silver).await?;
        Ok(recorder)
    }

    /// Appends the counts of every commit of `silver` not recorded yet.
    pub async fn sync(&mut self, silver: &mut Table) -> Result<usize> {
        let corrupt = |message: String| Error::Stage {
            table: self.dataset.clone(),
            message,
        };
        let mut rows: Vec<(Count, i64, i64, i64)> = Vec::new();
        for (snapshot, at_ms, properties) in silver.history().await? {
            if self.recorded.contains(&snapshot) {
                continue;
            }
            let Some(json) = properties.get(COUNTS_PROPERTY) else {
                continue;
            };
            let counts: Vec<Count> = serde_json::from_str(json)
                .map_err(|e| corrupt(format!("snapshot {snapshot}: {COUNTS_PROPERTY}: {e}")))?;
            let upstream = properties
                .get(CURSOR_PROPERTY)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| corrupt(format!("snapshot {snapshot} has counts but no cursor")))?;
            rows.extend(counts.into_iter().map(|c| (c, upstream, snapshot, at_ms)));
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let n = rows.len();
        let text = |f: fn(&(Count, i64, i64, i64)) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let long = |f: fn(&(Count, i64, i64, i64)) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
        };
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![self.dataset.as_str(); n])),
                text(|r| &r.0.name),
                text(|r| &r.0.action),
                long(|r| r.0.passed as i64),
                long(|r| r.0.failed as i64),
                long(|r| r.1),
                long(|r| r.2),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.3 * 1000))
                        .with_timezone(schemas::UTC),
                ),
            ],
        )
        .map_err(lakehouse::Error::from)?;
        let staged = self.quality.write(&batch).await?;
        self.quality.append(staged).await?;
        self.recorded.extend(rows.iter().map(|r| r.2));
        tracing::info!(table = %self.dataset, rows = n, "expectation counts recorded in {QUALITY_TABLE}");
        Ok(n)
    }
}

/// The silver snapshots whose counts the quality table holds for `dataset`.
async fn recorded_snapshots(quality: &IcebergTable, dataset: &str) -> Result<HashSet<i64>> {
    let batches = quality
        .scan_columns(&["dataset".to_string(), "silver_snapshot".to_string()])
        .await?;
    let mut out = HashSet::new();
    for b in &batches {
        let (Some(names), Some(ids)) = (
            b.column(0).as_any().downcast_ref::<StringArray>(),
            b.column(1).as_any().downcast_ref::<Int64Array>(),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if names.is_valid(i) && names.value(i) == dataset {
                out.insert(ids.value(i));
            }
        }
    }
    Ok(out)
}
