//! Incremental reads: the rows each snapshot brought, for the stages that follow a table.
//!
//! A snapshot's rows are read through its own manifests, not through the current snapshot's,
//! so that compaction since (which moved the rows into new files) and retention (which took
//! them out) do not hide rows a follower has not read yet; the files stay on disk until the
//! snapshot is expired, and expiry keeps what followers still need.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use iceberg::scan::FileScanTask;
use iceberg::spec::{DataFile, ManifestContentType, ManifestStatus, Operation, SnapshotRef};

use crate::error::{table_err, Error, Result};
use crate::table::IcebergTable;

/// Data files to read, with what a reader needs to know of each: Iceberg's entries, or a
/// Delta or Parquet table's paths (relative to the table) with their row counts.
#[derive(Debug, Default, Clone)]
pub struct DataFiles {
    files: Vec<DataFile>,
    paths: Vec<(String, u64)>,
}

impl DataFiles {
    pub fn len(&self) -> usize {
        self.files.len() + self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn records(&self) -> u64 {
        let iceberg: u64 = self.files.iter().map(DataFile::record_count).sum();
        iceberg + self.paths.iter().map(|(_, rows)| rows).sum::<u64>()
    }

    pub fn into_paths(self) -> Vec<String> {
        let iceberg = self.files.into_iter().map(|f| f.file_path().to_string());
        iceberg
            .chain(self.paths.into_iter().map(|(p, _)| p))
            .collect()
    }

    pub(crate) fn from_files(files: Vec<DataFile>) -> Self {
        Self {
            files,
            paths: Vec::new(),
        }
    }

    pub(crate) fn from_paths(paths: Vec<(String, u64)>) -> Self {
        Self {
            files: Vec::new(),
            paths,
        }
    }

    /// The paths of a Delta or Parquet table's files.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(|(p, _)| p.as_str())
    }
}

impl IcebergTable {
    /// The snapshots after `after` (from the start, for `None`) that brought rows, oldest
    /// first, following the current snapshot's ancestry: appends, and, when the history was
    /// cut by expiry and `after` is `None`, the oldest snapshot left (it stands for all rows
    /// before it). Compactions, deletes and rewrites bring no new rows and are left out. Fails
    /// when `after` is not an ancestor (expired, or another table's).
    pub fn appends_after(&self, after: Option<i64>) -> Result<Vec<i64>> {
        let mut found = Vec::new();
        let mut oldest = None;
        for snapshot in self.ancestry() {
            if Some(snapshot.snapshot_id()) == after {
                found.reverse();
                return Ok(found);
            }
            if snapshot.summary().operation == Operation::Append {
                found.push(snapshot.snapshot_id());
            }
            oldest = Some(snapshot);
        }
        match after {
            None => {
                if let Some(oldest) = oldest.filter(|s| self.is_history_root(s)) {
                    if found.last() != Some(&oldest.snapshot_id()) {
                        found.push(oldest.snapshot_id());
                    }
                }
                found.reverse();
                Ok(found)
            }
            Some(after) => Err(Error::Config(format!(
                "table {}: snapshot {after} is not in its history any more (expired?)",
                self.name()
            ))),
        }
    }

    /// The rows the snapshots `snapshots` added, by their summaries (cheap: no manifest is
    /// read); `None` when a summary lacks the count.
    pub fn added_rows(&self, snapshots: &[i64]) -> Option<u64> {
        let wanted: std::collections::HashSet<i64> = snapshots.iter().copied().collect();
        self.history()
            .filter(|(id, _, _)| wanted.contains(id))
            .map(|(_, _, summary)| summary.get("added-records")?.parse::<u64>().ok())
            .sum()
    }

    /// Whether a commit after `after` rewrote rows (anything but an append: a compaction,
    /// delete or overwrite). Fails when `after` is not an ancestor.
    pub fn rewritten_after(&self, after: i64) -> Result<bool> {
        let mut rewritten = false;
        for snapshot in self.ancestry() {
            if snapshot.snapshot_id() == after {
                return Ok(rewritten);
            }
            rewritten |= snapshot.summary().operation != Operation::Append;
        }
        Err(Error::Config(format!(
            "table {}: snapshot {after} is not in its history any more (expired?)",
            self.name()
        )))
    }

