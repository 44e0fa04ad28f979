//! The Confluent Schema Registry REST API: paths, bodies, status codes and error codes as
//! Confluent's clients (Java, librdkafka, Python) expect them.

use std::sync::Arc;

use apache_avro::Schema;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use schemas::compat::{check, CompatibilityLevel, VersionIncompatibility};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::error::{RegistryError, Result};
use super::store::{NewVersion, Setting, VersionRow, GLOBAL};
use super::{parse_stored, parsed_versions, Mode, Registry};

const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

type Shared = State<Arc<Registry>>;

pub(super) fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_schema))
        .route("/schemas/ids/{id}/versions", get(versions_of_schema))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatible_with_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatible_with_version),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_config).put(put_config).delete(delete_config),
        )
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route(
            "/mode/{subject}",
            get(get_mode).put(put_mode).delete(delete_mode),
        )
        .fallback(|| async { RegistryError::RouteNotFound })
        .method_not_allowed_fallback(|| async { RegistryError::MethodNotAllowed })
        .with_state(registry)
}

pub(super) fn reply(status: StatusCode, body: &Value) -> Response {
    raw(status, body.to_string())
}

fn raw(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE_V1)], body).into_response()
}

fn ok(body: Value) -> Result<Response> {
    Ok(reply(StatusCode::OK, &body))
}

/// Query flags; like Confluent (JAX-RS booleans), anything but `true` is false.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Flags {
    #[serde(deserialize_with = "flag")]
    deleted: bool,
    #[serde(deserialize_with = "flag")]
    permanent: bool,
    #[serde(deserialize_with = "flag")]
    verbose: bool,
    #[serde(deserialize_with = "flag")]
    default_to_global: bool,
    #[serde(deserialize_with = "flag")]
    force: bool,
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(String::deserialize(d)?.eq_ignore_ascii_case("true"))
}

/// Bodies are read whatever their content type: clients send the registry's own media types,
/// `application/json` or `application/octet-stream`.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(RegistryError::Body)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    schema_type: Option<String>,
    references: Option<Vec<Value>>,
    id: Option<i64>,
    version: Option<i64>,
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
}

#[derive(Deserialize)]
struct ModeRequest {
    mode: Option<String>,
}

/// A schema from a request, validated.
struct Candidate {
    /// Identity: the JSON re-serialized compactly with sorted keys (serde_json's map is
    /// ordered), so formatting and key order do not make a new schema.
    canonical: String,
    avro: Schema,
}

impl Candidate {
    fn new(req: &SchemaRequest) -> Result<Candidate> {
        if let Some(kind) = req.schema_type.as_deref() {
            if !kind.eq_ignore_ascii_case("AVRO") {
                return Err(RegistryError::UnsupportedSchemaType(kind.to_string()));
            }
        }
        if req.references.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(RegistryError::ReferencesUnsupported);
        }
        let json: Value = serde_json::from_str(&req.schema)
            .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        let avro = Schema::parse(&json).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        Ok(Candidate {
            canonical: json.to_string(),
            avro,
        })
    }
}

/// A version in a path: a number in [1, 2^31-1], or `latest` (also spelled -1).
#[derive(Debug, Clone, Copy)]
enum VersionId {
    Latest,
    Number(i64),
}

impl VersionId {
    fn parse(s: &str) -> Result<VersionId> {
        if s.eq_ignore_ascii_case("latest") {
            return Ok(VersionId::Latest);
        }
        match s.parse::<i64>() {
            Ok(-1) => Ok(VersionId::Latest),
            Ok(n) => Ok(VersionId::Number(valid_version(n, s)?)),
            Err(_) => Err(RegistryError::InvalidVersion(s.to_string())),
        }
    }

    fn pick(self, rows: &[VersionRow]) -> Option<&VersionRow> {
        match self {
            VersionId::Latest => rows.last(),
            VersionId::Number(n) => rows.iter().find(|r| r.version == n),
        }
    }
}

