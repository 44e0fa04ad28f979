use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use iceberg::io::{
    LocalFsStorageFactory, StorageFactory, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION,
};
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{
    Catalog as IcebergCatalog, CatalogBuilder, MetadataLocation, Namespace, NamespaceIdent,
    TableCommit, TableCreation, TableIdent, TableRequirement, TableUpdate,
};
use iceberg_catalog_rest::{
    CommitTableRequest, CommitTableResponse, RestCatalog, RestCatalogBuilder,
    REST_CATALOG_PROP_URI, REST_CATALOG_PROP_WAREHOUSE,
};
use iceberg_catalog_sql::{
    SqlBindStyle, SqlCatalog, SqlCatalogBuilder, SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI,
    SQL_CATALOG_PROP_WAREHOUSE,
};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use crate::error::{Error, Result};

/// The catalog name under which tables are registered (what pyiceberg and Trino's JDBC
/// catalog are configured with).
pub const CATALOG_NAME: &str = "medallion";

/// Where tables live and how they are found.
#[derive(Debug, Clone)]
pub struct LakehouseLocation {
    /// `sqlite://PATH`, `postgres://…` or an Iceberg REST catalog `http(s)://HOST:PORT[/PATH]`.
    pub catalog_uri: String,
    /// A local directory, a `file://` URL or an `s3://BUCKET/PREFIX` URL under which new
    /// tables are created; `None` to only open existing tables, which carry their locations.
    pub warehouse: Option<String>,
    /// How S3 is reached, for `s3://` warehouses and tables.
    pub s3: S3Settings,
}

/// How S3, or an S3-compatible store such as MinIO, is reached. Credentials are not settings:
/// they come from the usual AWS chain (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN`, then `~/.aws` profiles, then the instance role), so they never sit in
/// a pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// The store's URL, e.g. `http://minio:9000`. Default: `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// Default: `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `us-east-1` (what MinIO uses).
    pub region: Option<String>,
    /// Address objects as `ENDPOINT/BUCKET/KEY` rather than `BUCKET.ENDPOINT/KEY`. Default:
    /// on when an endpoint is set (MinIO and most S3-compatible stores need it), off on AWS.
    pub path_style: Option<bool>,
}

impl S3Settings {
    /// The FileIO properties (Iceberg's `s3.*` keys) these settings and the environment give.
    fn properties(&self) -> HashMap<String, String> {
        self.properties_with(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn properties_with(&self, env: impl Fn(&str) -> Option<String>) -> HashMap<String, String> {
        let endpoint = self.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL"));
        let region = self
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let path_style = self.path_style.unwrap_or(endpoint.is_some());
        let mut props = HashMap::from([
            (S3_REGION.to_string(), region),
            (S3_PATH_STYLE_ACCESS.to_string(), path_style.to_string()),
        ]);
        if let Some(endpoint) = endpoint {
            props.insert(S3_ENDPOINT.to_string(), endpoint);
        }
        props
    }
}

/// The catalog tables are registered in: an Iceberg SQL catalog (the `iceberg_tables` that
/// pyiceberg's SqlCatalog, Iceberg's JDBC catalog and Trino's `jdbc` catalog share) or an
/// Iceberg REST catalog.
pub struct Catalog {
    backend: Backend,
    uri: String,
    /// The `s3.*` FileIO properties tables are read and written with.
    s3: HashMap<String, String>,
    /// The warehouse URL (`file://…`, `s3://…`) new tables are created under, if one was given.
    warehouse: Option<String>,
}

enum Backend {
    Sql {
        sql: SqlCatalog,
        /// For [`Catalog::commit`], which swaps the metadata location itself.
        pool: AnyPool,
        bind_style: SqlBindStyle,
    },
    Rest {
        /// Boxed: it is several times the size of the SQL variant.
        rest: Box<RestCatalog>,
        /// For [`Catalog::commit`]: iceberg-rust only commits through its own transactions.
        http: reqwest::Client,
        /// `URI/v1[/PREFIX]`, as the server's `/v1/config` places it.
        base: String,
    },
}

/// What [`Catalog::commit`] did.
#[derive(Debug)]
pub enum MetadataCommit {
    /// The table now points at `metadata_location`, holding `metadata`.
    Committed {
        metadata_location: String,
        metadata: Box<TableMetadata>,
    },
    /// A requirement does not hold (another writer committed first): nothing was committed.
    Conflict(String),
    /// The updates cannot be applied to the table: nothing was committed.
    Invalid(String),
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("uri", &self.uri).finish()
    }
}

impl Catalog {
    pub(crate) fn iceberg(&self) -> &dyn IcebergCatalog {
        match &self.backend {
            Backend::Sql { sql, .. } => sql,
            Backend::Rest { rest, .. } => rest.as_ref(),
        }
    }

