//! The registry's tables, in SQLite or PostgreSQL through sqlx's `Any` driver. The SQL is
//! the common subset of both: `$N` placeholders, BIGINT for integers and flags, and
//! `ON CONFLICT … DO UPDATE` for upserts.

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Row;

use super::error::{RegistryError, Result};

const DDL: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS medallion_registry_schemas (
        id BIGINT PRIMARY KEY,
        schema_type TEXT,
        canonical TEXT NOT NULL UNIQUE,
        schema TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS medallion_registry_versions (
        subject TEXT NOT NULL,
        version BIGINT NOT NULL,
        schema_id BIGINT NOT NULL,
        deleted BIGINT NOT NULL,
        PRIMARY KEY (subject, version))",
    "CREATE TABLE IF NOT EXISTS medallion_registry_config (
        subject TEXT PRIMARY KEY,
        compatibility TEXT)",
    "CREATE TABLE IF NOT EXISTS medallion_registry_mode (
        subject TEXT PRIMARY KEY,
        mode TEXT)",
];

/// How often a write that lost a race for an id or version (to another registry process on
/// the same database) is tried again.
const WRITE_ATTEMPTS: usize = 5;

/// The subject under which the global setting is stored.
pub(crate) const GLOBAL: &str = "";

/// One version of a subject, with its schema.
#[derive(Debug, Clone)]
pub(crate) struct VersionRow {
    pub subject: String,
    pub version: i64,
    pub id: i64,
    pub schema: String,
    pub deleted: bool,
}

/// A version to add; `id` and `version` are given only in IMPORT mode.
pub(crate) struct NewVersion<'a> {
    pub subject: &'a str,
    pub canonical: &'a str,
    pub schema: &'a str,
    pub id: Option<i64>,
    pub version: Option<i64>,
}

/// A per-subject setting, each in its own table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Setting {
    Compatibility,
    Mode,
}

impl Setting {
    fn table_and_column(self) -> (&'static str, &'static str) {
        match self {
            Setting::Compatibility => ("medallion_registry_config", "compatibility"),
            Setting::Mode => ("medallion_registry_mode", "mode"),
        }
    }
}

pub(crate) struct Store {
    pool: AnyPool,
}

