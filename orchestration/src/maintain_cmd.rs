//! `medallion maintain`: compaction, snapshot expiry, orphan removal and retention.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use lakehouse::{CompactOptions, ExpireOptions, Table};
use pipelines::maintain::{default_retention, followed_snapshots, STATE_PROPERTIES};
use pipelines::progress::Unit;
use pipelines::spec::{parse_bytes, parse_duration, PipelineSpec};

/// Where the tables are.
#[derive(Args)]
pub struct Target {
    /// The pipeline spec whose `[lakehouse]` holds the tables.
    #[arg(long, env = "MEDALLION_SPEC")]
    spec: PathBuf,
    /// The tables, e.g. bronze.events silver.purchases.
    #[arg(required = true, num_args = 1..)]
    tables: Vec<String>,
}

#[derive(Subcommand)]
pub enum MaintainCommand {
    /// Rewrite each partition's small files into files of about the target size (one replace
    /// commit per group; safe while pipelines append).
    Compact {
        #[command(flatten)]
        target: Target,
        /// The size rewritten files aim at; files under 3/4 of it count as small.
        #[arg(long, default_value = "128MiB", value_parser = parse_bytes)]
        target_size: u64,
        /// Compact a partition only when it has at least this many small files.
        #[arg(long, default_value_t = 5)]
        min_files: usize,
    },
    /// Remove old snapshots and the files only they referenced. Snapshots the silver and gold
    /// tables reading the table still start from stay, with every later one.
    Expire {
        #[command(flatten)]
        target: Target,
        /// The newest snapshots that stay whatever their age.
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
        /// Snapshots younger than this stay.
        #[arg(long, default_value = "5d", value_parser = parse_duration)]
        max_age: Duration,
    },
    /// Delete files under the tables' locations that no snapshot references.
    Orphans {
        #[command(flatten)]
        target: Target,
        /// Only files older than this go (younger ones may belong to a commit in progress).
        #[arg(long, default_value = "3d", value_parser = parse_duration)]
        older_than: Duration,
        /// List the orphans without deleting them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop the partitions older than the retention period (defaults: bronze 90 days, silver 2
    /// years, gold 7 years; raw topics are Kafka's retention's business).
    Retention {
        #[command(flatten)]
        target: Target,
        /// How long rows stay, by their time column (default: the table's layer's).
        #[arg(long, value_parser = parse_duration)]
        keep: Option<Duration>,
        /// The timestamp column (default: the column the table is partitioned by day on).
        #[arg(long)]
        column: Option<String>,
    },
}

impl MaintainCommand {
    /// The pipeline spec the command maintains the tables of.
    pub fn spec(&self) -> &Path {
        &self.target().spec
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Compact { .. } => "compact",
            Self::Expire { .. } => "expire",
            Self::Orphans { .. } => "orphans",
            Self::Retention { .. } => "retention",
        }
    }

    fn target(&self) -> &Target {
        match self {
            Self::Compact { target, .. }
            | Self::Expire { target, .. }
            | Self::Orphans { target, .. }
            | Self::Retention { target, .. } => target,
        }
    }
}

