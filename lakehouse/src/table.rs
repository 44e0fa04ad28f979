use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{new_null_array, RecordBatch};
use arrow::datatypes::{Field, Schema as ArrowSchema, SchemaRef};
use futures::TryStreamExt;
use iceberg::arrow::{
    arrow_schema_to_schema_auto_assign_ids, arrow_type_to_type, schema_to_arrow_schema,
    RecordBatchPartitionSplitter,
};
use iceberg::expr::{Predicate, Reference};
use iceberg::scan::ArrowRecordBatchStream;
use iceberg::spec::TableProperties;
use iceberg::spec::MAIN_BRANCH;
use iceberg::spec::{
    DataFile, DataFileFormat, Datum, ManifestEntryRef, ManifestFile, SnapshotRef, Transform,
    UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::unpartitioned_writer::UnpartitionedWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::{
    Catalog as IcebergCatalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent,
    TableRequirement, TableUpdate,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::catalog::{Catalog, MetadataCommit, PinnedCatalog};
use crate::error::{table_err, Error, Result};
use crate::increments::DataFiles;
use crate::offsets::{FenceViolation, OffsetFence, SourceOffsets, KAFKA_OFFSETS_PROPERTY};

/// How many times a commit is rebuilt after losing a race to another writer whose commit left
/// this batch's partitions untouched.
const MAX_COMMIT_CONFLICTS: u32 = 50;

/// How data files are written: Parquet, rolled over at a target size.
type Rolling = RollingFileWriterBuilder<
    ParquetWriterBuilder,
    DefaultLocationGenerator,
    DefaultFileNameGenerator,
>;

/// What a table should look like when it is created.
#[derive(Debug, Clone)]
pub struct TableDefinition {
    /// `namespace.name`, e.g. `bronze.events`.
    pub name: String,
    /// Columns, without Iceberg field ids (they are assigned on creation).
    pub schema: SchemaRef,
    /// Timestamp column whose day partitions the table, if any.
    pub partition_by_day: Option<String>,
}

/// The result of a fenced commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed {
        snapshot_id: i64,
    },
    /// Another writer has moved one of the batch's partitions: nothing was committed.
    Fenced(FenceViolation),
}

/// Data files written for a commit that has not happened yet.
#[derive(Debug, Default)]
pub struct StagedFiles {
    files: Vec<DataFile>,
}

impl StagedFiles {
    pub(crate) fn files(&self) -> &[DataFile] {
        &self.files
    }

    /// Adds the files of another write to this commit.
    pub fn extend(&mut self, other: StagedFiles) {
        self.files.extend(other.files);
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// An Iceberg table in a SQL catalog, written with fenced appends.
pub struct IcebergTable {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) table: Table,
    /// The table's Arrow schema, carrying Iceberg field ids.
    arrow_schema: SchemaRef,
}

impl std::fmt::Debug for IcebergTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcebergTable")
            .field("name", &self.name())
            .finish()
    }
}

pub(crate) fn parse_ident(name: &str) -> Result<TableIdent> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(Error::Config(format!(
            "table name {name:?} must be NAMESPACE.TABLE, e.g. bronze.events"
        )));
    }
    TableIdent::from_strs(parts).map_err(|e| Error::Config(format!("table name {name:?}: {e}")))
}

impl IcebergTable {
    /// Loads the table, creating it (and its namespace) when it does not exist yet.
    pub async fn open_or_create(catalog: Arc<Catalog>, def: &TableDefinition) -> Result<Self> {
        let ident = parse_ident(&def.name)?;
        let table = match catalog.iceberg().load_table(&ident).await {
            Ok(t) => t,
            Err(e)
                if e.kind() == ErrorKind::TableNotFound
                    || e.kind() == ErrorKind::NamespaceNotFound =>
            {
                create(catalog.iceberg(), &ident, def).await?
            }
            Err(e) => return Err(table_err(&def.name, "load")(e)),
        };
        let this = Self::from_table(catalog, table)?;
        check_columns(&this.name(), &this.arrow_schema, &def.schema)?;
        Ok(this)
    }

    /// Loads an existing table.
    pub async fn open(catalog: Arc<Catalog>, name: &str) -> Result<Self> {
        let ident = parse_ident(name)?;
        let table = catalog
            .iceberg()
            .load_table(&ident)
            .await
            .map_err(table_err(name, "load"))?;
        Self::from_table(catalog, table)
    }

