//! `medallion quality report`: per table what came in, what was dropped and why, how the
//! expectations fared, what the columns hold, how fresh the table is and how far behind its
//! source, and its schema versions; as JSON (a stable shape, [`model`]), Markdown or a
//! self-contained HTML page with inline SVG charts.
//!
//! Everything comes from what the pipelines committed (snapshot summaries, `quality.expectations`,
//! the tables' rows), the dead-letter topics and the topics' end offsets: the report needs no
//! state of its own, so any machine that reaches the catalog and Kafka can produce it.

mod gather;
mod html;
mod kafka;
mod markdown;
pub mod model;
mod profile;
mod text;

use std::sync::Arc;
use std::time::Duration;

use lakehouse::Catalog;
use pipelines::spec::PipelineSpec;

pub use model::QualityReport;

/// Errors of the report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lakehouse(#[from] lakehouse::Error),
    #[error(transparent)]
    Pipelines(#[from] pipelines::Error),
    /// A table's committed state is not what medallion writes.
    #[error("{table}: {message}")]
    Table { table: String, message: String },
    #[error("rendering the report: {0}")]
    Render(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the report covers.
#[derive(Debug, Clone)]
pub struct Options {
    /// The period: commits, dead letters and expectation results from this long ago until now.
    pub since: Duration,
    /// Profile at most about this many rows of each table (its first data files').
    pub sample_rows: usize,
    /// Dead-letter records shown per table and reason.
    pub samples_per_reason: usize,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Markdown,
    Html,
}

/// Builds the report for the tables of `spec` (named `spec_name` in it).
pub async fn build(
    spec: &PipelineSpec,
    spec_name: &str,
    catalog: Arc<Catalog>,
    options: &Options,
) -> Result<QualityReport> {
    gather::report(spec, spec_name, catalog, options).await
}

/// The report as text in `format`.
pub fn render(report: &QualityReport, format: Format) -> Result<String> {
    match format {
        Format::Json => serde_json::to_string_pretty(report)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| Error::Render(e.to_string())),
        Format::Markdown => Ok(markdown::render(report)),
        Format::Html => Ok(html::render(report)),
    }
}
