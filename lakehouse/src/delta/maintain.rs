//! Maintenance of Delta tables, as Delta's own operations do it: compaction is an `OPTIMIZE`
//! commit that removes small files and adds their rows again (`dataChange = false`), retention a
//! `DELETE` commit that removes the files wholly before a cutoff, and expiry and orphan removal
//! are delta-rs' `VACUUM` (lite and full) with the expired commit files cleaned up behind the
//! checkpoints. The versions that the stages following the table still read from are protected:
//! nothing they need is vacuumed.

use std::collections::HashSet;

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;
use deltalake::table::config::TablePropertiesExt as _;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::DeltaTableError;

use super::{delta_err, removes, DeltaLakeTable, FileEntry, MAX_CONFLICTS};
use crate::maintain::{bin_pack, CompactOptions, CompactReport, ExpireOptions, RetentionReport};
use crate::{Error, Result};

/// What a vacuum did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VacuumReport {
    /// Data files deleted (or, on a dry run, that would be).
    pub files: Vec<String>,
    /// Commit files of the log deleted (expiry only).
    pub log_files: usize,
    /// The retention applied: the one asked for, or longer to keep what readers still need or
    /// what the table's `delta.deletedFileRetentionDuration` asks.
    pub retention: std::time::Duration,
}

impl DeltaLakeTable {
    /// Bin-packs the small files into files of about the target size, one `OPTIMIZE` commit
    /// per bin; a bin whose files another writer removed meanwhile is skipped.
    pub async fn compact(&mut self, options: &CompactOptions) -> Result<CompactReport> {
        let target = options.target_file_size.max(1);
        let small_below = target / 4 * 3;
        let files = self.files()?;
        let mut report = CompactReport {
            files_before: files.len(),
            ..CompactReport::default()
        };
        let small: Vec<FileEntry> = files.into_iter().filter(|f| f.size < small_below).collect();
        if small.len() >= options.min_input_files.max(2) {
            let columns = crate::files::column_names(&self.arrow_schema);
            for bin in bin_pack(small, target, |f| f.size) {
                if bin.len() < 2 {
                    continue;
                }
                let mut writer = RecordBatchWriter::for_table(&self.table)
                    .map_err(delta_err(&self.name, "compact"))?;
                for file in &bin {
                    for batch in self.read_file(&file.path, &columns).await? {
                        writer
                            .write(batch)
                            .await
                            .map_err(delta_err(&self.name, "compact"))?;
                    }
                }
                let adds: Vec<Add> = writer
                    .flush()
                    .await
                    .map_err(delta_err(&self.name, "compact"))?
                    .into_iter()
                    .map(|add| Add {
                        data_change: false,
                        ..add
                    })
                    .collect();
                let remove: HashSet<String> = bin.iter().map(|f| f.path.clone()).collect();
                let written = adds.len();
                let operation = DeltaOperation::Optimize {
                    predicate: None,
                    target_size: i64::try_from(target).unwrap_or(i64::MAX),
                };
                match self.commit_rewrite(&remove, adds, false, operation).await? {
                    Some(_) => {
                        report.rewritten += bin.len();
                        report.written += written;
                        report.rows += bin.iter().filter_map(|f| f.rows).sum::<u64>();
                        report.commits += 1;
                    }
                    None => report.skipped += 1,
                }
            }
        }
        report.files_after = self.files()?.len();
        Ok(report)
    }

