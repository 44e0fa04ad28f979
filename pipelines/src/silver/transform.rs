//! A silver table's filter and columns as one polars SQL query over a source batch.

use std::sync::{Arc, LazyLock};

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use polars::prelude::IntoLazy;
use polars::sql::SQLContext;
use regex::Regex;

use super::{frame, personal};
use crate::spec::{Pii, SilverSpec};

/// The name the source batch has in the query.
pub(super) const SOURCE: &str = "src";

/// The compiled query of one silver table.
#[derive(Debug)]
pub(crate) struct Transform {
    sql: String,
    /// Fields read out of JSON text columns before the query runs.
    json: Vec<JsonField>,
    /// Output columns holding personal data, by position.
    personal: Vec<(usize, Pii)>,
    salt: Vec<u8>,
    /// The output columns with the types the table stores.
    output: SchemaRef,
}

/// A `json_get(column, 'path')` of the spec: computed into its own text column.
#[derive(Debug, Clone, PartialEq)]
struct JsonField {
    column: String,
    path: String,
    alias: String,
}

impl Transform {
    /// Builds the query and runs it, column by column, on an empty batch of the source's
    /// schema, so a bad expression is refused before any data is read, naming the column.
    /// Errors are `(key, message)`: the spec key at fault and polars' message.
    pub fn new(spec: &SilverSpec, source: &SchemaRef) -> Result<Self, (String, String)> {
        let empty = RecordBatch::new_empty(source.clone());
        let mut json = Vec::new();
        let mut select = Vec::new();
        let mut personal = Vec::new();
        let mut salt = Vec::new();
        for (i, c) in spec.columns.iter().enumerate() {
            let key = || format!("columns.{}", c.name);
            let expr = rewrite_json_calls(&c.expr, &mut json);
            let input = with_json_fields(&empty, &json).map_err(|m| (key(), m))?;
            let sql = format!("SELECT {expr} AS {} FROM {SOURCE}", quoted(&c.name));
            run(&sql, &input).map_err(|m| (key(), m))?;
            select.push(format!("{expr} AS {}", quoted(&c.name)));
            if let Some(pii) = c.pii {
                if pii == Pii::Hash && salt.is_empty() {
                    salt = std::env::var(personal::SALT_VARIABLE)
                        .ok()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| {
                            (
                                key(),
                                format!(
                                    "pii = \"hash\" needs the salt in the environment variable {}",
                                    personal::SALT_VARIABLE
                                ),
                            )
                        })?
                        .into_bytes();
                }
                personal.push((i, pii));
            }
        }
        let input = with_json_fields(&empty, &json).map_err(|m| ("columns".to_string(), m))?;
        if let Some(filter) = &spec.filter {
            let sql = format!("SELECT * FROM {SOURCE} WHERE {filter}");
            run(&sql, &input).map_err(|m| ("filter".to_string(), m))?;
        }
        let mut sql = format!("SELECT {} FROM {SOURCE}", select.join(", "));
        if let Some(filter) = &spec.filter {
            sql.push_str(&format!(" WHERE {filter}"));
        }
        let dry = run(&sql, &input).map_err(|m| ("columns".to_string(), m))?;
        // Protected columns hold text whatever the expression's type.
        let fields: Vec<Field> = dry
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match personal.iter().any(|(p, _)| *p == i) {
                true => Field::new(f.name(), DataType::Utf8, true),
                false => f.as_ref().clone(),
            })
            .collect();
        Ok(Self {
            sql,
            json,
            personal,
            salt,
            output: Arc::new(Schema::new(fields)),
        })
    }

    /// The output columns, as the table stores them.
    pub fn output(&self) -> &SchemaRef {
        &self.output
    }

    /// The rows of `batch` that pass the filter, as the output columns.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let out = run(&self.sql, &with_json_fields(batch, &self.json)?)?;
        let columns = self
            .output
            .fields()
            .iter()
            .zip(out.columns())
            .enumerate()
            .map(|(i, (field, column))| {
                let column = match self.personal.iter().find(|(p, _)| *p == i) {
                    Some((_, pii)) => personal::protect(column, *pii, &self.salt)?,
                    None => column.clone(),
                };
                // A column that was all null in the dry run may come back typed: keep the
                // table's type.
                arrow::compute::cast(&column, field.data_type())
                    .map_err(|e| format!("column {}: {e}", field.name()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        RecordBatch::try_new(self.output.clone(), columns).map_err(|e| e.to_string())
    }
}

/// Replaces each `json_get(column, 'path')` by the name of a column computed before the query
/// (polars SQL has no JSON functions), recording it in `fields`.
fn rewrite_json_calls(expr: &str, fields: &mut Vec<JsonField>) -> String {
    static CALL: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(r#"(?i)json_get\(\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\s*,\s*'([^']*)'\s*\)"#).ok()
    });
    let Some(call) = CALL.as_ref() else {
        return expr.to_string();
    };
    call.replace_all(expr, |caps: &regex::Captures<'_>| {
        let column = caps[1].to_string();
        let path = caps[2].to_string();
        let alias = match fields.iter().find(|f| f.column == column && f.path == path) {
            Some(f) => f.alias.clone(),
            None => {
                let alias = format!("__json_{}", fields.len());
                fields.push(JsonField {
                    column,
                    path,
                    alias: alias.clone(),
                });
                alias
            }
        };
        quoted(&alias)
    })
    .into_owned()
}

