//! Decoding raw messages (JSON or Confluent-framed Avro) into typed cells, with validation.
//!
//! A record is decoded completely before any of it is appended, so a rejection never leaves a
//! half-written row behind.

use std::borrow::Cow;
use std::collections::HashMap;

use apache_avro::types::Value as AvroValue;
use chrono::{DateTime, NaiveDate};
use schemas::{EventSchema, FieldKind};
use serde_json::value::RawValue;

use crate::spec::Format;

/// A decoded field value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    /// Days since the epoch.
    Days(i32),
    /// Microseconds since the epoch, UTC.
    Micros(i64),
}

/// Why a record was refused: a machine-readable reason code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Turns payloads into rows of cells laid out as the schema's fields.
pub(crate) struct RowDecoder {
    schema: EventSchema,
    format: Format,
    event_time: usize,
    max_record_bytes: u64,
}

impl RowDecoder {
    pub fn new(
        schema: EventSchema,
        format: Format,
        event_time: usize,
        max_record_bytes: u64,
    ) -> Self {
        Self {
            schema,
            format,
            event_time,
            max_record_bytes,
        }
    }

    /// The schema rows are laid out as (and, for Avro, read with).
    pub fn schema(&self) -> &EventSchema {
        &self.schema
    }

    /// Reads later records with a grown schema (the table gained columns).
    pub fn set_schema(&mut self, schema: EventSchema) {
        self.schema = schema;
    }

    /// Decodes and validates one payload: its cells in schema order, and its event time. An
    /// Avro body is resolved from `writer` when given (else it was written with the schema).
    pub fn decode<'a>(
        &self,
        payload: Option<&'a [u8]>,
        writer: Option<&apache_avro::Schema>,
    ) -> Result<(Vec<Cell<'a>>, i64), Rejection> {
        let Some(payload) = payload else {
            return Err(Rejection::new("decode.empty", "the message has no value"));
        };
        if payload.len() as u64 > self.max_record_bytes {
            return Err(Rejection::new(
                "validate.too_large",
                format!(
                    "{} bytes exceeds max_record_bytes = {}",
                    payload.len(),
                    self.max_record_bytes
                ),
            ));
        }
        let cells = match self.format {
            Format::Json => self.decode_json(payload)?,
            Format::Avro => self.decode_avro(payload, writer)?,
        };
        let Cell::Micros(event_micros) = cells[self.event_time] else {
            return Err(Rejection::new(
                "validate.event_time",
                format!(
                    "event time field {} is missing or null",
                    self.schema.fields[self.event_time].name
                ),
            ));
        };
        for (field, cell) in self.schema.fields.iter().zip(&cells) {
            if field.required && *cell == Cell::Null {
                return Err(Rejection::new(
                    "validate.missing_field",
                    format!("required field {} is missing or null", field.name),
                ));
            }
        }
        Ok((cells, event_micros))
    }

    fn decode_json<'a>(&self, payload: &'a [u8]) -> Result<Vec<Cell<'a>>, Rejection> {
        let object: HashMap<Cow<'a, str>, &'a RawValue> = serde_json::from_slice(payload)
            .map_err(|e| Rejection::new("decode.json", format!("not a JSON object: {e}")))?;
        self.schema
            .fields
            .iter()
            .enumerate()
            .map(|(i, field)| match object.get(field.name.as_str()) {
                None => Ok(Cell::Null),
                Some(raw) => json_cell(raw, field.kind).map_err(|msg| {
                    let reason = if i == self.event_time {
                        "validate.event_time"
                    } else {
                        "validate.type"
                    };
                    Rejection::new(reason, format!("field {}: {msg}", field.name))
                }),
            })
            .collect()
    }

    fn decode_avro<'a>(
        &self,
        payload: &'a [u8],
        writer: Option<&apache_avro::Schema>,
    ) -> Result<Vec<Cell<'a>>, Rejection> {
        let (_schema_id, mut body) = schemas::wire::split_frame(payload)
            .map_err(|e| Rejection::new("schema.bad_framing", e.to_string()))?;
        let value = match writer {
            None => apache_avro::from_avro_datum(&self.schema.avro, &mut body, None),
            Some(w) => apache_avro::from_avro_datum(w, &mut body, Some(&self.schema.avro)),
        }
        .map_err(|e| Rejection::new("decode.avro", e.to_string()))?;
        if !body.is_empty() {
            return Err(Rejection::new(
                "decode.avro",
                format!("{} bytes left over after the record", body.len()),
            ));
        }
        let AvroValue::Record(fields) = value else {
            return Err(Rejection::new("decode.avro", "the datum is not a record"));
        };
        self.schema
            .fields
            .iter()
            .zip(fields)
            .map(|(field, (_, v))| {
                avro_cell(v, field.kind).map_err(|msg| {
                    Rejection::new("decode.avro", format!("field {}: {msg}", field.name))
                })
            })
            .collect()
    }
}

