//! `medallion catalog serve`: a read-only Iceberg REST catalog over the SQL catalog, so that
//! DuckDB (`ATTACH … (TYPE iceberg, ENDPOINT …)`), Trino, Spark or pyiceberg find every table
//! by name. It serves the configuration, namespaces, table lists and table metadata; anything
//! that would write is refused. Errors have the REST spec's shape:
//! `{"error": {"message", "type", "code"}}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lakehouse::{Catalog, IcebergTable};
use serde_json::{json, Value};

/// The routes served (the REST spec's endpoint list, which clients read from `/v1/config`).
const ENDPOINTS: [&str; 6] = [
    "GET /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
];

/// Serves the catalog on `addr` until SIGTERM or SIGINT.
pub async fn serve(addr: &str, catalog: Arc<Catalog>) -> anyhow::Result<()> {
    crate::http::serve_until_signal(addr, router(catalog), "catalog").await
}

fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/namespaces", get(namespaces))
        .route("/v1/namespaces/{namespace}", get(namespace).head(namespace))
        .route("/v1/namespaces/{namespace}/tables", get(tables))
        .route(
            "/v1/namespaces/{namespace}/tables/{table}",
            get(load_table).head(load_table),
        )
        .method_not_allowed_fallback(read_only)
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

async fn config() -> Json<Value> {
    Json(json!({"defaults": {}, "overrides": {}, "endpoints": ENDPOINTS}))
}

async fn namespaces(State(catalog): State<Arc<Catalog>>) -> Reply {
    let names = catalog.namespaces().await.map_err(RestError::internal)?;
    let list: Vec<Vec<String>> = names.into_iter().map(|n| vec![n]).collect();
    Ok(Json(json!({ "namespaces": list })))
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

async fn read_only() -> RestError {
    RestError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "UnsupportedOperationException",
        "medallion catalog serve is read-only: tables are written by medallion run".to_string(),
    )
}

async fn no_such_route() -> RestError {
    RestError::new(
        StatusCode::NOT_FOUND,
        "NoSuchEndpointException",
        "not an endpoint of this catalog (see /v1/config)".to_string(),
    )
}
