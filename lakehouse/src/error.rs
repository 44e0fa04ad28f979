/// What went wrong in the lakehouse layer, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalog could not be reached or refused the request.
    #[error("catalog {uri}: {source}")]
    Catalog {
        uri: String,
        #[source]
        source: Box<iceberg::Error>,
    },
    /// A statement on the catalog's database failed.
    #[error("catalog {uri}: {source}")]
    CatalogSql {
        uri: String,
        #[source]
        source: sqlx::Error,
    },
    /// A REST catalog request failed or was answered with an error.
    #[error("catalog {uri}: {message}")]
    Rest { uri: String, message: String },
    /// A table operation failed.
    #[error("table {table}: {op}: {source}")]
    Table {
        table: String,
        op: &'static str,
        #[source]
        source: Box<iceberg::Error>,
    },
    /// A Delta table operation failed.
    #[error("table {table}: {op}: {message}")]
    Delta {
        table: String,
        op: &'static str,
        message: String,
    },
    /// The configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// Stored commit properties could not be parsed.
    #[error("table {table}: snapshot property {key} is not valid: {message}")]
    CorruptProperty {
        table: String,
        key: String,
        message: String,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn table_err(table: &str, op: &'static str) -> impl FnOnce(iceberg::Error) -> Error {
    let table = table.to_string();
    move |source| Error::Table {
        table,
        op,
        source: Box::new(source),
    }
}
