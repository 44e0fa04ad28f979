//! Reading a table's Parquet data files directly (the formats whose files medallion lists
//! itself: Delta and plain Parquet).

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use futures::TryStreamExt;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::ProjectionMask;

use crate::table::conform;
use crate::{Error, Result};

/// Whether a file whose timestamps are in `[lower, upper]` (`None`: not known) may hold one in
/// `[from, to)` (`None` leaves that side open).
pub(crate) fn overlaps(
    (lower, upper): (Option<i64>, Option<i64>),
    from: Option<i64>,
    to: Option<i64>,
) -> bool {
    from.is_none_or(|from| upper.is_none_or(|u| u >= from))
        && to.is_none_or(|to| lower.is_none_or(|l| l < to))
}

/// The rows of `batches` (read with [`with_time_column`]) at or after `since_micros`.
pub(crate) fn keep_since(batches: Vec<RecordBatch>, since_micros: i64) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for batch in &batches {
        out.extend(since(batch, since_micros)?);
    }
    Ok(out)
}

/// Every column name of `schema`, in order.
pub(crate) fn column_names(schema: &Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// `columns` of every row of one data file, laid out as the table `schema` has them; a column
/// added after the file was written reads as null. `file` names the file in errors.
pub(crate) async fn read_columns<R: AsyncFileReader + Unpin + Send + 'static>(
    (table, file): (&str, &str),
    reader: R,
    schema: &SchemaRef,
    columns: &[String],
) -> Result<Vec<RecordBatch>> {
    let read_err = |e: parquet::errors::ParquetError| {
        Error::Config(format!("table {table}: reading {file}: {e}"))
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(read_err)?;
    let file_schema = builder.schema().clone();
    let indices: Vec<usize> = columns
        .iter()
        .filter_map(|c| file_schema.index_of(c).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let batches: Vec<RecordBatch> = builder
        .with_projection(mask)
        .build()
        .map_err(read_err)?
        .try_collect()
        .await
        .map_err(read_err)?;
    let wanted = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                schema
                    .field_with_name(c)
                    .cloned()
                    .map_err(|_| Error::Config(format!("table {table}: no column {c}")))
            })
            .collect::<Result<Vec<_>>>()?,
    ));
    batches.iter().map(|b| conform(table, &wanted, b)).collect()
}

/// The columns a time-bounded scan reads: `columns`, then the time column for the filter.
pub(crate) fn with_time_column(columns: &[String], time_column: &str) -> Vec<String> {
    let mut read = columns.to_vec();
    read.push(time_column.to_string());
    read
}

/// The rows of `batch` (read with [`with_time_column`]) whose time is at or after
/// `since_micros`, without the time column; `None` when none is.
pub(crate) fn since(batch: &RecordBatch, since_micros: i64) -> Result<Option<RecordBatch>> {
    let time = batch.num_columns() - 1;
    let times = arrow::compute::cast(batch.column(time), &DataType::Int64)?;
    let bound = Int64Array::new_scalar(since_micros);
    let keep = arrow::compute::kernels::cmp::gt_eq(&times, &bound)?;
    let kept = arrow::compute::filter_record_batch(batch, &keep)?;
    let projection: Vec<usize> = (0..time).collect();
    Ok((kept.num_rows() > 0)
        .then(|| kept.project(&projection))
        .transpose()?)
}

/// The smallest and largest value of a timestamp column in microseconds.
pub(crate) fn time_range(column: &dyn arrow::array::Array) -> Result<Option<(i64, i64)>> {
    let times = arrow::compute::cast(column, &DataType::Int64)?;
    let times = times
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::Config("a timestamp column did not cast to integers".into()))?;
    Ok(arrow::compute::min(times).zip(arrow::compute::max(times)))
}