    /// The URI the catalog was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub(crate) fn s3_properties(&self) -> &HashMap<String, String> {
        &self.s3
    }

    /// The directory of a table kept outside the catalog (Delta): `WAREHOUSE/NAMESPACE/NAME`,
    /// in a local warehouse.
    /// The warehouse's directory, when it is local.
    pub(crate) fn local_warehouse(&self) -> Option<std::path::PathBuf> {
        let root = self.warehouse.as_deref()?.strip_prefix("file://")?;
        Some(std::path::PathBuf::from(root))
    }

    pub(crate) fn table_dir(&self, name: &str) -> Result<std::path::PathBuf> {
        let ident = crate::table::parse_ident(name)?;
        let local = self
            .warehouse
            .as_deref()
            .and_then(|w| w.strip_prefix("file://"));
        let Some(root) = local else {
            return Err(Error::Config(format!(
                "table {name}: Delta tables need a local warehouse (a directory); the warehouse is {}",
                self.warehouse.as_deref().unwrap_or("not set")
            )));
        };
        let mut dir = std::path::PathBuf::from(root);
        dir.extend(ident.namespace().iter());
        dir.push(ident.name());
        Ok(dir)
    }

    pub(crate) fn catalog_err(&self) -> impl Fn(iceberg::Error) -> Error + '_ {
        catalog_error(&self.uri)
    }

    fn rest_err(&self, message: String) -> Error {
        Error::Rest {
            uri: self.uri.clone(),
            message,
        }
    }

    /// Every namespace of the catalog, sorted.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        let listed = self
            .iceberg()
            .list_namespaces(None)
            .await
            .map_err(self.catalog_err())?;
        let mut names: Vec<String> = listed.iter().map(|ns| ns.join(".")).collect();
        names.sort();
        Ok(names)
    }

    pub async fn has_namespace(&self, namespace: &str) -> Result<bool> {
        let ident = NamespaceIdent::new(namespace.to_string());
        self.iceberg()
            .namespace_exists(&ident)
            .await
            .map_err(self.catalog_err())
    }

    /// The tables of `namespace` (their names within it), sorted; `None` when the namespace
    /// does not exist.
    pub async fn tables_in(&self, namespace: &str) -> Result<Option<Vec<String>>> {
        if !self.has_namespace(namespace).await? {
            return Ok(None);
        }
        let ident = NamespaceIdent::new(namespace.to_string());
        let listed = self
            .iceberg()
            .list_tables(&ident)
            .await
            .map_err(self.catalog_err())?;
        let mut names: Vec<String> = listed.iter().map(|t| t.name().to_string()).collect();
        names.sort();
        Ok(Some(names))
    }

    /// Every table of the catalog, as `namespace.name`, sorted.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for namespace in self.namespaces().await? {
            for table in self.tables_in(&namespace).await?.unwrap_or_default() {
                names.push(format!("{namespace}.{table}"));
            }
        }
        Ok(names)
    }

    /// Commits `updates` to the table whose state `base` is, if every requirement holds: the
    /// Iceberg REST commit. iceberg-rust only commits through its own transactions, which
    /// cannot take data files out, so this is the one path for commits built by hand. A SQL
    /// catalog checks the requirements against `base`, writes the next metadata file and
    /// swaps the table's metadata location from `base`'s (a compare-and-set, so a commit
    /// landing in between is a conflict too); a REST catalog is sent the request.
    pub async fn commit(
        &self,
        base: &Table,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<MetadataCommit> {
        match &self.backend {
            Backend::Sql {
                pool, bind_style, ..
            } => {
                self.commit_sql(pool, bind_style, base, &requirements, updates)
                    .await
            }
            Backend::Rest {
                http, base: url, ..
            } => {
                self.commit_rest(http, url, base.identifier(), requirements, updates)
                    .await
            }
        }
    }

    async fn commit_sql(
        &self,
        pool: &AnyPool,
        bind_style: &SqlBindStyle,
        base: &Table,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<MetadataCommit> {
        let metadata = base.metadata();
        for requirement in requirements {
            if let Err(e) = requirement.check(Some(metadata)) {
                return Ok(MetadataCommit::Conflict(e.to_string()));
            }
        }
        let table = base.identifier().to_string();
        let err = |op| crate::error::table_err(&table, op);
        let current = base.metadata_location_result().map_err(err("metadata"))?;
        let mut builder = metadata.clone().into_builder(Some(current.to_string()));
        for update in updates {
            builder = match update.apply(builder) {
                Ok(builder) => builder,
                Err(e) => return Ok(MetadataCommit::Invalid(e.to_string())),
            };
        }
        let next = match builder.build() {
            Ok(built) => built.metadata,
            Err(e) => return Ok(MetadataCommit::Invalid(e.to_string())),
        };
        let location = MetadataLocation::from_str(current)
            .map_err(err("metadata"))?
            .with_next_version()
            .with_new_metadata(&next);
        next.write_to(base.file_io(), &location)
            .await
            .map_err(err("metadata"))?;
        let location = location.to_string();
        if !self
            .swap_metadata(pool, bind_style, base.identifier(), current, &location)
            .await?
        {
            // The metadata file written stays as an orphan.
            return Ok(MetadataCommit::Conflict(format!(
                "table {table} no longer points at {current}: another writer committed first"
            )));
        }
        Ok(MetadataCommit::Committed {
            metadata_location: location,
            metadata: Box::new(next),
        })
    }

    async fn commit_rest(
        &self,
        http: &reqwest::Client,
        url: &str,
        table: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<MetadataCommit> {
        let endpoint = format!(
            "{url}/namespaces/{}/tables/{}",
            table.namespace().to_url_string(),
            table.name()
        );
        let request = CommitTableRequest {
            identifier: Some(table.clone()),
            requirements,
            updates,
        };
        let response = http
            .post(&endpoint)
            .json(&request)
            .send()
            .await
            .map_err(|e| self.rest_err(format!("POST {endpoint}: {e}")))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| self.rest_err(format!("POST {endpoint}: {e}")))?;
        match status.as_u16() {
            200 => {
                let done: CommitTableResponse = serde_json::from_str(&body).map_err(|e| {
                    self.rest_err(format!("POST {endpoint}: unexpected commit response: {e}"))
                })?;
                Ok(MetadataCommit::Committed {
                    metadata_location: done.metadata_location,
                    metadata: Box::new(done.metadata),
                })
            }
            409 => Ok(MetadataCommit::Conflict(rest_message(&body))),
            400 => Ok(MetadataCommit::Invalid(rest_message(&body))),
            // 5xx: the commit state is unknown; the caller reloads and sees.
            _ => Err(self.rest_err(format!(
                "POST {endpoint}: HTTP {status}: {}",
                rest_message(&body)
            ))),
        }
    }

    /// Points `table` at the metadata file `next` if and only if it still points at
    /// `expected`: the same compare-and-set iceberg-rust's SQL catalog commits with.
    async fn swap_metadata(
        &self,
        pool: &AnyPool,
        bind_style: &SqlBindStyle,
        table: &TableIdent,
        expected: &str,
        next: &str,
    ) -> Result<bool> {
        let sql = match bind_style {
            SqlBindStyle::QMark => {
                "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
                 WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
                 AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?"
            }
            SqlBindStyle::DollarNumeric => {
                "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2 \
                 WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5 \
                 AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = $6"
            }
        };
        let done = sqlx::query(sql)
            .bind(next)
            .bind(expected)
            .bind(CATALOG_NAME)
            .bind(table.namespace().join("."))
            .bind(table.name())
            .bind(expected)
            .execute(pool)
            .await
            .map_err(|source| Error::CatalogSql {
                uri: self.uri.clone(),
                source,
            })?;
        Ok(done.rows_affected() == 1)
    }
}

/// Opens the catalog: an Iceberg REST catalog for `http(s)://…`, else a SQL catalog (the
/// SQLite file is created when missing). A local warehouse directory is created if needed.
pub async fn connect(location: &LakehouseLocation) -> Result<Arc<Catalog>> {
    let uri = &location.catalog_uri;
    let warehouse = location
        .warehouse
        .as_deref()
        .map(warehouse_url)
        .transpose()?;
    let s3 = location.s3.properties();
    let backend = match is_rest(uri) {
        true => connect_rest(uri, warehouse.clone(), &s3).await?,
        false => connect_sql(uri, warehouse.clone(), &s3).await?,
    };
    Ok(Arc::new(Catalog {
        backend,
        uri: uri.clone(),
        s3,
        warehouse,
    }))
}

/// An iceberg-rust error of the catalog at `uri`.
fn catalog_error(uri: &str) -> impl Fn(iceberg::Error) -> Error + '_ {
    move |source| Error::Catalog {
        uri: uri.to_string(),
        source: Box::new(source),
    }
}

