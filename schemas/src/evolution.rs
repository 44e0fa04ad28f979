//! How a table that decodes its records with one Avro schema (its reader schema) takes records
//! written with another. The reader schema may grow by the writer's new fields, each with a
//! default so that records of earlier writers still resolve; it never loses or retypes a field,
//! because the rows already in the table keep them.

use apache_avro::schema::RecordSchema;
use apache_avro::Schema;
use serde_json::Value;

use crate::compat::{can_read, Incompatibility, IncompatibilityKind};

/// What the table has to do to read a writer's records.
#[derive(Debug, Clone)]
pub enum Evolution {
    /// The reader schema reads them as it is.
    Readable,
    /// The reader schema must first gain the `added` fields (in this order, at the end):
    /// `reader` is the grown schema.
    AddFields { reader: Schema, added: Vec<String> },
}

/// Decides how records written with `writer` enter a table read with `reader`; the problems
/// that make it impossible otherwise. `writer_label` names the writer in messages.
pub fn evolve(
    reader: &Schema,
    writer: &Schema,
    writer_label: &str,
) -> Result<Evolution, Vec<Incompatibility>> {
    let problem = |kind, location: String, message: String| {
        vec![Incompatibility {
            kind,
            location,
            message,
        }]
    };
    let (Schema::Record(table), Schema::Record(written)) = (reader, writer) else {
        return Err(problem(
            IncompatibilityKind::TypeMismatch,
            String::new(),
            format!("{writer_label} is not a record, and the table's schema is"),
        ));
    };
    let mut added = Vec::new();
    let mut added_json = Vec::new();
    for (i, field) in written.fields.iter().enumerate() {
        if known_to(table, &field.name) {
            continue;
        }
        if field.default.is_none() {
            return Err(problem(
                IncompatibilityKind::ReaderFieldMissingDefaultValue,
                format!("/fields/{i}"),
                format!(
                    "field `{}` is new in {writer_label} without a default, so the table could not read the records of earlier writers, which do not write it",
                    field.name
                ),
            ));
        }
        let json = serde_json::to_value(field).map_err(|e| {
            problem(
                IncompatibilityKind::TypeMismatch,
                format!("/fields/{i}"),
                format!("field `{}` of {writer_label}: {e}", field.name),
            )
        })?;
        added.push(field.name.clone());
        added_json.push(json);
    }
    let grown = if added.is_empty() {
        None
    } else {
        Some(grow(reader, added_json).map_err(|message| {
            problem(IncompatibilityKind::TypeMismatch, String::new(), message)
        })?)
    };
    let problems = can_read(
        writer,
        grown.as_ref().unwrap_or(reader),
        writer_label,
        "the table's schema",
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(match grown {
        None => Evolution::Readable,
        Some(reader) => Evolution::AddFields { reader, added },
    })
}

/// Whether the reader resolves a writer field of this name (by its name or an alias).
fn known_to(reader: &RecordSchema, name: &str) -> bool {
    reader.fields.iter().any(|f| {
        f.name == name
            || f.aliases
                .as_ref()
                .is_some_and(|a| a.iter().any(|a| a == name))
    })
}

/// The reader schema with `fields` appended.
fn grow(reader: &Schema, fields: Vec<Value>) -> Result<Schema, String> {
    let mut json = serde_json::to_value(reader).map_err(|e| e.to_string())?;
    let Some(Value::Array(existing)) = json.get_mut("fields") else {
        return Err("the table's schema has no fields".to_string());
    };
    existing.extend(fields);
    Schema::parse(&json).map_err(|e| format!("the grown table schema is not valid Avro: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"Order","namespace":"shop","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    const ID: &str = r#"{"name":"id","type":"string"}"#;
    const AMOUNT: &str = r#"{"name":"amount","type":"double"}"#;
    const COUPON: &str = r#"{"name":"coupon","type":["null","string"],"default":null}"#;

    #[test]
    fn same_schema_is_readable() {
        let v1 = schema(&format!("{ID},{AMOUNT}"));
        assert!(matches!(evolve(&v1, &v1, "v1"), Ok(Evolution::Readable)));
    }

    #[test]
    fn new_field_with_default_grows_the_reader() {
        let v1 = schema(&format!("{ID},{AMOUNT}"));
        let v2 = schema(&format!("{ID},{COUPON},{AMOUNT}"));
        let Ok(Evolution::AddFields { reader, added }) = evolve(&v1, &v2, "schema 2") else {
            panic!("expected the table to grow");
        };
        assert_eq!(added, ["coupon"]);
        let Schema::Record(r) = &reader else { panic!() };
        let names: Vec<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "amount", "coupon"]);
        assert_eq!(r.fields[2].default, Some(Value::Null));
        // The grown reader still reads the old writer's records, and the new one's.
        assert!(can_read(&v1, &reader, "v1", "r").is_empty());
        assert!(matches!(
            evolve(&reader, &v2, "v2"),
            Ok(Evolution::Readable)
        ));
        // An older writer needs nothing.
        assert!(matches!(
            evolve(&reader, &v1, "v1"),
            Ok(Evolution::Readable)
        ));
    }

    #[test]
    fn refusals_name_the_field_and_rule() {
        let v1 = schema(&format!("{ID},{AMOUNT}"));
        let dropped = schema(ID);
        let problems = evolve(&v1, &dropped, "schema 3").unwrap_err();
        assert_eq!(
            problems[0].to_string(),
            "field `amount` is in the table's schema without a default, and schema 3 does not write it (READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1)"
        );
        let required = schema(&format!(
            r#"{ID},{AMOUNT},{{"name":"channel","type":"string"}}"#
        ));
        let problems = evolve(&v1, &required, "schema 4").unwrap_err();
        assert_eq!(
            problems[0].to_string(),
            "field `channel` is new in schema 4 without a default, so the table could not read the records of earlier writers, which do not write it (READER_FIELD_MISSING_DEFAULT_VALUE at /fields/2)"
        );
        let retyped = schema(&format!(r#"{ID},{{"name":"amount","type":"string"}}"#));
        let problems = evolve(&v1, &retyped, "schema 5").unwrap_err();
        assert_eq!(problems[0].kind, IncompatibilityKind::TypeMismatch);
        assert!(evolve(&v1, &Schema::String, "schema 6").is_err());
    }
}
