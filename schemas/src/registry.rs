//! A client for the Confluent Schema Registry REST API, using only its public endpoints so it
//! works with Confluent SR, Karapace, Apicurio (ccompat), Redpanda and `medallion registry
//! serve` alike.
//!
//! Schemas fetched by id are cached for the life of the client (an id never changes its
//! schema), so decoding calls the registry once per new id, never per record. Network errors
//! and 5xx answers are retried with exponential backoff, moving to the next URL if several are
//! configured; the registry's own error codes (40401, 42201, 409, …) come back as
//! [`RegistryError::Api`] without retrying.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::compat::CompatibilityLevel;

/// Error codes of the Confluent API that callers act on.
pub mod codes {
    pub const SUBJECT_NOT_FOUND: i64 = 40401;
    pub const VERSION_NOT_FOUND: i64 = 40402;
    pub const SCHEMA_NOT_FOUND: i64 = 40403;
    pub const SUBJECT_COMPATIBILITY_NOT_CONFIGURED: i64 = 40408;
    pub const INCOMPATIBLE_SCHEMA: i64 = 409;
    pub const INVALID_SCHEMA: i64 = 42201;
    pub const INVALID_VERSION: i64 = 42202;
    pub const INVALID_COMPATIBILITY_LEVEL: i64 = 42203;
}

/// What went wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error of its own.
    #[error("{url}: registry error {code} (HTTP {status}): {message}")]
    Api {
        url: String,
        status: u16,
        /// Confluent's `error_code`, or the HTTP status if the body had none.
        code: i64,
        message: String,
    },
    /// No registry URL answered, or they kept answering 5xx, after every retry.
    #[error("{url}: registry unavailable after {attempts} attempts: {message}")]
    Unavailable {
        url: String,
        attempts: u32,
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("{url}: unexpected answer from the registry: {message}")]
    Protocol { url: String, message: String },
    /// The registry holds a schema that is not valid Avro.
    #[error("schema {id} from the registry is not valid Avro: {message}")]
    InvalidSchema { id: u32, message: String },
    /// The client configuration cannot be used.
    #[error("schema registry configuration: {0}")]
    Config(String),
}

impl RegistryError {
    /// Confluent's error code, when the registry answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            RegistryError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The registry could not be reached (as opposed to answering no): worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// How to reach the registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// One or more base URLs of the same registry; tried in turn when one fails.
    pub urls: Vec<Url>,
    /// Basic auth (Confluent's `basic.auth.user.info`); also taken from `user:pass@` in a URL.
    pub basic_auth: Option<(String, String)>,
    /// A PEM file of CA certificates to trust besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// A PEM file with a client certificate and its private key, for mutual TLS.
    pub identity_file: Option<PathBuf>,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Attempts per call on network errors and 5xx answers (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled after each, up to 5 s.
    pub backoff: Duration,
}

impl RegistryConfig {
    /// A configuration for a comma-separated list of URLs, with default limits.
    pub fn new(urls: &str) -> Result<Self> {
        let mut basic_auth = None;
        let mut parsed = Vec::new();
        for raw in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let mut url = Url::parse(raw)
                .map_err(|e| RegistryError::Config(format!("`{raw}` is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(RegistryError::Config(format!(
                    "`{raw}`: expected an http:// or https:// URL"
                )));
            }
            if !url.username().is_empty() {
                basic_auth = Some((
                    url.username().to_string(),
                    url.password().unwrap_or_default().to_string(),
                ));
                // Credentials go in the Authorization header, never in logged URLs.
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            parsed.push(url);
        }
        if parsed.is_empty() {
            return Err(RegistryError::Config("no registry URL given".to_string()));
        }
        Ok(Self {
            urls: parsed,
            basic_auth,
            ca_file: None,
            identity_file: None,
            timeout: Duration::from_secs(10),
            attempts: 5,
            backoff: Duration::from_millis(200),
        })
    }
}

/// A schema as the registry stores it.
#[derive(Debug)]
pub struct RegisteredSchema {
    pub id: u32,
    /// `AVRO`, `JSON` or `PROTOBUF`.
    pub schema_type: String,
    /// The schema text as registered.
    pub text: String,
    /// The parsed schema, when it is Avro.
    pub avro: Option<Schema>,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub id: u32,
    pub version: u32,
    pub schema: String,
}

/// Which version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Latest,
    Number(u32),
}

impl Version {
    fn path(self) -> String {
        match self {
            Version::Latest => "latest".to_string(),
            Version::Number(n) => n.to_string(),
        }
    }
}

