//! Pipelines: the spec file and the stages that move data from Kafka into the lakehouse.

pub mod bronze;
mod error;
pub mod silver;
pub mod source;
pub mod spec;

pub use error::{Error, Result};