impl Store {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…` and creates the
    /// tables if they are not there.
    pub(crate) async fn open(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let url = lakehouse::database_url(url, "registry store")?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .with_context(|| format!("connecting to the registry store {}", redacted(&url)))?;
        for ddl in DDL {
            sqlx::query(ddl)
                .execute(&pool)
                .await
                .context("creating the registry tables")?;
        }
        Ok(Store { pool })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// The schema with this id, if some subject version (deleted or not) refers to it.
    pub(crate) async fn schema(&self, id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT schema FROM medallion_registry_schemas s WHERE id = $1 AND EXISTS
                (SELECT 1 FROM medallion_registry_versions v WHERE v.schema_id = s.id)",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The id of the schema with this canonical form, if registered.
    pub(crate) async fn schema_id(&self, canonical: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM medallion_registry_schemas WHERE canonical = $1")
                .bind(canonical)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The (subject, version) pairs using schema `id`, sorted.
    pub(crate) async fn uses_of_schema(
        &self,
        id: i64,
        deleted: bool,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT subject, version FROM medallion_registry_versions
             WHERE schema_id = $1 AND (deleted = 0 OR $2 = 1)",
        )
        .bind(id)
        .bind(i64::from(deleted))
        .fetch_all(&self.pool)
        .await?;
        let mut uses = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        uses.sort();
        Ok(uses)
    }

    /// Subjects with at least one version not deleted (or any version, with `deleted`).
    pub(crate) async fn subjects(&self, deleted: bool) -> Result<Vec<String>> {
        let mut subjects: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT subject FROM medallion_registry_versions WHERE deleted = 0 OR $1 = 1",
        )
        .bind(i64::from(deleted))
        .fetch_all(&self.pool)
        .await?;
        // Sorted here: PostgreSQL's collation depends on the database's locale.
        subjects.sort();
        Ok(subjects)
    }

    /// The subject's versions not deleted (or all, with `deleted`), oldest first.
    pub(crate) async fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<VersionRow>> {
        let rows = sqlx::query(
            "SELECT v.version, v.schema_id, s.schema, v.deleted
             FROM medallion_registry_versions v
             JOIN medallion_registry_schemas s ON s.id = v.schema_id
             WHERE v.subject = $1 AND (v.deleted = 0 OR $2 = 1)
             ORDER BY v.version",
        )
        .bind(subject)
        .bind(i64::from(deleted))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VersionRow {
                    subject: subject.to_string(),
                    version: r.try_get(0)?,
                    id: r.try_get(1)?,
                    schema: r.try_get(2)?,
                    deleted: r.try_get::<i64, _>(3)? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(RegistryError::from)
    }

    /// Adds a version, registering its schema under a new id unless the same canonical
    /// schema has one. Returns the schema id and the version number.
    pub(crate) async fn insert_version(&self, new: &NewVersion<'_>) -> Result<(i64, i64)> {
        let mut attempt = 1;
        loop {
            match self.try_insert_version(new).await {
                Err(RegistryError::Store(sqlx::Error::Database(e)))
                    if e.is_unique_violation() && attempt < WRITE_ATTEMPTS =>
                {
                    tracing::debug!(subject = new.subject, attempt, error = %e, "registry write lost a race; retrying");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn try_insert_version(&self, new: &NewVersion<'_>) -> Result<(i64, i64)> {
        let mut tx = self.pool.begin().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM medallion_registry_schemas WHERE canonical = $1")
                .bind(new.canonical)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match (existing, new.id) {
            (Some(id), Some(wanted)) if id != wanted => {
                return Err(RegistryError::ImportSchemaHasId { id, wanted })
            }
            (Some(id), _) => id,
            (None, wanted) => {
                let id = match wanted {
                    Some(wanted) => {
                        let taken: Option<i64> = sqlx::query_scalar(
                            "SELECT id FROM medallion_registry_schemas WHERE id = $1",
                        )
                        .bind(wanted)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if taken.is_some() {
                            return Err(RegistryError::ImportIdTaken(wanted));
                        }
                        wanted
                    }
                    None => {
                        sqlx::query_scalar(
                            "SELECT COALESCE(MAX(id), 0) + 1 FROM medallion_registry_schemas",
                        )
                        .fetch_one(&mut *tx)
                        .await?
                    }
                };
                sqlx::query(
                    "INSERT INTO medallion_registry_schemas (id, schema_type, canonical, schema)
                     VALUES ($1, 'AVRO', $2, $3)",
                )
                .bind(id)
                .bind(new.canonical)
                .bind(new.schema)
                .execute(&mut *tx)
                .await?;
                id
            }
        };
        let version = match new.version {
            Some(version) => {
                let taken: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM medallion_registry_versions
                     WHERE subject = $1 AND version = $2",
                )
                .bind(new.subject)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_some() {
                    return Err(RegistryError::ImportVersionTaken(version));
                }
                version
            }
            // Soft-deleted versions count: a version number is never given to another schema.
            None => {
                sqlx::query_scalar(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM medallion_registry_versions
                     WHERE subject = $1",
                )
                .bind(new.subject)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        sqlx::query(
            "INSERT INTO medallion_registry_versions (subject, version, schema_id, deleted)
             VALUES ($1, $2, $3, 0)",
        )
        .bind(new.subject)
        .bind(version)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((id, version))
    }

    pub(crate) async fn soft_delete_subject(&self, subject: &str) -> Result<()> {
        sqlx::query("UPDATE medallion_registry_versions SET deleted = 1 WHERE subject = $1")
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn soft_delete_version(&self, subject: &str, version: i64) -> Result<()> {
        sqlx::query(
            "UPDATE medallion_registry_versions SET deleted = 1 WHERE subject = $1 AND version = $2",
        )
        .bind(subject)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the subject's versions and its own settings. The schemas stay, so their ids
    /// are never given to other schemas.
    pub(crate) async fn hard_delete_subject(&self, subject: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM medallion_registry_versions WHERE subject = $1",
            "DELETE FROM medallion_registry_config WHERE subject = $1",
            "DELETE FROM medallion_registry_mode WHERE subject = $1",
        ] {
            sqlx::query(sql).bind(subject).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn hard_delete_version(&self, subject: &str, version: i64) -> Result<()> {
        sqlx::query("DELETE FROM medallion_registry_versions WHERE subject = $1 AND version = $2")
            .bind(subject)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The subject's own setting ([`GLOBAL`] for the global one), if set.
    pub(crate) async fn setting(&self, setting: Setting, subject: &str) -> Result<Option<String>> {
        let (table, column) = setting.table_and_column();
        let value: Option<Option<String>> =
            sqlx::query_scalar(&format!("SELECT {column} FROM {table} WHERE subject = $1"))
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        Ok(value.flatten())
    }

    pub(crate) async fn set_setting(
        &self,
        setting: Setting,
        subject: &str,
        value: &str,
    ) -> Result<()> {
        let (table, column) = setting.table_and_column();
        sqlx::query(&format!(
            "INSERT INTO {table} (subject, {column}) VALUES ($1, $2)
             ON CONFLICT (subject) DO UPDATE SET {column} = excluded.{column}"
        ))
        .bind(subject)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn delete_setting(&self, setting: Setting, subject: &str) -> Result<()> {
        let (table, _) = setting.table_and_column();
        sqlx::query(&format!("DELETE FROM {table} WHERE subject = $1"))
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}://***{}", &url[..start], &url[at..]),
        _ => url.to_string(),
    }
}
