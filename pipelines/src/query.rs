//! `medallion query`: SQL over the tables' current versions, run by polars, with tables named
//! as the catalog names them (`bronze.web_events`), whatever their format.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use lakehouse::{Catalog, Table};
use polars::prelude::{DataFrame, IntoLazy};
use polars::sql::SQLContext;

use crate::error::{Error, Result};
use crate::silver::frame;

/// Runs `sql` over the current versions of the tables it names (the catalog's, and the Delta
/// and Parquet tables of a local warehouse); the result as one batch.
pub async fn query(catalog: &Arc<Catalog>, sql: &str) -> Result<RecordBatch> {
    let mut names = catalog.table_names().await?;
    names.extend(Table::directory_tables(catalog)?);
    let (sql, used) = quote_table_names(sql, &names);
    let mut ctx = SQLContext::new();
    for name in used {
        let Some(table) = Table::open_existing(catalog.clone(), &name).await? else {
            return Err(Error::Query(format!("table {name} does not exist")));
        };
        let schema = table.arrow_schema().clone();
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let batches = table.scan_columns(&columns).await?;
        let df = to_frame(schema, &batches).map_err(|m| Error::Query(format!("{name}: {m}")))?;
        ctx.register(&name, df.lazy());
    }
    let out: DataFrame = ctx
        .execute(&sql)
        .and_then(|lf| lf.collect())
        // polars appends the plan up to the failure on further lines.
        .map_err(|e| Error::Query(e.to_string().lines().next().unwrap_or_default().to_string()))?;
    frame::from_polars(&out).map_err(Error::Query)
}

/// One polars data frame of `batches` (all of `schema`), sharing their buffers.
pub fn to_frame(schema: SchemaRef, batches: &[RecordBatch]) -> Result<DataFrame, String> {
    let mut df = frame::to_polars(&RecordBatch::new_empty(schema))?;
    for batch in batches {
        df.vstack_mut(&frame::to_polars(batch)?)
            .map_err(|e| e.to_string())?;
    }
    Ok(df)
}

/// `sql` with every unquoted `namespace.table` of `tables` written as one quoted identifier
/// (polars takes a dotted name as schema and table), and the tables it names. String literals
/// and quoted identifiers are left as they are.
fn quote_table_names(sql: &str, tables: &[String]) -> (String, BTreeSet<String>) {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut used = BTreeSet::new();
    let chars: Vec<char> = sql.chars().collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            // A literal or quoted identifier, doubled quotes inside.
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            let end = (i + 1).min(chars.len());
            let quoted: String = chars[start..end].iter().collect();
            if c == '"' {
                let inner = quoted.trim_matches('"');
                if tables.iter().any(|t| t == inner) {
                    used.insert(inner.to_string());
                }
            }
            out.push_str(&quoted);
            i = end;
            continue;
        }
        if is_ident(c) && (i == 0 || !is_ident(chars[i - 1])) {
            // The longest `ident.ident` here.
            let mut j = i;
            while j < chars.len() && (is_ident(chars[j]) || chars[j] == '.') {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            match tables.iter().find(|t| **t == word) {
                Some(table) => {
                    used.insert(table.clone());
                    out.push('"');
                    out.push_str(table);
                    out.push('"');
                }
                None => out.push_str(&word),
            }
            i = j;
            continue;
        }
        out.push(c);
        i += 1;
    }
    (out, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_quoted_outside_literals() {
        let tables = vec!["bronze.events".to_string(), "gold.alerts".to_string()];
        let (sql, used) = quote_table_names(
            "SELECT e.x, 'bronze.events' FROM bronze.events e JOIN \"gold.alerts\" a ON e.k = a.k WHERE e.y = 'it''s' AND bronze.eventsx = 1",
            &tables,
        );
        assert_eq!(
            sql,
            "SELECT e.x, 'bronze.events' FROM \"bronze.events\" e JOIN \"gold.alerts\" a ON e.k = a.k WHERE e.y = 'it''s' AND bronze.eventsx = 1"
        );
        assert_eq!(used.into_iter().collect::<Vec<_>>(), tables);
    }
}