/// `batch` with a text column per JSON field: the value at its dotted path (text as it is,
/// numbers, booleans, objects and arrays as JSON), null when absent.
fn with_json_fields(batch: &RecordBatch, fields: &[JsonField]) -> Result<RecordBatch, String> {
    if fields.is_empty() {
        return Ok(batch.clone());
    }
    let mut schema: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = batch.columns().to_vec();
    for f in fields {
        let source = batch
            .column_by_name(&f.column)
            .ok_or_else(|| format!("json_get: there is no column {}", f.column))?;
        let text = source
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| format!("json_get: column {} is not text", f.column))?;
        let values: StringArray = text
            .iter()
            .map(|v| v.and_then(|v| json_at(v, &f.path)))
            .collect();
        schema.push(Field::new(&f.alias, DataType::Utf8, true));
        columns.push(Arc::new(values));
    }
    RecordBatch::try_new(Arc::new(Schema::new(schema)), columns).map_err(|e| e.to_string())
}

fn json_at(text: &str, path: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        value = match value {
            serde_json::Value::Object(mut map) => map.remove(key)?,
            serde_json::Value::Array(mut items) => {
                let i: usize = key.parse().ok()?;
                (i < items.len()).then(|| items.swap_remove(i))?
            }
            _ => return None,
        };
    }
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

pub(super) fn run(sql: &str, batch: &RecordBatch) -> Result<RecordBatch, String> {
    let df = frame::to_polars(batch)?;
    let mut ctx = SQLContext::new();
    ctx.register(SOURCE, df.lazy());
    let out = ctx
        .execute(sql)
        .and_then(|lf| lf.collect())
        // polars appends the plan up to the failure on further lines.
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())?;
    frame::from_polars(&out)
}

/// The indices of the rows of `batch` for which `condition` (SQL over its columns) is true.
pub(crate) fn matching_rows(batch: &RecordBatch, condition: &str) -> Result<Vec<u32>, String> {
    const ROW: &str = "__row";
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(ROW, DataType::Int64, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(arrow::array::Int64Array::from_iter_values(
        0..batch.num_rows() as i64,
    )));
    let indexed =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())?;
    let out = run(
        &format!("SELECT {} FROM {SOURCE} WHERE {condition}", quoted(ROW)),
        &indexed,
    )?;
    let rows = arrow::compute::cast(out.column(0), &DataType::UInt32).map_err(|e| e.to_string())?;
    let rows = rows
        .as_any()
        .downcast_ref::<arrow::array::UInt32Array>()
        .ok_or("row indices did not come back as integers")?;
    Ok(rows.values().to_vec())
}

