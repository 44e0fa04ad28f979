//! Listing and deleting the files under a table's location, which Iceberg's FileIO cannot
//! list: the local filesystem, or S3 through OpenDAL with the catalog's S3 settings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures::TryStreamExt;
use iceberg::io::{S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION};
use opendal::services::S3;
use opendal::{EntryMode, Operator};

use crate::error::{Error, Result};

/// A file as the store lists it.
pub(crate) struct ListedFile {
    /// In the form [`Store::key`] gives referenced locations.
    pub location: String,
    pub modified: SystemTime,
}

/// Where a table's files are.
pub(crate) enum Store {
    Local {
        root: PathBuf,
    },
    S3 {
        op: Operator,
        bucket: String,
        prefix: String,
    },
}

impl Store {
    /// The store of a table located at `root`; `s3` are the catalog's `s3.*` properties.
    pub fn of(root: &str, s3: &HashMap<String, String>) -> Result<Self> {
        let unsupported = || {
            Error::Config(format!(
                "cannot list the files under {root}: only local and s3:// locations can be"
            ))
        };
        let Some(rest) = root
            .strip_prefix("s3://")
            .or_else(|| root.strip_prefix("s3a://"))
        else {
            return local_path(root)
                .map(|root| Self::Local { root })
                .ok_or_else(unsupported);
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut builder = S3::default().bucket(bucket).root("/");
        if let Some(endpoint) = s3.get(S3_ENDPOINT) {
            builder = builder.endpoint(endpoint);
        }
        if let Some(region) = s3.get(S3_REGION) {
            builder = builder.region(region);
        }
        if s3.get(S3_PATH_STYLE_ACCESS).map(String::as_str) != Some("true") {
            builder = builder.enable_virtual_host_style();
        }
        let op = Operator::new(builder)
            .map_err(|e| Error::Config(format!("S3 bucket {bucket}: {e}")))?
            .finish();
        Ok(Self::S3 {
            op,
            bucket: bucket.to_string(),
            prefix: format!("{}/", prefix.trim_end_matches('/')),
        })
    }

    /// A referenced location in the form the listing gives, so the two compare.
    pub fn key(&self, location: &str) -> Option<String> {
        match self {
            Self::Local { .. } => local_path(location).map(|p| p.display().to_string()),
            Self::S3 { .. } => location
                .strip_prefix("s3a://")
                .map(|rest| format!("s3://{rest}"))
                .or_else(|| location.starts_with("s3://").then(|| location.to_string())),
        }
    }

    /// A location under the table's root, in listing form (for files readers look for that
    /// no metadata names, such as `version-hint.text`).
    pub fn under_root(&self, relative: &str) -> String {
        match self {
            Self::Local { root } => root.join(relative).display().to_string(),
            Self::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}{relative}"),
        }
    }

    /// Every file under the root, at any depth.
    pub async fn list(&self) -> Result<Vec<ListedFile>> {
        match self {
            Self::Local { root } => list_local(root),
            Self::S3 { op, bucket, prefix } => {
                let s3_err =
                    |e: opendal::Error| Error::Config(format!("s3://{bucket}/{prefix}: {e}"));
                let entries: Vec<_> = op
                    .lister_with(prefix)
                    .recursive(true)
                    .await
                    .map_err(s3_err)?
                    .try_collect()
                    .await
                    .map_err(s3_err)?;
                let mut out = Vec::new();
                for entry in entries {
                    if entry.metadata().mode() != EntryMode::FILE {
                        continue;
                    }
                    let modified = match entry.metadata().last_modified() {
                        Some(t) => t.into(),
                        None => op
                            .stat(entry.path())
                            .await
                            .map_err(s3_err)?
                            .last_modified()
                            .map(Into::into)
                            .unwrap_or_else(SystemTime::now),
                    };
                    out.push(ListedFile {
                        location: format!("s3://{bucket}/{}", entry.path()),
                        modified,
                    });
                }
                Ok(out)
            }
        }
    }

    /// Deletes a listed file.
    pub async fn delete(&self, location: &str) -> Result<()> {
        match self {
            Self::Local { .. } => std::fs::remove_file(location)
                .map_err(|e| Error::Config(format!("cannot delete {location}: {e}"))),
            Self::S3 { op, bucket, .. } => {
                let key = location
                    .strip_prefix(&format!("s3://{bucket}/"))
                    .unwrap_or(location);
                op.delete(key)
                    .await
                    .map_err(|e| Error::Config(format!("cannot delete {location}: {e}")))
            }
        }
    }
}

fn list_local(root: &Path) -> Result<Vec<ListedFile>> {
    let io_err = |path: &Path, e: std::io::Error| Error::Config(format!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| io_err(&path, e))?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            out.push(ListedFile {
                location: path.display().to_string(),
                modified: meta.modified().map_err(|e| io_err(&path, e))?,
            });
        }
    }
    Ok(out)
}

/// The local path of a location: a plain path or a `file:` URL.
pub(crate) fn local_path(location: &str) -> Option<PathBuf> {
    if let Some(rest) = location.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    match location.contains("://") {
        true => None,
        false => Some(PathBuf::from(location)),
    }
}