/// The registry's verdict on a candidate schema.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CompatibilityVerdict {
    pub is_compatible: bool,
    /// Why not (the registry's verbose messages); empty when compatible.
    #[serde(default)]
    pub messages: Vec<String>,
}

#[derive(Serialize)]
struct SchemaBody<'a> {
    schema: &'a str,
    #[serde(rename = "schemaType", skip_serializing_if = "Option::is_none")]
    schema_type: Option<&'a str>,
}

#[derive(Deserialize)]
struct SchemaById {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Deserialize)]
struct LevelBody {
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    level: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: i64,
    message: String,
}

/// The registry client. Cheap to share behind an `Arc`; the schema cache is inside.
pub struct RegistryClient {
    http: reqwest::Client,
    config: RegistryConfig,
    by_id: RwLock<HashMap<u32, Arc<RegisteredSchema>>>,
}

impl RegistryClient {
    pub fn new(config: RegistryConfig) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| RegistryError::Config(format!("ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| RegistryError::Config(format!("ca_file {}: {e}", path.display())))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(path) = &config.identity_file {
            let pem = std::fs::read(path).map_err(|e| {
                RegistryError::Config(format!("identity_file {}: {e}", path.display()))
            })?;
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                RegistryError::Config(format!("identity_file {}: {e}", path.display()))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Config(e.to_string()))?;
        Ok(Self {
            http,
            config,
            by_id: RwLock::new(HashMap::new()),
        })
    }

    /// The first configured URL, for messages.
    pub fn url(&self) -> &Url {
        &self.config.urls[0]
    }

    /// The schema with a global id; from the cache when this client has seen the id before.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<RegisteredSchema>> {
        if let Some(found) = self.cached(id) {
            return Ok(found);
        }
        let body: SchemaById = self
            .call(reqwest::Method::GET, &format!("schemas/ids/{id}"), None)
            .await?;
        let schema_type = body.schema_type.unwrap_or_else(|| "AVRO".to_string());
        let avro = if schema_type == "AVRO" {
            Some(
                Schema::parse_str(&body.schema).map_err(|e| RegistryError::InvalidSchema {
                    id,
                    message: e.to_string(),
                })?,
            )
        } else {
            None
        };
        let schema = Arc::new(RegisteredSchema {
            id,
            schema_type,
            text: body.schema,
            avro,
        });
        if let Ok(mut cache) = self.by_id.write() {
            cache.insert(id, schema.clone());
        }
        Ok(schema)
    }

    fn cached(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        self.by_id.read().ok()?.get(&id).cloned()
    }

    /// Every subject with at least one live version.
    pub async fn subjects(&self) -> Result<Vec<String>> {
        self.call(reqwest::Method::GET, "subjects", None).await
    }

    /// The live version numbers of a subject.
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        self.call(
            reqwest::Method::GET,
            &format!("subjects/{}/versions", segment(subject)),
            None,
        )
        .await
    }

    /// One version of a subject, `latest` included.
    pub async fn version(&self, subject: &str, version: Version) -> Result<SubjectVersion> {
        self.call(
            reqwest::Method::GET,
            &format!("subjects/{}/versions/{}", segment(subject), version.path()),
            None,
        )
        .await
    }

    /// Registers an Avro schema under a subject (the registry checks compatibility) and
    /// returns its global id; registering a schema the subject already has returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let body = avro_body(schema)?;
        let answer: IdBody = self
            .call(
                reqwest::Method::POST,
                &format!("subjects/{}/versions", segment(subject)),
                Some(body),
            )
            .await?;
        Ok(answer.id)
    }

    /// Finds the version of a subject that has this schema.
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<SubjectVersion> {
        let body = avro_body(schema)?;
        self.call(
            reqwest::Method::POST,
            &format!("subjects/{}", segment(subject)),
            Some(body),
        )
        .await
    }

    /// Asks whether a schema may become the subject's next version: against one version, or
    /// (`None`) against every version the subject's level says to check.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        against: Option<Version>,
        schema: &str,
    ) -> Result<CompatibilityVerdict> {
        let path = match against {
            Some(v) => format!(
                "compatibility/subjects/{}/versions/{}?verbose=true",
                segment(subject),
                v.path()
            ),
            None => format!(
                "compatibility/subjects/{}/versions?verbose=true",
                segment(subject)
            ),
        };
        self.call(reqwest::Method::POST, &path, Some(avro_body(schema)?))
            .await
    }

    /// The compatibility level in force: the subject's own, else the global one (`None`: the
    /// global one).
    pub async fn compatibility(&self, subject: Option<&str>) -> Result<CompatibilityLevel> {
        let path = match subject {
            Some(s) => format!("config/{}?defaultToGlobal=true", segment(s)),
            None => "config".to_string(),
        };
        let body: LevelBody = self.call(reqwest::Method::GET, &path, None).await?;
        body.level.parse().map_err(|e| RegistryError::Protocol {
            url: self.url().to_string(),
            message: format!("{e}"),
        })
    }

    /// Sets the compatibility level of a subject (`None`: the global level).
    pub async fn set_compatibility(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<()> {
        let path = match subject {
            Some(s) => format!("config/{}", segment(s)),
            None => "config".to_string(),
        };
        let body = serde_json::json!({ "compatibility": level.as_str() });
        let _: serde_json::Value = self.call(reqwest::Method::PUT, &path, Some(body)).await?;
        Ok(())
    }

    /// Deletes a subject (soft, or `permanent` after a soft delete); returns its versions.
    pub async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>> {
        self.call(
            reqwest::Method::DELETE,
            &format!("subjects/{}?permanent={permanent}", segment(subject)),
            None,
        )
        .await
    }

    /// One request, with retries on network errors and 5xx answers across the URLs.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let attempts = self.config.attempts.max(1);
        let mut backoff = self.config.backoff;
        let mut last_failure = String::new();
        let mut last_url = self.url().to_string();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            let base = &self.config.urls[attempt as usize % self.config.urls.len()];
            let url = base
                .join(path)
                .map_err(|e| RegistryError::Config(e.to_string()))?;
            last_url = format!("{method} {url}");
            let mut request = self
                .http
                .request(method.clone(), url)
                .header("Accept", "application/vnd.schemaregistry.v1+json");
            if let Some((user, password)) = &self.config.basic_auth {
                request = request.basic_auth(user, Some(password));
            }
            if let Some(body) = &body {
                request = request
                    .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    .body(body.to_string());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last_failure = error_chain(&e);
                    tracing::debug!(url = %last_url, attempt, error = %last_failure, "registry request failed");
                    continue;
                }
            };
            let status = response.status();
            let bytes = match response.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last_failure = error_chain(&e);
                    continue;
                }
            };
            if status.is_server_error() {
                last_failure = format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
                tracing::debug!(url = %last_url, attempt, error = %last_failure, "registry answered 5xx");
                continue;
            }
            if !status.is_success() {
                let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                    Ok(e) => (e.error_code, e.message),
                    Err(_) => (
                        i64::from(status.as_u16()),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    ),
                };
                return Err(RegistryError::Api {
                    url: last_url,
                    status: status.as_u16(),
                    code,
                    message,
                });
            }
            return serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                url: last_url,
                message: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        Err(RegistryError::Unavailable {
            url: last_url,
            attempts,
            message: last_failure,
        })
    }
}

