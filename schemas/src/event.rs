//! Event schemas (Avro `.avsc` files, one per subject) and their columnar shape.

use std::path::Path;
use std::sync::Arc;

use apache_avro::schema::{RecordSchema, UnionSchema};
use apache_avro::Schema as AvroSchema;
use arrow::datatypes::{DataType, Field, TimeUnit};

use crate::error::{Error, Result};

/// Time zone of every timestamp column (what Iceberg's `timestamptz` maps to in Arrow).
pub const UTC: &str = "+00:00";

/// The column type an event field lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
    /// Days since the epoch.
    Date,
    /// Microseconds since the epoch, UTC.
    Timestamp,
    /// Nested records, arrays and maps, kept as JSON text in bronze (silver flattens them).
    Json,
}

impl FieldKind {
    pub fn arrow_type(self) -> DataType {
        match self {
            FieldKind::Boolean => DataType::Boolean,
            FieldKind::Int => DataType::Int32,
            FieldKind::Long => DataType::Int64,
            FieldKind::Float => DataType::Float32,
            FieldKind::Double => DataType::Float64,
            FieldKind::String | FieldKind::Json => DataType::Utf8,
            FieldKind::Bytes => DataType::Binary,
            FieldKind::Date => DataType::Date32,
            FieldKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        }
    }
}

/// One top-level field of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventField {
    pub name: String,
    pub kind: FieldKind,
    /// A required field must be present and non-null (Avro: not a union with null and no default).
    pub required: bool,
}

/// An event type: its Avro schema and the fields it lands as.
#[derive(Debug, Clone)]
pub struct EventSchema {
    pub subject: String,
    pub avro: Arc<AvroSchema>,
    pub fields: Vec<EventField>,
}

impl EventSchema {
    /// Parses an Avro record schema; `origin` names it in errors (a file path or subject).
    pub fn parse(subject: &str, text: &str, origin: &str) -> Result<Self> {
        let avro = AvroSchema::parse_str(text).map_err(|e| Error::InvalidSchema {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let AvroSchema::Record(RecordSchema { fields, .. }) = &avro else {
            return Err(Error::InvalidSchema {
                origin: origin.to_string(),
                message: "the top level must be a record".to_string(),
            });
        };
        let fields = fields
            .iter()
            .map(|f| {
                let (kind, nullable) =
                    classify(&f.schema).map_err(|message| Error::UnsupportedField {
                        origin: origin.to_string(),
                        field: f.name.clone(),
                        message,
                    })?;
                Ok(EventField {
                    name: f.name.clone(),
                    kind,
                    required: !nullable && f.default.is_none(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            subject: subject.to_string(),
            avro: Arc::new(avro),
            fields,
        })
    }

    /// Reads one `.avsc` file; the subject is the file name without its extension.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let subject = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::parse(&subject, &text, &path.display().to_string())
    }

    pub fn field(&self, name: &str) -> Option<&EventField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The Arrow fields of the event's columns, in schema order.
    pub fn arrow_fields(&self) -> Vec<Field> {
        self.fields
            .iter()
            .map(|f| Field::new(&f.name, f.kind.arrow_type(), !f.required))
            .collect()
    }
}

/// (kind, nullable) of a field's Avro schema.
fn classify(schema: &AvroSchema) -> std::result::Result<(FieldKind, bool), String> {
    let kind = match schema {
        AvroSchema::Union(u) => return classify_union(u),
        AvroSchema::Boolean => FieldKind::Boolean,
        AvroSchema::Int => FieldKind::Int,
        AvroSchema::Long => FieldKind::Long,
        AvroSchema::Float => FieldKind::Float,
        AvroSchema::Double => FieldKind::Double,
        AvroSchema::String | AvroSchema::Enum(_) | AvroSchema::Uuid => FieldKind::String,
        AvroSchema::Bytes | AvroSchema::Fixed(_) => FieldKind::Bytes,
        AvroSchema::Date => FieldKind::Date,
        // Millisecond values are scaled to microseconds when decoded.
        AvroSchema::TimestampMillis
        | AvroSchema::LocalTimestampMillis
        | AvroSchema::TimestampMicros
        | AvroSchema::LocalTimestampMicros => FieldKind::Timestamp,
        AvroSchema::Record(_) | AvroSchema::Array(_) | AvroSchema::Map(_) => FieldKind::Json,
        other => return Err(format!("Avro type {other:?} is not supported in bronze")),
    };
    Ok((kind, false))
}

fn classify_union(u: &UnionSchema) -> std::result::Result<(FieldKind, bool), String> {
    let non_null: Vec<&AvroSchema> = u
        .variants()
        .iter()
        .filter(|v| !matches!(v, AvroSchema::Null))
        .collect();
    let nullable = non_null.len() < u.variants().len();
    match non_null.as_slice() {
        [single] => {
            let (kind, _) = classify(single)?;
            Ok((kind, nullable))
        }
        _ => Ok((FieldKind::Json, nullable)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_fields_to_columns() {
        let s = EventSchema::parse(
            "click",
            r#"{"type":"record","name":"Click","fields":[
                {"name":"id","type":"string"},
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"n","type":["null","int"],"default":null},
                {"name":"tags","type":{"type":"array","items":"string"}},
                {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B"]}},
                {"name":"price","type":"double","default":0.0}
            ]}"#,
            "test",
        )
        .unwrap();
        let kinds: Vec<_> = s.fields.iter().map(|f| (f.kind, f.required)).collect();
        assert_eq!(
            kinds,
            vec![
                (FieldKind::String, true),
                (FieldKind::Timestamp, true),
                (FieldKind::Int, false),
                (FieldKind::Json, true),
                (FieldKind::String, true),
                (FieldKind::Double, false),
            ]
        );
    }

    #[test]
    fn refuses_non_records() {
        let err = EventSchema::parse("x", r#""string""#, "x.avsc").unwrap_err();
        assert!(err.to_string().contains("x.avsc"), "{err}");
    }
}
