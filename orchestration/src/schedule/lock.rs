//! One scheduler per job and lakehouse: a lock per job, taken at start and held for the
//! scheduler's whole life.
//!
//! Why these locks: both are released by the operating system or the database the moment
//! their holder dies (crash and SIGKILL included), so a dead scheduler never blocks a job and
//! there is no lease that could expire under a live but slow holder and let a second scheduler
//! start the job beside it. A lock row with a heartbeat has exactly that window.
//! - SQLite catalog: `flock` on a file beside the catalog database (the database is a local
//!   file, so every scheduler that shares it is on this machine).
//! - PostgreSQL catalog: a session advisory lock on a connection kept open; it is checked
//!   before every start, because a connection that breaks takes the lock with it.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;

/// The locks of every job of one scheduler.
pub enum JobLocks {
    /// Lock files, one per job, kept open: closing them (at exit) releases the locks.
    Files { _open: Vec<std::fs::File> },
    /// The session holding one advisory lock per job.
    Postgres {
        options: Box<PgConnectOptions>,
        conn: Box<PgConnection>,
    },
}

/// Who holds a lock: written into the lock file, and the application name of the lock's
/// PostgreSQL session, so a refused scheduler can say whom it lost to.
fn holder() -> String {
    format!(
        "medallion schedule on {} (pid {}) since {}",
        super::runs::hostname(),
        std::process::id(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The advisory lock key of a job, computed by the server so every scheduler agrees on it.
const PG_KEY: &str = "hashtextextended('medallion.schedule/' || $1, 0)";

impl JobLocks {
    /// Takes every job's lock, or fails naming the first job another scheduler holds.
    pub async fn acquire(catalog_uri: &str, jobs: &[&str]) -> Result<Self> {
        if catalog_uri.starts_with("http://") || catalog_uri.starts_with("https://") {
            bail!(
                "lakehouse.catalog {catalog_uri}: the scheduler keeps its job locks in the SQL \
                 catalog's database, so it needs a sqlite:// or postgres:// catalog, not a REST one"
            );
        }
        match catalog_uri.strip_prefix("sqlite://") {
            Some(path) => Self::files(path.split('?').next().unwrap_or(path), jobs),
            None => Self::postgres(catalog_uri, jobs).await,
        }
    }

    fn files(db: &str, jobs: &[&str]) -> Result<Self> {
        use std::io::Write;
        let dir = PathBuf::from(format!("{db}.schedule-locks"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the lock directory {}", dir.display()))?;
        let mut files = Vec::new();
        for job in jobs {
            let path = dir.join(format!("{job}.lock"));
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot open the lock file {}", path.display()))?;
            // SAFETY: flock on a file descriptor this function owns; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let by = std::fs::read_to_string(&path).unwrap_or_default();
                    bail!(
                        "job {job} is already scheduled by another scheduler ({}; lock {})",
                        by.trim(),
                        path.display()
                    );
                }
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
            file.set_len(0)?;
            writeln!(file, "{}", holder())?;
            files.push(file);
        }
        Ok(Self::Files { _open: files })
    }

    async fn postgres(uri: &str, jobs: &[&str]) -> Result<Self> {
        let options: PgConnectOptions = uri
            .parse()
            .with_context(|| format!("catalog URI {uri:?}"))?;
        let options = options.application_name(&holder());
        let mut conn = Box::new(
            options
                .connect()
                .await
                .with_context(|| format!("cannot connect to the catalog {uri} for job locks"))?,
        );
        for job in jobs {
            let locked: bool =
                sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({PG_KEY})"))
                    .bind(*job)
                    .fetch_one(conn.as_mut())
                    .await
                    .with_context(|| format!("cannot lock job {job}"))?;
            if !locked {
                let by: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                     AND ((l.classid::bigint << 32) | l.objid::bigint) = {PG_KEY} LIMIT 1"
                ))
                .bind(*job)
                .fetch_optional(conn.as_mut())
                .await
                .unwrap_or_default();
                bail!(
                    "job {job} is already scheduled by another scheduler ({})",
                    by.unwrap_or_else(|| "holder unknown".into())
                );
            }
        }
        Ok(Self::Postgres {
            options: Box::new(options),
            conn,
        })
    }

    /// Whether this scheduler still holds `job`'s lock (checked before every start). A
    /// PostgreSQL session that broke lost its locks: it is reopened and the lock taken again if
    /// no other scheduler took it meanwhile.
    pub async fn still_held(&mut self, job: &str) -> Result<()> {
        let Self::Postgres { options, conn } = self else {
            // A lock file stays locked as long as this process keeps it open.
            return Ok(());
        };
        let held: Result<bool, sqlx::Error> = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objsubid = 1 AND pid = pg_backend_pid() \
             AND ((classid::bigint << 32) | objid::bigint) = {PG_KEY})"
        ))
        .bind(job)
        .fetch_one(conn.as_mut())
        .await;
        if let Ok(true) = held {
            return Ok(());
        }
        tracing::warn!(job, error = ?held.err(), "the job's lock session broke: locking again");
        **conn = options
            .connect()
            .await
            .context("cannot reconnect to the catalog for the job lock")?;
        let locked: bool = sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({PG_KEY})"))
            .bind(job)
            .fetch_one(conn.as_mut())
            .await
            .context("cannot lock the job again")?;
        if !locked {
            bail!("another scheduler took the job's lock while the session was broken");
        }
        Ok(())
    }
}
