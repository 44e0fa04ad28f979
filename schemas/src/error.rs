/// Errors of the schemas crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not a valid Avro schema: {message}")]
    InvalidSchema { origin: String, message: String },
    #[error("{origin}: field {field}: {message}")]
    UnsupportedField {
        origin: String,
        field: String,
        message: String,
    },
    #[error("not in the Confluent wire format: {0}")]
    BadFraming(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
