//! One table interface over the formats a table may be kept in, so that a stage names the
//! format in its settings and nowhere else.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, SchemaRef};

use crate::delta::{DeltaLakeTable, StagedAdds};
use crate::offsets::{OffsetFence, SourceOffsets};
use crate::table::{CommitOutcome, IcebergTable, StagedFiles, TableDefinition};
use crate::{Catalog, Error, Result};

/// How a table is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// An Iceberg table registered in the catalog.
    #[default]
    Iceberg,
    /// A Delta Lake table at `WAREHOUSE/NAMESPACE/NAME` (local warehouses), outside the catalog.
    Delta,
}

impl std::fmt::Display for TableFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Iceberg => "iceberg",
            Self::Delta => "delta",
        })
    }
}

/// A table in its format.
#[derive(Debug)]
pub enum Table {
    Iceberg(IcebergTable),
    Delta(DeltaLakeTable),
}

/// Data files written for a commit of a [`Table`] that has not happened yet.
#[derive(Debug)]
pub enum Staged {
    Iceberg(StagedFiles),
    Delta(StagedAdds),
}

impl Table {
    /// Loads the table, creating it when it does not exist yet. A table that exists in another
    /// format is refused: its format cannot change under the same name.
    pub async fn open_or_create(
        catalog: Arc<Catalog>,
        def: &TableDefinition,
        format: TableFormat,
    ) -> Result<Self> {
        check_format(&catalog, &def.name, format).await?;
        Ok(match format {
            TableFormat::Iceberg => {
                Self::Iceberg(IcebergTable::open_or_create(catalog, def).await?)
            }
            TableFormat::Delta => {
                let dir = catalog.table_dir(&def.name)?;
                let dir = dir.to_string_lossy();
                Self::Delta(DeltaLakeTable::open_or_create(&dir, def).await?)
            }
        })
    }

    /// Loads the table if it exists.
    pub async fn open_if_exists(
        catalog: Arc<Catalog>,
        name: &str,
        format: TableFormat,
    ) -> Result<Option<Self>> {
        Ok(match format {
            TableFormat::Iceberg => IcebergTable::open_if_exists(catalog, name)
                .await?
                .map(Self::Iceberg),
            TableFormat::Delta => {
                let dir = catalog.table_dir(name)?;
                DeltaLakeTable::open_if_exists(&dir.to_string_lossy(), name)
                    .await?
                    .map(Self::Delta)
            }
        })
    }

    pub fn name(&self) -> String {
        match self {
            Self::Iceberg(t) => t.name(),
            Self::Delta(t) => t.name().to_string(),
        }
    }

    pub fn format(&self) -> TableFormat {
        match self {
            Self::Iceberg(_) => TableFormat::Iceberg,
            Self::Delta(_) => TableFormat::Delta,
        }
    }

    pub fn arrow_schema(&self) -> &SchemaRef {
        match self {
            Self::Iceberg(t) => t.arrow_schema(),
            Self::Delta(t) => t.arrow_schema(),
        }
    }

    /// A table property.
    pub fn property(&self, key: &str) -> Option<&str> {
        match self {
            Self::Iceberg(t) => t.property(key),
            Self::Delta(t) => t.property(key),
        }
    }

    /// Loads the table's newest state.
    pub async fn refresh(&mut self) -> Result<()> {
        match self {
            Self::Iceberg(t) => t.refresh().await,
            Self::Delta(t) => t.refresh().await,
        }
    }

    /// The next Kafka offset the table holds for each of `partitions` that it has consumed.
    pub async fn stored_offsets(&self, partitions: &[(String, i32)]) -> Result<SourceOffsets> {
        match self {
            Self::Iceberg(t) => {
                let all = t.stored_offsets()?;
                let mut out = SourceOffsets::default();
                for (topic, partition) in partitions {
                    if let Some(next) = all.get(topic, *partition) {
                        out.set(topic, *partition, next);
                    }
                }
                Ok(out)
            }
            Self::Delta(t) => t.stored_offsets(partitions).await,
        }
    }

    /// Writes `batch` as data files, invisible to readers until a commit adds them.
    pub async fn write(&self, batch: &RecordBatch) -> Result<Staged> {
        Ok(match self {
            Self::Iceberg(t) => Staged::Iceberg(t.write(batch).await?),
            Self::Delta(t) => Staged::Delta(t.write(batch).await?),
        })
    }

    /// Commits `staged` with the partitions of `fence` moved and the `extra` commit
    /// properties, if and only if the table still holds the offsets the batch started from.
    pub async fn commit_append(
        &mut self,
        staged: Staged,
        fence: &OffsetFence,
        extra: &[(String, String)],
    ) -> Result<CommitOutcome> {
        match (self, staged) {
            (Self::Iceberg(t), Staged::Iceberg(s)) => t.commit_append(s, fence, extra).await,
            (Self::Delta(t), Staged::Delta(s)) => t.commit_append(s, fence, extra).await,
            (t, _) => Err(Error::Config(format!(
                "table {}: files staged for another table format",
                t.name()
            ))),
        }
    }

    /// Adds the `columns` the table lacks (nullable) and sets `properties`, in one commit.
    pub async fn add_columns(
        &mut self,
        columns: &[Field],
        properties: &[(String, String)],
    ) -> Result<()> {
        match self {
            Self::Iceberg(t) => t.add_columns(columns, properties).await,
            Self::Delta(t) => t.add_columns(columns, properties).await,
        }
    }

