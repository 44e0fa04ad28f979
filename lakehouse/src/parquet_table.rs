//! Plain Parquet tables: data files in Hive-style folders (`COLUMN_day=YYYY-MM-DD/`) and a
//! commit log of our own beside them, `_medallion_log/NNNNNNNNNNNNNNNNNNNN.json`, the simplest
//! format with the fewest guarantees.
//!
//! A batch's files are written as `….parquet.staged`, which a reader globbing `*.parquet`
//! does not see. A commit is the next log entry, created atomically (a hard link of a complete
//! file, refused when another writer took the version): it names the files, the Kafka offsets
//! of the whole table and the table's schema and properties. Only after it are the files
//! renamed to `….parquet`; a crash in between is rolled forward by the next handle to read the
//! log. The fence is the Iceberg one: the entry is written only if the table, at the version
//! it is written on top of, still holds the offsets the batch started from.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use crate::commits::{Commit, CommitLog};
use crate::files;
use crate::increments::DataFiles;
use crate::offsets::{OffsetFence, SourceOffsets};
use crate::table::{check_columns, conform, CommitOutcome, TableDefinition};
use crate::{Error, Result};

/// The log's folder in the table's directory.
pub(crate) const LOG_DIR: &str = "_medallion_log";
/// Suffix of data files not committed yet.
const STAGED: &str = ".staged";
/// Commits rebuilt on a concurrent commit before giving up.
const MAX_CONFLICTS: usize = 20;
/// The operation of a commit that adds rows.
const APPEND: &str = "append";

/// One data file of the table, as the log names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DataFile {
    /// Relative to the table's directory, e.g. `event_time_day=2026-01-01/part-….parquet`.
    path: String,
    rows: u64,
    /// Smallest and largest value of each timestamp column, in microseconds.
    times: BTreeMap<String, (i64, i64)>,
}

/// One commit of the log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Entry {
    version: u64,
    timestamp_ms: i64,
    /// `create`, `append` or `add columns`.
    operation: String,
    /// The table's columns from this version on, when it sets them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<Schema>,
    /// The timestamp column whose day folders the files are in (set by `create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition_by_day: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    add: Vec<DataFile>,
    /// The next offset of every partition the table has consumed, after this commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offsets: Option<SourceOffsets>,
    /// Table properties this commit sets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    properties: BTreeMap<String, String>,
    /// What this commit says of itself (e.g. bronze's batch counts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    commit: BTreeMap<String, String>,
}

/// The table as its log up to `version` leaves it.
#[derive(Debug)]
struct State {
    version: u64,
    schema: SchemaRef,
    partition_by_day: Option<String>,
    files: Vec<DataFile>,
    offsets: SourceOffsets,
    properties: HashMap<String, String>,
    /// Every commit, for the stages that follow the table.
    log: CommitLog,
}

impl Default for State {
    fn default() -> Self {
        Self {
            version: 0,
            schema: Arc::new(Schema::empty()),
            partition_by_day: None,
            files: Vec::new(),
            offsets: SourceOffsets::default(),
            properties: HashMap::new(),
            log: CommitLog::default(),
        }
    }
}

impl State {
    fn apply(&mut self, entry: Entry) {
        self.version = entry.version;
        let appended = (entry.operation == APPEND && !entry.add.is_empty()).then(|| {
            let files = entry.add.iter();
            files.map(|f| (f.path.clone(), Some(f.rows))).collect()
        });
        self.log.push(Commit {
            version: i64::try_from(entry.version).unwrap_or(i64::MAX),
            at_ms: entry.timestamp_ms,
            appended,
            rewrote: false,
            info: entry.commit.clone().into_iter().collect(),
        });
        if let Some(schema) = entry.schema {
            self.schema = Arc::new(schema);
        }
        if entry.partition_by_day.is_some() {
            self.partition_by_day = entry.partition_by_day;
        }
        self.files.extend(entry.add);
        if let Some(offsets) = entry.offsets {
            self.offsets = offsets;
        }
        self.properties.extend(entry.properties);
    }
}

/// Data files written for a commit of a Parquet table that has not happened yet.
#[derive(Debug, Default)]
pub struct StagedParquet(Vec<DataFile>);

impl StagedParquet {
    /// The number of data files staged.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds the files of another write to this commit.
    pub fn extend(&mut self, other: StagedParquet) {
        self.0.extend(other.0);
    }
}

/// A plain Parquet table in a directory of the warehouse.
#[derive(Debug)]
pub struct ParquetTable {
    name: String,
    dir: PathBuf,
    state: State,
}

