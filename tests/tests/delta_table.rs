//! lakehouse's Delta tables, judged by readers we did not write: after fenced appends (one of
//! them refused) past the first checkpoint, DuckDB's delta extension and polars read the same
//! rows, and the deltalake package reads each partition's Kafka offset from the `txn` actions.

use std::sync::Arc;

use anyhow::Result;
use arrow::array::{Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use e2e::{peer_json, Workspace};
use lakehouse::{CommitOutcome, DeltaLakeTable, OffsetFence, TableDefinition};

fn rows(ids: std::ops::Range<i64>) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]));
    let times: Vec<i64> = ids
        .clone()
        .map(|i| 1_800_000_000_000_000 + i * 1_000)
        .collect();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("+00:00")),
        ],
    )?)
}

#[tokio::test]
async fn peers_read_the_rows_and_offsets_of_fenced_delta_appends() -> Result<()> {
    let ws = Workspace::new()?;
    let location = ws.path().join("delta").join("events");
    let location = location.display().to_string();
    let def = TableDefinition {
        name: "bronze.events".into(),
        schema: rows(0..0)?.schema(),
        partition_by_day: None,
    };
    let mut table = DeltaLakeTable::open_or_create(&location, &def).await?;
    let mut stale = DeltaLakeTable::open_or_create(&location, &def).await?;
    // Partition 0 takes offsets 0..600 in two batches, partition 1 offsets 0..400.
    let commits = [
        (0, None, 300, 0..300),
        (1, None, 400, 300..700),
        (0, Some(300), 600, 700..1000),
    ];
    for (partition, from, to, ids) in commits {
        let mut fence = OffsetFence::default();
        fence.cover("events", partition, from, to);
        let staged = table.write(&rows(ids)?).await?;
        let done = table.commit_append(staged, &fence, &[]).await?;
        assert!(matches!(done, CommitOutcome::Committed { .. }), "{done:?}");
    }
    // A writer that still believes partition 0 is at 300 is refused, and writes nothing.
    let mut fence = OffsetFence::default();
    fence.cover("events", 0, Some(300), 500);
    let staged = stale.write(&rows(2000..2200)?).await?;
    let refused = stale.commit_append(staged, &fence, &[]).await?;
    assert!(matches!(refused, CommitOutcome::Fenced(_)), "{refused:?}");

    // Partition 2 one record per commit, to version 103: delta-rs writes a checkpoint every
    // `delta.checkpointInterval` (default 100) commits, here after the 100th (version 99).
    for offset in 0..100 {
        let mut fence = OffsetFence::default();
        fence.cover("events", 2, (offset > 0).then_some(offset), offset + 1);
        let staged = table.write(&rows(1000 + offset..1001 + offset)?).await?;
        let done = table.commit_append(staged, &fence, &[]).await?;
        assert!(matches!(done, CommitOutcome::Committed { .. }), "{done:?}");
    }
    let log = std::path::Path::new(&location).join("_delta_log");
    assert!(log
        .join("00000000000000000099.checkpoint.parquet")
        .is_file());
    let last: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(log.join("_last_checkpoint"))?)?;
    assert_eq!(last["version"], 99, "{last}");

    let seen = peer_json(
        "read_delta.py",
        &[
            "--path",
            &location,
            "--app-id",
            "medallion:events:0",
            "--app-id",
            "medallion:events:1",
            "--app-id",
            "medallion:events:2",
        ],
    )?;
    let expected = serde_json::json!({
        "count": 1100,
        "sum_id": (0..1100).sum::<i64>(),
        "min_ts": 1_800_000_000_000_000_i64,
        "max_ts": 1_800_000_000_000_000_i64 + 1099 * 1_000,
    });
    assert_eq!(seen["duckdb"], expected, "{seen}");
    assert_eq!(seen["polars"], expected, "{seen}");
    assert_eq!(seen["version"], 103, "{seen}");
    assert_eq!(
        seen["txn"],
        serde_json::json!({"medallion:events:0": 600, "medallion:events:1": 400, "medallion:events:2": 100})
    );
    Ok(())
}
