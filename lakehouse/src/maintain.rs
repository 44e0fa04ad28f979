//! Table maintenance: compaction, snapshot expiry, orphan-file removal and retention.
//!
//! Every commit here is conditional on the table's `main` branch being where it was, like the
//! pipelines' own, so it can run while they append: a lost race is rebuilt on the new state,
//! and nothing the pipelines committed meanwhile is lost. `state_keys` name the snapshot
//! properties that hold a pipeline's state (Kafka offsets, cursors): maintenance commits carry
//! their newest values forward, and expiry keeps the snapshots that hold them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use iceberg::spec::{DataFile, Operation, Struct};
use iceberg::TableUpdate;

use crate::error::{table_err, Error, Result};
use crate::increments::DataFiles;
use crate::listing::Store;
use crate::replace::ReplaceOutcome;
use crate::table::IcebergTable;

/// How many times an expiry is rebuilt after another writer committed first.
const MAX_EXPIRE_CONFLICTS: u32 = 50;

/// How compaction picks and sizes files.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// The size rewritten files aim at, in bytes. Files under 3/4 of it are small.
    pub target_file_size: u64,
    /// A partition is compacted when it holds at least this many small files.
    pub min_input_files: usize,
}

/// What a compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Data files before and after.
    pub files_before: usize,
    pub files_after: usize,
    /// Files rewritten, and files written in their place.
    pub rewritten: usize,
    pub written: usize,
    /// Rows moved.
    pub rows: u64,
    /// Replace commits made.
    pub commits: usize,
    /// Groups left alone because another writer removed some of their files meanwhile.
    pub skipped: usize,
}

/// Which snapshots expiry may remove.
#[derive(Debug, Clone)]
pub struct ExpireOptions {
    /// The newest snapshots of the table's history that stay whatever their age.
    pub keep_last: usize,
    /// Snapshots younger than this stay.
    pub max_age: Duration,
    /// Snapshots that readers following the table still start from or replay: they, their
    /// parents (so that each still reads as its own rows, not as the root of the history) and
    /// every later snapshot stay.
    pub protect: Vec<i64>,
}

/// What an expiry did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExpireReport {
    pub expired: usize,
    pub kept: usize,
    /// Files that only expired snapshots referenced, deleted: data files, manifests and
    /// manifest lists.
    pub data_files_deleted: usize,
    pub metadata_files_deleted: usize,
}

/// What an orphan-file removal found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrphanReport {
    /// Files under the table's location.
    pub scanned: usize,
    /// Files no snapshot or metadata file references and older than the safety age: deleted,
    /// or only listed on a dry run.
    pub orphans: Vec<String>,
    /// Unreferenced files younger than the safety age, left alone (a commit may be writing
    /// them).
    pub young: usize,
}

/// What a retention run removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub files: usize,
    pub rows: u64,
    /// The snapshot that removed them, if any were.
    pub snapshot_id: Option<i64>,
}

impl IcebergTable {
    /// Bin-packs the small files of each partition into files of about the target size, one
    /// replace commit per bin (a lost race with an append is rebuilt on top of it).
    pub async fn compact(
        &mut self,
        options: &CompactOptions,
        state_keys: &[&str],
    ) -> Result<CompactReport> {
        let target = options.target_file_size.max(1);
        let small_below = target / 4 * 3;
        let entries = self.live_entries().await?;
        let mut report = CompactReport {
            files_before: entries.len(),
            ..CompactReport::default()
        };
        let mut partitions: HashMap<Struct, Vec<DataFile>> = HashMap::new();
        for entry in &entries {
            let file = entry.data_file();
            if file.file_size_in_bytes() < small_below {
                partitions
                    .entry(file.partition().clone())
                    .or_default()
                    .push(file.clone());
            }
        }
        let bins: Vec<Vec<DataFile>> = partitions
            .into_values()
            .filter(|files| files.len() >= options.min_input_files.max(2))
            .flat_map(|files| bin_pack(files, target, DataFile::file_size_in_bytes))
            .filter(|bin| bin.len() >= 2)
            .collect();
        for bin in bins {
            let remove: HashSet<String> = bin.iter().map(|f| f.file_path().to_string()).collect();
            let rows: u64 = bin.iter().map(DataFile::record_count).sum();
            let input = DataFiles::from_files(bin);
            let batches = self.read_data_files(&input)?;
            let staged = self
                .write_all(batches, Some(usize::try_from(target).unwrap_or(usize::MAX)))
                .await?;
            let written = staged.len();
            let outcome = self
                .replace_as(Operation::Replace, &remove, &staged, |table| {
                    Ok(Ok::<_, std::convert::Infallible>(
                        table.state_properties(state_keys),
                    ))
                })
                .await?;
            match outcome {
                ReplaceOutcome::Committed { .. } => {
                    report.rewritten += remove.len();
                    report.written += written;
                    report.rows += rows;
                    report.commits += 1;
                }
                ReplaceOutcome::FilesGone(gone) => {
                    tracing::info!(table = %self.name(), gone = gone.len(), "files of a compaction group went meanwhile; group skipped");
                    report.skipped += 1;
                }
                ReplaceOutcome::Refused(never) => match never {},
            }
        }
        report.files_after = self.live_entries().await?.len();
        Ok(report)
    }