fn json_cell<'a>(raw: &'a RawValue, kind: FieldKind) -> Result<Cell<'a>, String> {
    let text = raw.get();
    if text == "null" {
        return Ok(Cell::Null);
    }
    let expected = |what: &str| format!("expected {what}, found {}", abbreviate(text));
    let cell = match kind {
        FieldKind::Boolean => {
            Cell::Bool(serde_json::from_str(text).map_err(|_| expected("a boolean"))?)
        }
        FieldKind::Int => {
            let v: i32 = serde_json::from_str(text).map_err(|_| expected("a 32-bit integer"))?;
            Cell::Long(v.into())
        }
        FieldKind::Long => {
            Cell::Long(serde_json::from_str(text).map_err(|_| expected("an integer"))?)
        }
        FieldKind::Float | FieldKind::Double => {
            Cell::Double(serde_json::from_str(text).map_err(|_| expected("a number"))?)
        }
        FieldKind::String => {
            Cell::Str(serde_json::from_str::<Cow<'a, str>>(text).map_err(|_| expected("a string"))?)
        }
        FieldKind::Bytes => {
            let s: Cow<'a, str> = serde_json::from_str(text).map_err(|_| expected("a string"))?;
            Cell::Bytes(match s {
                Cow::Borrowed(b) => Cow::Borrowed(b.as_bytes()),
                Cow::Owned(o) => Cow::Owned(o.into_bytes()),
            })
        }
        FieldKind::Json => Cell::Str(Cow::Borrowed(text)),
        FieldKind::Date => {
            let s: Cow<'a, str> = serde_json::from_str(text).map_err(|_| expected("a date"))?;
            let d = NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .map_err(|_| expected("a YYYY-MM-DD date"))?;
            Cell::Days(days_since_epoch(d))
        }
        FieldKind::Timestamp => {
            if let Ok(ms) = serde_json::from_str::<i64>(text) {
                Cell::Micros(
                    ms.checked_mul(1000)
                        .ok_or_else(|| expected("a timestamp in range"))?,
                )
            } else {
                let s: Cow<'a, str> = serde_json::from_str(text)
                    .map_err(|_| expected("an RFC 3339 timestamp or epoch milliseconds"))?;
                let t = DateTime::parse_from_rfc3339(&s)
                    .map_err(|_| expected("an RFC 3339 timestamp or epoch milliseconds"))?;
                Cell::Micros(t.timestamp_micros())
            }
        }
    };
    Ok(cell)
}

fn avro_cell(value: AvroValue, kind: FieldKind) -> Result<Cell<'static>, String> {
    let value = match value {
        AvroValue::Union(_, inner) => *inner,
        v => v,
    };
    let cell = match (value, kind) {
        (AvroValue::Null, _) => Cell::Null,
        (AvroValue::Boolean(b), _) => Cell::Bool(b),
        (AvroValue::Int(i), _) => Cell::Long(i.into()),
        (AvroValue::Long(i), _) => Cell::Long(i),
        (AvroValue::Float(f), _) => Cell::Double(f.into()),
        (AvroValue::Double(f), _) => Cell::Double(f),
        (AvroValue::String(s), _) | (AvroValue::Enum(_, s), _) => Cell::Str(Cow::Owned(s)),
        (AvroValue::Uuid(u), _) => Cell::Str(Cow::Owned(u.to_string())),
        (AvroValue::Bytes(b), _) | (AvroValue::Fixed(_, b), _) => Cell::Bytes(Cow::Owned(b)),
        (AvroValue::Date(d), _) => Cell::Days(d),
        (AvroValue::TimestampMillis(ms), _) | (AvroValue::LocalTimestampMillis(ms), _) => {
            Cell::Micros(ms.saturating_mul(1000))
        }
        (AvroValue::TimestampMicros(us), _) | (AvroValue::LocalTimestampMicros(us), _) => {
            Cell::Micros(us)
        }
        (v, FieldKind::Json) => {
            let json = serde_json::Value::try_from(v).map_err(|e| e.to_string())?;
            Cell::Str(Cow::Owned(json.to_string()))
        }
        (v, k) => return Err(format!("value {v:?} does not fit a {k:?} column")),
    };
    Ok(cell)
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days() as i32
}