fn is_rest(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

async fn connect_sql(
    catalog_uri: &str,
    warehouse: Option<String>,
    s3: &HashMap<String, String>,
) -> Result<Backend> {
    let (uri, bind_style) = sql_catalog_url(catalog_uri)?;
    check_reachable(catalog_uri).await?;
    let storage = storage_factory(warehouse.as_deref());
    // The SQL catalog wants a warehouse; without one, nothing is created under this one.
    let warehouse =
        warehouse.unwrap_or_else(|| format!("file://{}", std::env::temp_dir().display()));
    let mut props = s3.clone();
    props.extend([
        (SQL_CATALOG_PROP_URI.to_string(), uri.clone()),
        (SQL_CATALOG_PROP_WAREHOUSE.to_string(), warehouse),
        (
            SQL_CATALOG_PROP_BIND_STYLE.to_string(),
            bind_style.to_string(),
        ),
    ]);
    let sql = SqlCatalogBuilder::default()
        .with_storage_factory(storage)
        .load(CATALOG_NAME, props)
        .await
        .map_err(catalog_error(catalog_uri))?;
    let pool = AnyPoolOptions::new()
        .max_connections(2)
        .connect_lazy(&uri)
        .map_err(|source| Error::CatalogSql {
            uri: catalog_uri.to_string(),
            source,
        })?;
    Ok(Backend::Sql {
        sql,
        pool,
        bind_style,
    })
}

/// What `GET /v1/config` answers: server settings clients merge with their own.
#[derive(serde::Deserialize)]
struct RestConfig {
    #[serde(default)]
    defaults: HashMap<String, String>,
    #[serde(default)]
    overrides: HashMap<String, String>,
}

/// Opens a REST catalog, asking its `/v1/config` where table endpoints are (and so whether
/// it answers at all) as iceberg-rust's client does, so that hand-built commits go to the
/// same place.
async fn connect_rest(
    catalog_uri: &str,
    warehouse: Option<String>,
    s3: &HashMap<String, String>,
) -> Result<Backend> {
    let rest_err = |message: String| Error::Rest {
        uri: catalog_uri.to_string(),
        message,
    };
    let uri = catalog_uri.trim_end_matches('/');
    url::Url::parse(uri).map_err(|e| {
        Error::Config(format!(
            "catalog URI {catalog_uri:?} is not a URL: {e}; expected http(s)://HOST:PORT[/PATH]"
        ))
    })?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| rest_err(e.to_string()))?;
    let endpoint = format!("{uri}/v1/config");
    let mut request = http.get(&endpoint);
    if let Some(warehouse) = &warehouse {
        request = request.query(&[("warehouse", warehouse)]);
    }
    let response = request
        .send()
        .await
        .map_err(|e| rest_err(format!("GET {endpoint}: {e}")))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| rest_err(format!("GET {endpoint}: {e}")))?;
    if !status.is_success() {
        return Err(rest_err(format!(
            "GET {endpoint}: HTTP {status}: {}",
            rest_message(&body)
        )));
    }
    let config: RestConfig = serde_json::from_str(&body).map_err(|e| {
        rest_err(format!(
            "GET {endpoint}: not an Iceberg REST catalog config: {e}"
        ))
    })?;
    // Server overrides win over client settings, which win over server defaults.
    let setting = |key: &str| config.overrides.get(key).or(config.defaults.get(key));
    let root = config
        .overrides
        .get("uri")
        .map_or(uri, |u| u.trim_end_matches('/'));
    let base = match setting("prefix") {
        Some(prefix) => format!("{root}/v1/{prefix}"),
        None => format!("{root}/v1"),
    };
    let storage = storage_factory(warehouse.as_deref());
    let mut props = s3.clone();
    props.insert(REST_CATALOG_PROP_URI.to_string(), uri.to_string());
    if let Some(warehouse) = warehouse {
        props.insert(REST_CATALOG_PROP_WAREHOUSE.to_string(), warehouse);
    }
    let rest = RestCatalogBuilder::default()
        .with_storage_factory(storage)
        .load(CATALOG_NAME, props)
        .await
        .map_err(catalog_error(catalog_uri))?;
    Ok(Backend::Rest {
        rest: Box::new(rest),
        http,
        base,
    })
}

