//! Per-column statistics of a table's rows, computed by polars.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, SecondsFormat};
use polars::prelude::{AnyValue, DataType, TimeUnit};
use serde_json::Value;

use crate::model::{ColumnProfile, Profile};

pub(crate) fn profile(
    schema: SchemaRef,
    batches: &[RecordBatch],
    sampled: bool,
) -> Result<Profile, String> {
    let df = pipelines::query::to_frame(schema, batches)?;
    let rows = df.height() as u64;
    let mut columns = Vec::new();
    for column in df.columns() {
        let series = column.as_materialized_series();
        let nulls = series.null_count() as u64;
        let orderable = !matches!(
            series.dtype(),
            DataType::List(_) | DataType::Binary | DataType::Null
        ) && !series.dtype().is_nested();
        let (distinct, min, max) = if orderable {
            let unique = series.n_unique().map_err(|e| e.to_string())? as u64;
            let min = series.min_reduce().map_err(|e| e.to_string())?;
            let max = series.max_reduce().map_err(|e| e.to_string())?;
            // n_unique counts null as a value.
            let distinct = unique - u64::from(nulls > 0);
            (distinct, json(min.value()), json(max.value()))
        } else {
            let unique = series
                .drop_nulls()
                .n_unique()
                .map_err(|e| e.to_string())
                .unwrap_or_default() as u64;
            (unique, Value::Null, Value::Null)
        };
        columns.push(ColumnProfile {
            name: series.name().to_string(),
            data_type: series.dtype().to_string(),
            nulls,
            null_rate: crate::gather::ratio(nulls, rows).unwrap_or(0.0),
            distinct,
            min,
            max,
        });
    }
    Ok(Profile {
        rows,
        sampled,
        columns,
    })
}

/// A polars value as JSON: numbers as numbers (non-finite ones as null), timestamps as
/// RFC 3339 in UTC, dates as `YYYY-MM-DD`, the rest as polars prints it.
fn json(value: &AnyValue<'_>) -> Value {
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::String(s) => Value::String((*s).to_string()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::UInt8(v) => Value::from(*v),
        AnyValue::UInt16(v) => Value::from(*v),
        AnyValue::UInt32(v) => Value::from(*v),
        AnyValue::UInt64(v) => Value::from(*v),
        AnyValue::Int8(v) => Value::from(*v),
        AnyValue::Int16(v) => Value::from(*v),
        AnyValue::Int32(v) => Value::from(*v),
        AnyValue::Int64(v) => Value::from(*v),
        AnyValue::Float32(v) => float(f64::from(*v)),
        AnyValue::Float64(v) => float(*v),
        AnyValue::Date(days) => DateTime::from_timestamp(i64::from(*days) * 86_400, 0)
            .map_or(Value::Null, |d| {
                Value::String(d.format("%Y-%m-%d").to_string())
            }),
        AnyValue::Datetime(v, unit, _) | AnyValue::DatetimeOwned(v, unit, _) => {
            let micros = match unit {
                TimeUnit::Nanoseconds => v / 1000,
                TimeUnit::Microseconds => *v,
                TimeUnit::Milliseconds => v.saturating_mul(1000),
            };
            DateTime::from_timestamp_micros(micros).map_or(Value::Null, |t| {
                Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            })
        }
        other => Value::String(other.to_string()),
    }
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}
