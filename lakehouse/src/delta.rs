//! Delta Lake tables (delta-rs): fenced appends whose Kafka offsets travel in the same commit
//! as one `txn` action per partition (app id `medallion:TOPIC:PARTITION`, version the next
//! offset), the way Delta's streaming writers record progress.
//!
//! The fence is the Iceberg one ([`OffsetFence`]): a commit lands only if the table still holds
//! the offsets its batch started from. delta-rs pins the commit to the version it was built on
//! and rejects it when a commit after that one set a `txn` it also sets; a concurrent commit
//! of other partitions only makes it retry on top.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::MetadataExt;
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt as _;
use parquet::arrow::async_reader::ParquetObjectReader;
use serde_json::Value;

mod maintain;

pub use maintain::VacuumReport;

use crate::commits::{Commit, CommitLog};
use crate::files;
use crate::increments::DataFiles;
use crate::offsets::{OffsetFence, SourceOffsets};
use crate::table::{check_columns, conform, CommitOutcome, TableDefinition};
use crate::{Error, Result};

/// Commits rebuilt on a concurrent commit of other partitions before giving up.
const MAX_CONFLICTS: usize = 20;

/// Data files written for a Delta commit that has not happened yet.
#[derive(Debug, Default)]
pub struct StagedAdds(Vec<Add>);

impl StagedAdds {
    /// The number of data files staged.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds the files of another write to this commit.
    pub fn extend(&mut self, other: StagedAdds) {
        self.0.extend(other.0);
    }
}

/// A Delta table in a directory of the warehouse.
pub struct DeltaLakeTable {
    name: String,
    table: DeltaTable,
    arrow_schema: SchemaRef,
    /// The offsets of the partitions this handle's last append covered, with the version it
    /// made: an append on that version, of those partitions, needs no log replay per partition.
    committed: Option<(Option<u64>, SourceOffsets)>,
    /// The commits read so far, for the stages that follow the table (read on demand).
    log: CommitLog,
}

impl std::fmt::Debug for DeltaLakeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaLakeTable")
            .field("name", &self.name)
            .finish()
    }
}

fn delta_err(table: &str, op: &'static str) -> impl FnOnce(DeltaTableError) -> Error {
    let table = table.to_string();
    move |e| Error::Delta {
        table,
        op,
        // The kernel's errors carry a backtrace on further lines.
        message: e.to_string().lines().next().unwrap_or_default().to_string(),
    }
}

/// A schema the kernel refused, named (its errors carry a backtrace on further lines).
fn schema_err(table: &str, e: impl std::fmt::Display) -> Error {
    let message = e.to_string();
    let first = message.lines().next().unwrap_or_default();
    Error::Config(format!("table {table}: schema: {first}"))
}

