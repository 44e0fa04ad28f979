//! Event schemas: Avro schema files, the Confluent wire format, Avro compatibility rules, a
//! schema-registry client and the mapping of events to Arrow columns.

pub mod compat;
mod error;
mod event;
pub mod evolution;
pub mod registry;
pub mod wire;

pub use compat::{CompatibilityLevel, Incompatibility, IncompatibilityKind};
pub use error::{Error, Result};
pub use event::{EventField, EventSchema, FieldKind, UTC};
