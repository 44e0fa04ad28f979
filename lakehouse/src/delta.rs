//! Delta Lake tables (delta-rs): fenced appends whose Kafka offsets travel in the same commit
//! as one `txn` action per partition (app id `medallion:TOPIC:PARTITION`, version the next
//! offset), the way Delta's streaming writers record progress.
//!
//! The fence is the Iceberg one ([`OffsetFence`]): a commit lands only if the table still holds
//! the offsets its batch started from. delta-rs pins the commit to the version it was built on
//! and rejects it when a commit after that one set a `txn` it also sets; a concurrent commit
//! of other partitions only makes it retry on top.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use serde_json::Value;

use crate::offsets::{OffsetFence, SourceOffsets};
use crate::table::{CommitOutcome, TableDefinition};
use crate::{Error, Result};

/// Commits rebuilt on a concurrent commit of other partitions before giving up.
const MAX_CONFLICTS: usize = 20;

/// Data files written for a Delta commit that has not happened yet.
#[derive(Debug, Default)]
pub struct StagedAdds(Vec<Add>);

/// A Delta table in a directory of the warehouse.
pub struct DeltaLakeTable {
    name: String,
    table: DeltaTable,
    arrow_schema: SchemaRef,
}

impl std::fmt::Debug for DeltaLakeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaLakeTable")
            .field("name", &self.name)
            .finish()
    }
}

fn delta_err(table: &str, op: &'static str) -> impl FnOnce(DeltaTableError) -> Error {
    let table = table.to_string();
    move |e| Error::Delta {
        table,
        op,
        // The kernel's errors carry a backtrace on further lines.
        message: e.to_string().lines().next().unwrap_or_default().to_string(),
    }
}

/// A schema the kernel refused, named (its errors carry a backtrace on further lines).
fn schema_err(table: &str, e: impl std::fmt::Display) -> Error {
    let message = e.to_string();
    let first = message.lines().next().unwrap_or_default();
    Error::Config(format!("table {table}: schema: {first}"))
}