pub async fn run(command: &MaintainCommand) -> Result<()> {
    let target = command.target();
    let origin = target.spec.display().to_string();
    let spec = PipelineSpec::from_file(&target.spec)?;
    let catalog = lakehouse::connect(&(&spec.lakehouse).into())
        .await
        .with_context(|| format!("{origin}: lakehouse.catalog"))?;
    let progress = pipelines::progress::start(
        format!("maintain {}", command.name()),
        Unit::Tables,
        Some(target.tables.len() as u64),
    );
    let also = spec_tables(&spec);
    for name in &target.tables {
        let Some(mut table) = Table::open_existing(catalog.clone(), name).await? else {
            anyhow::bail!("{origin}: table {name} does not exist");
        };
        let parquet = || {
            anyhow::anyhow!(
                "{origin}: {name} is a parquet table: its files are never rewritten, so it has nothing to compact, expire or drop"
            )
        };
        let mut out = String::new();
        match command {
            MaintainCommand::Compact {
                target_size,
                min_files,
                ..
            } => {
                let options = CompactOptions {
                    target_file_size: *target_size,
                    min_input_files: *min_files,
                };
                let r = match &mut table {
                    Table::Iceberg(t) => t.compact(&options, &STATE_PROPERTIES).await?,
                    Table::Delta(t) => t.compact(&options).await?,
                    Table::Parquet(_) => return Err(parquet()),
                };
                writeln!(
                    out,
                    "{name}: compacted {} files into {} ({} rows, {} commits, {} groups skipped): {} data files -> {}",
                    r.rewritten, r.written, r.rows, r.commits, r.skipped, r.files_before, r.files_after
                )?;
            }
            MaintainCommand::Expire {
                keep_last, max_age, ..
            } => {
                let followed = followed_snapshots(&catalog, &mut table, &also).await?;
                for (reader, snapshot) in &followed {
                    tracing::info!(table = %name, reader = %reader, snapshot, "kept for a reader");
                }
                let options = ExpireOptions {
                    keep_last: *keep_last,
                    max_age: *max_age,
                    protect: followed.iter().map(|(_, s)| *s).collect(),
                };
                match &mut table {
                    Table::Iceberg(t) => {
                        let r = t.expire_snapshots(&options, &STATE_PROPERTIES).await?;
                        writeln!(
                            out,
                            "{name}: expired {} snapshots, kept {}; deleted {} data files and {} manifests and manifest lists",
                            r.expired, r.kept, r.data_files_deleted, r.metadata_files_deleted
                        )?;
                    }
                    Table::Delta(t) => {
                        let r = t.expire(&options).await?;
                        writeln!(
                            out,
                            "{name}: vacuumed {} data files removed more than {:?} ago; deleted {} commit files of the log",
                            r.files.len(),
                            r.retention,
                            r.log_files
                        )?;
                    }
                    Table::Parquet(_) => return Err(parquet()),
                }
            }
            MaintainCommand::Orphans {
                older_than,
                dry_run,
                ..
            } => {
                let verb = if *dry_run { "would delete" } else { "deleted" };
                // Delta's vacuum also deletes removed files: those readers still need stay.
                let protect: Vec<i64> = match table {
                    Table::Delta(_) => followed_snapshots(&catalog, &mut table, &also)
                        .await?
                        .into_iter()
                        .map(|(_, s)| s)
                        .collect(),
                    _ => Vec::new(),
                };
                let orphans = match &mut table {
                    Table::Iceberg(t) => {
                        let r = t.remove_orphans(*older_than, *dry_run).await?;
                        writeln!(
                            out,
                            "{name}: {} files scanned; {verb} {} orphans; {} unreferenced files younger than {older_than:?} left",
                            r.scanned,
                            r.orphans.len(),
                            r.young
                        )?;
                        r.orphans
                    }
                    Table::Delta(t) => {
                        let r = t.remove_orphans(*older_than, &protect, *dry_run).await?;
                        writeln!(
                            out,
                            "{name}: {verb} {} files the current version does not reference, older than {:?}",
                            r.files.len(),
                            r.retention
                        )?;
                        r.files
                    }
                    Table::Parquet(_) => return Err(parquet()),
                };
                for path in &orphans {
                    writeln!(out, "  {path}")?;
                }
            }
            MaintainCommand::Retention { keep, column, .. } => {
                let Some(keep) = keep.or_else(|| default_retention(name)) else {
                    anyhow::bail!(
                        "{name} is not in the bronze, silver or gold namespace: say how long it keeps rows with --keep"
                    );
                };
                let partitioned = match &table {
                    Table::Iceberg(t) => t.partition_column(),
                    _ => time_column(&spec, name),
                };
                let Some(column) = column.clone().or(partitioned) else {
                    anyhow::bail!(
                        "{name} is not partitioned: name its timestamp column with --column"
                    );
                };
                let cutoff = chrono::Utc::now() - keep;
                let cutoff_micros = cutoff.timestamp_micros();
                let r = match &mut table {
                    Table::Iceberg(t) => {
                        t.drop_before(&column, cutoff_micros, &STATE_PROPERTIES)
                            .await?
                    }
                    Table::Delta(t) => t.drop_before(&column, cutoff_micros).await?,
                    Table::Parquet(_) => return Err(parquet()),
                };
                writeln!(
                    out,
                    "{name}: removed {} files ({} rows) with {column} before {}",
                    r.files,
                    r.rows,
                    cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )?;
            }
        }
        crate::progress::suspend(|| print!("{out}"));
        progress.advance(1);
    }
    progress.finish();
    Ok(())
}

/// Every table the spec writes.
fn spec_tables(spec: &PipelineSpec) -> Vec<String> {
    let bronze = spec.bronze.iter().map(|b| b.table.clone());
    let silver = spec.silver.iter().map(|s| s.table.clone());
    bronze
        .chain(silver)
        .chain(spec.gold.iter().map(|g| g.table.clone()))
        .collect()
}

/// The timestamp column retention goes by in a table of the spec that is not partitioned: a
/// bronze table's event time, a gold table's window start.
fn time_column(spec: &PipelineSpec, name: &str) -> Option<String> {
    let bronze = spec.bronze.iter().find(|b| b.table == name);
    let gold = spec.gold.iter().find(|g| g.table == name);
    bronze
        .map(|b| b.event_time.clone())
        .or(gold.map(|_| "window_start".to_string()))
}
