//! Commits that take data files out of a table. iceberg-rust 0.10 can only fast-append, so the
//! manifests, the manifest list, the snapshot and the metadata file of such a commit are written
//! here with its public spec types, and committed as the snapshot to add and point `main` at,
//! on the condition that `main` is still where it was ([`crate::Catalog::commit`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use iceberg::spec::{
    DataFile, FormatVersion, ManifestContentType, ManifestFile, ManifestListWriter, ManifestWriter,
    ManifestWriterBuilder, Operation, PartitionSpecRef, Snapshot, SnapshotReference,
    SnapshotRetention, SnapshotSummaryCollector, Summary, MAIN_BRANCH,
};
use iceberg::TableUpdate;

use crate::error::{table_err, Error, Result};
use crate::table::{IcebergTable, StagedFiles};

/// How many times a replace-files commit is rebuilt after another writer committed first.
const MAX_REPLACE_CONFLICTS: u32 = 50;

/// The result of [`IcebergTable::replace_if`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceOutcome<R> {
    Committed {
        snapshot_id: i64,
    },
    /// The check refused the table's state: nothing was committed.
    Refused(R),
    /// These files to remove are not in the table any more (another writer removed them):
    /// nothing was committed.
    FilesGone(Vec<String>),
}

/// Snapshot summary totals carried from the parent: `(total, added, removed)`.
const TOTALS: [(&str, &str, &str); 3] = [
    ("total-data-files", "added-data-files", "deleted-data-files"),
    ("total-records", "added-records", "deleted-records"),
    ("total-files-size", "added-files-size", "removed-files-size"),
];

impl IcebergTable {
    /// Removes the data files `remove` (paths as the table lists them) and adds `add`, in one
    /// snapshot with the properties `check` gives for the table's state, or refuses with what
    /// `check` refuses with. Readers see the old files or the new ones, never both. When
    /// another writer commits first, the table is reloaded, checked again and the commit
    /// rebuilt on the new state; files it removed meanwhile make the outcome `FilesGone`.
    pub async fn replace_if<R>(
        &mut self,
        remove: &HashSet<String>,
        add: &StagedFiles,
        check: impl FnMut(&Self) -> Result<std::result::Result<HashMap<String, String>, R>>,
    ) -> Result<ReplaceOutcome<R>> {
        let operation = match (remove.is_empty(), add.is_empty()) {
            (true, _) => Operation::Append,
            (false, true) => Operation::Delete,
            (false, false) => Operation::Overwrite,
        };
        self.replace_as(operation, remove, add, check).await
    }

    /// [`Self::replace_if`] recorded as `operation`: `Replace` tells readers that follow the
    /// table that the commit moved rows without changing them (compaction).
    pub(crate) async fn replace_as<R>(
        &mut self,
        operation: Operation,
        remove: &HashSet<String>,
        add: &StagedFiles,
        mut check: impl FnMut(&Self) -> Result<std::result::Result<HashMap<String, String>, R>>,
    ) -> Result<ReplaceOutcome<R>> {
        let name = self.name();
        let mut conflicts = 0;
        loop {
            let properties = match check(self)? {
                Ok(properties) => properties,
                Err(refusal) => return Ok(ReplaceOutcome::Refused(refusal)),
            };
            let staged = match self
                .stage_replacement(operation.clone(), remove, add.files(), properties)
                .await?
            {
                Ok(staged) => staged,
                Err(gone) => return Ok(ReplaceOutcome::FilesGone(gone)),
            };
            let (snapshot_id, snapshot) = staged;
            let updates = vec![
                TableUpdate::AddSnapshot { snapshot },
                TableUpdate::SetSnapshotRef {
                    ref_name: MAIN_BRANCH.to_string(),
                    reference: SnapshotReference::new(
                        snapshot_id,
                        SnapshotRetention::branch(None, None, None),
                    ),
                },
            ];
            if self.commit_updates(updates).await? {
                return Ok(ReplaceOutcome::Committed { snapshot_id });
            }
            conflicts += 1;
            if conflicts > MAX_REPLACE_CONFLICTS {
                return Err(Error::Config(format!(
                    "table {name}: replace-files commit lost {conflicts} races to other writers"
                )));
            }
            tracing::debug!(table = %name, conflicts, "replace conflict, rebuilding on the new state");
            tokio::time::sleep(Duration::from_millis(5 * u64::from(conflicts))).await;
        }
    }