    /// The largest value of a timestamp column, from the data files' statistics.
    pub async fn max_timestamp_micros(&self, column: &str) -> Result<Option<i64>> {
        match self {
            Self::Iceberg(t) => t.max_timestamp_micros(column).await,
            Self::Delta(t) => t.max_timestamp_micros(column).await,
        }
    }

    /// Reads `columns` of the rows whose `time_column` is at or after `since_micros`.
    pub async fn scan_since(
        &self,
        columns: &[String],
        time_column: &str,
        since_micros: i64,
    ) -> Result<Vec<RecordBatch>> {
        match self {
            Self::Iceberg(t) => t.scan_since(columns, time_column, since_micros).await,
            Self::Delta(t) => t.scan_since(columns, time_column, since_micros).await,
        }
    }
}

/// Refuses a table name that exists in a format other than `format`.
async fn check_format(catalog: &Arc<Catalog>, name: &str, format: TableFormat) -> Result<()> {
    let other = match format {
        TableFormat::Iceberg => match catalog.table_dir(name) {
            Ok(dir) if dir.join("_delta_log").is_dir() => Some(TableFormat::Delta),
            _ => None,
        },
        TableFormat::Delta => IcebergTable::open_if_exists(catalog.clone(), name)
            .await?
            .map(|_| TableFormat::Iceberg),
    };
    match other {
        None => Ok(()),
        Some(other) => Err(Error::Config(format!(
            "table {name} exists in the {other} format; it cannot change to {format} under the same name (choose another name, or drop the {other} table first)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{connect, LakehouseLocation};
    use crate::testing::{rows, sorted_ids, DAY};
    use arrow::datatypes::DataType;

    async fn catalog(dir: &tempfile::TempDir) -> Arc<Catalog> {
        let location = LakehouseLocation {
            catalog_uri: format!("sqlite://{}/catalog.db", dir.path().display()),
            warehouse: Some(dir.path().join("wh").display().to_string()),
            s3: Default::default(),
        };
        connect(&location).await.unwrap()
    }

    fn def(name: &str) -> TableDefinition {
        TableDefinition {
            name: name.into(),
            schema: rows(&[], |_| 0).schema(),
            partition_by_day: None,
        }
    }

    #[tokio::test]
    async fn a_delta_table_grows_columns_and_scans_by_time_through_the_table_interface() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir).await;
        let mut table =
            Table::open_or_create(catalog.clone(), &def("bronze.e"), TableFormat::Delta)
                .await
                .unwrap();
        assert!(dir.path().join("wh/bronze/e/_delta_log").is_dir());
        for ids in [[1, 2], [3, 4], [5, 6]] {
            let staged = table.write(&rows(&ids, |i| i * DAY)).await.unwrap();
            let mut fence = OffsetFence::default();
            fence.cover("t", 0, (ids[0] > 1).then_some(ids[0] - 1), ids[1]);
            let done = table.commit_append(staged, &fence, &[]).await.unwrap();
            assert!(matches!(done, CommitOutcome::Committed { .. }));
        }
        assert_eq!(
            table.max_timestamp_micros("ts").await.unwrap(),
            Some(6 * DAY + 999)
        );
        let since = table.scan_since(&["id".into()], "ts", 4 * DAY).await;
        assert_eq!(sorted_ids(&since.unwrap()), vec![4, 5, 6]);

        let extra = Field::new("note", DataType::Utf8, false);
        let props = [("medallion.x".to_string(), "grown".to_string())];
        table.add_columns(&[extra], &props).await.unwrap();
        let reopened = Table::open_if_exists(catalog.clone(), "bronze.e", TableFormat::Delta)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reopened.property("medallion.x"), Some("grown"));
        let note = reopened.arrow_schema().field_with_name("note").unwrap();
        assert!(note.is_nullable());
        // Rows written before the column existed read it as null; later rows without it too.
        let staged = table.write(&rows(&[7], |i| i * DAY)).await.unwrap();
        let mut fence = OffsetFence::default();
        fence.cover("t", 0, Some(6), 7);
        table.commit_append(staged, &fence, &[]).await.unwrap();
        let all = table
            .scan_since(&["id".into(), "note".into()], "ts", 0)
            .await
            .unwrap();
        assert_eq!(sorted_ids(&all), vec![1, 2, 3, 4, 5, 6, 7]);
        assert!(all.iter().all(|b| b.column(1).null_count() == b.num_rows()));
        // The time column may be one of the columns read (dedupe's keys and event time).
        let keyed = table
            .scan_since(&["id".into(), "ts".into()], "ts", 5 * DAY)
            .await;
        let keyed = keyed.unwrap();
        assert_eq!(sorted_ids(&keyed), vec![5, 6, 7]);
        assert!(keyed.iter().all(|b| b.num_columns() == 2));
        let stored = table
            .stored_offsets(&[("t".into(), 0), ("t".into(), 1)])
            .await;
        let stored = stored.unwrap();
        assert_eq!((stored.get("t", 0), stored.get("t", 1)), (Some(7), None));
    }

    #[tokio::test]
    async fn a_table_keeps_the_format_it_was_created_in() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir).await;
        Table::open_or_create(catalog.clone(), &def("bronze.d"), TableFormat::Delta)
            .await
            .unwrap();
        Table::open_or_create(catalog.clone(), &def("bronze.i"), TableFormat::Iceberg)
            .await
            .unwrap();
        let err = Table::open_or_create(catalog.clone(), &def("bronze.d"), TableFormat::Iceberg)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("exists in the delta format"),
            "{err}"
        );
        let err = Table::open_or_create(catalog.clone(), &def("bronze.i"), TableFormat::Delta)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("exists in the iceberg format"),
            "{err}"
        );
    }
}
