//! Pipelines: the spec file and the stages that move data from Kafka into the lakehouse.

pub mod bronze;
mod dlq;
mod error;
mod follow;
pub mod gold;
pub mod maintain;
pub mod metrics;
pub mod progress;
pub mod query;
pub mod silver;
pub mod source;
pub mod spec;

pub use error::{Error, Result};

/// Woken after every table commit of this process, so the stages reading the table (silver,
/// gold) read it at once instead of at their next poll.
pub(crate) static TABLE_COMMITS: tokio::sync::Notify = tokio::sync::Notify::const_new();
