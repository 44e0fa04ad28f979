//! One table interface over the formats a table may be kept in, so that a stage names the
//! format in its settings and nowhere else.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, SchemaRef};

use crate::delta::{DeltaLakeTable, StagedAdds};
use crate::increments::DataFiles;
use crate::offsets::{OffsetFence, SourceOffsets};
use crate::parquet_table::{ParquetTable, StagedParquet};
use crate::replace::ReplaceOutcome;
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
    /// Plain Parquet files in Hive-style folders at `WAREHOUSE/NAMESPACE/NAME`, with
    /// medallion's commit log beside them (local warehouses; bronze tables).
    Parquet,
}

impl std::fmt::Display for TableFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Iceberg => "iceberg",
            Self::Delta => "delta",
            Self::Parquet => "parquet",
        })
    }
}

/// A table in its format.
#[derive(Debug)]
pub enum Table {
    Iceberg(IcebergTable),
    Delta(DeltaLakeTable),
    Parquet(ParquetTable),
}

/// Data files written for a commit of a [`Table`] that has not happened yet.
#[derive(Debug)]
pub enum Staged {
    Iceberg(StagedFiles),
    Delta(StagedAdds),
    Parquet(StagedParquet),
}

impl Staged {
    /// The number of data files staged.
    pub fn len(&self) -> usize {
        match self {
            Self::Iceberg(s) => s.len(),
            Self::Delta(s) => s.len(),
            Self::Parquet(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the files of another write of the same table to this commit.
    pub fn extend(&mut self, other: Staged) -> Result<()> {
        match (self, other) {
            (Self::Iceberg(a), Self::Iceberg(b)) => a.extend(b),
            (Self::Delta(a), Self::Delta(b)) => a.extend(b),
            (Self::Parquet(a), Self::Parquet(b)) => a.extend(b),
            _ => return Err(mixed()),
        }
        Ok(())
    }
}

/// What a Parquet table refuses: its files are never rewritten.
fn no_rewrites(table: &str) -> Error {
    Error::Config(format!(
        "table {table}: Parquet tables are only appended to (no file rewrites: gold update mode, backfill, compaction)"
    ))
}

fn mixed() -> Error {
    Error::Config("files staged for one table format cannot be committed to another".into())
}

/// A cursor value as a Delta `txn` version (derived tables' cursors are snapshot ids).
fn version(cursor: &str) -> Result<i64> {
    cursor
        .parse()
        .map_err(|_| Error::Config(format!("cursor {cursor:?} is not a snapshot id")))
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
            TableFormat::Parquet => {
                let dir = catalog.table_dir(&def.name)?;
                Self::Parquet(ParquetTable::open_or_create(&dir, def).await?)
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
            TableFormat::Parquet => {
                let dir = catalog.table_dir(name)?;
                ParquetTable::open_if_exists(&dir, name)
                    .await?
                    .map(Self::Parquet)
            }
        })
    }

    /// Loads the table `name` in whichever format it exists in (a stage reading another's
    /// table need not know how it is kept), if it exists.
    pub async fn open_existing(catalog: Arc<Catalog>, name: &str) -> Result<Option<Self>> {
        let dir = catalog.table_dir(name).ok();
        let has = |log: &str| dir.as_ref().is_some_and(|d| d.join(log).is_dir());
        let format = if has("_delta_log") {
            TableFormat::Delta
        } else if has(crate::parquet_table::LOG_DIR) {
            TableFormat::Parquet
        } else {
            TableFormat::Iceberg
        };
        Self::open_if_exists(catalog, name, format).await
    }

    /// The Delta and Parquet tables of a local warehouse (`NAMESPACE/NAME` folders with a log),
    /// sorted; none for an S3 warehouse.
    pub fn directory_tables(catalog: &Catalog) -> Result<Vec<String>> {
        let Some(root) = catalog.local_warehouse() else {
            return Ok(Vec::new());
        };
        let folders = |dir: &std::path::Path| -> Vec<(String, std::path::PathBuf)> {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return Vec::new();
            };
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        };
        let mut out = Vec::new();
        for (namespace, dir) in folders(&root) {
            for (name, table) in folders(&dir) {
                let logs = ["_delta_log", crate::parquet_table::LOG_DIR];
                if logs.iter().any(|log| table.join(log).is_dir()) {
                    out.push(format!("{namespace}.{name}"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads `columns` of every row of the current version.
    pub async fn scan_columns(&self, columns: &[String]) -> Result<Vec<RecordBatch>> {
        match self {
            Self::Iceberg(t) => t.scan_columns(columns).await,
            Self::Delta(t) => t.scan_columns(columns).await,
            Self::Parquet(t) => t.scan_columns(columns).await,
        }
    }

    /// The current version's data files and rows (`None`: a count is not known).
    pub fn size(&self) -> Result<(u64, Option<u64>)> {
        let count = |key: &str, t: &IcebergTable| match t.current_snapshot_id() {
            None => Some(0),
            Some(_) => t.snapshot_property(key).and_then(|v| v.parse().ok()),
        };
        Ok(match self {
            Self::Iceberg(t) => (
                count("total-data-files", t).unwrap_or(0),
                count("total-records", t),
            ),
            Self::Delta(t) => t.size()?,
            Self::Parquet(t) => t.size(),
        })
    }

    pub fn name(&self) -> String {
        match self {
            Self::Iceberg(t) => t.name(),
            Self::Delta(t) => t.name().to_string(),
            Self::Parquet(t) => t.name().to_string(),
        }
    }

    pub fn format(&self) -> TableFormat {
        match self {
            Self::Iceberg(_) => TableFormat::Iceberg,
            Self::Delta(_) => TableFormat::Delta,
            Self::Parquet(_) => TableFormat::Parquet,
        }
    }

    pub fn arrow_schema(&self) -> &SchemaRef {
        match self {
            Self::Iceberg(t) => t.arrow_schema(),
            Self::Delta(t) => t.arrow_schema(),
            Self::Parquet(t) => t.arrow_schema(),
        }
    }

    /// A table property.
    pub fn property(&self, key: &str) -> Option<&str> {
        match self {
            Self::Iceberg(t) => t.property(key),
            Self::Delta(t) => t.property(key),
            Self::Parquet(t) => t.property(key),
        }
    }

    /// Loads the table's newest state.
    pub async fn refresh(&mut self) -> Result<()> {
        match self {
            Self::Iceberg(t) => t.refresh().await,
            Self::Delta(t) => t.refresh().await,
            Self::Parquet(t) => t.refresh().await,
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
            Self::Parquet(t) => Ok(t.stored_offsets(partitions)),
        }
    }

    /// No files yet, for a commit of this table that writes several batches.
    pub fn stage_nothing(&self) -> Staged {
        match self {
            Self::Iceberg(_) => Staged::Iceberg(StagedFiles::default()),
            Self::Delta(_) => Staged::Delta(StagedAdds::default()),
            Self::Parquet(_) => Staged::Parquet(StagedParquet::default()),
        }
    }

    /// Writes `batch` as data files, invisible to readers until a commit adds them.
    pub async fn write(&self, batch: &RecordBatch) -> Result<Staged> {
        Ok(match self {
            Self::Iceberg(t) => Staged::Iceberg(t.write(batch).await?),
            Self::Delta(t) => Staged::Delta(t.write(batch).await?),
            Self::Parquet(t) => Staged::Parquet(t.write(batch).await?),
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
            (Self::Parquet(t), Staged::Parquet(s)) => t.commit_append(s, fence, extra).await,
            _ => Err(mixed()),
        }
    }

    /// The cursor `key` of a derived table: the last upstream snapshot it consumed, `None`
    /// before its first commit.
    pub async fn cursor(&self, key: &str) -> Result<Option<String>> {
        match self {
            Self::Iceberg(t) => Ok(t.snapshot_property(key).map(str::to_string)),
            Self::Delta(t) => Ok(t.cursor(key).await?.map(|v| v.to_string())),
            Self::Parquet(t) => Ok(t.property(key).map(str::to_string)),
        }
    }

    /// A property the newest commit that set it left for later ones (a derived table's
    /// state): the snapshot summary (Iceberg) or the table configuration (Delta).
    pub fn commit_property(&self, key: &str) -> Option<&str> {
        match self {
            Self::Iceberg(t) => t.snapshot_property(key),
            Self::Delta(t) => t.property(key),
            Self::Parquet(t) => t.property(key),
        }
    }

    /// Removes the files `remove` (as [`Self::files_in_range`] names them), adds `staged`,
    /// moves cursor `key` from `expected` to `next`, sets the `state` properties (that later
    /// commits keep) and says `info` of this commit, in one commit, if and only if the cursor
    /// is still `expected` (compare-and-set) and the files are all still there. `Ok(false)`:
    /// nothing was committed.
    pub async fn commit_cursor(
        &mut self,
        remove: &HashSet<String>,
        staged: Staged,
        (key, expected, next): (&str, Option<&str>, &str),
        state: &[(String, String)],
        info: &[(String, String)],
    ) -> Result<bool> {
        match (self, staged) {
            (Self::Iceberg(t), Staged::Iceberg(s)) => {
                let mut properties: HashMap<String, String> = state.iter().cloned().collect();
                properties.extend(info.iter().cloned());
                if remove.is_empty() {
                    let properties: Vec<(String, String)> = properties.into_iter().collect();
                    return t.commit_cursor(s, key, expected, next, &properties).await;
                }
                properties.insert(key.to_string(), next.to_string());
                let outcome = t
                    .replace_if(remove, &s, |t| {
                        Ok(match t.snapshot_property(key) == expected {
                            true => Ok(properties.clone()),
                            false => Err(()),
                        })
                    })
                    .await?;
                Ok(matches!(outcome, ReplaceOutcome::Committed { .. }))
            }
            (Self::Delta(t), Staged::Delta(s)) => {
                let expected = expected.map(version).transpose()?;
                let cursor = (key, expected, version(next)?);
                t.commit_cursor(remove, s, cursor, state, info).await
            }
            (Self::Parquet(t), Staged::Parquet(s)) => {
                if !remove.is_empty() {
                    return Err(no_rewrites(t.name()));
                }
                t.commit_cursor(s, (key, expected, next), state, info).await
            }
            _ => Err(mixed()),
        }
    }

    /// The newest commit: the current snapshot id (Iceberg) or version (Delta, Parquet).
    pub fn current_commit(&self) -> Option<i64> {
        match self {
            Self::Iceberg(t) => t.current_snapshot_id(),
            Self::Delta(t) => t.version(),
            Self::Parquet(t) => Some(t.version()),
        }
    }

    /// The commits after `after` (from the start, for `None`) that brought rows, oldest first:
    /// Iceberg snapshot ids, or Delta and Parquet versions. Fails when `after` is not in the
    /// table's history any more.
    pub async fn appends_after(&mut self, after: Option<i64>) -> Result<Vec<i64>> {
        match self {
            Self::Iceberg(t) => t.appends_after(after),
            Self::Delta(t) => {
                let name = t.name().to_string();
                t.commits().await?.appends_after(&name, after)
            }
            Self::Parquet(t) => t.commits().appends_after(t.name(), after),
        }
    }

    /// The rows the commits `ids` of [`Self::appends_after`] added (cheap: from the log), `None`
    /// when a count is not known.
    pub fn added_rows(&self, ids: &[i64]) -> Option<u64> {
        match self {
            Self::Iceberg(t) => t.added_rows(ids),
            Self::Delta(t) => t.commits_read().added_rows(ids),
            Self::Parquet(t) => t.commits().added_rows(ids),
        }
    }

    /// Per commit of `ids` (from [`Self::appends_after`]), the data files it added.
    pub async fn files_added_by(&self, ids: &[i64]) -> Result<HashMap<i64, DataFiles>> {
        match self {
            Self::Iceberg(t) => t.files_added_by(ids).await,
            Self::Delta(t) => t.commits_read().files_added_by(t.name(), ids),
            Self::Parquet(t) => t.commits().files_added_by(t.name(), ids),
        }
    }

    /// Every column of the rows in `files`, in the table's current schema (columns added since
    /// read as null). The files need not be in the current version.
    pub async fn scan_data_files(&self, files: &DataFiles) -> Result<Vec<RecordBatch>> {
        match self {
            Self::Iceberg(t) => t.scan_data_files(files).await,
            Self::Delta(t) => t.scan_data_files(files).await,
            Self::Parquet(t) => t.scan_data_files(files).await,
        }
    }

    /// Every column of the rows the commits `ids` added.
    pub async fn scan_appended(&self, ids: &[i64]) -> Result<Vec<RecordBatch>> {
        let log = match self {
            Self::Iceberg(t) => return t.scan_appended(ids).await,
            Self::Delta(t) => t.commits_read(),
            Self::Parquet(t) => t.commits(),
        };
        let files = log.files_added_by(&self.name(), ids)?;
        let mut out = Vec::new();
        for files in ids.iter().filter_map(|id| files.get(id)) {
            out.extend(self.scan_data_files(files).await?);
        }
        Ok(out)
    }

    /// A commit of [`Self::appends_after`]'s order and time: (sequence number or version,
    /// commit time in milliseconds).
    pub fn commit_meta(&self, id: i64) -> Option<(i64, i64)> {
        match self {
            Self::Iceberg(t) => t.snapshot_meta(id),
            Self::Delta(t) => t.commits_read().meta(id),
            Self::Parquet(t) => t.commits().meta(id),
        }
    }

    /// Whether a commit after `after` rewrote rows (anything but an append). Fails when
    /// `after` is not in the history.
    pub async fn rewritten_after(&mut self, after: i64) -> Result<bool> {
        match self {
            Self::Iceberg(t) => t.rewritten_after(after),
            Self::Delta(t) => {
                let name = t.name().to_string();
                let log = t.commits().await?;
                log.appends_after(&name, Some(after))?;
                Ok(log.rewritten_after(after))
            }
            Self::Parquet(t) => {
                t.commits().appends_after(t.name(), Some(after))?;
                Ok(false)
            }
        }
    }

    /// The commits, newest first: (id, time in milliseconds, what the commit says of itself:
    /// Iceberg's snapshot summary, Delta's `commitInfo`, the Parquet log's `commit`).
    pub async fn history(&mut self) -> Result<Vec<(i64, i64, HashMap<String, String>)>> {
        let own = |(id, at, info): (i64, i64, &HashMap<String, String>)| (id, at, info.clone());
        Ok(match self {
            Self::Iceberg(t) => t.history().map(own).collect(),
            Self::Delta(t) => t.commits().await?.history().map(own).collect(),
            Self::Parquet(t) => t.commits().history().map(own).collect(),
        })
    }

    /// The data files that may hold a row whose timestamp `column` is in `[from, to)`
    /// (microseconds; `None` leaves that side open), judged by their statistics.
    pub async fn files_in_range(
        &self,
        column: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<HashSet<String>> {
        match self {
            Self::Iceberg(t) => t.files_in_range(column, from, to).await,
            Self::Delta(t) => t.files_in_range(column, from, to),
            Self::Parquet(t) => Ok(t.files_in_range(column, from, to)),
        }
    }

    /// Every column of the rows in the given data files.
    pub async fn scan_files(&self, files: HashSet<String>) -> Result<Vec<RecordBatch>> {
        match self {
            Self::Iceberg(t) => t.scan_files(files).await,
            Self::Delta(t) => t.scan_files(&files).await,
            Self::Parquet(t) => t.scan_files(&files).await,
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
            Self::Parquet(t) => t.add_columns(columns, properties).await,
        }
    }

    /// The largest value of a timestamp column, from the data files' statistics.
    pub async fn max_timestamp_micros(&self, column: &str) -> Result<Option<i64>> {
        match self {
            Self::Iceberg(t) => t.max_timestamp_micros(column).await,
            Self::Delta(t) => t.max_timestamp_micros(column).await,
            Self::Parquet(t) => Ok(t.max_timestamp_micros(column)),
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
            Self::Parquet(t) => t.scan_since(columns, time_column, since_micros).await,
        }
    }
}

/// Refuses a table name that exists in a format other than `format`.
async fn check_format(catalog: &Arc<Catalog>, name: &str, format: TableFormat) -> Result<()> {
    let dir = catalog.table_dir(name).ok();
    let has = |log: &str| dir.as_ref().is_some_and(|d| d.join(log).is_dir());
    let mut found = Vec::new();
    if has("_delta_log") {
        found.push(TableFormat::Delta);
    }
    if has(crate::parquet_table::LOG_DIR) {
        found.push(TableFormat::Parquet);
    }
    if format != TableFormat::Iceberg
        && IcebergTable::open_if_exists(catalog.clone(), name)
            .await?
            .is_some()
    {
        found.push(TableFormat::Iceberg);
    }
    match found.into_iter().find(|f| *f != format) {
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
    use crate::testing::{def, rows, sorted_ids, DAY};
    use arrow::datatypes::DataType;

    async fn catalog(dir: &tempfile::TempDir) -> Arc<Catalog> {
        let location = LakehouseLocation {
            catalog_uri: format!("sqlite://{}/catalog.db", dir.path().display()),
            warehouse: Some(dir.path().join("wh").display().to_string()),
            s3: Default::default(),
        };
        connect(&location).await.unwrap()
    }

    /// A bronze table in `format` (kept in a folder with `log`) through the table interface:
    /// fenced appends, the newest event time (`max` for 6 days in), a time-bounded scan and a
    /// new column with a property.
    async fn grows_columns_and_scans_by_time(format: TableFormat, log: &str, max: i64) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir).await;
        let mut table = Table::open_or_create(catalog.clone(), &def("bronze.e"), format)
            .await
            .unwrap();
        assert!(dir.path().join("wh/bronze/e").join(log).is_dir());
        for ids in [[1, 2], [3, 4], [5, 6]] {
            let staged = table.write(&rows(&ids, |i| i * DAY)).await.unwrap();
            let mut fence = OffsetFence::default();
            fence.cover("t", 0, (ids[0] > 1).then_some(ids[0] - 1), ids[1]);
            let done = table.commit_append(staged, &fence, &[]).await.unwrap();
            assert!(matches!(done, CommitOutcome::Committed { .. }));
        }
        assert_eq!(table.max_timestamp_micros("ts").await.unwrap(), Some(max));
        let since = table.scan_since(&["id".into()], "ts", 4 * DAY).await;
        assert_eq!(sorted_ids(&since.unwrap()), vec![4, 5, 6]);

        let extra = Field::new("note", DataType::Utf8, false);
        let props = [("medallion.x".to_string(), "grown".to_string())];
        table.add_columns(&[extra], &props).await.unwrap();
        let reopened = Table::open_if_exists(catalog.clone(), "bronze.e", format)
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
    async fn a_delta_bronze_table_through_the_table_interface() {
        // Delta's statistics keep milliseconds: the newest time is rounded up.
        grows_columns_and_scans_by_time(TableFormat::Delta, "_delta_log", 6 * DAY + 999).await;
    }

    #[tokio::test]
    async fn a_parquet_bronze_table_through_the_table_interface() {
        grows_columns_and_scans_by_time(TableFormat::Parquet, "_medallion_log", 6 * DAY).await;
    }

    /// A derived table's commits in either format: the cursor is compare-and-set, the state
    /// is read back, and a replacement swaps exactly the files it names.
    async fn cursor_commits(format: TableFormat) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir).await;
        let mut def = def("gold.g");
        def.partition_by_day = Some("ts".into());
        let mut table = Table::open_or_create(catalog.clone(), &def, format)
            .await
            .unwrap();
        let none = HashSet::new();
        assert_eq!(table.cursor("c").await.unwrap(), None);
        let staged = table.write(&rows(&[1, 2], |i| DAY + i)).await.unwrap();
        let state = [("s".to_string(), "a".to_string())];
        let done = table.commit_cursor(&none, staged, ("c", None, "10"), &state, &[]);
        assert!(done.await.unwrap());
        let staged = table.write(&rows(&[9], |_| 5 * DAY)).await.unwrap();
        let stale = table.commit_cursor(&none, staged, ("c", None, "11"), &[], &[]);
        assert!(
            !stale.await.unwrap(),
            "{format}: a moved cursor refuses the commit"
        );

        let mut reopened = Table::open_if_exists(catalog.clone(), "gold.g", format)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reopened.cursor("c").await.unwrap().as_deref(), Some("10"));
        assert_eq!(reopened.commit_property("s"), Some("a"));
        let files = reopened
            .files_in_range("ts", Some(DAY), Some(2 * DAY))
            .await
            .unwrap();
        assert_eq!(files.len(), 1, "{format}: {files:?}");
        let old = reopened.scan_files(files.clone()).await.unwrap();
        assert_eq!(sorted_ids(&old), vec![1, 2]);
        let mut staged = reopened.write(&rows(&[3], |i| DAY + i)).await.unwrap();
        let kept = old[0].slice(1, 1);
        staged.extend(reopened.write(&kept).await.unwrap()).unwrap();
        let done = reopened.commit_cursor(&files, staged, ("c", Some("10"), "12"), &[], &[]);
        assert!(done.await.unwrap());
        let all = reopened.scan_since(&["id".into()], "ts", 0).await.unwrap();
        assert_eq!(sorted_ids(&all), vec![2, 3], "{format}");
        assert_eq!(reopened.cursor("c").await.unwrap().as_deref(), Some("12"));
        assert_eq!(reopened.commit_property("s"), Some("a"));
        // The files named are gone now: a second replacement of them commits nothing.
        let staged = reopened.write(&rows(&[4], |i| DAY + i)).await.unwrap();
        let gone = reopened.commit_cursor(&files, staged, ("c", Some("12"), "13"), &[], &[]);
        assert!(!gone.await.unwrap(), "{format}");
    }

    #[tokio::test]
    async fn cursor_commits_of_an_iceberg_table() {
        cursor_commits(TableFormat::Iceberg).await;
    }

    #[tokio::test]
    async fn cursor_commits_of_a_delta_table() {
        cursor_commits(TableFormat::Delta).await;
    }

    /// A table as the stage that follows it reads it, in `format`: the commits that brought
    /// rows, their files, rows and times, what each commit said of itself, and a rewrite
    /// (Iceberg and Delta) that brings no rows but is seen as one.
    async fn followed(format: TableFormat) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog(&dir).await;
        let mut def = def("bronze.f");
        def.partition_by_day = (format != TableFormat::Delta).then(|| "ts".into());
        let mut table = Table::open_or_create(catalog.clone(), &def, format)
            .await
            .unwrap();
        let started = chrono::Utc::now().timestamp_millis();
        let said = |n: &str| [("k".to_string(), n.to_string())];
        for (n, ids, from, to) in [("1", vec![1, 2], None, 2), ("2", vec![3], Some(2), 3)] {
            let staged = table.write(&rows(&ids, |i| i * DAY)).await.unwrap();
            let mut fence = OffsetFence::default();
            fence.cover("t", 0, from, to);
            let done = table.commit_append(staged, &fence, &said(n)).await.unwrap();
            assert!(matches!(done, CommitOutcome::Committed { .. }));
        }
        let extra = Field::new("extra", DataType::Utf8, true);
        table.add_columns(&[extra], &[]).await.unwrap();
        let staged = table.write(&rows(&[4, 5, 6], |i| i * DAY)).await.unwrap();
        let cursor = ("c", None, "7");
        assert!(table
            .commit_cursor(&HashSet::new(), staged, cursor, &[], &said("3"))
            .await
            .unwrap());

        let mut reader = Table::open_if_exists(catalog.clone(), "bronze.f", format)
            .await
            .unwrap()
            .unwrap();
        let appends = reader.appends_after(None).await.unwrap();
        assert_eq!(appends.len(), 3, "{format}: {appends:?}");
        assert_eq!(
            reader.appends_after(Some(appends[0])).await.unwrap(),
            appends[1..]
        );
        assert_eq!(reader.added_rows(&appends), Some(6), "{format}");
        let files = reader.files_added_by(&appends[2..]).await.unwrap();
        let last = reader.scan_data_files(&files[&appends[2]]).await.unwrap();
        assert_eq!(sorted_ids(&last), vec![4, 5, 6], "{format}");
        assert!(last.iter().all(|b| b.column_by_name("extra").is_some()));
        let all = reader.scan_appended(&appends).await.unwrap();
        assert_eq!(sorted_ids(&all), vec![1, 2, 3, 4, 5, 6], "{format}");
        let (first_seq, first_ms) = reader.commit_meta(appends[0]).unwrap();
        let (last_seq, last_ms) = reader.commit_meta(appends[2]).unwrap();
        assert!(first_seq < last_seq && started <= first_ms && first_ms <= last_ms);
        let said: Vec<String> = reader
            .history()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(_, _, info)| info.get("k").cloned())
            .collect();
        assert_eq!(said, ["3", "2", "1"], "{format}: newest first");
        assert!(!reader.rewritten_after(appends[0]).await.unwrap());

        let files: HashSet<String> = files[&appends[2]]
            .clone()
            .into_paths()
            .into_iter()
            .collect();
        let staged = table.write(&rows(&[4], |i| i * DAY)).await.unwrap();
        let replaced = table
            .commit_cursor(&files, staged, ("c", Some("7"), "8"), &[], &[])
            .await;
        if format == TableFormat::Parquet {
            assert!(replaced
                .unwrap_err()
                .to_string()
                .contains("no file rewrites"));
            return;
        }
        assert!(replaced.unwrap(), "{format}");
        reader.refresh().await.unwrap();
        assert_eq!(
            reader.appends_after(None).await.unwrap(),
            appends,
            "{format}"
        );
        assert!(
            reader.rewritten_after(appends[2]).await.unwrap(),
            "{format}"
        );
        assert!(reader.appends_after(Some(i64::MAX / 2)).await.is_err());
    }

    #[tokio::test]
    async fn an_iceberg_table_followed() {
        followed(TableFormat::Iceberg).await;
    }

    #[tokio::test]
    async fn a_delta_table_followed() {
        followed(TableFormat::Delta).await;
    }

    #[tokio::test]
    async fn a_parquet_table_followed() {
        followed(TableFormat::Parquet).await;
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
