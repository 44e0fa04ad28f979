//! Between Arrow batches and the window operator's values: source rows in, gold rows out.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};

use super::aggregate::Value;
use super::config::{EVENT_TIME, PARTITION};
use super::window::{Record, WindowRow};

/// A column in one of the four shapes values come in.
enum Column {
    Int(Int64Array),
    Float(Float64Array),
    Text(StringArray),
    Bool(BooleanArray),
}

impl Column {
    fn of(array: &ArrayRef) -> Result<Self, String> {
        let t = array.data_type();
        let to = |target: &DataType| cast(array, target).map_err(|e| e.to_string());
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        let shaped = if t.is_integer() || matches!(t, DataType::Date32 | DataType::Null) {
            Column::Int(downcast(&to(&DataType::Int64)?)?)
        } else if t.is_floating() {
            Column::Float(downcast(&to(&DataType::Float64)?)?)
        } else if matches!(t, DataType::Timestamp(_, _)) {
            let us = cast(&to(&micros)?, &DataType::Int64).map_err(|e| e.to_string())?;
            Column::Int(downcast(&us)?)
        } else if matches!(t, DataType::Boolean) {
            Column::Bool(downcast(array)?)
        } else {
            Column::Text(downcast(&to(&DataType::Utf8)?)?)
        };
        Ok(shaped)
    }

    fn get(&self, i: usize) -> Value {
        match self {
            Column::Int(a) if a.is_valid(i) => Value::Int(a.value(i)),
            Column::Float(a) if a.is_valid(i) => Value::Float(a.value(i)),
            Column::Text(a) if a.is_valid(i) => Value::Text(a.value(i).to_string()),
            Column::Bool(a) if a.is_valid(i) => Value::Bool(a.value(i)),
            _ => Value::Null,
        }
    }
}

fn downcast<T: Clone + 'static>(array: &ArrayRef) -> Result<T, String> {
    array
        .as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| format!("unexpected column type {}", array.data_type()))
}

/// The records of a projected batch (event time, partition, keys, inputs), and the indices of
/// the rows without an event time.
pub(crate) fn records(
    batch: &RecordBatch,
    keys: usize,
    inputs: usize,
) -> Result<(Vec<Record>, Vec<usize>), String> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("projection lacks {name}"))
            .and_then(Column::of)
    };
    let time = column(EVENT_TIME)?;
    let partition = batch
        .column_by_name(PARTITION)
        .map(Column::of)
        .transpose()?;
    let has_partition = partition.is_some() as usize;
    let rest: Vec<Column> = (0..keys + inputs)
        .map(|i| Column::of(batch.column(1 + has_partition + i)))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut untimed = Vec::new();
    for i in 0..batch.num_rows() {
        let Value::Int(event_time) = time.get(i) else {
            untimed.push(i);
            continue;
        };
        let partition = match partition.as_ref().map(|p| p.get(i)) {
            Some(Value::Int(p)) => p as i32,
            _ => 0,
        };
        out.push(Record {
            partition,
            event_time,
            key: rest[..keys].iter().map(|c| c.get(i)).collect(),
            inputs: rest[keys..].iter().map(|c| c.get(i)).collect(),
        });
    }
    Ok((out, untimed))
}

/// Gold rows as a batch of the table's columns.
pub(crate) fn to_batch(rows: &[WindowRow], schema: &SchemaRef) -> Result<RecordBatch, String> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let value = |row: &WindowRow, c: usize| -> Value {
        match c {
            0 => Value::Int(row.start),
            1 => Value::Int(row.end),
            c if c - 2 < row.key.len() => row.key[c - 2].clone(),
            c => row.values[c - 2 - row.key.len()].clone(),
        }
    };
    for (c, field) in schema.fields().iter().enumerate() {
        let values: Vec<Value> = rows.iter().map(|r| value(r, c)).collect();
        let t = field.data_type();
        let array: ArrayRef = if t.is_floating() {
            Arc::new(Float64Array::from_iter(values.iter().map(|v| match v {
                Value::Float(f) => Some(*f),
                Value::Int(i) => Some(*i as f64),
                _ => None,
            })))
        } else if matches!(t, DataType::Boolean) {
            Arc::new(BooleanArray::from_iter(values.iter().map(|v| match v {
                Value::Bool(b) => Some(*b),
                _ => None,
            })))
        } else if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
            Arc::new(StringArray::from_iter(values.iter().map(|v| match v {
                Value::Text(s) => Some(s.as_str()),
                _ => None,
            })))
        } else {
            let ints = Int64Array::from_iter(values.iter().map(|v| match v {
                Value::Int(i) => Some(*i),
                Value::Float(f) => Some(*f as i64),
                _ => None,
            }));
            match t {
                DataType::Timestamp(unit, tz) => {
                    let us = cast(
                        &ints,
                        &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
                    )
                    .map_err(|e| e.to_string())?;
                    cast(&us, &DataType::Timestamp(*unit, tz.clone())).map_err(|e| e.to_string())?
                }
                t => cast(&ints, t).map_err(|e| e.to_string())?,
            }
        };
        columns.push(array);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// The window and group of each row of a gold batch: (start, end, key).
pub(crate) fn row_ids(
    batch: &RecordBatch,
    keys: usize,
) -> Result<Vec<(i64, i64, Vec<Value>)>, String> {
    let columns: Vec<Column> = (0..2 + keys)
        .map(|c| Column::of(batch.column(c)))
        .collect::<Result<_, _>>()?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let int = |c: &Column| match c.get(i) {
                Value::Int(v) => v,
                _ => 0,
            };
            (
                int(&columns[0]),
                int(&columns[1]),
                columns[2..].iter().map(|c| c.get(i)).collect(),
            )
        })
        .collect())
}
