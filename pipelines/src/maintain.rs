//! What table maintenance needs to know of the tables the pipelines write: the snapshot
//! properties that hold their state, the snapshots of a table that the stages following it
//! still need, and how long each layer keeps its rows.

use std::sync::Arc;
use std::time::Duration;

use lakehouse::{Catalog, IcebergTable, KAFKA_OFFSETS_PROPERTY};

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

/// The snapshots of `table` that a silver or gold table reading it still starts from (its
/// cursor, and the first snapshot a gold restart replays), with the reader's name.
pub async fn followed_snapshots(
    catalog: &Arc<Catalog>,
    table: &IcebergTable,
) -> Result<Vec<(String, i64)>> {
    let own = table.name();
    let mut found = Vec::new();
    for name in catalog.table_names().await? {
        if name == own {
            continue;
        }
        let reader = IcebergTable::open(catalog.clone(), &name).await?;
        let mut starts: Vec<i64> = [crate::silver::CURSOR_PROPERTY, crate::gold::CURSOR_PROPERTY]
            .iter()
            .filter_map(|key| reader.snapshot_property(key)?.parse().ok())
            .collect();
        if let Some(state) = reader.snapshot_property(crate::gold::STATE_PROPERTY) {
            starts.extend(crate::gold::replay_from(state));
        }
        for id in starts {
            if table.snapshot_meta(id).is_some() {
                found.push((name.clone(), id));
            }
        }
    }
    Ok(found)
}
