/// Errors of the pipelines crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline spec is unusable; the message names the file and the key.
    #[error("{0}")]
    Spec(String),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    Lakehouse(#[from] lakehouse::Error),
    #[error(transparent)]
    Schema(#[from] schemas::Error),
    #[error(transparent)]
    Registry(#[from] schemas::registry::RegistryError),
    /// A stage of one table cannot go on.
    #[error("{table}: {message}")]
    Stage { table: String, message: String },
    /// A `medallion query` could not be run.
    #[error("query: {0}")]
    Query(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