fn abbreviate(text: &str) -> String {
    if text.len() <= 40 {
        text.to_string()
    } else {
        let cut = (0..=40)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}…", &text[..cut])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(format: Format) -> RowDecoder {
        let schema = EventSchema::parse(
            "e",
            r#"{"type":"record","name":"E","fields":[
                {"name":"id","type":"string"},
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"n","type":["null","int"],"default":null},
                {"name":"payload","type":["null",{"type":"map","values":"string"}],"default":null}
            ]}"#,
            "test",
        )
        .unwrap();
        RowDecoder::new(schema, format, 1, 200)
    }

    #[test]
    fn json_rows_and_rejections() {
        let d = decoder(Format::Json);
        let ok =
            br#"{"id":"a\"b","at":"2026-01-02T03:04:05.5Z","n":7,"payload":{"x":"y"},"extra":1}"#;
        let (cells, at) = d.decode(Some(ok), None).unwrap();
        assert_eq!(at, 1_767_323_045_500_000);
        assert_eq!(cells[0], Cell::Str(Cow::Owned("a\"b".into())));
        assert_eq!(cells[1], Cell::Micros(1_767_323_045_500_000));
        assert_eq!(cells[2], Cell::Long(7));
        assert_eq!(cells[3], Cell::Str(Cow::Borrowed(r#"{"x":"y"}"#)));
        let (millis, _) = d.decode(Some(br#"{"id":"a","at":1000}"#), None).unwrap();
        assert_eq!(millis[1], Cell::Micros(1_000_000));
        assert_eq!(millis[2], Cell::Null);

        let reason = |p: &[u8]| d.decode(Some(p), None).unwrap_err().reason;
        assert_eq!(reason(b"{not json"), "decode.json");
        assert_eq!(reason(br#"{"at":1}"#), "validate.missing_field");
        assert_eq!(
            reason(br#"{"id":"a","at":"yesterday"}"#),
            "validate.event_time"
        );
        assert_eq!(reason(br#"{"id":"a"}"#), "validate.event_time");
        assert_eq!(reason(br#"{"id":"a","at":1,"n":"seven"}"#), "validate.type");
        assert_eq!(
            reason(br#"{"id":"a","at":1,"n":3000000000}"#),
            "validate.type"
        );
        assert_eq!(reason(&[b' '; 300]), "validate.too_large");
        assert_eq!(d.decode(None, None).unwrap_err().reason, "decode.empty");
    }

    #[test]
    fn avro_rows_and_rejections() {
        let d = decoder(Format::Avro);
        let mut record = apache_avro::types::Record::new(&d.schema.avro).unwrap();
        record.put("id", "x");
        record.put("at", AvroValue::TimestampMillis(2_000));
        record.put("n", AvroValue::Union(1, Box::new(AvroValue::Int(5))));
        record.put("payload", AvroValue::Union(0, Box::new(AvroValue::Null)));
        let body = apache_avro::to_avro_datum(&d.schema.avro, record).unwrap();
        let framed = schemas::wire::frame(1, &body);
        let (cells, _) = d.decode(Some(&framed), None).unwrap();
        assert_eq!(cells[1], Cell::Micros(2_000_000));
        assert_eq!(cells[2], Cell::Long(5));
        assert_eq!(
            d.decode(Some(&body), None).unwrap_err().reason,
            "schema.bad_framing"
        );
        // Written with an older schema (no `n`, no `payload`): resolved to the reader's.
        let older = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"E","fields":[
                {"name":"id","type":"string"},
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}
            ]}"#,
        )
        .unwrap();
        let mut old = apache_avro::types::Record::new(&older).unwrap();
        old.put("id", "y");
        old.put("at", AvroValue::TimestampMillis(3_000));
        let old = schemas::wire::frame(2, &apache_avro::to_avro_datum(&older, old).unwrap());
        let (cells, _) = d.decode(Some(&old), Some(&older)).unwrap();
        assert_eq!(
            cells,
            [
                Cell::Str(Cow::Owned("y".into())),
                Cell::Micros(3_000_000),
                Cell::Null,
                Cell::Null
            ]
        );
        let truncated = &framed[..framed.len() - 4];
        assert_eq!(
            d.decode(Some(truncated), None).unwrap_err().reason,
            "decode.avro"
        );
    }
}
