//! A silver table's filter and columns as one polars SQL query over a source batch.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use polars::prelude::IntoLazy;
use polars::sql::SQLContext;

use super::frame;
use crate::spec::SilverSpec;

/// The name the source batch has in the query.
const SOURCE: &str = "src";

/// The compiled query of one silver table.
#[derive(Debug)]
pub(crate) struct Transform {
    sql: String,
    /// The output columns with the types the table stores.
    output: SchemaRef,
}

impl Transform {
    /// Builds the query and runs it, column by column, on an empty batch of the source's
    /// schema, so a bad expression is refused before any data is read, naming the column.
    /// Errors are `(key, message)`: the spec key at fault and polars' message.
    pub fn new(spec: &SilverSpec, source: &SchemaRef) -> Result<Self, (String, String)> {
        let empty = RecordBatch::new_empty(source.clone());
        for c in &spec.columns {
            let sql = format!("SELECT {} AS {} FROM {SOURCE}", c.expr, quoted(&c.name));
            run(&sql, &empty).map_err(|m| (format!("columns.{}", c.name), m))?;
        }
        if let Some(filter) = &spec.filter {
            let sql = format!("SELECT * FROM {SOURCE} WHERE {filter}");
            run(&sql, &empty).map_err(|m| ("filter".to_string(), m))?;
        }
        let select: Vec<String> = spec
            .columns
            .iter()
            .map(|c| format!("{} AS {}", c.expr, quoted(&c.name)))
            .collect();
        let mut sql = format!("SELECT {} FROM {SOURCE}", select.join(", "));
        if let Some(filter) = &spec.filter {
            sql.push_str(&format!(" WHERE {filter}"));
        }
        let output = run(&sql, &empty)
            .map_err(|m| ("columns".to_string(), m))?
            .schema();
        Ok(Self { sql, output })
    }

    /// The output columns, as the table stores them.
    pub fn output(&self) -> &SchemaRef {
        &self.output
    }

    /// The rows of `batch` that pass the filter, as the output columns.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let out = run(&self.sql, batch)?;
        // A column that was all null in the dry run may come back typed: keep the table's type.
        let columns = self
            .output
            .fields()
            .iter()
            .zip(out.columns())
            .map(|(field, column)| {
                arrow::compute::cast(column, field.data_type())
                    .map_err(|e| format!("column {}: {e}", field.name()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        RecordBatch::try_new(self.output.clone(), columns).map_err(|e| e.to_string())
    }
}

fn run(sql: &str, batch: &RecordBatch) -> Result<RecordBatch, String> {
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

/// A SQL identifier, quoted.
fn quoted(name: &str) -> String {
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
    use std::sync::Arc;

    use super::*;
    use crate::spec::ColumnSpec;
    use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

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
                })
                .collect(),
            partition_by_day: None,
            poll: std::time::Duration::from_secs(1),
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