    /// Removes, in one `DELETE` commit, the data files whose rows all have `column` (a
    /// timestamp) before `cutoff_micros`, judged by their statistics; files without them stay.
    pub async fn drop_before(
        &mut self,
        column: &str,
        cutoff_micros: i64,
    ) -> Result<RetentionReport> {
        if self.arrow_schema.field_with_name(column).is_err() {
            return Err(Error::Config(format!(
                "table {} has no column {column}",
                self.name
            )));
        }
        let cutoff = chrono::DateTime::from_timestamp_micros(cutoff_micros)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        for _ in 0..MAX_CONFLICTS {
            let old: Vec<FileEntry> = self
                .files()?
                .into_iter()
                .filter(|f| f.max_micros(column).is_some_and(|m| m < cutoff_micros))
                .collect();
            if old.is_empty() {
                return Ok(RetentionReport::default());
            }
            let remove: HashSet<String> = old.iter().map(|f| f.path.clone()).collect();
            let operation = DeltaOperation::Delete {
                predicate: Some(format!("{column} < '{cutoff}'")),
            };
            if let Some(version) = self
                .commit_rewrite(&remove, Vec::new(), true, operation)
                .await?
            {
                return Ok(RetentionReport {
                    files: old.len(),
                    rows: old.iter().filter_map(|f| f.rows).sum(),
                    snapshot_id: Some(i64::try_from(version).unwrap_or(i64::MAX)),
                });
            }
        }
        Err(Error::Config(format!(
            "table {}: {MAX_CONFLICTS} retention commits in a row lost to other writers",
            self.name
        )))
    }

    /// Removes the files that commits older than the expiry point removed (delta-rs' lite
    /// `VACUUM`), and the commit files before the newest checkpoint that is not newer than
    /// it. The expiry point is the oldest of: `max_age` ago, the `keep_last`-th newest
    /// version, and the versions of `protect` (readers read on from them).
    pub async fn expire(&mut self, options: &ExpireOptions) -> Result<VacuumReport> {
        let (keep_version, retention) = self.expiry_point(options).await?;
        let mut report = self.vacuum(VacuumMode::Lite, retention, false).await?;
        let cutoff_ms = chrono::Utc::now().timestamp_millis()
            - i64::try_from(report.retention.as_millis()).unwrap_or(i64::MAX);
        report.log_files = deltalake::checkpoints::cleanup_expired_logs_for(
            keep_version,
            self.table.log_store().as_ref(),
            cutoff_ms,
            None,
        )
        .await
        .map_err(delta_err(&self.name, "clean up the log"))?;
        self.refresh().await?;
        Ok(report)
    }

    /// Removes the files under the table that the current version does not reference and
    /// that are older than `older_than` (delta-rs' full `VACUUM`), except what the versions
    /// of `protect` still need; with `dry_run`, lists them only.
    pub async fn remove_orphans(
        &mut self,
        older_than: std::time::Duration,
        protect: &[i64],
        dry_run: bool,
    ) -> Result<VacuumReport> {
        let options = ExpireOptions {
            keep_last: 0,
            max_age: older_than,
            protect: protect.to_vec(),
        };
        let (_, retention) = self.expiry_point(&options).await?;
        let report = self.vacuum(VacuumMode::Full, retention, dry_run).await?;
        self.refresh().await?;
        Ok(report)
    }

    /// The oldest version that stays readable (the `keep_last`-th newest, or the oldest of
    /// `protect`), and how far back files removed stay: to its commit time, and at least
    /// `max_age`. A file removed in the same millisecond as that commit stays too.
    async fn expiry_point(
        &mut self,
        options: &ExpireOptions,
    ) -> Result<(u64, std::time::Duration)> {
        let now = chrono::Utc::now().timestamp_millis();
        let history: Vec<(i64, i64)> = self
            .commits()
            .await?
            .history()
            .map(|(version, at, _)| (version, at))
            .collect();
        let newest = history.first().map_or(0, |(v, _)| *v);
        let mut keep = newest + 1 - i64::try_from(options.keep_last).unwrap_or(i64::MAX);
        keep = options.protect.iter().fold(keep, |k, p| k.min(*p));
        let mut oldest_ms = now - i64::try_from(options.max_age.as_millis()).unwrap_or(i64::MAX);
        for (version, at) in &history {
            if *version >= keep {
                oldest_ms = oldest_ms.min(*at);
            }
        }
        let age = u64::try_from(now - oldest_ms).unwrap_or(0);
        Ok((
            keep.max(0).unsigned_abs(),
            std::time::Duration::from_millis(age),
        ))
    }