    /// Writes the manifests and manifest list of a commit removing `remove` and adding `add`
    /// on top of the current state; returns the new snapshot, or the files to remove that the
    /// current state does not hold. Nothing is visible until the snapshot is committed (files
    /// of a lost race stay as orphans).
    async fn stage_replacement(
        &self,
        operation: Operation,
        remove: &HashSet<String>,
        add: &[DataFile],
        properties: HashMap<String, String>,
    ) -> Result<std::result::Result<(i64, Snapshot), Vec<String>>> {
        let name = self.name();
        let err = |op| table_err(&name, op);
        let metadata = self.table.metadata();
        if metadata.format_version() != FormatVersion::V2 {
            return Err(Error::Config(format!(
                "table {name}: files can only be replaced in format-version 2 tables"
            )));
        }
        let io = self.table.file_io();
        let schema = metadata.current_schema().clone();
        let snapshot_id = new_snapshot_id(self);
        let sequence = metadata.next_sequence_number();
        let commit = uuid::Uuid::new_v4();
        // The n-th manifest this commit writes, for files of the partition spec `spec`.
        let new_writer = |n: usize, spec: &PartitionSpecRef| -> Result<ManifestWriter> {
            let path = format!(
                "{}/metadata/{commit}-m{n}.avro",
                metadata.location().trim_end_matches('/')
            );
            let output = io.new_output(path).map_err(table_err(&name, "manifest"))?;
            Ok(ManifestWriterBuilder::new(
                output,
                Some(snapshot_id),
                schema.clone(),
                spec.as_ref().clone(),
            )
            .build_v2_data())
        };
        let mut summary = SnapshotSummaryCollector::default();
        let mut manifests: Vec<ManifestFile> = Vec::new();
        let mut found = HashSet::new();

        let previous = match metadata.current_snapshot() {
            Some(snapshot) => self.manifest_files(snapshot).await?,
            None => Vec::new(),
        };
        for manifest_file in previous {
            if manifest_file.content != ManifestContentType::Data {
                manifests.push(manifest_file);
                continue;
            }
            let manifest = manifest_file
                .load_manifest(io)
                .await
                .map_err(err("manifest"))?;
            let touched = manifest
                .entries()
                .iter()
                .any(|e| e.is_alive() && remove.contains(e.file_path()));
            if !touched {
                manifests.push(manifest_file);
                continue;
            }
            let spec = metadata
                .partition_spec_by_id(manifest_file.partition_spec_id)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "table {name}: manifest {} names partition spec {} that the table does not have",
                        manifest_file.manifest_path, manifest_file.partition_spec_id
                    ))
                })?;
            let mut writer = new_writer(manifests.len(), spec)?;
            for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                let (Some(added_by), Some(seq)) = (entry.snapshot_id, entry.sequence_number) else {
                    return Err(Error::Config(format!(
                        "table {name}: manifest {} has an entry without snapshot or sequence number",
                        manifest_file.manifest_path
                    )));
                };
                let file = entry.data_file().clone();
                if remove.contains(file.file_path()) {
                    found.insert(file.file_path().to_string());
                    summary.remove_file(&file, schema.clone(), spec.clone());
                    writer
                        .add_delete_file(file, seq, entry.file_sequence_number)
                        .map_err(err("manifest"))?;
                } else {
                    writer
                        .add_existing_file(file, added_by, seq, entry.file_sequence_number)
                        .map_err(err("manifest"))?;
                }
            }
            manifests.push(
                writer
                    .write_manifest_file()
                    .await
                    .map_err(err("manifest"))?,
            );
        }
        let gone: Vec<String> = remove.difference(&found).cloned().collect();
        if !gone.is_empty() {
            return Ok(Err(gone));
        }
        if !add.is_empty() {
            let spec = metadata.default_partition_spec();
            let mut writer = new_writer(manifests.len(), spec)?;
            for file in add {
                summary.add_file(file, schema.clone(), spec.clone());
                writer
                    .add_file(file.clone(), sequence)
                    .map_err(err("manifest"))?;
            }
            manifests.push(
                writer
                    .write_manifest_file()
                    .await
                    .map_err(err("manifest"))?,
            );
        }

        let list_path = format!(
            "{}/metadata/snap-{snapshot_id}-0-{commit}.avro",
            metadata.location().trim_end_matches('/')
        );
        let parent = metadata.current_snapshot_id();
        let output = io
            .new_output(&list_path)
            .map_err(err("manifest list"))?
            .writer()
            .await
            .map_err(err("manifest list"))?;
        let mut list = ManifestListWriter::v2(output, snapshot_id, parent, sequence);
        list.add_manifests(manifests.into_iter())
            .map_err(err("manifest list"))?;
        list.close().await.map_err(err("manifest list"))?;

        let mut additional = properties;
        additional.extend(summary.build());
        let parent_summary = metadata.current_snapshot().map(|s| s.summary());
        for (total, added, removed) in TOTALS {
            let get = |props: Option<&HashMap<String, String>>, key: &str| -> u64 {
                props
                    .and_then(|p| p.get(key))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let before = get(parent_summary.map(|s| &s.additional_properties), total);
            let value = (before + get(Some(&additional), added))
                .saturating_sub(get(Some(&additional), removed));
            additional.insert(total.to_string(), value.to_string());
        }
        let snapshot = Snapshot::builder()
            .with_manifest_list(list_path)
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(parent)
            .with_sequence_number(sequence)
            .with_summary(Summary {
                operation,
                additional_properties: additional,
            })
            .with_schema_id(metadata.current_schema_id())
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .build();
        Ok(Ok((snapshot_id, snapshot)))
    }
}

