//! `gold.alerts`: a row per alert, window and group whose condition a written gold row meets.
//!
//! Alerts are appended before the gold commit that writes their rows, and an alert already in
//! the table is not raised again: a crash between the two, or a commit lost to another worker,
//! repeats the computation (which is deterministic) but not the alert.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use lakehouse::{Catalog, IcebergTable, TableDefinition};

use super::window::WindowRow;
use crate::dlq::rows_as_json;
use crate::error::{Error, Result};
use crate::silver::transform::matching_rows;
use crate::spec::AlertSpec;

pub const ALERTS_TABLE: &str = "gold.alerts";

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some(schemas::UTC.into()));
    Arc::new(Schema::new(vec![
        Field::new("dataset", DataType::Utf8, false),
        Field::new("alert", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("window_start", ts.clone(), false),
        Field::new("window_end", ts.clone(), false),
        // The group's columns, and the whole row, as JSON objects.
        Field::new("group_key", DataType::Utf8, false),
        Field::new("row", DataType::Utf8, false),
        Field::new("source_snapshot", DataType::Int64, false),
        Field::new("raised_at", ts, false),
    ]))
}

/// Which alert fired for which window and group: (alert, start, end, group JSON).
type Raised = (String, i64, i64, String);

/// Raises one gold table's alerts.
pub(crate) struct Alerts {
    table: Option<IcebergTable>,
    specs: Vec<AlertSpec>,
    dataset: String,
    group_by: Vec<String>,
    raised: HashSet<Raised>,
}

impl Alerts {
    /// Checks every condition against the gold table's columns; `Err` is (alert, message).
    pub fn check(
        specs: &[AlertSpec],
        output: &SchemaRef,
    ) -> std::result::Result<(), (String, String)> {
        let empty = RecordBatch::new_empty(output.clone());
        for a in specs {
            matching_rows(&empty, &a.when).map_err(|m| (a.name.clone(), m))?;
        }
        Ok(())
    }

    /// Opens `gold.alerts` (when the table has alerts) and loads the alerts it raised.
    pub async fn open(
        catalog: Arc<Catalog>,
        dataset: &str,
        specs: &[AlertSpec],
        group_by: &[String],
    ) -> Result<Self> {
        let mut alerts = Self {
            table: None,
            specs: specs.to_vec(),
            dataset: dataset.to_string(),
            group_by: group_by.to_vec(),
            raised: HashSet::new(),
        };
        if specs.is_empty() {
            return Ok(alerts);
        }
        let table = IcebergTable::open_or_create(
            catalog,
            &TableDefinition {
                name: ALERTS_TABLE.to_string(),
                schema: schema(),
                partition_by_day: None,
            },
        )
        .await?;
        let columns: Vec<String> = [
            "dataset",
            "alert",
            "window_start",
            "window_end",
            "group_key",
        ]
        .map(String::from)
        .to_vec();
        for b in table.scan_columns(&columns).await? {
            let text = |c: usize| b.column(c).as_any().downcast_ref::<StringArray>().cloned();
            let micros = |c: usize| {
                arrow::compute::cast(b.column(c), &DataType::Int64)
                    .ok()
                    .and_then(|a| a.as_any().downcast_ref::<Int64Array>().cloned())
            };
            let (Some(ds), Some(alert), Some(start), Some(end), Some(group)) =
                (text(0), text(1), micros(2), micros(3), text(4))
            else {
                continue;
            };
            for i in 0..b.num_rows() {
                if ds.value(i) == dataset {
                    alerts.raised.insert((
                        alert.value(i).to_string(),
                        start.value(i),
                        end.value(i),
                        group.value(i).to_string(),
                    ));
                }
            }
        }
        alerts.table = Some(table);
        Ok(alerts)
    }

    /// Appends the alerts `batch` (the gold rows `rows` about to be committed) calls for that
    /// were not raised yet; returns how many.
    pub async fn raise(
        &mut self,
        batch: &RecordBatch,
        rows: &[WindowRow],
        source_snapshot: i64,
    ) -> Result<usize> {
        let Some(table) = self.table.as_mut() else {
            return Ok(0);
        };
        let stage_err = |message: String| Error::Stage {
            table: self.dataset.clone(),
            message,
        };
        let json = rows_as_json(batch).map_err(stage_err)?;
        let mut new: Vec<(Raised, &'static str, String)> = Vec::new();
        for a in &self.specs {
            for i in matching_rows(batch, &a.when).map_err(stage_err)? {
                let (i, row) = (i as usize, &rows[i as usize]);
                let full: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&json[i]).map_err(|e| stage_err(e.to_string()))?;
                let group: serde_json::Map<String, serde_json::Value> = self
                    .group_by
                    .iter()
                    .map(|g| (g.clone(), full.get(g).cloned().unwrap_or_default()))
                    .collect();
                let id = (
                    a.name.clone(),
                    row.start,
                    row.end,
                    serde_json::Value::Object(group).to_string(),
                );
                if self.raised.contains(&id) || new.iter().any(|(n, _, _)| *n == id) {
                    continue;
                }
                tracing::warn!(table = %self.dataset, alert = %a.name, severity = a.severity.as_str(), group = %id.3, row = %String::from_utf8_lossy(&json[i]), "alert");
                new.push((
                    id,
                    a.severity.as_str(),
                    String::from_utf8_lossy(&json[i]).into_owned(),
                ));
            }
        }
        if new.is_empty() {
            return Ok(0);
        }
        let n = new.len();
        let now = chrono::Utc::now().timestamp_micros();
        let text = |f: &dyn Fn(&(Raised, &'static str, String)) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(new.iter().map(f)))
        };
        let ts = |f: &dyn Fn(&(Raised, &'static str, String)) -> i64| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(new.iter().map(f))
                    .with_timezone(schemas::UTC),
            )
        };
        let out = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![self.dataset.as_str(); n])),
                text(&|r| r.0 .0.clone()),
                text(&|r| r.1.to_string()),
                ts(&|r| r.0 .1),
                ts(&|r| r.0 .2),
                text(&|r| r.0 .3.clone()),
                text(&|r| r.2.clone()),
                Arc::new(Int64Array::from(vec![source_snapshot; n])),
                ts(&|_| now),
            ],
        )
        .map_err(lakehouse::Error::from)?;
        let staged = table.write(&out).await?;
        table.append(staged).await?;
        self.raised.extend(new.into_iter().map(|(id, _, _)| id));
        Ok(n)
    }
}