    /// delta-rs' `VACUUM` with `retention`, or the table's own minimum if that is longer.
    async fn vacuum(
        &mut self,
        mode: VacuumMode,
        retention: std::time::Duration,
        dry_run: bool,
    ) -> Result<VacuumReport> {
        let state = self
            .table
            .snapshot()
            .map_err(delta_err(&self.name, "vacuum"))?;
        let minimum = state.table_config().deleted_file_retention_duration();
        let retention = retention.max(minimum);
        let period = chrono::Duration::from_std(retention)
            .map_err(|e| Error::Config(format!("table {}: retention: {e}", self.name)))?;
        let (table, metrics) = self
            .table
            .clone()
            .vacuum()
            .with_mode(mode)
            .with_retention_period(period)
            .with_dry_run(dry_run)
            .await
            .map_err(delta_err(&self.name, "vacuum"))?;
        self.table = table;
        Ok(VacuumReport {
            files: metrics.files_deleted,
            log_files: 0,
            retention,
        })
    }

    /// Removes the files `remove` and adds `adds` in one commit of `operation`; `None` when
    /// another writer removed some of the files first.
    async fn commit_rewrite(
        &mut self,
        remove: &HashSet<String>,
        adds: Vec<Add>,
        data_change: bool,
        operation: DeltaOperation,
    ) -> Result<Option<u64>> {
        for _ in 0..MAX_CONFLICTS {
            let snapshot = self
                .table
                .snapshot()
                .map_err(delta_err(&self.name, "rewrite"))?;
            let Some(removes) = removes(snapshot, remove, data_change) else {
                return Ok(None);
            };
            let mut actions: Vec<Action> = adds.iter().cloned().map(Action::Add).collect();
            actions.extend(removes);
            let commit = CommitBuilder::from(CommitProperties::default().with_max_retries(0))
                .with_actions(actions)
                .build(Some(snapshot), self.table.log_store(), operation.clone())
                .await;
            match commit {
                Ok(done) => {
                    let version = done.version();
                    self.table.state = Some(done.snapshot());
                    return Ok(Some(version));
                }
                Err(
                    DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_),
                ) => self.refresh().await?,
                Err(e) => return Err(delta_err(&self.name, "rewrite")(e)),
            }
        }
        Err(Error::Config(format!(
            "table {}: {MAX_CONFLICTS} rewrites in a row lost to other writers",
            self.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offsets::OffsetFence;
    use crate::table::CommitOutcome;
    use crate::testing::{rows, sorted_ids, DAY};

    /// A Delta table of one-row files, ids 1..=6 at days 1..=6, each appended on its own, that
    /// vacuums removed files at once.
    async fn one_row_files(dir: &tempfile::TempDir) -> DeltaLakeTable {
        let location = dir.path().join("bronze").join("m");
        let def = crate::testing::def("bronze.m");
        let mut table = DeltaLakeTable::open_or_create(location.to_str().unwrap(), &def)
            .await
            .unwrap();
        let now = [(
            "delta.deletedFileRetentionDuration".to_string(),
            "interval 0 seconds".to_string(),
        )];
        table.add_columns(&[], &now).await.unwrap();
        for id in 1..=6 {
            let staged = table.write(&rows(&[id], |i| i * DAY)).await.unwrap();
            let mut fence = OffsetFence::default();
            fence.cover("t", 0, (id > 1).then_some(id - 1), id);
            let done = table.commit_append(staged, &fence, &[]).await.unwrap();
            assert!(matches!(done, CommitOutcome::Committed { .. }));
        }
        table
    }

    async fn all_ids(table: &DeltaLakeTable) -> Vec<i64> {
        sorted_ids(&table.scan_since(&["id".into()], "ts", 0).await.unwrap())
    }

    #[tokio::test]
    async fn compaction_keeps_the_rows_and_what_followers_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = one_row_files(&dir).await;
        let appends = table
            .commits()
            .await
            .unwrap()
            .appends_after("m", None)
            .unwrap();
        assert_eq!(appends.len(), 6);

        let few = CompactOptions {
            target_file_size: 1 << 20,
            min_input_files: 7,
        };
        assert_eq!(
            table.compact(&few).await.unwrap().commits,
            0,
            "too few small files"
        );
        let options = CompactOptions {
            min_input_files: 2,
            ..few
        };
        let report = table.compact(&options).await.unwrap();
        assert_eq!(
            (
                report.files_before,
                report.rewritten,
                report.written,
                report.rows,
                report.files_after
            ),
            (6, 6, 1, 6, 1)
        );
        assert_eq!(all_ids(&table).await, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            table
                .stored_offsets(&[("t".into(), 0)])
                .await
                .unwrap()
                .get("t", 0),
            Some(6)
        );

        // The compaction brought no rows; a follower still reads each append's own file, and
        // expiry keeps them while a follower has not read past the first append.
        let log = table.commits().await.unwrap();
        assert_eq!(log.appends_after("m", None).unwrap(), appends);
        assert!(log.rewritten_after(appends[5]));
        let keep = ExpireOptions {
            keep_last: 1,
            max_age: std::time::Duration::ZERO,
            protect: vec![appends[0]],
        };
        assert!(table.expire(&keep).await.unwrap().files.is_empty());
        let files = table
            .commits()
            .await
            .unwrap()
            .files_added_by("m", &appends)
            .unwrap();
        let mut read = Vec::new();
        for v in &appends {
            read.extend(table.scan_data_files(&files[v]).await.unwrap());
        }
        assert_eq!(sorted_ids(&read), vec![1, 2, 3, 4, 5, 6]);

        // With no follower behind and a commit after the compaction (in a later millisecond
        // than its removals), the newest version kept does not reference them: they go.
        let expire = ExpireOptions {
            protect: Vec::new(),
            ..keep
        };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let staged = table.write(&rows(&[7], |i| i * DAY)).await.unwrap();
        let mut fence = OffsetFence::default();
        fence.cover("t", 0, Some(6), 7);
        table.commit_append(staged, &fence, &[]).await.unwrap();
        let report = table.expire(&expire).await.unwrap();
        assert_eq!(report.files.len(), 6, "{report:?}");
        assert_eq!(all_ids(&table).await, vec![1, 2, 3, 4, 5, 6, 7]);

        // Behind a checkpoint, the expired commit files go too; a follower starting from
        // nothing reads the checkpoint as one commit, one with an expired cursor is refused.
        deltalake::checkpoints::create_checkpoint(&table.table, None)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let report = table.expire(&expire).await.unwrap();
        assert!(report.log_files > 5, "{report:?}");
        let location = dir.path().join("bronze").join("m");
        let mut fresh = DeltaLakeTable::open_if_exists(location.to_str().unwrap(), "bronze.m")
            .await
            .unwrap()
            .unwrap();
        let log = fresh.commits().await.unwrap();
        let root = log.appends_after("m", None).unwrap();
        assert_eq!(root.len(), 1, "{root:?}");
        assert!(log.appends_after("m", Some(appends[0])).is_err());
        let files = log.files_added_by("m", &root).unwrap();
        let rows = fresh.scan_data_files(&files[&root[0]]).await.unwrap();
        assert_eq!(sorted_ids(&rows), vec![1, 2, 3, 4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn retention_removes_the_files_wholly_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = one_row_files(&dir).await;
        let report = table.drop_before("ts", 4 * DAY).await.unwrap();
        assert_eq!((report.files, report.rows), (3, 3));
        assert_eq!(all_ids(&table).await, vec![4, 5, 6]);
        let log = table.commits().await.unwrap();
        assert_eq!(
            log.appends_after("m", None).unwrap().len(),
            6,
            "a delete brings no rows"
        );
        assert_eq!(table.drop_before("ts", 4 * DAY).await.unwrap().files, 0);
        assert!(table.drop_before("nope", 0).await.is_err());

        // An orphan: a data file no version references. A dry run lists it; then it goes.
        let orphan = dir.path().join("bronze/m/part-orphan.parquet");
        std::fs::write(&orphan, b"not committed").unwrap();
        let zero = std::time::Duration::ZERO;
        let listed = table.remove_orphans(zero, &[], true).await.unwrap();
        assert!(
            listed
                .files
                .iter()
                .any(|f| f.ends_with("part-orphan.parquet")),
            "{listed:?}"
        );
        assert!(orphan.exists());
        table.remove_orphans(zero, &[], false).await.unwrap();
        assert!(!orphan.exists());
        assert_eq!(all_ids(&table).await, vec![4, 5, 6]);
    }
}
