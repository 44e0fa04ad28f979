//! Arrow batches (arrow-rs, what the tables read and write) to polars data frames and back,
//! through the Arrow C data interface: primitive buffers are shared, not copied.

use std::sync::Arc;

use arrow::array::{make_array, Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use arrow::ffi::{from_ffi, to_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use polars::prelude::{Column, CompatLevel, DataFrame, PlSmallStr, Series};

/// Time zone polars names UTC by; the tables write `+00:00`.
const POLARS_UTC: &str = "UTC";

/// Converts a batch to a data frame with the same columns.
pub(crate) fn to_polars(batch: &RecordBatch) -> Result<DataFrame, String> {
    let columns = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| {
            let array = utc_named_for_polars(array);
            let (ffi_array, ffi_schema) = to_ffi(&array.to_data()).map_err(|e| e.to_string())?;
            // SAFETY: arrow-rs and polars-arrow both implement the Arrow C data interface, whose
            // two structs are `#[repr(C)]` with the same fields in each crate. The array is moved
            // (its release callback travels with it); the schema is only borrowed.
            let imported = unsafe {
                let schema = &*(&ffi_schema as *const FFI_ArrowSchema
                    as *const polars_arrow::ffi::ArrowSchema);
                let field =
                    polars_arrow::ffi::import_field_from_c(schema).map_err(|e| e.to_string())?;
                let array: polars_arrow::ffi::ArrowArray = std::mem::transmute(ffi_array);
                polars_arrow::ffi::import_array_from_c(array, field.dtype().clone())
                    .map_err(|e| e.to_string())?
            };
            Series::from_arrow(PlSmallStr::from(field.name().as_str()), imported)
                .map(Column::from)
                .map_err(|e| format!("column {}: {e}", field.name()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    DataFrame::new(batch.num_rows(), columns).map_err(|e| e.to_string())
}

/// Converts a data frame to arrow-rs columns, with the types a table can hold: large and view
/// strings and binaries become plain ones, timestamps microseconds (UTC as `+00:00`).
pub(crate) fn from_polars(df: &DataFrame) -> Result<RecordBatch, String> {
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for column in df.columns() {
        let series = column.as_materialized_series().rechunk();
        let name = series.name().to_string();
        let exported = series.to_arrow(0, CompatLevel::oldest());
        let field = polars_arrow::datatypes::Field::new(
            series.name().clone(),
            exported.dtype().clone(),
            true,
        );
        let ffi_schema = polars_arrow::ffi::export_field_to_c(&field);
        let ffi_array = polars_arrow::ffi::export_array_to_c(exported);
        // SAFETY: as in `to_polars`, the other way round; both structs are moved.
        let data = unsafe {
            let schema: FFI_ArrowSchema = std::mem::transmute(ffi_schema);
            let array: FFI_ArrowArray = std::mem::transmute(ffi_array);
            from_ffi(array, &schema).map_err(|e| format!("column {name}: {e}"))?
        };
        let array = make_array(data);
        let wanted = table_type(array.data_type()).ok_or_else(|| {
            format!(
                "column {name} is {}, which a table cannot hold",
                array.data_type()
            )
        })?;
        let array =
            arrow::compute::cast(&array, &wanted).map_err(|e| format!("column {name}: {e}"))?;
        fields.push(Field::new(name, wanted, true));
        arrays.push(array);
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new_with_options(
        schema,
        arrays,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(df.height())),
    )
    .map_err(|e| e.to_string())
}

/// The column type a table stores for a polars result type, if it can store it.
fn table_type(dt: &DataType) -> Option<DataType> {
    Some(match dt {
        DataType::Boolean
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Date32
        | DataType::Utf8
        | DataType::Binary => dt.clone(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Timestamp(_, tz) => DataType::Timestamp(
            TimeUnit::Microsecond,
            tz.as_ref().map(|_| schemas::UTC.into()),
        ),
        DataType::Null => DataType::Utf8,
        _ => return None,
    })
}

/// Tables write UTC as `+00:00`; polars wants a zone name.
fn utc_named_for_polars(array: &ArrayRef) -> ArrayRef {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => Arc::new(
            array
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone(POLARS_UTC),
        ),
        _ => array.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int32Array, StringArray, TimestampMicrosecondArray};

    #[test]
    fn round_trip_keeps_values_and_table_types() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("i", DataType::Int32, true),
            Field::new("f", DataType::Float64, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some(schemas::UTC.into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, Some("ü")])),
                Arc::new(Int32Array::from(vec![Some(1), Some(2), None])),
                Arc::new(Float64Array::from(vec![0.5, 1.5, -2.0])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1), None, Some(3_000_000)])
                        .with_timezone(schemas::UTC),
                ),
            ],
        )
        .unwrap();
        let df = to_polars(&batch).unwrap();
        assert_eq!(df.height(), 3);
        let back = from_polars(&df).unwrap();
        assert_eq!(back.schema(), schema);
        assert_eq!(back.columns(), batch.columns());
    }
}
