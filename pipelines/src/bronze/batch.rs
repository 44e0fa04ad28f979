//! Accumulates decoded rows into Arrow columns for one commit.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use schemas::{EventSchema, FieldKind, UTC};

use super::decode::Cell;
use crate::source::SourceRecord;

/// The Kafka metadata columns every bronze table carries after the event's own fields.
pub(crate) const KAFKA_COLUMNS: [&str; 5] = [
    "_kafka_topic",
    "_kafka_partition",
    "_kafka_offset",
    "_kafka_timestamp",
    "_ingested_at",
];

/// The bronze table's columns: the event fields, then the Kafka metadata.
pub(crate) fn bronze_schema(event: &EventSchema) -> SchemaRef {
    let ts = FieldKind::Timestamp.arrow_type();
    let mut fields = event.arrow_fields();
    fields.extend([
        Field::new(KAFKA_COLUMNS[0], DataType::Utf8, false),
        Field::new(KAFKA_COLUMNS[1], DataType::Int32, false),
        Field::new(KAFKA_COLUMNS[2], DataType::Int64, false),
        Field::new(KAFKA_COLUMNS[3], ts.clone(), true),
        Field::new(KAFKA_COLUMNS[4], ts, false),
    ]);
    Arc::new(Schema::new(fields))
}

enum Column {
    Bool(BooleanBuilder),
    Int(Int32Builder),
    Long(Int64Builder),
    Float(Float32Builder),
    Double(Float64Builder),
    Str(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(kind: FieldKind) -> Self {
        match kind {
            FieldKind::Boolean => Column::Bool(BooleanBuilder::new()),
            FieldKind::Int => Column::Int(Int32Builder::new()),
            FieldKind::Long => Column::Long(Int64Builder::new()),
            FieldKind::Float => Column::Float(Float32Builder::new()),
            FieldKind::Double => Column::Double(Float64Builder::new()),
            FieldKind::String | FieldKind::Json => Column::Str(StringBuilder::new()),
            FieldKind::Bytes => Column::Bytes(BinaryBuilder::new()),
            FieldKind::Date => Column::Date(Date32Builder::new()),
            FieldKind::Timestamp => Column::Ts(TimestampMicrosecondBuilder::new()),
        }
    }

    /// Appends a cell the decoder produced for this column's kind.
    fn push(&mut self, cell: &Cell<'_>) {
        match (self, cell) {
            (Column::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Column::Int(b), Cell::Long(v)) => b.append_option(i32::try_from(*v).ok()),
            (Column::Long(b), Cell::Long(v)) => b.append_value(*v),
            (Column::Float(b), Cell::Double(v)) => b.append_value(*v as f32),
            (Column::Float(b), Cell::Long(v)) => b.append_value(*v as f32),
            (Column::Double(b), Cell::Double(v)) => b.append_value(*v),
            (Column::Double(b), Cell::Long(v)) => b.append_value(*v as f64),
            (Column::Str(b), Cell::Str(v)) => b.append_value(v),
            (Column::Bytes(b), Cell::Bytes(v)) => b.append_value(v),
            (Column::Date(b), Cell::Days(v)) => b.append_value(*v),
            (Column::Ts(b), Cell::Micros(v)) => b.append_value(*v),
            (c, _) => c.push_null(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Column::Bool(b) => b.append_null(),
            Column::Int(b) => b.append_null(),
            Column::Long(b) => b.append_null(),
            Column::Float(b) => b.append_null(),
            Column::Double(b) => b.append_null(),
            Column::Str(b) => b.append_null(),
            Column::Bytes(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Ts(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Int(b) => Arc::new(b.finish()),
            Column::Long(b) => Arc::new(b.finish()),
            Column::Float(b) => Arc::new(b.finish()),
            Column::Double(b) => Arc::new(b.finish()),
            Column::Str(b) => Arc::new(b.finish()),
            Column::Bytes(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Ts(b) => Arc::new(b.finish().with_timezone(UTC)),
        }
    }
}

/// The rows of one open batch.
pub(crate) struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    kafka_ts: TimestampMicrosecondBuilder,
    ingested: TimestampMicrosecondBuilder,
    rows: usize,
}

impl BatchBuilder {
    pub fn new(event: &EventSchema) -> Self {
        Self {
            schema: bronze_schema(event),
            columns: event.fields.iter().map(|f| Column::new(f.kind)).collect(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            kafka_ts: TimestampMicrosecondBuilder::new(),
            ingested: TimestampMicrosecondBuilder::new(),
            rows: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn push(&mut self, cells: &[Cell<'_>], record: &SourceRecord, ingested_micros: i64) {
        for (col, cell) in self.columns.iter_mut().zip(cells) {
            col.push(cell);
        }
        self.topic.append_value(&record.topic);
        self.partition.append_value(record.partition);
        self.offset.append_value(record.offset);
        self.kafka_ts
            .append_option(record.timestamp_ms.and_then(|ms| ms.checked_mul(1000)));
        self.ingested.append_value(ingested_micros);
        self.rows += 1;
    }

    /// Takes the accumulated rows, leaving the builder empty.
    pub fn finish(&mut self) -> arrow::error::Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        arrays.push(Arc::new(self.topic.finish()));
        arrays.push(Arc::new(self.partition.finish()));
        arrays.push(Arc::new(self.offset.finish()));
        arrays.push(Arc::new(self.kafka_ts.finish().with_timezone(UTC)));
        arrays.push(Arc::new(self.ingested.finish().with_timezone(UTC)));
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }

    /// Drops the accumulated rows.
    pub fn clear(&mut self) {
        // Finishing resets every builder; the batch itself is not needed.
        let _ = self.finish();
    }
}