/// A positive snapshot id the table has not used, as iceberg-rust makes them.
fn new_snapshot_id(table: &IcebergTable) -> i64 {
    loop {
        let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((hi ^ lo) & i64::MAX as u64) as i64;
        if id != 0 && table.table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::RecordBatch;

    use super::*;
    use crate::testing::{day_table, ids, rows, DAY};

    fn batch(ids: &[i64]) -> RecordBatch {
        rows(ids, |id| id * DAY)
    }

    fn total(table: &IcebergTable, key: &str) -> String {
        let snapshot = table.table.metadata().current_snapshot().unwrap();
        snapshot.summary().additional_properties[key].clone()
    }

    #[tokio::test]
    async fn replaces_files_atomically_and_detects_conflicts() {
        let (_dir, catalog, mut table) = day_table("t.days").await;
        for ids in [[1, 2], [3, 4], [5, 6]] {
            let staged = table.write(&batch(&ids)).await.unwrap();
            table.append(staged).await.unwrap();
        }
        let middle = table
            .files_in_range("ts", Some(3 * DAY), Some(5 * DAY))
            .await
            .unwrap();
        assert_eq!(middle.len(), 2, "one file per day partition: days 3 and 4");

        let staged = table.write(&batch(&[30, 40, 41])).await.unwrap();
        let outcome = table
            .replace_if(&middle, &staged, |_| {
                Ok(Ok::<_, ()>(HashMap::from([(
                    "k".to_string(),
                    "v".to_string(),
                )])))
            })
            .await
            .unwrap();
        assert!(matches!(outcome, ReplaceOutcome::Committed { .. }));
        assert_eq!(ids(&table).await, vec![1, 2, 5, 6, 30, 40, 41]);
        assert_eq!(total(&table, "total-records"), "7");
        assert_eq!(total(&table, "deleted-records"), "2");
        assert_eq!(table.snapshot_property("k"), Some("v"));
        let snapshot = table.table.metadata().current_snapshot().unwrap();
        assert_eq!(snapshot.summary().operation, Operation::Overwrite);

        // The same files again: another commit took them out already.
        let outcome = table
            .replace_if(&middle, &StagedFiles::default(), |_| {
                Ok(Ok::<_, ()>(HashMap::new()))
            })
            .await
            .unwrap();
        match outcome {
            ReplaceOutcome::FilesGone(mut gone) => {
                gone.sort();
                let mut want: Vec<String> = middle.iter().cloned().collect();
                want.sort();
                assert_eq!(gone, want);
            }
            other => panic!("expected FilesGone, got {other:?}"),
        }
        let refused = table
            .replace_if(&HashSet::new(), &StagedFiles::default(), |_| {
                Ok(Err::<HashMap<String, String>, _>("no"))
            })
            .await
            .unwrap();
        assert_eq!(refused, ReplaceOutcome::Refused("no"));

        // A stale handle loses the race to an append, rebuilds on it and keeps the append.
        let mut stale = IcebergTable::open(catalog.clone(), "t.days").await.unwrap();
        let staged = table.write(&batch(&[7])).await.unwrap();
        table.append(staged).await.unwrap();
        let first_day = stale
            .files_in_range("ts", None, Some(2 * DAY))
            .await
            .unwrap();
        assert_eq!(first_day.len(), 1);
        let mut checks = 0;
        let outcome = stale
            .replace_if(&first_day, &StagedFiles::default(), |_| {
                checks += 1;
                Ok(Ok::<_, ()>(HashMap::new()))
            })
            .await
            .unwrap();
        assert!(matches!(outcome, ReplaceOutcome::Committed { .. }));
        assert_eq!(checks, 2, "checked again on the state that won the race");
        assert_eq!(ids(&stale).await, vec![2, 5, 6, 7, 30, 40, 41]);
        assert_eq!(
            stale
                .table
                .metadata()
                .current_snapshot()
                .unwrap()
                .summary()
                .operation,
            Operation::Delete
        );
        assert_eq!(total(&stale, "total-records"), "7");
        table.refresh().await.unwrap();
        assert_eq!(ids(&table).await, vec![2, 5, 6, 7, 30, 40, 41]);
    }
}