    /// The newest value of each of `keys` in the current snapshot's history.
    fn state_properties(&self, keys: &[&str]) -> HashMap<String, String> {
        keys.iter()
            .filter_map(|key| {
                self.snapshot_property(key)
                    .map(|v| (key.to_string(), v.to_string()))
            })
            .collect()
    }

    /// Removes old snapshots from the table's metadata and deletes the files that only they
    /// referenced. A snapshot stays when it is among the `keep_last` newest of the history,
    /// younger than `max_age`, protected (or the parent of or later than a protected one), or the newest holder
    /// of one of `state_keys` (or later than it).
    pub async fn expire_snapshots(
        &mut self,
        options: &ExpireOptions,
        state_keys: &[&str],
    ) -> Result<ExpireReport> {
        let name = self.name();
        let mut conflicts = 0;
        let (expired, kept) = loop {
            let (expired, kept) = self.expiry_plan(options, state_keys);
            if expired.is_empty() {
                return Ok(ExpireReport {
                    kept: kept.len(),
                    ..ExpireReport::default()
                });
            }
            // What the expired snapshots referenced is read before the commit: afterwards the
            // table no longer knows them.
            let expired_files = self.referenced_files(&expired, true).await?;
            let updates = vec![TableUpdate::RemoveSnapshots {
                snapshot_ids: expired,
            }];
            if self.commit_updates(updates).await? {
                break (expired_files, kept);
            }
            conflicts += 1;
            if conflicts > MAX_EXPIRE_CONFLICTS {
                return Err(Error::Config(format!(
                    "table {name}: snapshot expiry lost {conflicts} races to other writers"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5 * u64::from(conflicts))).await;
        };
        let all: Vec<i64> = self
            .table
            .metadata()
            .snapshots()
            .map(|s| s.snapshot_id())
            .collect();
        let still = self.referenced_files(&all, false).await?;
        let mut report = ExpireReport {
            expired: expired.snapshots,
            kept: kept.len(),
            ..ExpireReport::default()
        };
        let io = self.table.file_io();
        for path in expired.data.difference(&still.data) {
            io.delete(path).await.map_err(table_err(&name, "delete"))?;
            report.data_files_deleted += 1;
        }
        for path in expired.metadata.difference(&still.metadata) {
            io.delete(path).await.map_err(table_err(&name, "delete"))?;
            report.metadata_files_deleted += 1;
        }
        Ok(report)
    }

    /// The snapshots to expire and those to keep.
    fn expiry_plan(&self, options: &ExpireOptions, state_keys: &[&str]) -> (Vec<i64>, Vec<i64>) {
        let now = chrono::Utc::now().timestamp_millis();
        let max_age = i64::try_from(options.max_age.as_millis()).unwrap_or(i64::MAX);
        let young = |ts: i64| ts >= now.saturating_sub(max_age);
        let ancestry: Vec<_> = self.ancestry().collect();
        // Everything up to the oldest snapshot that must stay is kept, so that the history
        // readers walk stays unbroken.
        let mut last_kept = options.keep_last.max(1) - 1;
        for (i, snapshot) in ancestry.iter().enumerate() {
            if young(snapshot.timestamp_ms()) {
                last_kept = last_kept.max(i);
            }
            if options.protect.contains(&snapshot.snapshot_id()) {
                last_kept = last_kept.max((i + 1).min(ancestry.len() - 1));
            }
        }
        for key in state_keys {
            if let Some(i) = ancestry
                .iter()
                .position(|s| s.summary().additional_properties.contains_key(*key))
            {
                last_kept = last_kept.max(i);
            }
        }
        let on_branch: HashSet<i64> = ancestry.iter().map(|s| s.snapshot_id()).collect();
        let mut expired = Vec::new();
        let mut kept = Vec::new();
        for (i, snapshot) in ancestry.iter().enumerate() {
            match i <= last_kept {
                true => kept.push(snapshot.snapshot_id()),
                false => expired.push(snapshot.snapshot_id()),
            }
        }
        // Snapshots off the main history (none of medallion's commits leave any) go by age.
        for snapshot in self.table.metadata().snapshots() {
            let id = snapshot.snapshot_id();
            if !on_branch.contains(&id) {
                match young(snapshot.timestamp_ms()) {
                    true => kept.push(id),
                    false => expired.push(id),
                }
            }
        }
        (expired, kept)
    }

    /// The files the given snapshots reference: their manifest lists and manifests, and the
    /// data files of their manifests (every entry with `any_status`, else only live ones).
    async fn referenced_files(&self, snapshots: &[i64], any_status: bool) -> Result<Referenced> {
        let name = self.name();
        let metadata = self.table.metadata();
        let mut out = Referenced {
            snapshots: snapshots.len(),
            ..Referenced::default()
        };
        let mut manifests_read = HashSet::new();
        for id in snapshots {
            let Some(snapshot) = metadata.snapshot_by_id(*id) else {
                continue;
            };
            out.metadata.insert(snapshot.manifest_list().to_string());
            for manifest_file in self.manifest_files(snapshot).await? {
                out.metadata.insert(manifest_file.manifest_path.clone());
                if !manifests_read.insert(manifest_file.manifest_path.clone()) {
                    continue;
                }
                let manifest = manifest_file
                    .load_manifest(self.table.file_io())
                    .await
                    .map_err(table_err(&name, "manifest"))?;
                out.data.extend(
                    manifest
                        .entries()
                        .iter()
                        .filter(|e| any_status || e.is_alive())
                        .map(|e| e.file_path().to_string()),
                );
            }
        }
        Ok(out)
    }

    /// Deletes the files under the table's location that no snapshot and no metadata file
    /// of the table references and that are older than `older_than` (files of a commit in
    /// progress are young). Local and S3 locations can be listed.
    pub async fn remove_orphans(
        &self,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<OrphanReport> {
        let name = self.name();
        let metadata = self.table.metadata();
        let store = Store::of(metadata.location(), self.catalog.s3_properties())
            .map_err(|e| Error::Config(format!("table {name}: {e}")))?;
        let all: Vec<i64> = metadata.snapshots().map(|s| s.snapshot_id()).collect();
        let referenced = self.referenced_files(&all, true).await?;
        let mut keep: HashSet<String> = referenced
            .data
            .iter()
            .chain(referenced.metadata.iter())
            .map(String::as_str)
            .chain(self.metadata_location())
            .chain(
                metadata
                    .metadata_log()
                    .iter()
                    .map(|m| m.metadata_file.as_str()),
            )
            .filter_map(|location| store.key(location))
            .collect();
        keep.insert(store.under_root("metadata/version-hint.text"));
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = OrphanReport::default();
        let with_table = |e: Error| Error::Config(format!("table {name}: {e}"));
        for file in store.list().await.map_err(with_table)? {
            report.scanned += 1;
            if keep.contains(&file.location) {
                continue;
            }
            if file.modified > cutoff {
                report.young += 1;
                continue;
            }
            if !dry_run {
                store.delete(&file.location).await.map_err(with_table)?;
            }
            report.orphans.push(file.location);
        }
        report.orphans.sort();
        Ok(report)
    }

    /// The column the table's partition spec partitions by (the source of its first field).
    pub fn partition_column(&self) -> Option<String> {
        let metadata = self.table.metadata();
        let field = metadata.default_partition_spec().fields().first()?;
        metadata
            .current_schema()
            .name_by_field_id(field.source_id)
            .map(str::to_string)
    }

    /// Removes, in one delete commit, the data files whose rows all have `column` (a
    /// timestamp) before `cutoff_micros`. With the table partitioned by day on `column`, that
    /// is every day before the cutoff's day. Files without statistics on `column` stay.
    pub async fn drop_before(
        &mut self,
        column: &str,
        cutoff_micros: i64,
        state_keys: &[&str],
    ) -> Result<RetentionReport> {
        let field_id = self.field_id(column)?;
        loop {
            let old: Vec<DataFile> = self
                .live_entries()
                .await?
                .iter()
                .map(|e| e.data_file().clone())
                .filter(|file| {
                    crate::table::micros(file.upper_bounds().get(&field_id))
                        .is_some_and(|upper| upper < cutoff_micros)
                })
                .collect();
            if old.is_empty() {
                return Ok(RetentionReport::default());
            }
            let remove: HashSet<String> = old.iter().map(|f| f.file_path().to_string()).collect();
            let outcome = self
                .replace_as(
                    Operation::Delete,
                    &remove,
                    &crate::table::StagedFiles::default(),
                    |table| {
                        Ok(Ok::<_, std::convert::Infallible>(
                            table.state_properties(state_keys),
                        ))
                    },
                )
                .await?;
            match outcome {
                ReplaceOutcome::Committed { snapshot_id } => {
                    return Ok(RetentionReport {
                        files: old.len(),
                        rows: old.iter().map(DataFile::record_count).sum(),
                        snapshot_id: Some(snapshot_id),
                    })
                }
                // A compaction took some of them meanwhile: look again.
                ReplaceOutcome::FilesGone(_) => self.refresh().await?,
                ReplaceOutcome::Refused(never) => match never {},
            }
        }
    }

    /// Streams the rows of `files` (see [`Self::scan_data_files`]).
    fn read_data_files(
        &self,
        files: &DataFiles,
    ) -> Result<impl futures::Stream<Item = Result<arrow::array::RecordBatch>> + Unpin> {
        let name = self.name();
        let stream = self.data_file_stream(files)?;
        Ok(stream.map(move |batch| batch.map_err(table_err(&name, "scan"))))
    }
}

/// Files some snapshots reference.
#[derive(Default)]
struct Referenced {
    snapshots: usize,
    data: HashSet<String>,
    /// Manifest lists and manifests.
    metadata: HashSet<String>,
}

/// First-fit decreasing: bins of files whose sizes (`size`) add up to at most `target` (a file
/// larger than it gets a bin of its own).
pub(crate) fn bin_pack<F>(mut files: Vec<F>, target: u64, size: impl Fn(&F) -> u64) -> Vec<Vec<F>> {
    files.sort_by_key(|f| std::cmp::Reverse(size(f)));
    let mut bins: Vec<(u64, Vec<F>)> = Vec::new();
    for file in files {
        let bytes = size(&file);
        match bins.iter_mut().find(|(used, _)| used + bytes <= target) {
            Some((used, bin)) => {
                *used += bytes;
                bin.push(file);
            }
            None => bins.push((bytes, vec![file])),
        }
    }
    bins.into_iter().map(|(_, bin)| bin).collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::RecordBatch;

    use super::*;
    use crate::listing::local_path;
    use crate::testing::{day_table, ids as read_all, rows, sorted_ids, DAY};

    const STATE: &str = "medallion.test.cursor";

    fn batch(ids: std::ops::Range<i64>, day: i64) -> RecordBatch {
        rows(&ids.collect::<Vec<_>>(), |id| day * DAY + id)
    }

    /// Every row a follower starting from scratch reads through the increments.
    async fn read_increments(table: &IcebergTable, after: Option<i64>) -> Vec<i64> {
        let appends = table.appends_after(after).unwrap();
        sorted_ids(&table.scan_appended(&appends).await.unwrap())
    }

    #[tokio::test]
    async fn compaction_expiry_orphans_and_retention_keep_every_row_readers_need() {
        let (_dir, _catalog, mut table) = day_table("t.events").await;
        // 12 appends of 10 rows: days 1 and 2, 6 small files each.
        let mut appends = Vec::new();
        for i in 0..12 {
            let staged = table
                .write(&batch(i * 10..i * 10 + 10, 1 + i % 2))
                .await
                .unwrap();
            let expected = table.snapshot_property(STATE).map(str::to_string);
            assert!(table
                .commit_cursor(staged, STATE, expected.as_deref(), &i.to_string(), &[])
                .await
                .unwrap());
            appends.push(table.current_snapshot_id().unwrap());
        }
        let all: Vec<i64> = (0..120).collect();
        let live = table.files_in_range("ts", None, None).await.unwrap();
        assert_eq!(live.len(), 12);

        let options = CompactOptions {
            target_file_size: 1 << 20,
            min_input_files: 2,
        };
        let report = table.compact(&options, &[STATE]).await.unwrap();
        assert_eq!(
            (
                report.files_before,
                report.rewritten,
                report.written,
                report.files_after
            ),
            (12, 12, 2, 2),
            "one file per day partition"
        );
        assert_eq!((report.rows, report.commits), (120, 2));
        assert_eq!(read_all(&table).await, all);
        let current = table.table.metadata().current_snapshot().unwrap();
        assert_eq!(current.summary().operation, Operation::Replace);
        assert_eq!(
            current
                .summary()
                .additional_properties
                .get(STATE)
                .map(String::as_str),
            Some("11"),
            "the state is carried forward"
        );
        // Compaction brings no rows: a follower after the last append reads nothing, one
        // from the start reads each row once, through the appends' own (now removed) files.
        assert!(table.appends_after(Some(appends[11])).unwrap().is_empty());
        assert_eq!(read_increments(&table, None).await, all);
        assert_eq!(
            read_increments(&table, Some(appends[5])).await,
            (60..120).collect::<Vec<_>>()
        );
        let again = table.compact(&options, &[STATE]).await.unwrap();
        assert_eq!(
            (again.rewritten, again.commits),
            (0, 0),
            "nothing small left"
        );

        // Expiry: a follower still starts from the 6th append, so it, its parent and every
        // later snapshot stay.
        let expire = ExpireOptions {
            keep_last: 1,
            max_age: Duration::ZERO,
            protect: vec![appends[5]],
        };
        let report = table.expire_snapshots(&expire, &[STATE]).await.unwrap();
        assert_eq!((report.expired, report.kept), (4, 10));
        assert_eq!(
            report.data_files_deleted, 0,
            "the files of appends 1-4 are read by the 5th snapshot"
        );
        assert_eq!(
            sorted_ids(&table.scan_appended(&[appends[5]]).await.unwrap()),
            (50..60).collect::<Vec<_>>(),
            "a protected snapshot still reads as its own rows (a gold replay starts there)"
        );
        assert_eq!(
            read_increments(&table, Some(appends[5])).await,
            (60..120).collect::<Vec<_>>()
        );
        assert_eq!(
            read_increments(&table, None).await,
            all,
            "a new follower starts from the oldest snapshot left, with all its rows"
        );
        // Unprotected: only the current snapshot stays, and the appends' files go.
        let expire = ExpireOptions {
            protect: Vec::new(),
            ..expire
        };
        let report = table.expire_snapshots(&expire, &[STATE]).await.unwrap();
        assert_eq!((report.expired, report.kept), (9, 1));
        assert_eq!(report.data_files_deleted, 12);
        assert_eq!(read_all(&table).await, all);
        assert_eq!(read_increments(&table, None).await, all);
        assert_eq!(table.snapshot_property(STATE), Some("11"));

        // Orphans: an old stray file goes, a young one and every referenced file stay.
        let data_dir = local_path(table.table.metadata().location())
            .unwrap()
            .join("data");
        let old = data_dir.join("stray-old.parquet");
        let young = data_dir.join("stray-young.parquet");
        for path in [&old, &young] {
            std::fs::write(path, b"not a table file").unwrap();
        }
        let week_ago = SystemTime::now() - Duration::from_secs(7 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(week_ago)
            .unwrap();
        let dry = table
            .remove_orphans(Duration::from_secs(86_400), true)
            .await
            .unwrap();
        assert_eq!(dry.orphans, vec![old.display().to_string()]);
        assert!(old.exists(), "a dry run deletes nothing");
        let report = table
            .remove_orphans(Duration::from_secs(86_400), false)
            .await
            .unwrap();
        assert_eq!(report.orphans, vec![old.display().to_string()]);
        assert_eq!(report.young, 1);
        assert!(!old.exists() && young.exists());
        assert_eq!(read_all(&table).await, all);

        // Retention: day 1 goes whole, day 2 stays.
        let report = table.drop_before("ts", 2 * DAY, &[STATE]).await.unwrap();
        assert_eq!((report.files, report.rows), (1, 60));
        let day2: Vec<i64> = (0..12)
            .filter(|i| i % 2 == 1)
            .flat_map(|i| i * 10..i * 10 + 10)
            .collect();
        assert_eq!(read_all(&table).await, day2);
        assert_eq!(table.snapshot_property(STATE), Some("11"));
        assert_eq!(table.partition_column().as_deref(), Some("ts"));
        let none = table.drop_before("ts", 2 * DAY, &[STATE]).await.unwrap();
        assert_eq!(none, RetentionReport::default());
    }
}
