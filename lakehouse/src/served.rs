//! The writes an Iceberg REST catalog serves (`medallion catalog serve --read-write`), made on
//! this catalog: namespaces and tables created, and table commits checked against their
//! requirements and made with [`Catalog::commit`], the path medallion's own commits take.

use std::collections::HashMap;

use iceberg::spec::TableMetadata;
use iceberg::{NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_rest::{CommitTableRequest, CreateTableRequest};

use crate::catalog::{Catalog, MetadataCommit};
use crate::error::{Error, Result};

/// How many times a served commit whose requirements hold is retried after another commit
/// landed between loading the table and swapping its metadata.
const MAX_SERVED_RETRIES: u32 = 10;

/// What a served write led to.
#[derive(Debug)]
pub enum Served {
    /// The table now points at `metadata_location`, holding `metadata`.
    Table {
        metadata_location: String,
        metadata: Box<TableMetadata>,
    },
    /// A requirement does not hold on the table's current state.
    Conflict(String),
    /// The request cannot be applied.
    Invalid(String),
    NoSuchNamespace,
    NoSuchTable,
    AlreadyExists,
}

impl Catalog {
    /// Creates `namespace`; `false` when it exists already.
    pub async fn create_namespace(
        &self,
        namespace: &str,
        properties: HashMap<String, String>,
    ) -> Result<bool> {
        if self.has_namespace(namespace).await? {
            return Ok(false);
        }
        let ident = NamespaceIdent::new(namespace.to_string());
        self.iceberg()
            .create_namespace(&ident, properties)
            .await
            .map_err(self.catalog_err())?;
        Ok(true)
    }

    /// Creates the table a REST `CreateTableRequest` describes in `namespace`.
    pub async fn serve_create_table(
        &self,
        namespace: &str,
        request: CreateTableRequest,
    ) -> Result<Served> {
        if request.stage_create == Some(true) {
            return Ok(Served::Invalid(
                "staged table creation is not supported".to_string(),
            ));
        }
        if !self.has_namespace(namespace).await? {
            return Ok(Served::NoSuchNamespace);
        }
        let ns = NamespaceIdent::new(namespace.to_string());
        let ident = TableIdent::new(ns.clone(), request.name.clone());
        let catalog = self.iceberg();
        if catalog
            .table_exists(&ident)
            .await
            .map_err(self.catalog_err())?
        {
            return Ok(Served::AlreadyExists);
        }
        let creation = TableCreation::builder()
            .name(request.name)
            .location_opt(request.location)
            .schema(request.schema)
            .partition_spec_opt(request.partition_spec)
            .sort_order_opt(request.write_order)
            .properties(request.properties)
            .build();
        let table = catalog
            .create_table(&ns, creation)
            .await
            .map_err(self.catalog_err())?;
        Ok(Served::Table {
            metadata_location: table.metadata_location().unwrap_or_default().to_string(),
            metadata: Box::new(table.metadata().clone()),
        })
    }

    /// Commits a REST `CommitTableRequest` to `namespace.table`: every requirement is checked
    /// against the table's current state, and the updates are committed on that state. A
    /// commit landing in between is retried on the newer state while the requirements hold.
    pub async fn serve_commit(
        &self,
        namespace: &str,
        table: &str,
        request: CommitTableRequest,
    ) -> Result<Served> {
        let ident = TableIdent::new(
            NamespaceIdent::new(namespace.to_string()),
            table.to_string(),
        );
        if let Some(named) = &request.identifier {
            if named != &ident {
                return Ok(Served::Invalid(format!(
                    "the request names table {named}, the path {ident}"
                )));
            }
        }
        for _ in 0..MAX_SERVED_RETRIES {
            let base = match self.iceberg().load_table(&ident).await {
                Ok(base) => base,
                Err(e) if e.kind() == iceberg::ErrorKind::TableNotFound => {
                    return Ok(Served::NoSuchTable)
                }
                Err(e) if e.kind() == iceberg::ErrorKind::NamespaceNotFound => {
                    return Ok(Served::NoSuchNamespace)
                }
                Err(e) => return Err(self.catalog_err()(e)),
            };
            for requirement in &request.requirements {
                if let Err(e) = requirement.check(Some(base.metadata())) {
                    return Ok(Served::Conflict(e.to_string()));
                }
            }
            let outcome = self
                .commit(&base, request.requirements.clone(), request.updates.clone())
                .await?;
            match outcome {
                MetadataCommit::Committed {
                    metadata_location,
                    metadata,
                } => {
                    return Ok(Served::Table {
                        metadata_location,
                        metadata,
                    })
                }
                MetadataCommit::Invalid(reason) => return Ok(Served::Invalid(reason)),
                MetadataCommit::Conflict(reason) => {
                    tracing::debug!(table = %ident, %reason, "served commit raced, retrying");
                }
            }
        }
        Err(Error::Config(format!(
            "table {ident}: commit lost {MAX_SERVED_RETRIES} races to other writers"
        )))
    }
}
