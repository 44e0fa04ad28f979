//! `medallion query` and `medallion tables`: what the lakehouse holds, from the command line.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use clap::ValueEnum;
use lakehouse::{Catalog, Table};
use pipelines::maintain::STATE_PROPERTIES;

/// How results are printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// Prints `batch` on stdout in `format`.
pub fn print(batch: &RecordBatch, format: Format) -> Result<()> {
    match format {
        Format::Table => print!("{}", render_table(batch)?),
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::stdout());
            writer.write(batch)?;
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(std::io::stdout());
            writer.write(batch)?;
            writer.finish()?;
            println!();
        }
    }
    Ok(())
}

fn render_table(batch: &RecordBatch) -> Result<String> {
    let options = FormatOptions::default().with_null("null");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cells: Vec<Vec<String>> = vec![batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()];
    for row in 0..batch.num_rows() {
        cells.push(
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..batch.num_columns())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("-+-"));
            out.push('\n');
        }
    }
    out.push_str(&format!("({} rows)\n", batch.num_rows()));
    Ok(out)
}

/// What `medallion tables` says of one table.
struct TableLine {
    name: String,
    /// iceberg, delta or parquet.
    format: String,
    snapshots: i64,
    current: Option<i64>,
    rows: Option<i64>,
    files: Option<i64>,
    last_commit_ms: Option<i64>,
    /// The pipeline state properties it holds, as JSON (empty: none).
    state: String,
}

/// One line per table: snapshots, rows, files, last commit and the pipeline state it holds.
pub async fn tables(catalog: &std::sync::Arc<Catalog>, format: Format) -> Result<()> {
    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let mut names: BTreeSet<String> = catalog.table_names().await?.into_iter().collect();
    names.extend(Table::directory_tables(catalog)?);
    let mut lines = Vec::new();
    for name in names {
        let Some(mut table) = Table::open_existing(catalog.clone(), &name).await? else {
            continue;
        };
        let history = table.history().await?;
        let (files, rows) = table.size()?;
        let mut state = BTreeMap::new();
        for key in STATE_PROPERTIES {
            let value = match key {
                pipelines::silver::CURSOR_PROPERTY | pipelines::gold::CURSOR_PROPERTY => {
                    table.cursor(key).await?
                }
                _ => table.commit_property(key).map(str::to_string),
            };
            if let Some(value) = value {
                state.insert(key, value);
            }
        }
        lines.push(TableLine {
            format: table.format().to_string(),
            snapshots: history.len() as i64,
            current: table.current_commit(),
            rows: rows.and_then(|r| i64::try_from(r).ok()),
            files: i64::try_from(files).ok(),
            last_commit_ms: history.first().map(|(_, ts, _)| *ts),
            state: match state.is_empty() {
                true => String::new(),
                false => serde_json::to_string(&state)?,
            },
            name,
        });
    }
    let ints = |f: fn(&TableLine) -> Option<i64>| -> ArrayRef {
        Arc::new(Int64Array::from_iter(lines.iter().map(f)))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("format", DataType::Utf8, false),
        Field::new("snapshots", DataType::Int64, true),
        Field::new("current_snapshot", DataType::Int64, true),
        Field::new("rows", DataType::Int64, true),
        Field::new("data_files", DataType::Int64, true),
        Field::new(
            "last_commit",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            true,
        ),
        Field::new("state", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(lines.iter().map(|l| &l.name))),
            Arc::new(StringArray::from_iter_values(
                lines.iter().map(|l| &l.format),
            )),
            ints(|l| Some(l.snapshots)),
            ints(|l| l.current),
            ints(|l| l.rows),
            ints(|l| l.files),
            Arc::new(
                TimestampMillisecondArray::from_iter(lines.iter().map(|l| l.last_commit_ms))
                    .with_timezone("+00:00"),
            ),
            Arc::new(StringArray::from_iter_values(
                lines.iter().map(|l| &l.state),
            )),
        ],
    )?;
    print(&batch, format)
}
