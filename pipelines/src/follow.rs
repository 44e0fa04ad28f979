//! How a derived table (silver, gold) follows its source: woken by this process's commits,
//! polling the catalog for other processes'.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lakehouse::{Catalog, Staged, Table, TableFormat};
use tokio::sync::watch;

use crate::error::Result;

/// Snapshot property of a backfill commit: the range it rebuilt (JSON).
const BACKFILL_PROPERTY: &str = "medallion.backfill";

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

/// The source table of `table` (in whichever format it is kept), once it exists; `None` when
/// there is nothing to do: `once` and no source yet, or `stop` turned true while waiting for it.
pub(crate) async fn open_source(
    catalog: &Arc<Catalog>,
    source: &str,
    table: &str,
    once: bool,
    poll: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Table>> {
    loop {
        if let Some(t) = Table::open_existing(catalog.clone(), source).await? {
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

/// The last source snapshot a table has consumed: its cursor `key`, whose value is `value`;
/// `None` before its first commit. The error says what the cursor holds instead.
pub(crate) fn parse_cursor(
    key: &str,
    value: Option<&str>,
) -> std::result::Result<Option<i64>, String> {
    match value {
        None => Ok(None),
        Some(c) => c
            .parse()
            .map(Some)
            .map_err(|_| format!("cursor {key} is {c:?}, not a snapshot id")),
    }
}

/// The table a backfill rebuilds (`name`, kept as `format`) and its `source`; refused when
/// the table cannot replace rows (Parquet) or either does not exist.
pub(crate) async fn open_for_backfill(
    catalog: &Arc<Catalog>,
    (name, format): (&str, TableFormat),
    source: &str,
) -> Result<(Table, Table)> {
    let refused = |message: String| crate::error::Error::Stage {
        table: name.to_string(),
        message,
    };
    if format == TableFormat::Parquet {
        return Err(refused(
            "a parquet table cannot replace rows; backfill needs an iceberg or delta table".into(),
        ));
    }
    let Some(table) = Table::open_if_exists(catalog.clone(), name, format).await? else {
        return Err(refused(
            "the table does not exist yet: run the pipeline first".into(),
        ));
    };
    let Some(source) = Table::open_existing(catalog.clone(), source).await? else {
        return Err(refused(format!("source table {source} does not exist")));
    };
    Ok((table, source))
}

/// A backfill's commit: swaps `remove` for `add` in one commit that keeps the cursor `key` at
/// `cursor` and records the `range` rebuilt, if the cursor has not moved and the files are
/// all still there; `false` when a live run committed meanwhile (start over).
pub(crate) async fn commit_backfill(
    table: &mut Table,
    remove: &HashSet<String>,
    add: Staged,
    (key, cursor): (&str, &str),
    range: String,
) -> Result<bool> {
    let info = [(BACKFILL_PROPERTY.to_string(), range)];
    let committed = table
        .commit_cursor(remove, add, (key, Some(cursor), cursor), &[], &info)
        .await?;
    if committed {
        crate::TABLE_COMMITS.notify_waiters();
    }
    Ok(committed)
}