/// A SQL identifier, quoted.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Transformed batches as one (they share the output schema).
pub(crate) fn concat(
    transform: &Transform,
    batches: &[RecordBatch],
) -> Result<RecordBatch, String> {
    arrow::compute::concat_batches(transform.output(), batches).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ColumnSpec;
    use arrow::array::{Array, Float64Array, Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::TimeUnit;

    fn spec(filter: Option<&str>, columns: &[(&str, &str)]) -> SilverSpec {
        SilverSpec {
            table: "silver.t".into(),
            source: "bronze.t".into(),
            filter: filter.map(Into::into),
            columns: columns
                .iter()
                .map(|(n, e)| ColumnSpec {
                    name: n.to_string(),
                    expr: e.to_string(),
                    pii: None,
                })
                .collect(),
            expectations: Vec::new(),
            dlq_topic: None,
            partition_by_day: None,
            poll: std::time::Duration::from_secs(1),
            batch_snapshots: 32,
            table_format: Default::default(),
        }
    }

    fn source() -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some(schemas::UTC.into()));
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("event_type", DataType::Utf8, true),
                Field::new("user_id", DataType::Utf8, true),
                Field::new("amount", DataType::Utf8, true),
                Field::new("country", DataType::Utf8, true),
                Field::new("event_time", ts, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![
                    "purchase", "view", "purchase", "purchase",
                ])),
                Arc::new(StringArray::from(vec![
                    Some("  Alice "),
                    Some("bob"),
                    None,
                    Some("CAROL"),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("12.50"),
                    None,
                    Some("3"),
                    Some("x"),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("usa"),
                    Some("DE"),
                    None,
                    Some("de"),
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        1_000_000, 2_000_000, 3_000_000, 4_000_000,
                    ])
                    .with_timezone(schemas::UTC),
                ),
            ],
        )
        .unwrap()
    }

    #[test]
    fn cleansing_rules_give_the_expected_rows() {
        let t = Transform::new(
            &spec(
                Some("event_type = 'purchase'"),
                &[
                    ("user", "lower(trim(user_id))"),
                    ("amount", "TRY_CAST(amount AS DOUBLE)"),
                    ("country", "COALESCE(CASE upper(country) WHEN 'USA' THEN 'US' ELSE upper(country) END, 'unknown')"),
                    ("cents", "CAST(TRY_CAST(amount AS DOUBLE) * 100 AS BIGINT)"),
                    ("event_time", "event_time"),
                ],
            ),
            &source().schema(),
        )
        .unwrap();
        let out = t.apply(&source()).unwrap();
        assert_eq!(out.num_rows(), 3);
        let user = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            user.iter().collect::<Vec<_>>(),
            [Some("alice"), None, Some("carol")]
        );
        let amount = out
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(
            amount.iter().collect::<Vec<_>>(),
            [Some(12.5), Some(3.0), None]
        );
        let country = out
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            country.iter().collect::<Vec<_>>(),
            [Some("US"), Some("unknown"), Some("DE")]
        );
        let cents = out.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(
            cents.iter().collect::<Vec<_>>(),
            [Some(1250), Some(300), None]
        );
        assert_eq!(
            out.schema().field(4).data_type(),
            source().schema().field(4).data_type()
        );
        assert_eq!(out.column(4).len(), 3);
    }

    #[test]
    fn nested_json_fields_flatten_into_typed_columns() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "payload",
            DataType::Utf8,
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![
                Some(r#"{"device":{"os":"ios","build":42},"tags":["a","b"]}"#),
                Some(r#"{"device":{"os":"android"}}"#),
                None,
                Some("not json"),
            ]))],
        )
        .unwrap();
        let t = Transform::new(
            &spec(
                None,
                &[
                    ("os", "upper(json_get(payload, 'device.os'))"),
                    ("build", "CAST(json_get(payload, 'device.build') AS INT)"),
                    ("first_tag", "json_get(payload, 'tags.0')"),
                    ("device", "json_get(payload, 'device')"),
                ],
            ),
            &schema,
        )
        .unwrap();
        let out = t.apply(&batch).unwrap();
        let text = |i: usize| -> Vec<Option<String>> {
            let a = out
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            a.iter().map(|v| v.map(str::to_string)).collect()
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(text(0), [s("IOS"), s("ANDROID"), None, None]);
        let build = out
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .unwrap();
        assert_eq!(
            build.iter().collect::<Vec<_>>(),
            [Some(42), None, None, None]
        );
        assert_eq!(text(2), [s("a"), None, None, None]);
        assert_eq!(text(3)[0], s(r#"{"build":42,"os":"ios"}"#));
    }

    #[test]
    fn personal_columns_are_hashed_or_masked() {
        let mut hashed = spec(None, &[("user", "user_id"), ("country", "country")]);
        hashed.columns[0].pii = Some(Pii::Hash);
        hashed.columns[1].pii = Some(Pii::Mask);
        // Without a salt a hash column is refused at start.
        std::env::remove_var(personal::SALT_VARIABLE);
        let (key, message) = Transform::new(&hashed, &source().schema()).unwrap_err();
        assert_eq!(key, "columns.user");
        assert!(message.contains("MEDALLION_PII_SALT"), "{message}");
        std::env::set_var(personal::SALT_VARIABLE, "pepper");
        let out = Transform::new(&hashed, &source().schema())
            .unwrap()
            .apply(&source())
            .unwrap();
        std::env::remove_var(personal::SALT_VARIABLE);
        let users = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(users.value(1).len(), 64);
        assert!(users.is_null(2));
        let countries = out
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            countries.iter().collect::<Vec<_>>(),
            [Some("***"), Some("**"), None, Some("**")]
        );
    }

    #[test]
    fn partitioning_needs_a_timestamp_output_column() {
        let mut by_user = spec(None, &[("user", "user_id"), ("event_time", "event_time")]);
        by_user.partition_by_day = Some("user".into());
        let e = crate::silver::SilverConfig::new(&by_user, &source().schema(), "p.toml", 0)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "p.toml: silver[0].partition_by_day (table silver.t): user is not a timestamp column of the table"
        );
        by_user.partition_by_day = Some("event_time".into());
        assert!(
            crate::silver::SilverConfig::new(&by_user, &source().schema(), "p.toml", 0).is_ok()
        );
    }

    #[test]
    fn bad_expressions_name_the_column() {
        let (key, message) = Transform::new(
            &spec(None, &[("ok", "user_id"), ("bad", "no_such_column + 1")]),
            &source().schema(),
        )
        .unwrap_err();
        assert_eq!(key, "columns.bad");
        assert!(message.contains("no_such_column"), "{message}");
        let (key, _) = Transform::new(
            &spec(Some("event_type = = 1"), &[("ok", "user_id")]),
            &source().schema(),
        )
        .unwrap_err();
        assert_eq!(key, "filter");
    }
}
