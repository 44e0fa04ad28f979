//! What the lakehouse's unit tests share: a table of `(id, ts)` rows partitioned by day of
//! `ts`, in a catalog of its own.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::catalog::{connect, Catalog, LakehouseLocation};
use crate::table::{IcebergTable, TableDefinition};

pub(crate) const DAY: i64 = 86_400_000_000;

/// Rows with these ids, each at its time `ts(id)` (microseconds).
pub(crate) fn rows(ids: &[i64], ts: impl Fn(i64) -> i64) -> RecordBatch {
    let tz = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ts", tz, false),
    ]));
    let times: Vec<i64> = ids.iter().map(|id| ts(*id)).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("+00:00")),
        ],
    )
    .unwrap()
}

/// An unpartitioned table `name` of `(id, ts)` rows.
pub(crate) fn def(name: &str) -> TableDefinition {
    TableDefinition {
        name: name.into(),
        schema: rows(&[], |_| 0).schema(),
        partition_by_day: None,
    }
}

/// A new table `name` in a new catalog under a temporary directory (kept while it lives).
pub(crate) async fn day_table(name: &str) -> (tempfile::TempDir, Arc<Catalog>, IcebergTable) {
    let dir = tempfile::tempdir().unwrap();
    let location = LakehouseLocation {
        catalog_uri: format!("sqlite://{}/catalog.db", dir.path().display()),
        warehouse: Some(dir.path().join("wh").display().to_string()),
        s3: Default::default(),
    };
    let catalog = connect(&location).await.unwrap();
    let def = TableDefinition {
        name: name.into(),
        schema: rows(&[], |_| 0).schema(),
        partition_by_day: Some("ts".into()),
    };
    let table = IcebergTable::open_or_create(catalog.clone(), &def)
        .await
        .unwrap();
    (dir, catalog, table)
}

/// The ids of `batches`, sorted.
pub(crate) fn sorted_ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("id").unwrap();
            let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
            (0..ids.len()).map(|i| ids.value(i)).collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

/// The ids of every row of the table's current snapshot, sorted.
pub(crate) async fn ids(table: &IcebergTable) -> Vec<i64> {
    sorted_ids(&table.scan_columns(&["id".to_string()]).await.unwrap())
}
