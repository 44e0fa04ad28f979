//! `medallion catalog serve`: an Iceberg REST catalog over the SQL catalog, so that DuckDB
//! (`ATTACH … (TYPE iceberg, ENDPOINT …)`), Trino, Spark or pyiceberg find every table by
//! name. It serves the configuration, namespaces, table lists and table metadata; with
//! `--read-write` also namespace and table creation and table commits (what medallion's
//! pipelines and pyiceberg's appends send), else anything that would write is refused. Errors
//! have the REST spec's shape: `{"error": {"message", "type", "code"}}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lakehouse::{Catalog, CommitTableRequest, CreateTableRequest, IcebergTable, Served};
use serde_json::{json, Value};

/// The routes served (the REST spec's endpoint list, which clients read from `/v1/config`).
const READ_ENDPOINTS: [&str; 6] = [
    "GET /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
];

/// The routes `--read-write` adds.
const WRITE_ENDPOINTS: [&str; 3] = [
    "POST /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
];

/// Serves the catalog on `addr` until SIGTERM or SIGINT; writes only when `read_write`.
pub async fn serve(addr: &str, catalog: Arc<Catalog>, read_write: bool) -> anyhow::Result<()> {
    crate::http::serve_until_signal(addr, router(catalog, read_write), "catalog").await
}

fn router(catalog: Arc<Catalog>, read_write: bool) -> Router {
    let namespaces_route = get(namespaces);
    let tables_route = get(tables);
    let table_route = get(load_table).head(load_table);
    let (namespaces_route, tables_route, table_route) = match read_write {
        true => (
            namespaces_route.post(create_namespace),
            tables_route.post(create_table),
            table_route.post(commit_table),
        ),
        false => (namespaces_route, tables_route, table_route),
    };
    let endpoints: Vec<&str> = match read_write {
        true => READ_ENDPOINTS
            .iter()
            .chain(&WRITE_ENDPOINTS)
            .copied()
            .collect(),
        false => READ_ENDPOINTS.to_vec(),
    };
    let config = get(move || async move {
        Json(json!({"defaults": {}, "overrides": {}, "endpoints": endpoints}))
    });
    Router::new()
        .route("/v1/config", config)
        .route("/v1/namespaces", namespaces_route)
        .route("/v1/namespaces/{namespace}", get(namespace).head(namespace))
        .route("/v1/namespaces/{namespace}/tables", tables_route)
        .route("/v1/namespaces/{namespace}/tables/{table}", table_route)
        .method_not_allowed_fallback(move || not_served(read_write))
        .fallback(no_such_route)
        .with_state(catalog)
}

/// An error in the REST spec's shape.
struct RestError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl RestError {
    fn new(status: StatusCode, kind: &'static str, message: String) -> Self {
        Self {
            status,
            kind,
            message,
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerErrorException",
            e.to_string(),
        )
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.status.as_u16(),
        }});
        (self.status, Json(body)).into_response()
    }
}

type Reply = Result<Json<Value>, RestError>;

async fn namespaces(State(catalog): State<Arc<Catalog>>) -> Reply {
    let names = catalog.namespaces().await.map_err(RestError::internal)?;
    let list: Vec<Vec<String>> = names.into_iter().map(|n| vec![n]).collect();
    Ok(Json(json!({ "namespaces": list })))
}

fn bad_request(message: String) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
}

/// A request body as the REST spec's type `T`.
fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, RestError> {
    serde_json::from_str(body).map_err(|e| bad_request(format!("malformed request body: {e}")))
}

fn no_such_namespace(namespace: &str) -> RestError {
    RestError::new(
        StatusCode::NOT_FOUND,
        "NoSuchNamespaceException",
        format!("Namespace does not exist: {namespace}"),
    )
}

async fn namespace(State(catalog): State<Arc<Catalog>>, Path(namespace): Path<String>) -> Reply {
    if !catalog
        .has_namespace(&namespace)
        .await
        .map_err(RestError::internal)?
    {
        return Err(no_such_namespace(&namespace));
    }
    Ok(Json(json!({ "namespace": [namespace], "properties": {} })))
}

async fn tables(State(catalog): State<Arc<Catalog>>, Path(namespace): Path<String>) -> Reply {
    let Some(names) = catalog
        .tables_in(&namespace)
        .await
        .map_err(RestError::internal)?
    else {
        return Err(no_such_namespace(&namespace));
    };
    let identifiers: Vec<Value> = names
        .iter()
        .map(|name| json!({ "namespace": [namespace], "name": name }))
        .collect();
    Ok(Json(json!({ "identifiers": identifiers })))
}