/// `schema` with its timestamps as Delta has them: microseconds in `UTC` (the tables' Arrow
/// schemas name UTC `+00:00`, which Delta refuses).
fn delta_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(_, Some(_)) => f.as_ref().clone().with_data_type(
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The app id of a partition's `txn` action.
fn app_id(topic: &str, partition: i32) -> String {
    format!("medallion:{topic}:{partition}")
}

impl DeltaLakeTable {
    /// Loads the table at `location` (a directory), creating it when it has no log yet.
    pub async fn open_or_create(location: &str, def: &TableDefinition) -> Result<Self> {
        let name = def.name.clone();
        std::fs::create_dir_all(location)
            .map_err(|e| Error::Config(format!("table {name}: cannot create {location}: {e}")))?;
        let url = url::Url::from_directory_path(location).map_err(|()| {
            Error::Config(format!(
                "table {name}: {location} is not an absolute directory"
            ))
        })?;
        let mut table = DeltaTableBuilder::from_url(url)
            .and_then(|b| b.build())
            .map_err(delta_err(&name, "open"))?;
        match table.load().await {
            Ok(()) | Err(DeltaTableError::NotATable(_)) => {}
            Err(e) => return Err(delta_err(&name, "open")(e)),
        }
        let table = match table.version() {
            Some(_) => table,
            None => {
                let schema: StructType = delta_schema(&def.schema)
                    .as_ref()
                    .try_into_kernel()
                    .map_err(|e| schema_err(&name, e))?;
                table
                    .create()
                    .with_table_name(name.clone())
                    .with_columns(schema.fields().cloned())
                    .with_save_mode(SaveMode::Ignore)
                    .await
                    .map_err(delta_err(&name, "create"))?
            }
        };
        let arrow_schema = arrow_schema(&table, &name)?;
        Ok(Self {
            name,
            table,
            arrow_schema,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    /// The table's newest version.
    pub async fn refresh(&mut self) -> Result<()> {
        self.table
            .update_state()
            .await
            .map_err(delta_err(&self.name, "refresh"))?;
        self.arrow_schema = arrow_schema(&self.table, &self.name)?;
        Ok(())
    }

    /// The next offset of each of `partitions` that the table holds.
    pub async fn stored_offsets(&self, partitions: &[(String, i32)]) -> Result<SourceOffsets> {
        let mut out = SourceOffsets::default();
        let Ok(state) = self.table.snapshot() else {
            return Ok(out);
        };
        let log_store = self.table.log_store();
        for (topic, partition) in partitions {
            let version = state
                .transaction_version(log_store.as_ref(), app_id(topic, *partition))
                .await
                .map_err(delta_err(&self.name, "read txn"))?;
            if let Some(next) = version {
                out.set(topic, *partition, next);
            }
        }
        Ok(out)
    }

    /// Writes `batch` as data files of the table, not committed yet.
    pub async fn write(&self, batch: &RecordBatch) -> Result<StagedAdds> {
        let columns = self
            .arrow_schema
            .fields()
            .iter()
            .map(|field| {
                let column = batch.column_by_name(field.name()).ok_or_else(|| {
                    Error::Config(format!(
                        "table {}: the batch has no column {}",
                        self.name,
                        field.name()
                    ))
                })?;
                Ok(arrow::compute::cast(column, field.data_type())?)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(self.arrow_schema.clone(), columns)?;
        let mut writer =
            RecordBatchWriter::for_table(&self.table).map_err(delta_err(&self.name, "write"))?;
        writer
            .write(batch)
            .await
            .map_err(delta_err(&self.name, "write"))?;
        let adds = writer
            .flush()
            .await
            .map_err(delta_err(&self.name, "write"))?;
        Ok(StagedAdds(adds))
    }

    /// Appends `staged` with the partitions of `fence` moved in `txn` actions and the `extra`
    /// commit metadata, if and only if the table still holds the offsets the batch started from.
    pub async fn commit_append(
        &mut self,
        staged: StagedAdds,
        fence: &OffsetFence,
        extra: &[(String, String)],
    ) -> Result<CommitOutcome> {
        let partitions = fence.partitions();
        let mut conflicts = 0;
        loop {
            let stored = self.stored_offsets(&partitions).await?;
            let next = match fence.apply(&stored) {
                Ok(next) => next,
                Err(violation) => return Ok(CommitOutcome::Fenced(violation)),
            };
            let txns = partitions
                .iter()
                .filter_map(|(t, p)| next.get(t, *p).map(|o| Transaction::new(app_id(t, *p), o)))
                .collect();
            let metadata: HashMap<String, Value> = extra
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let state = self
                .table
                .snapshot()
                .map_err(delta_err(&self.name, "commit"))?;
            let operation = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            };
            // One attempt: a conflict is judged here, against the offsets, not by delta-rs' retry.
            let commit = CommitBuilder::from(
                CommitProperties::default()
                    .with_max_retries(0)
                    .with_application_transactions(txns)
                    .with_metadata(metadata),
            )
            .with_actions(staged.0.iter().cloned().map(Action::Add).collect())
            .build(Some(state), self.table.log_store(), operation)
            .await;
            match commit {
                Ok(done) => {
                    let version = done.version();
                    // An append leaves the schema as it was: the committed state is the table's.
                    self.table.state = Some(done.snapshot());
                    return Ok(CommitOutcome::Committed {
                        snapshot_id: i64::try_from(version).unwrap_or(i64::MAX),
                    });
                }
                Err(
                    DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_),
                ) if conflicts < MAX_CONFLICTS => {
                    conflicts += 1;
                    tracing::debug!(table = %self.name, conflicts, "commit conflict, checking the offsets again");
                    self.refresh().await?;
                }
                Err(e) => return Err(delta_err(&self.name, "commit")(e)),
            }
        }
    }
}

fn arrow_schema(table: &DeltaTable, name: &str) -> Result<SchemaRef> {
    let state = table.snapshot().map_err(delta_err(name, "schema"))?;
    let schema: Schema = state
        .schema()
        .as_ref()
        .try_into_arrow()
        .map_err(|e| schema_err(name, e))?;
    Ok(Arc::new(schema))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rows;

    fn fence(moves: &[(i32, Option<i64>, i64)]) -> OffsetFence {
        let mut f = OffsetFence::default();
        for (p, from, to) in moves {
            f.cover("t", *p, *from, *to);
        }
        f
    }

    #[tokio::test]
    async fn appends_are_fenced_on_their_partitions_only() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("bronze").join("events");
        let location = location.to_str().unwrap();
        let def = TableDefinition {
            name: "bronze.events".into(),
            schema: rows(&[], |i| i).schema(),
            partition_by_day: None,
        };
        let mut a = DeltaLakeTable::open_or_create(location, &def)
            .await
            .unwrap();
        let mut b = DeltaLakeTable::open_or_create(location, &def)
            .await
            .unwrap();
        let all = [("t".to_string(), 0), ("t".to_string(), 1)];

        let staged = a.write(&rows(&[1, 2], |i| i)).await.unwrap();
        let extra = [("medallion.x".to_string(), "1".to_string())];
        let done = a
            .commit_append(staged, &fence(&[(0, None, 2)]), &extra)
            .await
            .unwrap();
        assert!(matches!(done, CommitOutcome::Committed { .. }));

        // `b` still holds the table before that commit: its commit of partition 1 is rebuilt on
        // top; its commit of partition 0 from the old offset is refused.
        let staged = b.write(&rows(&[3], |i| i)).await.unwrap();
        let done = b
            .commit_append(staged, &fence(&[(1, None, 1)]), &[])
            .await
            .unwrap();
        assert!(matches!(done, CommitOutcome::Committed { .. }));
        let staged = b.write(&rows(&[4], |i| i)).await.unwrap();
        match b
            .commit_append(staged, &fence(&[(0, None, 1)]), &[])
            .await
            .unwrap()
        {
            CommitOutcome::Fenced(v) => assert_eq!((v.expected, v.found), (None, Some(2))),
            other => panic!("{other:?}"),
        }

        a.refresh().await.unwrap();
        let stored = a.stored_offsets(&all).await.unwrap();
        assert_eq!((stored.get("t", 0), stored.get("t", 1)), (Some(2), Some(1)));
        let reopened = DeltaLakeTable::open_or_create(location, &def)
            .await
            .unwrap();
        assert_eq!(reopened.table.version(), Some(2));
        assert_eq!(reopened.arrow_schema().fields().len(), 2);
    }
}