/// The message of a REST error body (`{"error": {"message": …}}`), else the body itself.
fn rest_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(500).collect())
}

fn sql_catalog_url(uri: &str) -> Result<(String, SqlBindStyle)> {
    if !["sqlite://", "postgres://", "postgresql://"]
        .iter()
        .any(|scheme| uri.starts_with(scheme))
    {
        return Err(Error::Config(format!(
            "catalog URI {uri:?} is not supported: expected sqlite://PATH, postgres://… \
             or an Iceberg REST catalog http(s)://HOST:PORT[/PATH]"
        )));
    }
    let url = database_url(uri, "catalog")?;
    let style = match url.starts_with("sqlite:") {
        true => SqlBindStyle::QMark,
        false => SqlBindStyle::DollarNumeric,
    };
    Ok((url, style))
}

/// The sqlx URL of a SQL database given as `sqlite://PATH` (the file and its directory are
/// created when missing) or `postgres://…`, for the catalog and anything kept beside it;
/// `what` names the database in errors.
pub fn database_url(uri: &str, what: &str) -> Result<String> {
    if let Some(path) = uri.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            return Err(Error::Config(format!(
                "{what} URI {uri:?} names no SQLite file"
            )));
        }
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Config(format!(
                    "cannot create {what} directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        Ok(format!("sqlite://{path}?mode=rwc"))
    } else if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
        Ok(uri.to_string())
    } else {
        Err(Error::Config(format!(
            "{what} URI {uri:?} is not supported: expected sqlite://PATH or postgres://…"
        )))
    }
}