/// A request body for an Avro schema; the text is checked here so a typo is reported as such
/// rather than as the registry's 42201.
fn avro_body(schema: &str) -> Result<serde_json::Value> {
    Schema::parse_str(schema).map_err(|e| RegistryError::InvalidSchema {
        id: 0,
        message: e.to_string(),
    })?;
    serde_json::to_value(SchemaBody {
        schema,
        schema_type: None,
    })
    .map_err(|e| RegistryError::Config(e.to_string()))
}

/// A subject as one URL path segment.
fn segment(subject: &str) -> String {
    url::form_urlencoded::byte_serialize(subject.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_credentials_into_basic_auth() {
        let config =
            RegistryConfig::new("https://alice:s3cret@sr.example:8081/base, http://b:8081")
                .unwrap();
        assert_eq!(
            config.basic_auth,
            Some(("alice".to_string(), "s3cret".to_string()))
        );
        assert_eq!(config.urls[0].as_str(), "https://sr.example:8081/base/");
        assert_eq!(config.urls[1].as_str(), "http://b:8081/");
        assert!(RegistryConfig::new("ftp://x").is_err());
        assert!(RegistryConfig::new(" , ").is_err());
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(segment("web.events-value"), "web.events-value");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[tokio::test]
    async fn unreachable_registry_is_unavailable_after_the_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut config = RegistryConfig::new(&format!("http://127.0.0.1:{port}")).unwrap();
        config.attempts = 3;
        config.backoff = Duration::from_millis(1);
        let client = RegistryClient::new(config).unwrap();
        let err = client.schema_by_id(1).await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("after 3 attempts"), "{err}");
    }
}