/// `schema` with its timestamps as Delta has them: microseconds in `UTC` (the tables' Arrow
/// schemas name UTC `+00:00`, which Delta refuses).
fn delta_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(_, Some(_)) => f.as_ref().clone().with_data_type(
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A data file of the current version.
struct FileEntry {
    /// Relative to the table's directory.
    path: String,
    /// Delta's JSON statistics (`numRecords`, `minValues`, `maxValues`, `nullCount`).
    stats: Option<String>,
    size: u64,
    rows: Option<u64>,
}

impl FileEntry {
    /// The file's largest value of timestamp `column` in microseconds, rounded up from the
    /// milliseconds Delta's statistics keep.
    fn max_micros(&self, column: &str) -> Option<i64> {
        self.statistic("maxValues", column).map(|m| m + 999)
    }

    /// The file's smallest value of timestamp `column` in microseconds (milliseconds in the
    /// statistics, truncated: never above the true value).
    fn min_micros(&self, column: &str) -> Option<i64> {
        self.statistic("minValues", column)
    }

    fn statistic(&self, kind: &str, column: &str) -> Option<i64> {
        let stats: Value = serde_json::from_str(self.stats.as_deref()?).ok()?;
        let text = stats.get(kind)?.get(column)?.as_str()?;
        let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
        Some(at.timestamp_micros())
    }
}

/// The app id of a derived table's cursor `key`.
fn cursor_app_id(key: &str) -> String {
    format!("medallion:{key}")
}

/// The app id of a partition's `txn` action.
fn app_id(topic: &str, partition: i32) -> String {
    format!("medallion:{topic}:{partition}")
}

impl DeltaLakeTable {
    /// Loads the table at `location` (a directory), creating it when it has no log yet.
    pub async fn open_or_create(location: &str, def: &TableDefinition) -> Result<Self> {
        let name = def.name.clone();
        std::fs::create_dir_all(location)
            .map_err(|e| Error::Config(format!("table {name}: cannot create {location}: {e}")))?;
        let table = load(location, &name).await?;
        let table = match table.version() {
            Some(_) => table,
            None => {
                let schema: StructType = delta_schema(&def.schema)
                    .as_ref()
                    .try_into_kernel()
                    .map_err(|e| schema_err(&name, e))?;
                table
                    .create()
                    .with_table_name(name.clone())
                    .with_columns(schema.fields().cloned())
                    .with_save_mode(SaveMode::Ignore)
                    .await
                    .map_err(delta_err(&name, "create"))?
            }
        };
        let arrow_schema = arrow_schema(&table, &name)?;
        check_columns(&name, &arrow_schema, &delta_schema(&def.schema))?;
        Ok(Self {
            name,
            table,
            arrow_schema,
            committed: None,
            log: CommitLog::default(),
        })
    }

    /// Loads the table at `location`, if it has a log.
    pub async fn open_if_exists(location: &str, name: &str) -> Result<Option<Self>> {
        if !std::path::Path::new(location).join("_delta_log").is_dir() {
            return Ok(None);
        }
        let table = load(location, name).await?;
        if table.version().is_none() {
            return Ok(None);
        }
        let arrow_schema = arrow_schema(&table, name)?;
        Ok(Some(Self {
            name: name.to_string(),
            table,
            arrow_schema,
            committed: None,
            log: CommitLog::default(),
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    /// The loaded version.
    pub fn version(&self) -> Option<i64> {
        self.table
            .version()
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
    }

    /// The table's newest version.
    pub async fn refresh(&mut self) -> Result<()> {
        self.table
            .update_state()
            .await
            .map_err(delta_err(&self.name, "refresh"))?;
        self.arrow_schema = arrow_schema(&self.table, &self.name)?;
        Ok(())
    }

    /// The next offset of each of `partitions` that the table holds.
    pub async fn stored_offsets(&self, partitions: &[(String, i32)]) -> Result<SourceOffsets> {
        let mut out = SourceOffsets::default();
        let Ok(state) = self.table.snapshot() else {
            return Ok(out);
        };
        let log_store = self.table.log_store();
        for (topic, partition) in partitions {
            let version = state
                .transaction_version(log_store.as_ref(), app_id(topic, *partition))
                .await
                .map_err(delta_err(&self.name, "read txn"))?;
            if let Some(next) = version {
                out.set(topic, *partition, next);
            }
        }
        Ok(out)
    }

    /// Writes `batch` as data files of the table, not committed yet.
    pub async fn write(&self, batch: &RecordBatch) -> Result<StagedAdds> {
        if batch.num_rows() == 0 {
            return Ok(StagedAdds::default());
        }
        let batch = conform(&self.name, &self.arrow_schema, batch)?;
        let mut writer =
            RecordBatchWriter::for_table(&self.table).map_err(delta_err(&self.name, "write"))?;
        writer
            .write(batch)
            .await
            .map_err(delta_err(&self.name, "write"))?;
        let adds = writer
            .flush()
            .await
            .map_err(delta_err(&self.name, "write"))?;
        Ok(StagedAdds(adds))
    }

    /// A table property (the `configuration` of the table's metadata).
    pub fn property(&self, key: &str) -> Option<&str> {
        let state = self.table.snapshot().ok()?;
        state
            .metadata()
            .configuration()
            .get(key)
            .map(String::as_str)
    }

    /// Adds the `columns` the table does not have yet (nullable, after the existing ones) and
    /// sets `properties`, in one metadata commit. Rows already in the table read them as null.
    pub async fn add_columns(
        &mut self,
        columns: &[Field],
        properties: &[(String, String)],
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let added: Vec<Field> = columns
                .iter()
                .filter(|c| self.arrow_schema.field_with_name(c.name()).is_err())
                .map(|c| c.clone().with_nullable(true))
                .collect();
            let added: StructType = delta_schema(&Arc::new(Schema::new(added)))
                .as_ref()
                .try_into_kernel()
                .map_err(|e| schema_err(&self.name, e))?;
            let state = self
                .table
                .snapshot()
                .map_err(delta_err(&self.name, "evolve schema"))?;
            let current = state.schema();
            let schema = StructType::try_new(current.fields().chain(added.fields()).cloned())
                .map_err(|e| schema_err(&self.name, e))?;
            let mut metadata = state
                .metadata()
                .clone()
                .with_schema(&schema)
                .map_err(|e| schema_err(&self.name, e))?;
            for (k, v) in properties {
                metadata = metadata
                    .add_config_key(k.clone(), v.clone())
                    .map_err(|e| schema_err(&self.name, e))?;
            }
            let operation = DeltaOperation::AddColumn {
                fields: added.fields().cloned().collect(),
            };
            let commit = CommitBuilder::from(CommitProperties::default().with_max_retries(0))
                .with_actions(vec![Action::Metadata(metadata)])
                .build(Some(state), self.table.log_store(), operation)
                .await;
            match commit {
                Ok(done) => {
                    self.table.state = Some(done.snapshot());
                    self.arrow_schema = arrow_schema(&self.table, &self.name)?;
                    tracing::info!(table = %self.name, added = added.fields().count(), "table schema evolved");
                    return Ok(());
                }
                // Another worker committed first: look again at what is still missing.
                Err(
                    DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_),
                ) if attempt < 5 => self.refresh().await?,
                Err(e) => return Err(delta_err(&self.name, "evolve schema")(e)),
            }
        }
    }

    /// The cursor `key` of a derived table (the last upstream snapshot it consumed): the
    /// version of its `txn` action, app id `medallion:KEY`.
    pub async fn cursor(&self, key: &str) -> Result<Option<i64>> {
        let Ok(state) = self.table.snapshot() else {
            return Ok(None);
        };
        state
            .transaction_version(self.table.log_store().as_ref(), cursor_app_id(key))
            .await
            .map_err(delta_err(&self.name, "read txn"))
    }

    /// Removes the files `remove` (paths as [`Self::files_in_range`] gives them), adds
    /// `staged` and moves cursor `key` from `expected` to `next` (a `txn` action), with
    /// `state` set in the table configuration and `info` in the commit's `commitInfo`, in one
    /// commit, if and only if the cursor is
    /// still `expected` and the files are all there. `Ok(false)`: nothing was committed.
    pub async fn commit_cursor(
        &mut self,
        remove: &HashSet<String>,
        staged: StagedAdds,
        (key, expected, next): (&str, Option<i64>, i64),
        state: &[(String, String)],
        info: &[(String, String)],
    ) -> Result<bool> {
        let info: HashMap<String, Value> = info
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut conflicts = 0;
        loop {
            if self.cursor(key).await? != expected {
                return Ok(false);
            }
            let snapshot = self
                .table
                .snapshot()
                .map_err(delta_err(&self.name, "commit"))?;
            let mut actions: Vec<Action> = staged.0.iter().cloned().map(Action::Add).collect();
            let Some(removes) = removes(snapshot, remove, true) else {
                // Another writer removed some of them: the caller starts over.
                return Ok(false);
            };
            actions.extend(removes);
            if !state.is_empty() {
                let mut metadata = snapshot.metadata().clone();
                for (k, v) in state {
                    metadata = metadata
                        .add_config_key(k.clone(), v.clone())
                        .map_err(|e| schema_err(&self.name, e))?;
                }
                actions.push(Action::Metadata(metadata));
            }
            let operation = match remove.is_empty() {
                true => DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                },
                false => DeltaOperation::Update { predicate: None },
            };
            let commit = CommitBuilder::from(
                CommitProperties::default()
                    .with_max_retries(0)
                    .with_application_transactions(vec![Transaction::new(cursor_app_id(key), next)])
                    .with_metadata(info.clone()),
            )
            .with_actions(actions)
            .build(Some(snapshot), self.table.log_store(), operation)
            .await;
            match commit {
                Ok(done) => {
                    self.table.state = Some(done.snapshot());
                    return Ok(true);
                }
                Err(
                    DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_),
                ) if conflicts < MAX_CONFLICTS => {
                    conflicts += 1;
                    self.refresh().await?;
                }
                Err(e) => return Err(delta_err(&self.name, "commit")(e)),
            }
        }
    }

    /// The data files that may hold a row whose timestamp `column` is in `[from, to)`
    /// (microseconds; `None` leaves that side open), judged by their statistics; a file
    /// without them is included.
    pub fn files_in_range(
        &self,
        column: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<HashSet<String>> {
        Ok(self
            .files_overlapping(column, from, to)?
            .into_iter()
            .collect())
    }

    /// The current files that may hold a row whose `column` is in `[from, to)`, in log order.
    fn files_overlapping(
        &self,
        column: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<Vec<String>> {
        Ok(self
            .files()?
            .into_iter()
            .filter(|f| {
                let range = (f.min_micros(column), f.max_micros(column));
                files::overlaps(range, from, to)
            })
            .map(|f| f.path)
            .collect())
    }

    /// Every column of the rows in the given data files of the current version.
    pub async fn scan_files(&self, wanted: &HashSet<String>) -> Result<Vec<RecordBatch>> {
        let columns = files::column_names(&self.arrow_schema);
        let current: Vec<String> = self.files()?.into_iter().map(|f| f.path).collect();
        let paths = current.iter().filter(|p| wanted.contains(*p));
        self.read_paths(paths.map(String::as_str), &columns).await
    }

    /// The largest value of a timestamp column, from the data files' statistics (Delta keeps
    /// them in milliseconds; rounded up).
    pub async fn max_timestamp_micros(&self, column: &str) -> Result<Option<i64>> {
        let mut max = None;
        for file in self.files()? {
            let file_max = match file.max_micros(column) {
                Some(m) => Some(m),
                // No statistics: the file itself says.
                None => self.read_max(&file.path, column).await?,
            };
            max = max.max(file_max);
        }
        Ok(max)
    }

    /// Reads `columns` of the rows whose `time_column` is at or after `since_micros`; files
    /// whose statistics end before it are skipped.
    pub async fn scan_since(
        &self,
        columns: &[String],
        time_column: &str,
        since_micros: i64,
    ) -> Result<Vec<RecordBatch>> {
        let paths = self.files_overlapping(time_column, Some(since_micros), None)?;
        let read = files::with_time_column(columns, time_column);
        let batches = self
            .read_paths(paths.iter().map(String::as_str), &read)
            .await?;
        files::keep_since(batches, since_micros)
    }

    /// Reads `columns` of every row of the current version.
    pub async fn scan_columns(&self, columns: &[String]) -> Result<Vec<RecordBatch>> {
        let current: Vec<String> = self.files()?.into_iter().map(|f| f.path).collect();
        self.read_paths(current.iter().map(String::as_str), columns)
            .await
    }

    /// The current version's data files and rows (`None`: a file has no count).
    pub fn size(&self) -> Result<(u64, Option<u64>)> {
        let files = self.files()?;
        Ok((files.len() as u64, files.iter().map(|f| f.rows).sum()))
    }

    /// The current version's data files with their statistics.
    fn files(&self) -> Result<Vec<FileEntry>> {
        let Ok(state) = self.table.snapshot() else {
            return Ok(Vec::new());
        };
        Ok(state
            .log_data()
            .into_iter()
            .map(|f| FileEntry {
                path: f.path().to_string(),
                stats: f.stats(),
                size: f.size().unsigned_abs(),
                rows: f.num_records().map(|n| n as u64),
            })
            .collect())
    }

    /// `columns` of the data files `paths`, in order.
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

    /// `columns` of one data file (a path relative to the table), all rows.
    async fn read_file(&self, path: &str, columns: &[String]) -> Result<Vec<RecordBatch>> {
        let store = self.table.object_store();
        let location = deltalake::Path::parse(path).unwrap_or_else(|_| deltalake::Path::from(path));
        let reader = ParquetObjectReader::new(store, location);
        files::read_columns((&self.name, path), reader, &self.arrow_schema, columns).await
    }

    /// The largest value of `column` in one file, read from its rows.
    async fn read_max(&self, path: &str, column: &str) -> Result<Option<i64>> {
        let mut max = None;
        for batch in self.read_file(path, &[column.to_string()]).await? {
            max = max.max(files::time_range(batch.column(0))?.map(|(_, m)| m));
        }
        Ok(max)
    }

    /// The commits of the log up to the loaded version, read once each. When the log no
    /// longer starts at version 0 (Delta removes expired commit files after a checkpoint), the
    /// newest checkpoint's version stands for every row before it.
    pub(crate) async fn commits(&mut self) -> Result<&CommitLog> {
        self.read_log().await?;
        Ok(&self.log)
    }

    /// The commits [`Self::commits`] has read.
    pub(crate) fn commits_read(&self) -> &CommitLog {
        &self.log
    }

    async fn read_log(&mut self) -> Result<()> {
        let Some(current) = self.table.version() else {
            return Ok(());
        };
        let store = self.table.log_store();
        let mut next = self.log.next_version().map_or(0, |v| v.unsigned_abs());
        while next <= current {
            match store
                .read_commit_entry(next)
                .await
                .map_err(delta_err(&self.name, "read log"))?
            {
                Some(bytes) => self.log.push(parse_commit(&self.name, next, &bytes)?),
                None if self.log.next_version().is_none() => {
                    let root = self.checkpoint_root().await?;
                    next = root.version.unsigned_abs();
                    self.log.push(root);
                }
                None => {
                    return Err(Error::Config(format!(
                        "table {}: version {next} is missing from the Delta log",
                        self.name
                    )))
                }
            }
            next += 1;
        }
        Ok(())
    }

    /// The oldest checkpoint the log still follows on from (every commit after it is kept) as
    /// one commit that added every file it holds.
    async fn checkpoint_root(&self) -> Result<Commit> {
        let log_err = |e: deltalake::ObjectStoreError| {
            Error::Config(format!("table {}: listing the Delta log: {e}", self.name))
        };
        let entries: Vec<deltalake::ObjectMeta> = self
            .table
            .object_store()
            .list(Some(&deltalake::Path::from("_delta_log")))
            .try_collect()
            .await
            .map_err(log_err)?;
        let (mut commits, mut checkpoints) = (Vec::new(), Vec::new());
        for entry in &entries {
            let name = entry.location.filename().unwrap_or_default();
            let Some((number, rest)) = name.split_once('.') else {
                continue;
            };
            let Ok(version) = number.parse::<u64>() else {
                continue;
            };
            match rest {
                "json" => commits.push(version),
                _ if rest.starts_with("checkpoint.") => checkpoints.push(version),
                _ => {}
            }
        }
        let first_commit = commits.into_iter().min().unwrap_or(0);
        let version = checkpoints
            .into_iter()
            .filter(|c| c + 1 >= first_commit)
            .min()
            .ok_or_else(|| {
                Error::Config(format!(
                    "table {}: the Delta log starts at version {first_commit}, with no checkpoint to start from",
                    self.name
                ))
            })?;
        let table = DeltaTableBuilder::from_url(self.table.table_url().clone())
            .map_err(delta_err(&self.name, "open"))?
            .with_version(version)
            .load()
            .await
            .map_err(delta_err(&self.name, "load checkpoint"))?;
        let state = table
            .snapshot()
            .map_err(delta_err(&self.name, "load checkpoint"))?;
        let files = state
            .log_data()
            .into_iter()
            .map(|f| (f.path().to_string(), f.num_records().map(|n| n as u64)))
            .collect();
        Ok(Commit {
            version: i64::try_from(version).unwrap_or(i64::MAX),
            at_ms: state.version_timestamp(version).unwrap_or(0),
            appended: Some(files),
            ..Commit::default()
        })
    }

    /// Every column of the rows in `files` (as [`Self::commits`] names them), in the current
    /// schema. The files are read as they are: they need not be in the current version.
    pub async fn scan_data_files(&self, data: &DataFiles) -> Result<Vec<RecordBatch>> {
        let columns = files::column_names(&self.arrow_schema);
        self.read_paths(data.paths(), &columns).await
    }

    /// Appends `staged` with the partitions of `fence` moved in `txn` actions and the `extra`
    /// commit metadata, if and only if the table still holds the offsets the batch started from.
    pub async fn commit_append(
        &mut self,
        staged: StagedAdds,
        fence: &OffsetFence,
        extra: &[(String, String)],
    ) -> Result<CommitOutcome> {
        let partitions = fence.partitions();
        let mut conflicts = 0;
        loop {
            let stored = match &self.committed {
                Some((version, offsets))
                    if *version == self.table.version()
                        && partitions.iter().all(|(t, p)| offsets.get(t, *p).is_some()) =>
                {
                    offsets.clone()
                }
                _ => self.stored_offsets(&partitions).await?,
            };
            let next = match fence.apply(&stored) {
                Ok(next) => next,
                Err(violation) => return Ok(CommitOutcome::Fenced(violation)),
            };
            let txns = partitions
                .iter()
                .filter_map(|(t, p)| next.get(t, *p).map(|o| Transaction::new(app_id(t, *p), o)))
                .collect();
            let metadata: HashMap<String, Value> = extra
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let state = self
                .table
                .snapshot()
                .map_err(delta_err(&self.name, "commit"))?;
            let operation = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            };
            // One attempt: a conflict is judged here, against the offsets, not by delta-rs' retry.
            let commit = CommitBuilder::from(
                CommitProperties::default()
                    .with_max_retries(0)
                    .with_application_transactions(txns)
                    .with_metadata(metadata),
            )
            .with_actions(staged.0.iter().cloned().map(Action::Add).collect())
            .build(Some(state), self.table.log_store(), operation)
            .await;
            match commit {
                Ok(done) => {
                    let version = done.version();
                    // An append leaves the schema as it was: the committed state is the table's.
                    self.table.state = Some(done.snapshot());
                    self.committed = Some((self.table.version(), next));
                    return Ok(CommitOutcome::Committed {
                        snapshot_id: i64::try_from(version).unwrap_or(i64::MAX),
                    });
                }
                Err(
                    DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_),
                ) if conflicts < MAX_CONFLICTS => {
                    conflicts += 1;
                    tracing::debug!(table = %self.name, conflicts, "commit conflict, checking the offsets again");
                    self.refresh().await?;
                }
                Err(e) => return Err(delta_err(&self.name, "commit")(e)),
            }
        }
    }
}

/// A `remove` action for each of the data files `paths` of `snapshot`; `None` when some are
/// not in it any more.
fn removes(
    snapshot: &deltalake::table::state::DeltaTableState,
    paths: &HashSet<String>,
    data_change: bool,
) -> Option<Vec<Action>> {
    let removes: Vec<Action> = snapshot
        .log_data()
        .into_iter()
        .filter(|f| paths.contains(f.path().as_ref()))
        .map(|f| Action::Remove(f.remove_action(data_change)))
        .collect();
    (removes.len() == paths.len()).then_some(removes)
}

/// One commit file of the log: the files it added (with data), whether it removed any, and
/// its `commitInfo`.
fn parse_commit(table: &str, version: u64, bytes: &[u8]) -> Result<Commit> {
    let mut commit = Commit {
        version: i64::try_from(version).unwrap_or(i64::MAX),
        ..Commit::default()
    };
    let mut added = Vec::new();
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let action: Value = serde_json::from_slice(line).map_err(|e| Error::CorruptProperty {
            table: table.to_string(),
            key: format!("_delta_log version {version}"),
            message: e.to_string(),
        })?;
        if let Some(add) = action.get("add") {
            // A compaction's files hold rows the table had already.
            if add.get("dataChange").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let path = add.get("path").and_then(Value::as_str).unwrap_or_default();
            let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
            let rows = add
                .get("stats")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .and_then(|s| s.get("numRecords")?.as_u64());
            added.push((path.into_owned(), rows));
        } else if action.get("remove").is_some() {
            commit.rewrote = true;
        } else if let Some(info) = action.get("commitInfo").and_then(Value::as_object) {
            commit.at_ms = info
                .get("inCommitTimestamp")
                .or_else(|| info.get("timestamp"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            for (key, value) in info {
                if let Some(text) = value.as_str() {
                    commit.info.insert(key.clone(), text.to_string());
                }
            }
        }
    }
    commit.appended = (!commit.rewrote && !added.is_empty()).then_some(added);
    Ok(commit)
}

/// The table at directory `location`, loaded when it has a log (else without a version).
async fn load(location: &str, name: &str) -> Result<DeltaTable> {
    let url = url::Url::from_directory_path(location).map_err(|()| {
        Error::Config(format!(
            "table {name}: {location} is not an absolute directory"
        ))
    })?;
    let mut table = DeltaTableBuilder::from_url(url)
        .and_then(|b| b.build())
        .map_err(delta_err(name, "open"))?;
    match table.load().await {
        Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(table),
        Err(e) => Err(delta_err(name, "open")(e)),
    }
}

fn arrow_schema(table: &DeltaTable, name: &str) -> Result<SchemaRef> {
    let state = table.snapshot().map_err(delta_err(name, "schema"))?;
    let schema: Schema = state
        .schema()
        .as_ref()
        .try_into_arrow()
        .map_err(|e| schema_err(name, e))?;
    Ok(Arc::new(schema))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rows;

    fn fence(moves: &[(i32, Option<i64>, i64)]) -> OffsetFence {
        let mut f = OffsetFence::default();
        for (p, from, to) in moves {
            f.cover("t", *p, *from, *to);
        }
        f
    }

    #[tokio::test]
    async fn appends_are_fenced_on_their_partitions_only() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("bronze").join("events");
        let location = location.to_str().unwrap();
        let def = crate::testing::def("bronze.events");
        let mut a = DeltaLakeTable::open_or_create(location, &def)
            .await
            .unwrap();
        let mut b = DeltaLakeTable::open_or_create(location, &def)
            .await
            .unwrap();
        let all = [("t".to_string(), 0), ("t".to_string(), 1)];

        let staged = a.write(&rows(&[1, 2], |i| i)).await.unwrap();
        let extra = [("medallion.x".to_string(), "1".to_string())];
        let done = a
            .commit_append(staged, &fence(&[(0, None, 2)]), &extra)
            .await
            .unwrap();
        assert!(matches!(done, CommitOutcome::Committed { .. }));

        // `b` still holds the table before that commit: its commit of partition 1 is rebuilt on
        // top; its commit of partition 0 from the old offset is refused.
        let staged = b.write(&rows(&[3], |i| i)).await.unwrap();
        let done = b
            .commit_append(staged, &fence(&[(1, None, 1)]), &[])
            .await
            .unwrap();
        assert!(matches!(done, CommitOutcome::Committed { .. }));
        let staged = b.write(&rows(&[4], |i| i)).await.unwrap();
        match b
            .commit_append(staged, &fence(&[(0, None, 1)]), &[])
            .await
            .unwrap()
        {
            CommitOutcome::Fenced(v) => assert_eq!((v.expected, v.found), (None, Some(2))),
            other => panic!("{other:?}"),
        }

        a.refresh().await.unwrap();
        let stored = a.stored_offsets(&all).await.unwrap();
        assert_eq!((stored.get("t", 0), stored.get("t", 1)), (Some(2), Some(1)));
        let reopened = DeltaLakeTable::open_or_create(location, &def)
            .await
            .unwrap();
        assert_eq!(reopened.table.version(), Some(2));
        assert_eq!(reopened.arrow_schema().fields().len(), 2);
    }

    #[tokio::test]
    async fn a_log_cut_at_a_checkpoint_starts_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("bronze").join("cut");
        let location = location.to_str().unwrap();
        let def = crate::testing::def("bronze.cut");
        let mut table = DeltaLakeTable::open_or_create(location, &def)
            .await
            .unwrap();
        for (p, ids) in [(0, vec![1, 2]), (1, vec![3])] {
            let staged = table.write(&rows(&ids, |i| i)).await.unwrap();
            let to = ids.len() as i64;
            table
                .commit_append(staged, &fence(&[(p, None, to)]), &[])
                .await
                .unwrap();
        }
        deltalake::checkpoints::create_checkpoint(&table.table, None)
            .await
            .unwrap();
        // Expired commits are deleted after a checkpoint: here, all before it.
        for version in 0..2 {
            let commit = format!("{location}/_delta_log/{version:020}.json");
            std::fs::remove_file(commit).unwrap();
        }
        let mut table = DeltaLakeTable::open_or_create(location, &def)
            .await
            .unwrap();
        let staged = table.write(&rows(&[4], |i| i)).await.unwrap();
        table
            .commit_append(staged, &fence(&[(0, Some(2), 3)]), &[])
            .await
            .unwrap();

        let mut reader = DeltaLakeTable::open_if_exists(location, "bronze.cut")
            .await
            .unwrap()
            .unwrap();
        let log = reader.commits().await.unwrap();
        let appends = log.appends_after("bronze.cut", None).unwrap();
        assert_eq!(
            appends,
            vec![2, 3],
            "the checkpoint stands for what came before"
        );
        assert_eq!(log.added_rows(&appends), Some(4));
        assert!(log.appends_after("bronze.cut", Some(1)).is_err());
        let files = log.files_added_by("bronze.cut", &[2]).unwrap();
        let rows = reader.scan_data_files(&files[&2]).await.unwrap();
        assert_eq!(crate::testing::sorted_ids(&rows), vec![1, 2, 3]);
    }
}