/// The SQL pool retries a refused connection for 30 s before failing; a plain TCP connect
/// tells at once that a PostgreSQL catalog is not there.
async fn check_reachable(uri: &str) -> Result<()> {
    let Ok(parsed) = url::Url::parse(uri) else {
        return Ok(());
    };
    let (Some(host), Some(port)) = (
        parsed.host_str(),
        parsed.port_or_known_default().or(Some(5432)),
    ) else {
        return Ok(());
    };
    if parsed.scheme() == "sqlite" {
        return Ok(());
    }
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Config(format!(
            "cannot reach the catalog at {host}:{port}: {e}"
        ))),
        Err(_) => Err(Error::Config(format!(
            "cannot reach the catalog at {host}:{port}: no answer within 10 s"
        ))),
    }
}

/// Tables in a local warehouse are written with iceberg-rust's own file storage; an S3
/// warehouse, or opening tables wherever they are, takes OpenDAL's, which follows each path's
/// scheme (`s3://`, `file://`).
fn storage_factory(warehouse: Option<&str>) -> Arc<dyn StorageFactory> {
    match warehouse.is_some_and(|url| url.starts_with("file://")) {
        true => Arc::new(LocalFsStorageFactory),
        false => Arc::new(OpenDalResolvingStorageFactory::new()),
    }
}