fn valid_version(n: i64, as_given: &str) -> Result<i64> {
    if (1..=i64::from(i32::MAX)).contains(&n) {
        Ok(n)
    } else {
        Err(RegistryError::InvalidVersion(as_given.to_string()))
    }
}

/// How a subject appears in logs; the global setting is stored under the empty subject.
fn scope(subject: &str) -> &str {
    if subject == GLOBAL {
        "(global)"
    } else {
        subject
    }
}

fn parse_id(id: &str) -> Result<i64> {
    // Like Confluent, a path that is not a number is a path that does not exist.
    id.parse().map_err(|_| RegistryError::RouteNotFound)
}

fn version_json(row: &VersionRow) -> Value {
    json!({ "subject": row.subject, "id": row.id, "version": row.version, "schema": row.schema })
}

async fn stored_schema(r: &Registry, id: &str) -> Result<String> {
    let id = parse_id(id)?;
    r.store
        .schema(id)
        .await?
        .ok_or(RegistryError::SchemaIdNotFound(id))
}

async fn schema_by_id(State(r): Shared, Path(id): Path<String>) -> Result<Response> {
    ok(json!({ "schema": stored_schema(&r, &id).await? }))
}

async fn raw_schema_by_id(State(r): Shared, Path(id): Path<String>) -> Result<Response> {
    Ok(raw(StatusCode::OK, stored_schema(&r, &id).await?))
}

async fn schema_uses(r: &Registry, id: &str, deleted: bool) -> Result<Vec<(String, i64)>> {
    stored_schema(r, id).await?;
    r.store.uses_of_schema(parse_id(id)?, deleted).await
}

async fn subjects_of_schema(
    State(r): Shared,
    Path(id): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let mut subjects: Vec<String> = schema_uses(&r, &id, flags.deleted)
        .await?
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    subjects.dedup();
    ok(json!(subjects))
}

async fn versions_of_schema(
    State(r): Shared,
    Path(id): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let uses = schema_uses(&r, &id, flags.deleted).await?;
    let uses: Vec<Value> = uses
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    ok(json!(uses))
}

async fn list_subjects(State(r): Shared, Query(flags): Query<Flags>) -> Result<Response> {
    ok(json!(r.store.subjects(flags.deleted).await?))
}

async fn list_versions(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let rows = r.store.versions(&subject, flags.deleted).await?;
    if rows.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject));
    }
    let versions: Vec<i64> = rows.iter().map(|r| r.version).collect();
    ok(json!(versions))
}

async fn find_version(
    r: &Registry,
    subject: &str,
    version: &str,
    deleted: bool,
) -> Result<VersionRow> {
    let wanted = VersionId::parse(version)?;
    let rows = r.store.versions(subject, deleted).await?;
    if rows.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject.to_string()));
    }
    wanted
        .pick(&rows)
        .cloned()
        .ok_or_else(|| RegistryError::VersionNotFound(version.to_string()))
}

async fn get_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    ok(version_json(
        &find_version(&r, &subject, &version, flags.deleted).await?,
    ))
}

async fn raw_version_schema(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let row = find_version(&r, &subject, &version, flags.deleted).await?;
    Ok(raw(StatusCode::OK, row.schema))
}