async fn load_table(
    State(catalog): State<Arc<Catalog>>,
    Path((namespace, table)): Path<(String, String)>,
) -> Reply {
    let name = format!("{namespace}.{table}");
    let found = IcebergTable::open_if_exists(catalog.clone(), &name)
        .await
        .map_err(RestError::internal)?;
    let Some(table) = found else {
        // Which of the two is missing decides the error.
        return Err(
            match catalog
                .has_namespace(&namespace)
                .await
                .map_err(RestError::internal)?
            {
                false => no_such_namespace(&namespace),
                true => RestError::new(
                    StatusCode::NOT_FOUND,
                    "NoSuchTableException",
                    format!("Table does not exist: {name}"),
                ),
            },
        );
    };
    Ok(Json(json!({
        "metadata-location": table.metadata_location(),
        "metadata": table.metadata_json().map_err(RestError::internal)?,
        "config": {},
    })))
}

async fn not_served(read_write: bool) -> RestError {
    let message = match read_write {
        true => "not an operation this catalog serves (see /v1/config)",
        false => {
            "medallion catalog serve is read-only (start it with --read-write to take commits)"
        }
    };
    RestError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "UnsupportedOperationException",
        message.to_string(),
    )
}

#[derive(serde::Deserialize)]
struct CreateNamespace {
    namespace: Vec<String>,
    #[serde(default)]
    properties: std::collections::HashMap<String, String>,
}

async fn create_namespace(State(catalog): State<Arc<Catalog>>, body: String) -> Reply {
    let request: CreateNamespace = parse(&body)?;
    let [name] = request.namespace.as_slice() else {
        return Err(bad_request(format!(
            "namespace {:?}: only single-level namespaces are supported",
            request.namespace
        )));
    };
    if !catalog
        .create_namespace(name, request.properties.clone())
        .await
        .map_err(RestError::internal)?
    {
        return Err(RestError::new(
            StatusCode::CONFLICT,
            "AlreadyExistsException",
            format!("Namespace already exists: {name}"),
        ));
    }
    Ok(Json(
        json!({ "namespace": [name], "properties": request.properties }),
    ))
}

/// A served write's outcome as the REST answer; `name` is the table (or namespace) asked for.
fn reply(outcome: Served, namespace: &str, name: &str) -> Reply {
    match outcome {
        Served::Table {
            metadata_location,
            metadata,
        } => Ok(Json(json!({
            "metadata-location": metadata_location,
            "metadata": metadata,
            "config": {},
        }))),
        Served::Conflict(reason) => Err(RestError::new(
            StatusCode::CONFLICT,
            "CommitFailedException",
            format!("Commit to {name} failed: {reason}"),
        )),
        Served::Invalid(reason) => Err(bad_request(format!("{name}: {reason}"))),
        Served::NoSuchNamespace => Err(no_such_namespace(namespace)),
        Served::NoSuchTable => Err(RestError::new(
            StatusCode::NOT_FOUND,
            "NoSuchTableException",
            format!("Table does not exist: {name}"),
        )),
        Served::AlreadyExists => Err(RestError::new(
            StatusCode::CONFLICT,
            "AlreadyExistsException",
            format!("Table already exists: {name}"),
        )),
    }
}

async fn create_table(
    State(catalog): State<Arc<Catalog>>,
    Path(namespace): Path<String>,
    body: String,
) -> Reply {
    let request: CreateTableRequest = parse(&body)?;
    let name = format!("{namespace}.{}", request.name);
    let outcome = catalog
        .serve_create_table(&namespace, request)
        .await
        .map_err(RestError::internal)?;
    reply(outcome, &namespace, &name)
}

async fn commit_table(
    State(catalog): State<Arc<Catalog>>,
    Path((namespace, table)): Path<(String, String)>,
    body: String,
) -> Reply {
    let request: CommitTableRequest = parse(&body)?;
    let outcome = catalog
        .serve_commit(&namespace, &table, request)
        .await
        .map_err(RestError::internal)?;
    reply(outcome, &namespace, &format!("{namespace}.{table}"))
}

async fn no_such_route() -> RestError {
    RestError::new(
        StatusCode::NOT_FOUND,
        "NoSuchEndpointException",
        "not an endpoint of this catalog (see /v1/config)".to_string(),
    )
}