/// Refuses a warehouse that is neither a local path, a `file://` URL nor an `s3://BUCKET…`
/// (or `s3a://`) URL.
pub fn check_warehouse(warehouse: &str) -> Result<()> {
    let supported = match warehouse.split_once("://") {
        None => !warehouse.trim().is_empty(),
        Some(("file", path)) => !path.is_empty(),
        Some(("s3" | "s3a", path)) => path.split('/').next().is_some_and(|b| !b.is_empty()),
        Some(_) => false,
    };
    match supported {
        true => Ok(()),
        false => Err(Error::Config(format!(
            "warehouse {warehouse:?}: expected a local directory, file://PATH or s3://BUCKET/PREFIX"
        ))),
    }
}

/// Local warehouse paths become absolute `file://` URLs so every reader resolves them alike;
/// `s3://` (and `s3a://`) URLs are kept as they are.
fn warehouse_url(warehouse: &str) -> Result<String> {
    check_warehouse(warehouse)?;
    if warehouse.contains("://") {
        return Ok(warehouse.trim_end_matches('/').to_string());
    }
    std::fs::create_dir_all(warehouse)
        .map_err(|e| Error::Config(format!("cannot create warehouse {warehouse}: {e}")))?;
    let abs = std::fs::canonicalize(warehouse)
        .map_err(|e| Error::Config(format!("cannot resolve warehouse {warehouse}: {e}")))?;
    Ok(format!("file://{}", abs.display()))
}

/// A catalog view pinned to one table state, so that a commit is checked against exactly the
/// state the caller validated its offsets against.
///
/// iceberg-rust's `Transaction::commit` reloads the table and silently rebases onto a newer
/// snapshot, retrying on conflicts. That is right for plain appends but would let a writer that
/// lost its partitions commit them again. Pinning the base and turning conflicts into
/// non-retryable errors hands the decision back to the caller's fence.
#[derive(Debug)]
pub(crate) struct PinnedCatalog<'a> {
    pub inner: &'a dyn IcebergCatalog,
    pub base: Table,
}

#[async_trait]
impl IcebergCatalog for PinnedCatalog<'_> {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        if table == self.base.identifier() {
            Ok(self.base.clone())
        } else {
            self.inner.load_table(table).await
        }
    }

    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(
        &self,
        table: &TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }

    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        self.inner
            .update_table(commit)
            .await
            .map_err(|e| e.with_retryable(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_settings_come_before_the_environment_and_a_custom_endpoint_means_path_style() {
        let env = |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some("http://env:9000".to_string()),
            "AWS_DEFAULT_REGION" => Some("eu-west-1".to_string()),
            _ => None,
        };
        let props = |s: &S3Settings, env: &dyn Fn(&str) -> Option<String>| {
            let p = s.properties_with(env);
            [S3_ENDPOINT, S3_REGION, S3_PATH_STYLE_ACCESS].map(|k| p.get(k).cloned())
        };
        let some = |v: &str| Some(v.to_string());
        assert_eq!(
            props(&S3Settings::default(), &env),
            [some("http://env:9000"), some("eu-west-1"), some("true")]
        );
        let set = S3Settings {
            endpoint: Some("http://minio:9000".into()),
            region: Some("us-west-2".into()),
            path_style: Some(false),
        };
        assert_eq!(
            props(&set, &env),
            [some("http://minio:9000"), some("us-west-2"), some("false")]
        );
        assert_eq!(
            props(&S3Settings::default(), &|_| None),
            [None, some("us-east-1"), some("false")]
        );
    }

    #[test]
    fn warehouses_are_local_paths_file_urls_or_s3_buckets() {
        for ok in [
            "./warehouse",
            "/data/wh",
            "file:///data/wh",
            "s3://lake",
            "s3a://lake/wh/",
        ] {
            assert!(check_warehouse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "s3://", "s3:///wh", "gs://lake/wh", "file://"] {
            assert!(check_warehouse(bad).is_err(), "{bad:?}");
        }
    }
}
