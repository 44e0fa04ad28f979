//! How a derived table (silver, gold) follows its source: woken by this process's commits,
//! polling the catalog for other processes'.

use std::sync::Arc;
use std::time::Duration;

use lakehouse::{Catalog, IcebergTable};
use tokio::sync::watch;

use crate::error::Result;

/// Sleeps for `poll`, or until a table of this process commits, unless `stop` turns true
/// first; whether it did.
pub(crate) async fn wait(stop: &mut watch::Receiver<bool>, poll: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(poll) => false,
        _ = crate::TABLE_COMMITS.notified() => false,
        // A dropped sender means nobody can ask to stop: sleep on.
        Ok(_) = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// The source table of `table`, once it exists; `None` when there is nothing to do: `once`
/// and no source yet, or `stop` turned true while waiting for it.
pub(crate) async fn open_source(
    catalog: &Arc<Catalog>,
    source: &str,
    table: &str,
    once: bool,
    poll: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<IcebergTable>> {
    loop {
        if let Some(t) = IcebergTable::open_if_exists(catalog.clone(), source).await? {
            return Ok(Some(t));
        }
        if once {
            tracing::info!(%table, %source, "source table does not exist yet: nothing to do");
            return Ok(None);
        }
        if wait(stop, poll).await {
            return Ok(None);
        }
    }
}

/// The last source snapshot `table` has consumed: its cursor property `key`; `None` before
/// its first commit. The error says what the property holds instead.
pub(crate) fn cursor(table: &IcebergTable, key: &str) -> std::result::Result<Option<i64>, String> {
    match table.snapshot_property(key) {
        None => Ok(None),
        Some(c) => c
            .parse()
            .map(Some)
            .map_err(|_| format!("snapshot property {key} is {c:?}, not a snapshot id")),
    }
}