fn io_err(table: &str, what: &str) -> impl FnOnce(std::io::Error) -> Error {
    let message = format!("table {table}: {what}");
    move |e| Error::Config(format!("{message}: {e}"))
}

fn entry_name(version: u64) -> String {
    format!("{version:020}.json")
}

impl ParquetTable {
    /// Loads the table in directory `dir`, creating it when it has no log yet.
    pub async fn open_or_create(dir: &Path, def: &TableDefinition) -> Result<Self> {
        let name = def.name.clone();
        std::fs::create_dir_all(dir.join(LOG_DIR))
            .map_err(io_err(&name, &format!("cannot create {}", dir.display())))?;
        let mut table = Self {
            name,
            dir: dir.to_path_buf(),
            state: State::default(),
        };
        table.refresh().await?;
        if table.state.version == 0 {
            let create = Entry {
                operation: "create".into(),
                schema: Some(def.schema.as_ref().clone()),
                partition_by_day: def.partition_by_day.clone(),
                ..Entry::default()
            };
            // Another worker creating it at the same moment wins: its table is loaded.
            table.try_commit(create).await?;
            table.refresh().await?;
        }
        check_columns(&table.name, &table.state.schema, &def.schema)?;
        Ok(table)
    }

    /// Loads the table in directory `dir`, if it has a log.
    pub async fn open_if_exists(dir: &Path, name: &str) -> Result<Option<Self>> {
        if !dir.join(LOG_DIR).join(entry_name(1)).is_file() {
            return Ok(None);
        }
        let mut table = Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            state: State::default(),
        };
        table.refresh().await?;
        Ok(Some(table))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.state.schema
    }

    /// The loaded version.
    pub fn version(&self) -> i64 {
        i64::try_from(self.state.version).unwrap_or(i64::MAX)
    }

    /// A table property.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.state.properties.get(key).map(String::as_str)
    }

    /// Reads the log entries after the loaded version, and renames the files of committed
    /// entries that a crash left staged.
    pub async fn refresh(&mut self) -> Result<()> {
        loop {
            let next = self.state.version + 1;
            let path = self.dir.join(LOG_DIR).join(entry_name(next));
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err(&self.name, "reading the log")(e)),
            };
            let entry: Entry = serde_json::from_str(&text).map_err(|e| Error::CorruptProperty {
                table: self.name.clone(),
                key: format!("{LOG_DIR}/{}", entry_name(next)),
                message: e.to_string(),
            })?;
            for file in &entry.add {
                self.publish(file).await?;
            }
            self.state.apply(entry);
        }
    }

    /// The next offset of each of `partitions` that the table holds.
    pub fn stored_offsets(&self, partitions: &[(String, i32)]) -> SourceOffsets {
        let mut out = SourceOffsets::default();
        for (topic, partition) in partitions {
            if let Some(next) = self.state.offsets.get(topic, *partition) {
                out.set(topic, *partition, next);
            }
        }
        out
    }

    /// Writes `batch` as staged data files, one per day folder when the table is partitioned.
    pub async fn write(&self, batch: &RecordBatch) -> Result<StagedParquet> {
        if batch.num_rows() == 0 {
            return Ok(StagedParquet::default());
        }
        let batch = conform(&self.name, &self.state.schema, batch)?;
        let mut staged = Vec::new();
        for (folder, part) in self.split_by_day(&batch)? {
            let path = format!("{folder}part-{}.parquet", uuid::Uuid::new_v4());
            let target = self.dir.join(format!("{path}{STAGED}"));
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(io_err(&self.name, "creating a partition folder"))?;
            }
            let mut times = BTreeMap::new();
            for (i, field) in part.schema().fields().iter().enumerate() {
                if let DataType::Timestamp(..) = field.data_type() {
                    if let Some(range) = files::time_range(part.column(i))? {
                        times.insert(field.name().clone(), range);
                    }
                }
            }
            let rows = part.num_rows() as u64;
            let name = self.name.clone();
            tokio::task::spawn_blocking(move || write_file(&name, &target, &part))
                .await
                .map_err(|e| Error::Config(format!("table {}: writer: {e}", self.name)))??;
            staged.push(DataFile { path, rows, times });
        }
        Ok(StagedParquet(staged))
    }

    /// The batch's rows per day folder of the partition column (one part, in the table's
    /// folder, when it is not partitioned).
    fn split_by_day(&self, batch: &RecordBatch) -> Result<Vec<(String, RecordBatch)>> {
        let Some(column) = &self.state.partition_by_day else {
            return Ok(vec![(String::new(), batch.clone())]);
        };
        let times = batch.column_by_name(column).ok_or_else(|| {
            Error::Config(format!("table {}: no partition column {column}", self.name))
        })?;
        let days = arrow::compute::cast(times, &DataType::Date32)?;
        let days = days
            .as_any()
            .downcast_ref::<arrow::array::Date32Array>()
            .ok_or_else(|| Error::Config(format!("table {}: {column} is no date", self.name)))?;
        let mut by_day: BTreeMap<Option<i32>, Vec<u32>> = BTreeMap::new();
        for (i, day) in days.iter().enumerate() {
            by_day.entry(day).or_default().push(i as u32);
        }
        let mut out = Vec::new();
        for (day, rows) in by_day {
            let label = day
                .and_then(|d| chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163))
                .map_or("__HIVE_DEFAULT_PARTITION__".to_string(), |d| d.to_string());
            let indices = arrow::array::UInt32Array::from(rows);
            let part = arrow::compute::take_record_batch(batch, &indices)?;
            out.push((format!("{column}_day={label}/"), part));
        }
        Ok(out)
    }

    /// Commits `staged` with the partitions of `fence` moved and the `extra` commit
    /// properties, if and only if the table still holds the offsets the batch started from.
    pub async fn commit_append(
        &mut self,
        staged: StagedParquet,
        fence: &OffsetFence,
        extra: &[(String, String)],
    ) -> Result<CommitOutcome> {
        for _ in 0..MAX_CONFLICTS {
            self.refresh().await?;
            let offsets = match fence.apply(&self.state.offsets) {
                Ok(next) => next,
                Err(violation) => {
                    self.discard(&staged.0).await;
                    return Ok(CommitOutcome::Fenced(violation));
                }
            };
            let entry = Entry {
                operation: APPEND.into(),
                add: staged.0.clone(),
                offsets: Some(offsets),
                commit: extra.iter().cloned().collect(),
                ..Entry::default()
            };
            if let Some(version) = self.try_commit(entry).await? {
                self.refresh().await?;
                return Ok(CommitOutcome::Committed {
                    snapshot_id: i64::try_from(version).unwrap_or(i64::MAX),
                });
            }
        }
        Err(Error::Config(format!(
            "table {}: {MAX_CONFLICTS} commits in a row lost to other writers",
            self.name
        )))
    }

    /// Appends `staged`, moves cursor `key` (a table property) from `expected` to `next` and
    /// sets the `state` properties, with `info` said of this commit, if and only if the cursor
    /// is still `expected` (compare-and-set). `Ok(false)`: nothing was committed.
    pub async fn commit_cursor(
        &mut self,
        staged: StagedParquet,
        (key, expected, next): (&str, Option<&str>, &str),
        state: &[(String, String)],
        info: &[(String, String)],
    ) -> Result<bool> {
        for _ in 0..MAX_CONFLICTS {
            self.refresh().await?;
            if self.property(key) != expected {
                self.discard(&staged.0).await;
                return Ok(false);
            }
            let mut properties: BTreeMap<String, String> = state.iter().cloned().collect();
            properties.insert(key.to_string(), next.to_string());
            let entry = Entry {
                operation: APPEND.into(),
                add: staged.0.clone(),
                properties,
                commit: info.iter().cloned().collect(),
                ..Entry::default()
            };
            if self.try_commit(entry).await?.is_some() {
                self.refresh().await?;
                return Ok(true);
            }
        }
        Err(Error::Config(format!(
            "table {}: {MAX_CONFLICTS} commits in a row lost to other writers",
            self.name
        )))
    }

    /// Every commit of the log, for the stages that follow the table.
    pub(crate) fn commits(&self) -> &CommitLog {
        &self.state.log
    }

    /// Every column of the rows in `files` (as [`Self::commits`] names them), in the current
    /// schema.
    pub async fn scan_data_files(&self, data: &DataFiles) -> Result<Vec<RecordBatch>> {
        let columns = files::column_names(&self.state.schema);
        self.read_paths(data.paths(), &columns).await
    }

    /// `columns` of the committed data files `paths`, in order.
    async fn read_paths<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
        columns: &[String],
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for path in paths {
            out.extend(self.read_file(path, columns).await?);
        }
        Ok(out)
    }

    /// The data files that may hold a row whose timestamp `column` is in `[from, to)`
    /// (microseconds; `None` leaves that side open), judged by the ranges the log keeps.
    pub fn files_in_range(
        &self,
        column: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> HashSet<String> {
        self.files_overlapping(column, from, to)
            .map(str::to_string)
            .collect()
    }

    /// The files that may hold a row whose `column` is in `[from, to)`, in log order.
    fn files_overlapping<'a>(
        &'a self,
        column: &'a str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> impl Iterator<Item = &'a str> {
        self.state
            .files
            .iter()
            .filter(move |f| {
                let range = f.times.get(column).map(|(l, u)| (*l, *u));
                files::overlaps(range.unzip(), from, to)
            })
            .map(|f| f.path.as_str())
    }

    /// Every column of the rows in the given data files.
    pub async fn scan_files(&self, wanted: &HashSet<String>) -> Result<Vec<RecordBatch>> {
        let columns = files::column_names(&self.state.schema);
        self.read_paths(wanted.iter().map(String::as_str), &columns)
            .await
    }

    /// Reads `columns` of every row.
    pub async fn scan_columns(&self, columns: &[String]) -> Result<Vec<RecordBatch>> {
        let paths = self.state.files.iter().map(|f| f.path.as_str());
        self.read_paths(paths, columns).await
    }

    /// The data files and rows.
    pub fn size(&self) -> (u64, Option<u64>) {
        let files = &self.state.files;
        (files.len() as u64, Some(files.iter().map(|f| f.rows).sum()))
    }

    /// `columns` of one committed data file (a path relative to the table), all rows.
    async fn read_file(&self, path: &str, columns: &[String]) -> Result<Vec<RecordBatch>> {
        let reader = tokio::fs::File::open(self.dir.join(path))
            .await
            .map_err(io_err(&self.name, &format!("opening {path}")))?;
        files::read_columns((&self.name, path), reader, &self.state.schema, columns).await
    }

    /// Adds the `columns` the table does not have yet (nullable, after the existing ones) and
    /// sets `properties`, in one commit. Files written before read the new columns as null.
    pub async fn add_columns(
        &mut self,
        columns: &[Field],
        properties: &[(String, String)],
    ) -> Result<()> {
        for _ in 0..MAX_CONFLICTS {
            self.refresh().await?;
            let mut fields: Vec<Field> = self
                .state
                .schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            for column in columns {
                if self.state.schema.field_with_name(column.name()).is_err() {
                    fields.push(column.clone().with_nullable(true));
                }
            }
            let entry = Entry {
                operation: "add columns".into(),
                schema: Some(Schema::new(fields)),
                properties: properties.iter().cloned().collect(),
                ..Entry::default()
            };
            if self.try_commit(entry).await?.is_some() {
                return self.refresh().await;
            }
        }
        Err(Error::Config(format!(
            "table {}: {MAX_CONFLICTS} schema changes in a row lost to other writers",
            self.name
        )))
    }

    /// Writes `entry` as the version after the loaded one; `None` when another writer took
    /// that version first.
    async fn try_commit(&self, mut entry: Entry) -> Result<Option<u64>> {
        let version = self.state.version + 1;
        entry.version = version;
        entry.timestamp_ms = chrono::Utc::now().timestamp_millis();
        let text = serde_json::to_string(&entry)
            .map_err(|e| Error::Config(format!("table {}: log entry: {e}", self.name)))?;
        let log = self.dir.join(LOG_DIR);
        let temp = log.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
        let target = log.join(entry_name(version));
        let name = self.name.clone();
        // A complete file appears under the version's name at once, or not at all.
        let linked = tokio::task::spawn_blocking(move || {
            std::fs::write(&temp, text.as_bytes())
                .and_then(|()| std::fs::File::open(&temp)?.sync_all())
                .map_err(io_err(&name, "writing a log entry"))?;
            let linked = std::fs::hard_link(&temp, &target);
            let _ = std::fs::remove_file(&temp);
            match linked {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(io_err(&name, "committing a log entry")(e)),
            }
        })
        .await
        .map_err(|e| Error::Config(format!("table {}: commit: {e}", self.name)))??;
        Ok(linked.then_some(version))
    }

    /// Gives a committed file its final name, if it still has its staged one.
    async fn publish(&self, file: &DataFile) -> Result<()> {
        let done = self.dir.join(&file.path);
        let staged = self.dir.join(format!("{}{STAGED}", file.path));
        match tokio::fs::rename(&staged, &done).await {
            Ok(()) => Ok(()),
            // Published already (by this writer or another handle).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&self.name, "publishing a data file")(e)),
        }
    }

    /// Deletes the staged files of a batch that will not be committed.
    async fn discard(&self, files: &[DataFile]) {
        for file in files {
            let staged = self.dir.join(format!("{}{STAGED}", file.path));
            if let Err(e) = tokio::fs::remove_file(&staged).await {
                tracing::debug!(table = %self.name, error = %e, "staged file not removed");
            }
        }
    }

    /// The largest value of a timestamp column, from the files' statistics in the log.
    pub fn max_timestamp_micros(&self, column: &str) -> Option<i64> {
        self.state
            .files
            .iter()
            .filter_map(|f| f.times.get(column).map(|(_, max)| *max))
            .max()
    }

    /// Reads `columns` of the rows whose `time_column` is at or after `since_micros`; files
    /// that end before it are skipped.
    pub async fn scan_since(
        &self,
        columns: &[String],
        time_column: &str,
        since_micros: i64,
    ) -> Result<Vec<RecordBatch>> {
        let paths = self.files_overlapping(time_column, Some(since_micros), None);
        let read = files::with_time_column(columns, time_column);
        let batches = self.read_paths(paths, &read).await?;
        files::keep_since(batches, since_micros)
    }
}

