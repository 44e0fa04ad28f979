//! Registry failures, each with the error code and message the Confluent Schema Registry uses,
//! so existing clients (and their retry logic) understand them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub(crate) type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("HTTP 404 Not Found")]
    RouteNotFound,
    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,
    /// The body is not JSON (400) or not the expected shape (422), as Jackson reports them.
    #[error("{0}")]
    Body(serde_json::Error),
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("Schema {0} not found")]
    SchemaIdNotFound(i64),
    #[error("Schema not found")]
    SchemaNotFound,
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted { subject: String, version: i64 },
    #[error(
        "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted { subject: String, version: i64 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    NoSubjectCompatibility(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    NoSubjectMode(String),
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{details}]"
    )]
    Incompatible { subject: String, details: String },
    #[error("Invalid schema {0}")]
    InvalidSchema(String),
    #[error("Schema type {0} is not supported by medallion registry serve (only AVRO)")]
    UnsupportedSchemaType(String),
    #[error("schema references are not supported by medallion registry serve")]
    ReferencesUnsupported,
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibilityLevel,
    #[error("Invalid mode. Valid values are READWRITE, READONLY, IMPORT")]
    InvalidMode,
    #[error("Subject {0} is in read-only mode")]
    ReadOnly(String),
    #[error("Cannot import since found existing subjects")]
    ImportNotEmpty,
    #[error("Overwrite new schema with id {0} is not permitted.")]
    ImportIdTaken(i64),
    #[error("The schema is already registered with id {id}, not {wanted}")]
    ImportSchemaHasId { id: i64, wanted: i64 },
    #[error("Overwrite new schema with version {0} is not permitted.")]
    ImportVersionTaken(i64),
    #[error("Error in the backend data store - {0}")]
    Store(#[from] sqlx::Error),
    /// A stored value no longer means anything (written by hand, or by a newer version).
    #[error("Error in the backend data store - {0}")]
    Corrupt(String),
}

impl RegistryError {
    /// Confluent's error code; its first three digits are the HTTP status.
    pub(crate) fn code(&self) -> u32 {
        use RegistryError::*;
        match self {
            RouteNotFound => 404,
            MethodNotAllowed => 405,
            Body(e) if e.is_data() => 422,
            Body(_) => 400,
            SubjectNotFound(_) => 40401,
            VersionNotFound(_) => 40402,
            SchemaIdNotFound(_) | SchemaNotFound => 40403,
            SubjectSoftDeleted(_) => 40404,
            SubjectNotSoftDeleted(_) => 40405,
            VersionSoftDeleted { .. } => 40406,
            VersionNotSoftDeleted { .. } => 40407,
            NoSubjectCompatibility(_) => 40408,
            NoSubjectMode(_) => 40409,
            Incompatible { .. } => 409,
            InvalidSchema(_) | UnsupportedSchemaType(_) | ReferencesUnsupported => 42201,
            InvalidVersion(_) => 42202,
            InvalidCompatibilityLevel => 42203,
            InvalidMode => 42204,
            ReadOnly(_)
            | ImportNotEmpty
            | ImportIdTaken(_)
            | ImportSchemaHasId { .. }
            | ImportVersionTaken(_) => 42205,
            Store(_) | Corrupt(_) => 50001,
        }
    }

    fn status(&self) -> StatusCode {
        let code = self.code();
        let status = if code >= 1000 { code / 100 } else { code };
        u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        if self.code() >= 50000 {
            tracing::error!(error = %self, "registry request failed");
        }
        let body = serde_json::json!({ "error_code": self.code(), "message": self.to_string() });
        super::api::reply(self.status(), &body)
    }
}
