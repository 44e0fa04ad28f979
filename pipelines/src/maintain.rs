//! What table maintenance needs to know of the tables the pipelines write: the snapshot
//! properties that hold their state, the snapshots of a table that the stages following it
//! still need, and how long each layer keeps its rows.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lakehouse::{Catalog, Table, KAFKA_OFFSETS_PROPERTY};

use crate::error::Result;

/// Snapshot properties that hold a pipeline's state; a table's newest value of each is its
/// state (bronze offsets, silver and gold cursors, the gold checkpoint).
pub const STATE_PROPERTIES: [&str; 4] = [
    KAFKA_OFFSETS_PROPERTY,
    crate::silver::CURSOR_PROPERTY,
    crate::gold::CURSOR_PROPERTY,
    crate::gold::STATE_PROPERTY,
];

const DAY: Duration = Duration::from_secs(86_400);

/// How long a layer keeps rows unless told otherwise: bronze 90 days, silver 2 years, gold 7
/// years (by the table's namespace); other tables have no default.
pub fn default_retention(table: &str) -> Option<Duration> {
    let days = match table.split('.').next()? {
        "bronze" => 90,
        "silver" => 2 * 365,
        "gold" => 7 * 365,
        _ => return None,
    };
    Some(DAY * days)
}

/// The commits of `table` (snapshot ids, or Delta versions) that a silver or gold table
/// reading it still starts from (its cursor, and the first commit a gold restart replays),
/// with the reader's name. Readers are the catalog's tables and the tables named in `also`
/// (Delta and Parquet tables are not in the catalog), in any format.
pub async fn followed_snapshots(
    catalog: &Arc<Catalog>,
    table: &mut Table,
    also: &[String],
) -> Result<Vec<(String, i64)>> {
    let own = table.name();
    let known: HashSet<i64> = table
        .history()
        .await?
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    let mut names: BTreeSet<String> = catalog.table_names().await?.into_iter().collect();
    names.extend(also.iter().cloned());
    let mut found = Vec::new();
    for name in names {
        if name == own {
            continue;
        }
        let Some(reader) = Table::open_existing(catalog.clone(), &name).await? else {
            continue;
        };
        let mut starts = Vec::new();
        for key in [crate::silver::CURSOR_PROPERTY, crate::gold::CURSOR_PROPERTY] {
            starts.extend(
                reader
                    .cursor(key)
                    .await?
                    .and_then(|c| c.parse::<i64>().ok()),
            );
        }
        if let Some(state) = reader.commit_property(crate::gold::STATE_PROPERTY) {
            starts.extend(crate::gold::replay_from(state));
        }
        for id in starts {
            if known.contains(&id) {
                found.push((name.clone(), id));
            }
        }
    }
    Ok(found)
}