/// One Parquet file at `target` holding `batch`.
fn write_file(table: &str, target: &Path, batch: &RecordBatch) -> Result<()> {
    let file = std::fs::File::create(target)
        .map_err(io_err(table, &format!("creating {}", target.display())))?;
    let write_err = |e: parquet::errors::ParquetError| {
        Error::Config(format!("table {table}: writing {}: {e}", target.display()))
    };
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(write_err)?;
    writer.write(batch).map_err(write_err)?;
    let file = writer.into_inner().map_err(write_err)?;
    file.sync_all()
        .map_err(io_err(table, &format!("syncing {}", target.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{rows, DAY};

    /// Data files under `dir` whose names end with `suffix`.
    fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_ending(&path, suffix));
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
        out
    }

    #[tokio::test]
    async fn files_are_visible_once_committed_and_a_crash_after_the_entry_rolls_forward() {
        let dir = tempfile::tempdir().unwrap();
        let def = TableDefinition {
            name: "bronze.p".into(),
            schema: rows(&[], |_| 0).schema(),
            partition_by_day: Some("ts".into()),
        };
        let mut table = ParquetTable::open_or_create(dir.path(), &def)
            .await
            .unwrap();
        let mut fence = OffsetFence::default();
        fence.cover("t", 0, None, 2);

        // Written: staged only, in the rows' day folders.
        let staged = table.write(&rows(&[1, 2], |i| i * DAY)).await.unwrap();
        assert_eq!(files_ending(dir.path(), ".parquet").len(), 0);
        let waiting = files_ending(dir.path(), STAGED);
        assert_eq!(waiting.len(), 2);
        assert!(waiting
            .iter()
            .any(|p| p.to_string_lossy().contains("ts_day=1970-01-02/")));
        let done = table.commit_append(staged, &fence, &[]).await.unwrap();
        assert!(matches!(done, CommitOutcome::Committed { snapshot_id: 2 }));
        assert_eq!(files_ending(dir.path(), ".parquet").len(), 2);
        assert_eq!(files_ending(dir.path(), STAGED).len(), 0);

        // A stale batch of the same partition is fenced and its files removed.
        let staged = table.write(&rows(&[3], |i| i * DAY)).await.unwrap();
        match table.commit_append(staged, &fence, &[]).await.unwrap() {
            CommitOutcome::Fenced(v) => assert_eq!((v.expected, v.found), (None, Some(2))),
            other => panic!("{other:?}"),
        }
        assert_eq!(files_ending(dir.path(), STAGED).len(), 0);

        // The entry is written, then the process dies before renaming: the next handle
        // publishes the file.
        let staged = table.write(&rows(&[4], |i| i * DAY)).await.unwrap();
        let entry = Entry {
            operation: "append".into(),
            add: staged.0,
            ..Entry::default()
        };
        assert_eq!(table.try_commit(entry).await.unwrap(), Some(3));
        assert_eq!(files_ending(dir.path(), STAGED).len(), 1);
        let reopened = ParquetTable::open_if_exists(dir.path(), "bronze.p")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(files_ending(dir.path(), STAGED).len(), 0);
        let all = reopened.scan_since(&["id".into()], "ts", 0).await.unwrap();
        assert_eq!(crate::testing::sorted_ids(&all), vec![1, 2, 4]);
        assert_eq!(
            reopened.stored_offsets(&[("t".into(), 0)]).get("t", 0),
            Some(2)
        );
        assert_eq!(reopened.max_timestamp_micros("ts"), Some(4 * DAY));
    }
}
