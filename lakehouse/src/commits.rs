//! The commit history of a Delta or Parquet table as the stages that follow it read it: which
//! commits brought rows, the files they added, and what each commit says of itself. It
//! answers the questions Iceberg's snapshot ancestry answers for Iceberg tables
//! (`increments.rs`), with commit versions as snapshot ids.

use std::collections::{HashMap, HashSet};

use crate::increments::DataFiles;
use crate::{Error, Result};

/// One commit, as a follower sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Commit {
    pub version: i64,
    pub at_ms: i64,
    /// The data files it added (path relative to the table, rows when known) if it only
    /// added rows; `None` when it brought no new ones (a rewrite, a schema change, offsets
    /// alone).
    pub appended: Option<Vec<(String, Option<u64>)>>,
    /// Whether it removed rows (an update, a compaction).
    pub rewrote: bool,
    /// What it says of itself: Delta's `commitInfo` strings, our Parquet log's `commit`.
    pub info: HashMap<String, String>,
}

/// The commits a table's log keeps, oldest first. When the log was cut (Delta removes old
/// commit files after a checkpoint), the oldest is a `root`: it stands for every row before it.
#[derive(Debug, Default)]
pub(crate) struct CommitLog {
    commits: Vec<Commit>,
}

impl CommitLog {
    /// The version after the newest commit read.
    pub fn next_version(&self) -> Option<i64> {
        self.commits.last().map(|c| c.version + 1)
    }

    pub fn push(&mut self, commit: Commit) {
        self.commits.push(commit);
    }

    /// The commits after `after` (from the start, for `None`) that brought rows, oldest
    /// first. Fails when `after` is not in the history: before the oldest commit kept (the
    /// log was cut since), or after the newest (another table of the same name).
    pub fn appends_after(&self, table: &str, after: Option<i64>) -> Result<Vec<i64>> {
        if let Some(after) = after {
            let first = self.commits.first().map_or(0, |c| c.version);
            let last = self.commits.last().map_or(-1, |c| c.version);
            if after < first || after > last {
                return Err(Error::Config(format!(
                    "table {table}: version {after} is not in its history (it keeps {first}..={last})"
                )));
            }
        }
        Ok(self
            .commits
            .iter()
            .filter(|c| after.is_none_or(|a| c.version > a) && c.appended.is_some())
            .map(|c| c.version)
            .collect())
    }

    /// The rows the commits `versions` added, `None` when a file's count is unknown.
    pub fn added_rows(&self, versions: &[i64]) -> Option<u64> {
        let wanted: HashSet<i64> = versions.iter().copied().collect();
        self.commits
            .iter()
            .filter(|c| wanted.contains(&c.version))
            .flat_map(|c| c.appended.iter().flatten())
            .map(|(_, rows)| *rows)
            .sum()
    }

    /// Per commit of `versions`, the data files it added.
    pub fn files_added_by(&self, table: &str, versions: &[i64]) -> Result<HashMap<i64, DataFiles>> {
        versions
            .iter()
            .map(|v| {
                let commit = self.get(*v).ok_or_else(|| {
                    Error::Config(format!("table {table}: version {v} is not in its log"))
                })?;
                let files = commit.appended.iter().flatten();
                let files = files.map(|(p, rows)| (p.clone(), rows.unwrap_or(0)));
                Ok((*v, DataFiles::from_paths(files.collect())))
            })
            .collect()
    }

    /// A commit's order and time: (version, commit time in milliseconds).
    pub fn meta(&self, version: i64) -> Option<(i64, i64)> {
        self.get(version).map(|c| (c.version, c.at_ms))
    }

    /// Whether a commit after `after` removed rows.
    pub fn rewritten_after(&self, after: i64) -> bool {
        self.commits.iter().any(|c| c.version > after && c.rewrote)
    }

    /// Every commit kept, newest first: (version, time in milliseconds, what it says of itself).
    pub fn history(&self) -> impl Iterator<Item = (i64, i64, &HashMap<String, String>)> {
        self.commits
            .iter()
            .rev()
            .map(|c| (c.version, c.at_ms, &c.info))
    }

    fn get(&self, version: i64) -> Option<&Commit> {
        let first = self.commits.first()?.version;
        let commit = self.commits.get(usize::try_from(version - first).ok()?)?;
        (commit.version == version).then_some(commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(version: i64, files: Option<&[(&str, u64)]>, rewrote: bool) -> Commit {
        Commit {
            version,
            at_ms: version * 1000,
            appended: files.map(|f| f.iter().map(|(p, r)| (p.to_string(), Some(*r))).collect()),
            rewrote,
            info: HashMap::new(),
        }
    }

    #[test]
    fn appends_are_the_commits_that_only_added_rows() {
        let mut log = CommitLog::default();
        log.push(commit(0, None, false));
        log.push(commit(1, Some(&[("a", 2)]), false));
        log.push(commit(2, None, true));
        log.push(commit(3, Some(&[("b", 3), ("c", 4)]), false));
        assert_eq!(log.appends_after("t", None).unwrap(), vec![1, 3]);
        assert_eq!(log.appends_after("t", Some(1)).unwrap(), vec![3]);
        assert_eq!(log.appends_after("t", Some(3)).unwrap(), Vec::<i64>::new());
        assert!(log.appends_after("t", Some(4)).is_err());
        assert_eq!(log.added_rows(&[1, 3]), Some(9));
        let files = log.files_added_by("t", &[3]).unwrap();
        assert_eq!(files[&3].clone().into_paths(), vec!["b", "c"]);
        assert_eq!(log.meta(3), Some((3, 3000)));
        assert!(log.rewritten_after(1));
        assert!(!log.rewritten_after(2));

        // A log cut before version 2: an older cursor is refused.
        let mut cut = CommitLog::default();
        cut.push(commit(2, Some(&[("a", 2)]), false));
        cut.push(commit(3, Some(&[("b", 1)]), false));
        assert_eq!(cut.appends_after("t", None).unwrap(), vec![2, 3]);
        assert!(cut.appends_after("t", Some(1)).is_err());
        assert_eq!(cut.meta(3), Some((3, 3000)));
        assert_eq!(cut.meta(1), None);
    }
}
