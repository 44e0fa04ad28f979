//! The lakehouse layer: catalogs, Iceberg tables and the exactly-once commit protocol.
//!
//! A bronze commit carries, in its snapshot summary, the next Kafka offset of every partition
//! the table has consumed ([`SourceOffsets`]). [`IcebergTable::commit_append`] makes the commit
//! conditional on the table still holding the offsets the batch started from
//! ([`OffsetFence`]), so a worker that lost a partition cannot commit it twice.

mod catalog;
mod commits;
mod delta;
mod error;
mod files;
mod format;
mod increments;
mod listing;
mod maintain;
mod offsets;
mod parquet_table;
mod replace;
mod served;
mod table;
#[cfg(test)]
mod testing;

pub use catalog::{
    check_warehouse, connect, database_url, Catalog, LakehouseLocation, MetadataCommit, S3Settings,
    CATALOG_NAME,
};
pub use delta::{DeltaLakeTable, StagedAdds, VacuumReport};
pub use error::{Error, Result};
pub use format::{Staged, Table, TableFormat};
/// The REST request bodies `medallion catalog serve --read-write` takes.
pub use iceberg_catalog_rest::{CommitTableRequest, CreateTableRequest};
pub use increments::DataFiles;
pub use maintain::{
    CompactOptions, CompactReport, ExpireOptions, ExpireReport, OrphanReport, RetentionReport,
};
pub use offsets::{FenceViolation, OffsetFence, SourceOffsets, KAFKA_OFFSETS_PROPERTY};
pub use parquet_table::{ParquetTable, StagedParquet};
pub use replace::ReplaceOutcome;
pub use served::Served;
pub use table::{CommitOutcome, IcebergTable, StagedFiles, TableDefinition};