    /// Loads the table if it exists.
    pub async fn open_if_exists(catalog: Arc<Catalog>, name: &str) -> Result<Option<Self>> {
        let ident = parse_ident(name)?;
        match catalog.iceberg().load_table(&ident).await {
            Ok(table) => Ok(Some(Self::from_table(catalog, table)?)),
            Err(e)
                if e.kind() == ErrorKind::TableNotFound
                    || e.kind() == ErrorKind::NamespaceNotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(table_err(name, "load")(e)),
        }
    }

    fn from_table(catalog: Arc<Catalog>, table: Table) -> Result<Self> {
        let name = table.identifier().to_string();
        let arrow_schema = schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(table_err(&name, "schema"))?;
        Ok(Self {
            catalog,
            table,
            arrow_schema: Arc::new(arrow_schema),
        })
    }

    pub fn name(&self) -> String {
        self.table.identifier().to_string()
    }

    /// The Arrow schema batches must have to be written (field ids included).
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    /// A table property.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.table
            .metadata()
            .properties()
            .get(key)
            .map(String::as_str)
    }

    /// Adds the `columns` the table does not have yet (as optional columns, after the existing
    /// ones) and sets `properties`, in one metadata commit. Rows already in the table read the
    /// new columns as null.
    pub async fn add_columns(
        &mut self,
        columns: &[Field],
        properties: &[(String, String)],
    ) -> Result<()> {
        let name = self.name();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tx = Transaction::new(&self.table);
            let mut update = tx.update_schema();
            let mut added = Vec::new();
            for column in columns {
                if self.arrow_schema.field_with_name(column.name()).is_ok() {
                    continue;
                }
                let kind =
                    arrow_type_to_type(column.data_type()).map_err(table_err(&name, "schema"))?;
                update = update.add_column(AddColumn::optional(column.name(), kind));
                added.push(column.name().as_str());
            }
            let mut props = tx.update_table_properties();
            for (k, v) in properties {
                props = props.set(k.clone(), v.clone());
            }
            let tx = if added.is_empty() {
                tx
            } else {
                update
                    .apply(tx)
                    .map_err(table_err(&name, "evolve schema"))?
            };
            let tx = props.apply(tx).map_err(table_err(&name, "evolve schema"))?;
            match tx.commit(self.catalog.iceberg()).await {
                Ok(table) => {
                    tracing::info!(table = %name, ?added, "table schema evolved");
                    *self = Self::from_table(self.catalog.clone(), table)?;
                    return Ok(());
                }
                // Another worker evolved it first: look again at what is still missing.
                Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts && attempt < 5 => {
                    self.refresh().await?;
                }
                Err(e) => return Err(table_err(&name, "evolve schema")(e)),
            }
        }
    }

    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        conform(&self.name(), &self.arrow_schema, batch)
    }

    /// The table's metadata as the Iceberg spec writes it (what a REST catalog serves).
    pub fn metadata_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self.table.metadata())
            .map_err(|e| Error::Config(format!("table {}: metadata as JSON: {e}", self.name())))
    }

    /// The metadata file of the current table state (what `iceberg_scan` reads).
    pub fn metadata_location(&self) -> Option<&str> {
        self.table.metadata_location()
    }

    pub fn current_snapshot_id(&self) -> Option<i64> {
        self.table.metadata().current_snapshot_id()
    }

    /// The sequence number and commit time (ms) of a snapshot.
    pub fn snapshot_meta(&self, snapshot_id: i64) -> Option<(i64, i64)> {
        let snapshot = self.table.metadata().snapshot_by_id(snapshot_id)?;
        Some((snapshot.sequence_number(), snapshot.timestamp_ms()))
    }

    /// Commits `updates` on the condition that the table is still the state this handle holds
    /// (the same table, `main` at the same snapshot); `false`: another writer committed first.
    /// Either way the handle then holds the table's newest state: the committed metadata, or
    /// the winner's, loaded again.
    pub(crate) async fn commit_updates(&mut self, updates: Vec<TableUpdate>) -> Result<bool> {
        let metadata = self.table.metadata();
        let requirements = vec![
            TableRequirement::UuidMatch {
                uuid: metadata.uuid(),
            },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: metadata.current_snapshot_id(),
            },
        ];
        let outcome = self
            .catalog
            .commit(&self.table, requirements, updates)
            .await?;
        match outcome {
            MetadataCommit::Committed {
                metadata_location,
                metadata,
            } => {
                let name = self.name();
                let err = |op| table_err(&name, op);
                let table = Table::builder()
                    .identifier(self.table.identifier().clone())
                    .file_io(self.table.file_io().clone())
                    .metadata(*metadata)
                    .metadata_location(metadata_location)
                    .runtime(iceberg::Runtime::try_current().map_err(err("load"))?)
                    .build()
                    .map_err(err("load"))?;
                *self = Self::from_table(self.catalog.clone(), table)?;
                Ok(true)
            }
            MetadataCommit::Conflict(reason) => {
                tracing::debug!(table = %self.name(), %reason, "commit conflict");
                self.refresh().await?;
                Ok(false)
            }
            MetadataCommit::Invalid(reason) => Err(Error::Config(format!(
                "table {}: the catalog refused the commit: {reason}",
                self.name()
            ))),
        }
    }

    /// Reloads the table from the catalog.
    pub async fn refresh(&mut self) -> Result<()> {
        let name = self.name();
        let table = self
            .catalog
            .iceberg()
            .load_table(self.table.identifier())
            .await
            .map_err(table_err(&name, "load"))?;
        *self = Self::from_table(self.catalog.clone(), table)?;
        Ok(())
    }

    /// The Kafka offsets stored with the newest snapshot that carries them (a maintenance
    /// commit does not).
    pub fn stored_offsets(&self) -> Result<SourceOffsets> {
        match self.snapshot_property(KAFKA_OFFSETS_PROPERTY) {
            None => Ok(SourceOffsets::default()),
            Some(v) => SourceOffsets::from_property(v).map_err(|e| Error::CorruptProperty {
                table: self.name(),
                key: KAFKA_OFFSETS_PROPERTY.to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// Writes `batch` as Parquet data files, split by the table's partition spec. The files
    /// are invisible to readers until a commit adds them.
    pub async fn write(&self, batch: &RecordBatch) -> Result<StagedFiles> {
        if batch.num_rows() == 0 {
            return Ok(StagedFiles::default());
        }
        self.write_all(futures::stream::iter([Ok(batch.clone())]), None)
            .await
    }

    /// Writes every batch of `batches` through one writer, so that files roll over at
    /// `target_file_size` bytes (default: the table format's) rather than per batch.
    pub(crate) async fn write_all(
        &self,
        mut batches: impl futures::Stream<Item = Result<RecordBatch>> + Unpin,
        target_file_size: Option<usize>,
    ) -> Result<StagedFiles> {
        let name = self.name();
        let err = |op| table_err(&name, op);
        let metadata = self.table.metadata();
        let schema = metadata.current_schema().clone();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let location = DefaultLocationGenerator::new(metadata).map_err(err("location"))?;
        let file_names = DefaultFileNameGenerator::new(
            uuid::Uuid::new_v4().to_string(),
            None,
            DataFileFormat::Parquet,
        );
        let rolling: Rolling = RollingFileWriterBuilder::new(
            ParquetWriterBuilder::new(props, schema.clone()),
            target_file_size
                .unwrap_or(TableProperties::PROPERTY_WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT),
            self.table.file_io().clone(),
            location,
            file_names,
        );
        let spec = metadata.default_partition_spec();
        let files = if spec.is_unpartitioned() {
            let mut writer = UnpartitionedWriter::new(DataFileWriterBuilder::new(rolling));
            while let Some(batch) = batches.try_next().await? {
                writer
                    .write(self.conform(&batch)?)
                    .await
                    .map_err(err("write"))?;
            }
            writer.close().await.map_err(err("write"))?
        } else {
            let mut writer = FanoutWriter::new(DataFileWriterBuilder::new(rolling));
            let splitter =
                RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec.clone())
                    .map_err(err("partition"))?;
            while let Some(batch) = batches.try_next().await? {
                let batch = self.conform(&batch)?;
                for (key, part) in splitter.split(&batch).map_err(err("partition"))? {
                    writer.write(key, part).await.map_err(err("write"))?;
                }
            }
            writer.close().await.map_err(err("write"))?
        };
        Ok(StagedFiles { files })
    }

    /// Appends `staged` and moves the stored offsets as `fence` says, in one snapshot (with the
    /// `extra` snapshot properties), if and only if the table still holds the offsets the batch
    /// started from.
    ///
    /// A concurrent commit that leaves the batch's partitions alone (another worker's
    /// partitions) only causes a rebuild of the commit on top of it.
    pub async fn commit_append(
        &mut self,
        staged: StagedFiles,
        fence: &OffsetFence,
        extra: &[(String, String)],
    ) -> Result<CommitOutcome> {
        let outcome = self
            .append_if(&staged, |table| {
                Ok(fence.apply(&table.stored_offsets()?).map(|next| {
                    let mut properties: HashMap<String, String> = extra.iter().cloned().collect();
                    properties.insert(KAFKA_OFFSETS_PROPERTY.to_string(), next.to_property());
                    properties
                }))
            })
            .await?;
        Ok(match outcome {
            Ok(snapshot_id) => CommitOutcome::Committed { snapshot_id },
            Err(violation) => CommitOutcome::Fenced(violation),
        })
    }

    /// Appends `staged` with the snapshot properties `check` gives for the table's state, or
    /// refuses with what `check` refuses with. The commit is pinned to the state checked; when
    /// another writer commits first, the table is reloaded and checked again.
    async fn append_if<R>(
        &mut self,
        staged: &StagedFiles,
        mut check: impl FnMut(&Self) -> Result<std::result::Result<HashMap<String, String>, R>>,
    ) -> Result<std::result::Result<i64, R>> {
        let name = self.name();
        let mut conflicts = 0;
        loop {
            let properties = match check(self)? {
                Ok(properties) => properties,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let tx = Transaction::new(&self.table);
            let tx = tx
                .fast_append()
                .with_check_duplicate(false)
                .add_data_files(staged.files.clone())
                .set_snapshot_properties(properties)
                .apply(tx)
                .map_err(table_err(&name, "commit"))?;
            let pinned = PinnedCatalog {
                inner: self.catalog.iceberg(),
                base: self.table.clone(),
            };
            match tx.commit(&pinned).await {
                Ok(table) => {
                    self.table = table;
                    return Ok(Ok(self.current_snapshot_id().unwrap_or_default()));
                }
                Err(e)
                    if e.kind() == ErrorKind::CatalogCommitConflicts
                        && conflicts < MAX_COMMIT_CONFLICTS =>
                {
                    conflicts += 1;
                    tracing::debug!(table = %name, conflicts, "commit conflict, rebuilding on the new state");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(conflicts))).await;
                    self.refresh().await?;
                }
                Err(e) => return Err(table_err(&name, "commit")(e)),
            }
        }
    }

    /// Reads every column of the rows in the given data files of the current snapshot, in the
    /// table's current schema.
    pub async fn scan_files(&self, files: HashSet<String>) -> Result<Vec<RecordBatch>> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let chosen = self
            .live_entries()
            .await?
            .iter()
            .filter(|entry| files.contains(entry.data_file().file_path()))
            .map(|entry| entry.data_file().clone())
            .collect();
        self.scan_data_files(&DataFiles::from_files(chosen)).await
    }

    /// The data files of the current snapshot that may hold a row whose timestamp `column` is
    /// in `[from, to)` (microseconds; `None` leaves that side open), judged by the files'
    /// column statistics; a file without them is included.
    pub async fn files_in_range(
        &self,
        column: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<HashSet<String>> {
        let field_id = self.field_id(column)?;
        Ok(self
            .live_entries()
            .await?
            .iter()
            .filter(|entry| {
                let file = entry.data_file();
                let lower = micros(file.lower_bounds().get(&field_id));
                let upper = micros(file.upper_bounds().get(&field_id));
                crate::files::overlaps((lower, upper), from, to)
            })
            .map(|entry| entry.data_file().file_path().to_string())
            .collect())
    }

    pub(crate) fn field_id(&self, column: &str) -> Result<i32> {
        match self.table.metadata().current_schema().field_by_name(column) {
            Some(field) => Ok(field.id),
            None => Err(Error::Config(format!(
                "table {} has no column {column}",
                self.name()
            ))),
        }
    }

    /// Appends `staged`; a concurrent commit only makes it rebuild on the new state (for
    /// tables that several writers append to independently, such as `quality.expectations`).
    pub async fn append(&mut self, staged: StagedFiles) -> Result<()> {
        let appended = self
            .append_if(&staged, |_| {
                Ok(Ok::<_, std::convert::Infallible>(HashMap::new()))
            })
            .await?;
        match appended {
            Ok(_) => Ok(()),
            Err(never) => match never {},
        }
    }

    /// The current snapshot and its ancestors, newest first: id, commit time (ms) and summary
    /// properties.
    pub fn history(&self) -> impl Iterator<Item = (i64, i64, &HashMap<String, String>)> {
        self.ancestry().map(|snapshot| {
            (
                snapshot.snapshot_id(),
                snapshot.timestamp_ms(),
                &snapshot.summary().additional_properties,
            )
        })
    }

    /// Reads `columns` of every row.
    pub async fn scan_columns(&self, columns: &[String]) -> Result<Vec<RecordBatch>> {
        self.scan_rows(columns, None).await
    }

    /// Reads every column of the current snapshot's rows, stopping after the batch that reaches
    /// `max_rows` (data-file order): a bounded sample of a large table. The rows read, and whether
    /// the table had more.
    pub async fn scan_first(&self, max_rows: usize) -> Result<(Vec<RecordBatch>, bool)> {
        let columns = crate::files::column_names(&self.arrow_schema);
        let Some(mut stream) = self.row_stream(&columns, None).await? else {
            return Ok((Vec::new(), false));
        };
        let (mut batches, mut rows) = (Vec::new(), 0);
        while let Some(batch) = stream
            .try_next()
            .await
            .map_err(table_err(&self.name(), "scan"))?
        {
            if rows >= max_rows {
                return Ok((batches, true));
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok((batches, false))
    }

    /// A summary property of the newest snapshot that has it, in the current snapshot's
    /// ancestry (a commit that is not ours, such as a compaction, does not carry it).
    pub fn snapshot_property(&self, key: &str) -> Option<&str> {
        self.history()
            .find_map(|(_, _, properties)| properties.get(key))
            .map(String::as_str)
    }

    /// Appends `staged` and sets the snapshot property `key` to `next`, if and only if the
    /// current snapshot still has `key` at `expected` (compare-and-set on a cursor, such as
    /// the last upstream snapshot a derived table consumed). `Ok(false)`: it had moved, and
    /// nothing was committed.
    pub async fn commit_cursor(
        &mut self,
        staged: StagedFiles,
        key: &str,
        expected: Option<&str>,
        next: &str,
        extra: &[(String, String)],
    ) -> Result<bool> {
        let mut properties: HashMap<String, String> = extra.iter().cloned().collect();
        properties.insert(key.to_string(), next.to_string());
        let outcome = self
            .append_if(&staged, |table| {
                Ok(match table.snapshot_property(key) == expected {
                    true => Ok(properties.clone()),
                    false => Err(()),
                })
            })
            .await?;
        Ok(outcome.is_ok())
    }

    /// Reads `columns` of the rows whose `time_column` is at or after `since_micros`.
    pub async fn scan_since(
        &self,
        columns: &[String],
        time_column: &str,
        since_micros: i64,
    ) -> Result<Vec<RecordBatch>> {
        let filter: Predicate = Reference::new(time_column)
            .greater_than_or_equal_to(Datum::timestamptz_micros(since_micros));
        self.scan_rows(columns, Some(filter)).await
    }

    async fn scan_rows(
        &self,
        columns: &[String],
        filter: Option<Predicate>,
    ) -> Result<Vec<RecordBatch>> {
        match self.row_stream(columns, filter).await? {
            Some(stream) => stream
                .try_collect()
                .await
                .map_err(table_err(&self.name(), "scan")),
            None => Ok(Vec::new()),
        }
    }

    /// The current snapshot's rows (those `filter` keeps) as a stream of `columns`; `None`
    /// before the first commit.
    async fn row_stream(
        &self,
        columns: &[String],
        filter: Option<Predicate>,
    ) -> Result<Option<ArrowRecordBatchStream>> {
        let name = self.name();
        if self.table.metadata().current_snapshot().is_none() {
            return Ok(None);
        }
        let mut scan = self.table.scan().select(columns.iter().cloned());
        if let Some(filter) = filter {
            scan = scan.with_filter(filter);
        }
        let scan = scan.build().map_err(table_err(&name, "scan"))?;
        scan.to_arrow()
            .await
            .map(Some)
            .map_err(table_err(&name, "scan"))
    }

    /// The live data-file entries of the current snapshot. Every manifest is read: one
    /// rewritten by maintenance keeps its entries' snapshot ids but not its own.
    pub(crate) async fn live_entries(&self) -> Result<Vec<ManifestEntryRef>> {
        let name = self.name();
        let Some(snapshot) = self.table.metadata().current_snapshot() else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for manifest_file in self.manifest_files(snapshot).await? {
            let manifest = manifest_file
                .load_manifest(self.table.file_io())
                .await
                .map_err(table_err(&name, "manifest"))?;
            entries.extend(manifest.entries().iter().filter(|e| e.is_alive()).cloned());
        }
        Ok(entries)
    }

    /// The manifests a snapshot's manifest list names.
    pub(crate) async fn manifest_files(&self, snapshot: &SnapshotRef) -> Result<Vec<ManifestFile>> {
        Ok(self
            .table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(table_err(&self.name(), "manifest list"))?
            .consume_entries()
            .into_iter()
            .collect())
    }

    /// The largest value of a timestamp column, from the data files' column statistics.
    pub async fn max_timestamp_micros(&self, column: &str) -> Result<Option<i64>> {
        let field_id = self.field_id(column)?;
        let max = self
            .live_entries()
            .await?
            .iter()
            .filter_map(|entry| micros(entry.data_file().upper_bounds().get(&field_id)))
            .max();
        Ok(max)
    }
}

/// Table `name`, with columns `have`, must have every column of `wanted` with the same type.
pub(crate) fn check_columns(name: &str, have: &ArrowSchema, wanted: &ArrowSchema) -> Result<()> {
    for field in wanted.fields() {
        match have.field_with_name(field.name()) {
            Ok(column) if column.data_type() == field.data_type() => {}
            Ok(column) => {
                return Err(Error::Config(format!(
                    "table {name}: column {} is {} in the table but {} in the pipeline",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )))
            }
            Err(_) => {
                return Err(Error::Config(format!(
                    "table {name}: column {} is missing from the table",
                    field.name()
                )))
            }
        }
    }
    Ok(())
}

/// Lays `batch` out as the columns of table `name` with `schema`, matched by name and cast to
/// the table's types; a column the batch lacks (added by another worker since this one read
/// the schema) is null.
pub(crate) fn conform(name: &str, schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => Ok(arrow::compute::cast(column, field.data_type())?),
            None if field.is_nullable() => Ok(new_null_array(field.data_type(), batch.num_rows())),
            None => Err(Error::Config(format!(
                "table {name}: the batch has no value for required column {}",
                field.name()
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A timestamp column statistic as microseconds.
pub(crate) fn micros(bound: Option<&Datum>) -> Option<i64> {
    match bound?.literal() {
        iceberg::spec::PrimitiveLiteral::Long(v) => Some(*v),
        _ => None,
    }
}

async fn create(
    catalog: &dyn IcebergCatalog,
    ident: &TableIdent,
    def: &TableDefinition,
) -> Result<Table> {
    let ns: &NamespaceIdent = ident.namespace();
    if let Err(e) = catalog.create_namespace(ns, HashMap::new()).await {
        // Another worker may have created it at the same moment (SQLite reports that as a
        // constraint violation, not as NamespaceAlreadyExists).
        let exists = catalog.namespace_exists(ns).await.unwrap_or(false);
        if !exists {
            return Err(table_err(&def.name, "create namespace")(e));
        }
    }
    let schema = arrow_schema_to_schema_auto_assign_ids(&def.schema)
        .map_err(table_err(&def.name, "schema"))?;
    let mut spec = UnboundPartitionSpec::builder();
    if let Some(col) = &def.partition_by_day {
        let field = schema.field_by_name(col).ok_or_else(|| {
            Error::Config(format!(
                "table {}: partition column {col} does not exist",
                def.name
            ))
        })?;
        spec = spec
            .add_partition_field(field.id, format!("{col}_day"), Transform::Day)
            .map_err(table_err(&def.name, "partition spec"))?;
    }
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .partition_spec(spec.build())
        .build();
    match catalog.create_table(ns, creation).await {
        Ok(t) => Ok(t),
        // Another worker may have created it at the same moment (TableAlreadyExists, or a
        // constraint violation from SQLite): then it loads.
        Err(e) => catalog
            .load_table(ident)
            .await
            .map_err(|_| table_err(&def.name, "create")(e)),
    }
}