async fn referenced_by(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response> {
    // References are refused on registration, so nothing refers to anything.
    find_version(&r, &subject, &version, false).await?;
    ok(json!([]))
}

async fn register(State(r): Shared, Path(subject): Path<String>, body: Bytes) -> Result<Response> {
    let req: SchemaRequest = parse_body(&body)?;
    let candidate = Candidate::new(&req)?;
    let _writes = r.writes.lock().await;
    let mode = r.mode(&subject).await?;
    if mode == Mode::ReadOnly {
        return Err(RegistryError::ReadOnly(subject));
    }
    let live = r.store.versions(&subject, false).await?;
    if let Some(id) = r.store.schema_id(&candidate.canonical).await? {
        if live.iter().any(|v| v.id == id) {
            return ok(json!({ "id": id }));
        }
    }
    let import = mode == Mode::Import;
    if !import {
        let level = r.compatibility(&subject).await?;
        let problems = check_against(level, &candidate, live.iter())?;
        if !problems.is_empty() {
            let details: Vec<String> = problems.iter().map(|p| p.problem.to_string()).collect();
            return Err(RegistryError::Incompatible {
                subject,
                details: details.join("; "),
            });
        }
    }
    // Clients send 0 or -1 for "not given"; only IMPORT mode keeps ids and versions.
    let id = req.id.filter(|&id| import && id > 0);
    let version = match req.version.filter(|&v| import && v > 0) {
        Some(v) => Some(valid_version(v, &v.to_string())?),
        None => None,
    };
    let (id, version) = r
        .store
        .insert_version(&NewVersion {
            subject: &subject,
            canonical: &candidate.canonical,
            schema: &req.schema,
            id,
            version,
        })
        .await?;
    tracing::info!(subject, id, version, import, "schema registered");
    ok(json!({ "id": id }))
}

fn check_against<'a>(
    level: CompatibilityLevel,
    candidate: &Candidate,
    rows: impl IntoIterator<Item = &'a VersionRow>,
) -> Result<Vec<VersionIncompatibility>> {
    let old = parsed_versions(rows)?;
    let old: Vec<(u32, &Schema)> = old.iter().map(|(v, s)| (*v, s)).collect();
    Ok(check(level, &candidate.avro, &old))
}

async fn lookup(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> Result<Response> {
    let req: SchemaRequest = parse_body(&body)?;
    let candidate = Candidate::new(&req)?;
    let rows = r.store.versions(&subject, flags.deleted).await?;
    if rows.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject));
    }
    let id = r
        .store
        .schema_id(&candidate.canonical)
        .await?
        .ok_or(RegistryError::SchemaNotFound)?;
    // With `deleted`, a schema may be at several versions: prefer a live one, then the latest.
    let row = rows
        .iter()
        .filter(|v| v.id == id)
        .max_by_key(|v| (!v.deleted, v.version))
        .ok_or(RegistryError::SchemaNotFound)?;
    ok(version_json(row))
}

async fn delete_subject(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let _writes = r.writes.lock().await;
    if r.mode(&subject).await? == Mode::ReadOnly {
        return Err(RegistryError::ReadOnly(subject));
    }
    let rows = r.store.versions(&subject, true).await?;
    if rows.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject));
    }
    let versions: Vec<i64> = if flags.permanent {
        if rows.iter().any(|v| !v.deleted) {
            return Err(RegistryError::SubjectNotSoftDeleted(subject));
        }
        r.store.hard_delete_subject(&subject).await?;
        rows.iter().map(|v| v.version).collect()
    } else {
        let live: Vec<i64> = rows
            .iter()
            .filter(|v| !v.deleted)
            .map(|v| v.version)
            .collect();
        if live.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted(subject));
        }
        r.store.soft_delete_subject(&subject).await?;
        live
    };
    tracing::info!(
        subject,
        ?versions,
        permanent = flags.permanent,
        "subject deleted"
    );
    ok(json!(versions))
}

async fn delete_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let wanted = VersionId::parse(&version)?;
    let _writes = r.writes.lock().await;
    if r.mode(&subject).await? == Mode::ReadOnly {
        return Err(RegistryError::ReadOnly(subject));
    }
    let rows = r.store.versions(&subject, true).await?;
    // A soft delete needs a live version; a permanent one works on soft-deleted versions.
    let candidate = |v: &&VersionRow| flags.permanent || !v.deleted;
    if !rows.iter().any(|v| candidate(&v)) {
        return Err(RegistryError::SubjectNotFound(subject));
    }
    let row = match wanted {
        VersionId::Latest => rows.iter().rev().find(candidate),
        VersionId::Number(n) => rows.iter().find(|v| v.version == n),
    }
    .ok_or_else(|| RegistryError::VersionNotFound(version.clone()))?;
    let number = row.version;
    match (flags.permanent, row.deleted) {
        (true, false) => {
            return Err(RegistryError::VersionNotSoftDeleted {
                subject,
                version: number,
            })
        }
        (false, true) => {
            return Err(RegistryError::VersionSoftDeleted {
                subject,
                version: number,
            })
        }
        (true, true) => r.store.hard_delete_version(&subject, number).await?,
        (false, false) => r.store.soft_delete_version(&subject, number).await?,
    }
    tracing::info!(
        subject,
        version = number,
        permanent = flags.permanent,
        "version deleted"
    );
    ok(json!(number))
}

