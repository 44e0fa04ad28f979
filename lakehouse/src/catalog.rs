use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::io::LocalFsStorageFactory;
use iceberg::table::Table;
use iceberg::{
    Catalog as IcebergCatalog, CatalogBuilder, Namespace, NamespaceIdent, TableCommit,
    TableCreation, TableIdent,
};
use iceberg_catalog_sql::{
    SqlBindStyle, SqlCatalog, SqlCatalogBuilder, SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI,
    SQL_CATALOG_PROP_WAREHOUSE,
};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use crate::error::{Error, Result};

/// The catalog name under which tables are registered (what pyiceberg and Trino's JDBC
/// catalog are configured with).
pub const CATALOG_NAME: &str = "medallion";

/// Where tables live and how they are found.
#[derive(Debug, Clone)]
pub struct LakehouseLocation {
    /// `sqlite://PATH` or `postgres://…`.
    pub catalog_uri: String,
    /// Directory (or URL) under which table data and metadata are written.
    pub warehouse: String,
}

/// The SQL catalog tables are registered in: the `iceberg_tables` that pyiceberg's SqlCatalog,
/// Iceberg's JDBC catalog and Trino's `jdbc` catalog share.
pub struct Catalog {
    sql: SqlCatalog,
    /// For commits iceberg-rust's transactions cannot make (taking data files out), which
    /// swap the metadata location themselves.
    pool: AnyPool,
    bind_style: SqlBindStyle,
    uri: String,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("uri", &self.uri).finish()
    }
}

impl Catalog {
    pub(crate) fn iceberg(&self) -> &dyn IcebergCatalog {
        &self.sql
    }

    fn catalog_err(&self) -> impl Fn(iceberg::Error) -> Error + '_ {
        |source| Error::Catalog {
            uri: self.uri.clone(),
            source: Box::new(source),
        }
    }

    /// Every namespace of the catalog, sorted.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        let listed = self
            .sql
            .list_namespaces(None)
            .await
            .map_err(self.catalog_err())?;
        let mut names: Vec<String> = listed.iter().map(|ns| ns.join(".")).collect();
        names.sort();
        Ok(names)
    }

    pub async fn has_namespace(&self, namespace: &str) -> Result<bool> {
        let ident = NamespaceIdent::new(namespace.to_string());
        self.sql
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
            .sql
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

    /// Points `table` at the metadata file `next` if and only if it still points at
    /// `expected`: the same compare-and-set iceberg-rust's SQL catalog commits with.
    pub(crate) async fn swap_metadata(
        &self,
        table: &TableIdent,
        expected: &str,
        next: &str,
    ) -> Result<bool> {
        let sql = match self.bind_style {
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
            .execute(&self.pool)
            .await
            .map_err(|source| Error::CatalogSql {
                uri: self.uri.clone(),
                source,
            })?;
        Ok(done.rows_affected() == 1)
    }
}

/// Opens the SQL catalog, creating the SQLite file and the warehouse directory if needed.
pub async fn connect(location: &LakehouseLocation) -> Result<Arc<Catalog>> {
    let (uri, bind_style) = catalog_uri(&location.catalog_uri)?;
    check_reachable(&location.catalog_uri).await?;
    let warehouse = warehouse_url(&location.warehouse)?;
    let props = HashMap::from([
        (SQL_CATALOG_PROP_URI.to_string(), uri.clone()),
        (SQL_CATALOG_PROP_WAREHOUSE.to_string(), warehouse),
        (
            SQL_CATALOG_PROP_BIND_STYLE.to_string(),
            bind_style.to_string(),
        ),
    ]);
    let sql = SqlCatalogBuilder::default()
        .with_storage_factory(Arc::new(LocalFsStorageFactory))
        .load(CATALOG_NAME, props)
        .await
        .map_err(|source| Error::Catalog {
            uri: location.catalog_uri.clone(),
            source: Box::new(source),
        })?;
    let pool = AnyPoolOptions::new()
        .max_connections(2)
        .connect_lazy(&uri)
        .map_err(|source| Error::CatalogSql {
            uri: location.catalog_uri.clone(),
            source,
        })?;
    Ok(Arc::new(Catalog {
        sql,
        pool,
        bind_style,
        uri: location.catalog_uri.clone(),
    }))
}

fn catalog_uri(uri: &str) -> Result<(String, SqlBindStyle)> {
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

/// Local warehouse paths become absolute `file://` URLs so every reader resolves them alike.
fn warehouse_url(warehouse: &str) -> Result<String> {
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
