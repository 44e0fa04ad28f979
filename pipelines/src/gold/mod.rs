//! The gold stage: event-time windowed aggregates of a silver table.

pub mod aggregate;
pub mod window;