async fn compatible_with_all(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> Result<Response> {
    compatibility(&r, &subject, None, flags.verbose, &body).await
}

async fn compatible_with_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> Result<Response> {
    compatibility(&r, &subject, Some(&version), flags.verbose, &body).await
}

/// Checks a schema against one version, or (`version` None) against the versions the
/// subject's level names, without registering it.
async fn compatibility(
    r: &Registry,
    subject: &str,
    version: Option<&str>,
    verbose: bool,
    body: &[u8],
) -> Result<Response> {
    let req: SchemaRequest = parse_body(body)?;
    let candidate = Candidate::new(&req)?;
    let live = r.store.versions(subject, false).await?;
    let against: Vec<&VersionRow> = match version {
        None => live.iter().collect(),
        Some(version) => {
            let wanted = VersionId::parse(version)?;
            if live.is_empty() {
                return Err(RegistryError::SubjectNotFound(subject.to_string()));
            }
            let row = wanted
                .pick(&live)
                .ok_or_else(|| RegistryError::VersionNotFound(version.to_string()))?;
            vec![row]
        }
    };
    let level = r.compatibility(subject).await?;
    let problems = check_against(level, &candidate, against.iter().copied())?;
    let mut body = json!({ "is_compatible": problems.is_empty() });
    if verbose {
        body["messages"] = json!(verbose_messages(level, &problems, &against));
    }
    ok(body)
}

/// Confluent's verbose shape: per old version, its problems and then which version, its
/// schema and the level.
fn verbose_messages(
    level: CompatibilityLevel,
    problems: &[VersionIncompatibility],
    against: &[&VersionRow],
) -> Vec<String> {
    let mut messages = Vec::new();
    for group in problems.chunk_by(|a, b| a.version == b.version) {
        for p in group {
            messages.push(format!(
                "{{errorType:'{}', description:'{}', additionalInfo:'{}'}}",
                p.problem.kind.as_str(),
                p.problem,
                p.problem.location
            ));
        }
        let Some(version) = group.first().map(|p| p.version) else {
            continue;
        };
        messages.push(format!("{{oldSchemaVersion: {version}}}"));
        if let Some(old) = against.iter().find(|v| v.version == i64::from(version)) {
            messages.push(format!("{{oldSchema: '{}'}}", old.schema));
        }
        messages.push(format!("{{compatibility: '{level}'}}"));
    }
    messages
}

async fn get_global_config(State(r): Shared) -> Result<Response> {
    let level = r.compatibility(GLOBAL).await?;
    ok(json!({ "compatibilityLevel": level.as_str() }))
}

async fn put_global_config(State(r): Shared, body: Bytes) -> Result<Response> {
    put_compatibility(&r, GLOBAL, &body).await
}

/// Resets the global level to the default, answering with the level it had.
async fn delete_global_config(State(r): Shared) -> Result<Response> {
    let _writes = r.writes.lock().await;
    let level = r.compatibility(GLOBAL).await?;
    r.store
        .delete_setting(Setting::Compatibility, GLOBAL)
        .await?;
    tracing::info!(subject = scope(GLOBAL), "compatibility reset");
    ok(json!({ "compatibilityLevel": level.as_str() }))
}

async fn get_config(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let level = match r.store.setting(Setting::Compatibility, &subject).await? {
        Some(level) => parse_stored::<CompatibilityLevel>(&level)?,
        None if flags.default_to_global => r.compatibility(GLOBAL).await?,
        None => return Err(RegistryError::NoSubjectCompatibility(subject)),
    };
    ok(json!({ "compatibilityLevel": level.as_str() }))
}

async fn put_config(
    State(r): Shared,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response> {
    put_compatibility(&r, &subject, &body).await
}

async fn put_compatibility(r: &Registry, subject: &str, body: &[u8]) -> Result<Response> {
    let req: ConfigRequest = parse_body(body)?;
    let level: CompatibilityLevel = req
        .compatibility
        .ok_or(RegistryError::InvalidCompatibilityLevel)?
        .parse()
        .map_err(|_| RegistryError::InvalidCompatibilityLevel)?;
    let _writes = r.writes.lock().await;
    r.store
        .set_setting(Setting::Compatibility, subject, level.as_str())
        .await?;
    tracing::info!(subject = scope(subject), compatibility = %level, "compatibility set");
    ok(json!({ "compatibility": level.as_str() }))
}

async fn delete_config(State(r): Shared, Path(subject): Path<String>) -> Result<Response> {
    let _writes = r.writes.lock().await;
    let Some(level) = r.store.setting(Setting::Compatibility, &subject).await? else {
        return Err(RegistryError::NoSubjectCompatibility(subject));
    };
    let level = parse_stored::<CompatibilityLevel>(&level)?;
    r.store
        .delete_setting(Setting::Compatibility, &subject)
        .await?;
    tracing::info!(subject, "compatibility deleted");
    ok(json!({ "compatibilityLevel": level.as_str() }))
}

async fn get_global_mode(State(r): Shared) -> Result<Response> {
    ok(json!({ "mode": r.mode(GLOBAL).await?.as_str() }))
}

async fn put_global_mode(
    State(r): Shared,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> Result<Response> {
    put_mode_of(&r, GLOBAL, flags.force, &body).await
}

async fn get_mode(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let mode = match r.store.setting(Setting::Mode, &subject).await? {
        Some(mode) => parse_stored::<Mode>(&mode)?,
        None if flags.default_to_global => r.mode(GLOBAL).await?,
        None => return Err(RegistryError::NoSubjectMode(subject)),
    };
    ok(json!({ "mode": mode.as_str() }))
}

async fn put_mode(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
    body: Bytes,
) -> Result<Response> {
    put_mode_of(&r, &subject, flags.force, &body).await
}

async fn put_mode_of(r: &Registry, subject: &str, force: bool, body: &[u8]) -> Result<Response> {
    let req: ModeRequest = parse_body(body)?;
    let mode: Mode = req.mode.ok_or(RegistryError::InvalidMode)?.parse()?;
    let _writes = r.writes.lock().await;
    // Imported schemas keep their ids, which could collide with ids given here before.
    if mode == Mode::Import && !force {
        let populated = if subject == GLOBAL {
            !r.store.subjects(false).await?.is_empty()
        } else {
            !r.store.versions(subject, false).await?.is_empty()
        };
        if populated {
            return Err(RegistryError::ImportNotEmpty);
        }
    }
    r.store
        .set_setting(Setting::Mode, subject, mode.as_str())
        .await?;
    tracing::info!(subject = scope(subject), mode = mode.as_str(), "mode set");
    ok(json!({ "mode": mode.as_str() }))
}

async fn delete_mode(State(r): Shared, Path(subject): Path<String>) -> Result<Response> {
    let _writes = r.writes.lock().await;
    let Some(mode) = r.store.setting(Setting::Mode, &subject).await? else {
        return Err(RegistryError::NoSubjectMode(subject));
    };
    let mode = parse_stored::<Mode>(&mode)?;
    r.store.delete_setting(Setting::Mode, &subject).await?;
    tracing::info!(subject, "mode deleted");
    ok(json!({ "mode": mode.as_str() }))
}
