//! Event schemas: Avro schema files, the Confluent wire format and the mapping of events to
//! Arrow columns.

mod error;
mod event;
pub mod wire;

pub use error::{Error, Result};
pub use event::{EventField, EventSchema, FieldKind, UTC};
