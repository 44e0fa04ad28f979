//! `medallion registry serve`: a Confluent-compatible schema registry (AVRO only) kept in
//! SQLite or PostgreSQL, so a pipeline needs no JVM service beside it. Compatibility verdicts
//! come from `schemas::compat`, which names the field and the rule a change breaks.

mod api;
mod error;
mod store;

use std::str::FromStr;
use std::sync::Arc;

use apache_avro::Schema;
use schemas::compat::CompatibilityLevel;
use tokio::sync::Mutex;

use error::{RegistryError, Result};
use store::{Setting, Store, VersionRow, GLOBAL};

/// Serves the registry on `addr` until SIGTERM or SIGINT.
pub async fn serve(addr: &str, store_url: &str) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::open(store_url).await?);
    let served =
        crate::http::serve_until_signal(addr, Arc::clone(&registry).router(), "registry").await;
    registry.store.close().await;
    served
}

/// Serves the registry on a free loopback port in this process (for the demo); its URL.
pub async fn spawn_local(store_url: &str) -> anyhow::Result<String> {
    let registry = Arc::new(Registry::open(store_url).await?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, registry.router()).await {
            tracing::error!(error = %e, "in-process registry stopped");
        }
    });
    Ok(url)
}

/// The registry's state: its store, and a lock that orders this process's writes so that
/// checking a schema and adding it happen as one step.
pub(crate) struct Registry {
    store: Store,
    writes: Mutex<()>,
}

/// Whether (and how) the registry accepts new schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    ReadWrite,
    ReadOnly,
    /// Schemas keep the ids and versions they had elsewhere, unchecked.
    Import,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::Import => "IMPORT",
        }
    }
}

impl FromStr for Mode {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Mode> {
        [Mode::ReadWrite, Mode::ReadOnly, Mode::Import]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or(RegistryError::InvalidMode)
    }
}

impl Registry {
    pub(crate) async fn open(store_url: &str) -> anyhow::Result<Registry> {
        Ok(Registry {
            store: Store::open(store_url).await?,
            writes: Mutex::new(()),
        })
    }

    pub(crate) fn router(self: Arc<Self>) -> axum::Router {
        api::router(self)
    }

    /// The subject's own compatibility level, else the global one, else BACKWARD (`GLOBAL`:
    /// the global one).
    async fn compatibility(&self, subject: &str) -> Result<CompatibilityLevel> {
        self.in_force(
            Setting::Compatibility,
            subject,
            CompatibilityLevel::Backward,
        )
        .await
    }

    /// The subject's own mode, else the global one, else READWRITE.
    async fn mode(&self, subject: &str) -> Result<Mode> {
        self.in_force(Setting::Mode, subject, Mode::ReadWrite).await
    }

    /// A setting in force for `subject`: its own, else the global one, else `default`.
    async fn in_force<T: FromStr>(&self, setting: Setting, subject: &str, default: T) -> Result<T> {
        let own = match subject {
            GLOBAL => None,
            _ => self.store.setting(setting, subject).await?,
        };
        let value = match own {
            Some(value) => Some(value),
            None => self.store.setting(setting, GLOBAL).await?,
        };
        value.map_or(Ok(default), |v| parse_stored(&v))
    }
}

/// A setting read back from the store; it was validated when written, so failing to parse
/// means the table was changed behind the registry's back.
fn parse_stored<T: FromStr>(value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| RegistryError::Corrupt(format!("stored setting `{value}` is not valid")))
}

/// Parses stored versions for a compatibility check, as `check` wants them.
fn parsed_versions<'a>(
    rows: impl IntoIterator<Item = &'a VersionRow>,
) -> Result<Vec<(u32, Schema)>> {
    rows.into_iter()
        .map(|row| {
            let corrupt = |what: String| {
                RegistryError::Corrupt(format!(
                    "subject '{}' version {}: {what}",
                    row.subject, row.version
                ))
            };
            let version = u32::try_from(row.version)
                .map_err(|_| corrupt("version out of range".to_string()))?;
            let schema = Schema::parse_str(&row.schema)
                .map_err(|e| corrupt(format!("stored schema does not parse: {e}")))?;
            Ok((version, schema))
        })
        .collect()
}