    /// The current snapshot and its ancestors, newest first.
    pub(crate) fn ancestry(&self) -> impl Iterator<Item = &SnapshotRef> {
        let metadata = self.table.metadata();
        std::iter::successors(metadata.current_snapshot(), move |snapshot| {
            snapshot
                .parent_snapshot_id()
                .and_then(|id| metadata.snapshot_by_id(id))
        })
    }

    /// A snapshot whose parent the table does not hold: the first one, or the oldest one that
    /// expiry left. Its rows are all the rows it holds.
    fn is_history_root(&self, snapshot: &SnapshotRef) -> bool {
        snapshot
            .parent_snapshot_id()
            .is_none_or(|parent| self.table.metadata().snapshot_by_id(parent).is_none())
    }

    /// Reads every column of the rows that the given snapshots brought, in the table's current
    /// schema (columns added since read as null).
    pub async fn scan_appended(&self, snapshots: &[i64]) -> Result<Vec<RecordBatch>> {
        let mut all = Vec::new();
        for (_, files) in self.files_added_by(snapshots).await? {
            all.extend(files.files);
        }
        self.scan_data_files(&DataFiles::from_files(all)).await
    }

    /// Per snapshot of [`Self::appends_after`], the data files it added, read from its own
    /// manifest list and the manifests it wrote (for the root of the history: every file it
    /// holds).
    pub async fn files_added_by(&self, snapshots: &[i64]) -> Result<HashMap<i64, DataFiles>> {
        let name = self.name();
        let metadata = self.table.metadata();
        let mut out = HashMap::new();
        for &id in snapshots {
            let Some(snapshot) = metadata.snapshot_by_id(id) else {
                return Err(Error::Config(format!(
                    "table {name}: snapshot {id} is not in its metadata any more (expired?)"
                )));
            };
            let root = self.is_history_root(snapshot);
            let mut files = Vec::new();
            for manifest_file in self.manifest_files(snapshot).await? {
                if manifest_file.content != ManifestContentType::Data
                    || !(root || manifest_file.added_snapshot_id == id)
                {
                    continue;
                }
                let manifest = manifest_file
                    .load_manifest(self.table.file_io())
                    .await
                    .map_err(table_err(&name, "manifest"))?;
                files.extend(
                    manifest
                        .entries()
                        .iter()
                        .filter(|e| match root {
                            true => e.is_alive(),
                            false => e.status() == ManifestStatus::Added,
                        })
                        .map(|e| e.data_file().clone()),
                );
            }
            out.insert(id, DataFiles::from_files(files));
        }
        Ok(out)
    }

    /// Reads every column of the rows in `files`, in the table's current schema (columns
    /// added since read as null). The files are read as they are: they need not be in the
    /// current snapshot.
    pub async fn scan_data_files(&self, files: &DataFiles) -> Result<Vec<RecordBatch>> {
        let name = self.name();
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let stream = self.data_file_stream(files)?;
        stream.try_collect().await.map_err(table_err(&name, "scan"))
    }

    pub(crate) fn data_file_stream(
        &self,
        files: &DataFiles,
    ) -> Result<futures::stream::BoxStream<'static, iceberg::Result<RecordBatch>>> {
        let name = self.name();
        let schema = self.table.metadata().current_schema().clone();
        let field_ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
        let tasks: Vec<iceberg::Result<FileScanTask>> = files
            .files
            .iter()
            .map(|file| {
                Ok(FileScanTask::builder()
                    .with_file_size_in_bytes(file.file_size_in_bytes())
                    .with_start(0)
                    .with_length(file.file_size_in_bytes())
                    .with_record_count(Some(file.record_count()))
                    .with_data_file_path(file.file_path().to_string())
                    .with_data_file_format(file.file_format())
                    .with_schema(schema.clone())
                    .with_project_field_ids(field_ids.clone())
                    .with_partition(Some(file.partition().clone()))
                    .with_case_sensitive(true)
                    .build())
            })
            .collect();
        Ok(self
            .table
            .reader_builder()
            .build()
            .read(futures::stream::iter(tasks).boxed())
            .map_err(table_err(&name, "scan"))?
            .stream())
    }
}
