//! `medallion`: raw Kafka topics into a queryable lakehouse.

mod demo;
mod generator;
mod http;
mod maintain_cmd;
mod metrics_http;
mod progress;
mod query_cmd;
mod registry;
mod rest_catalog;
mod schedule;
mod schema_cmd;
mod signals;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use pipelines::bronze::{self, BronzeConfig, KafkaConnection, RunOptions};
use pipelines::silver::{self, SilverConfig};
use pipelines::spec::PipelineSpec;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "medallion",
    version,
    about = "Streaming lakehouse ETL: Kafka → bronze, silver and gold Iceberg tables"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text (colored on a terminal) or as one JSON object each, for log
    /// collectors. Levels and targets: `MEDALLION_LOG` (e.g. `info,pipelines=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "MEDALLION_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline end to end on embedded parts (in-process Kafka, SQLite catalog).
    Demo {
        /// Where the demo's tables go (wiped first if the demo made it).
        #[arg(long, default_value = "./warehouse", env = "MEDALLION_WAREHOUSE")]
        warehouse: PathBuf,
        /// How many events to generate.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
    },
    /// Check a medallion command line without running it or connecting to anything: its
    /// flags, and every key and expression of the pipeline spec or schedule file it names.
    /// For deployment files checked in CI: `medallion check run pipelines/specs/web.toml --once`.
    Check {
        /// The command line to check, without `medallion`.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run a pipeline spec.
    Run {
        spec: PathBuf,
        /// Process what is in the topics now, commit, and exit.
        #[arg(long)]
        once: bool,
        /// Run only this stage's tables (default: every stage), e.g. bronze and silver in
        /// separate processes.
        #[arg(long, value_enum)]
        stage: Option<Stage>,
        /// After SIGTERM or SIGINT, how long the open batches may take to commit before the
        /// process exits anyway (status 1; the commit protocol keeps that safe).
        #[arg(long, default_value = "30s", value_parser = pipelines::spec::parse_duration, env = "MEDALLION_SHUTDOWN_TIMEOUT")]
        shutdown_timeout: std::time::Duration,
        /// Serve Prometheus metrics (`/metrics`), `/healthz` and `/readyz` on this address,
        /// e.g. 0.0.0.0:9464 (port 0 picks a free one; the address is printed).
        #[arg(long, env = "MEDALLION_METRICS_ADDR")]
        metrics_addr: Option<String>,
    },
    /// Run medallion commands (`run --once`, maintenance, reports) on cron schedules, each run
    /// recorded in the `ops.runs` table.
    Schedule(schedule::ScheduleArgs),
    /// Rebuild a time range of a silver table (rows) or a gold table (final windows, by
    /// start) from its source with the spec's current definition, swapped in atomically (one
    /// replace-files commit).
    Backfill {
        /// The table, e.g. silver.purchases or gold.revenue_per_minute.
        table: String,
        /// The pipeline spec that defines the table.
        #[arg(long, env = "MEDALLION_SPEC")]
        spec: PathBuf,
        /// Start of the range, inclusive: RFC 3339 (2026-11-03T10:00:00Z) or a UTC date
        /// (2026-11-03). Default: unbounded.
        #[arg(long)]
        from: Option<String>,
        /// End of the range, exclusive, in the same forms. Default: unbounded (gold: up to
        /// the last final window).
        #[arg(long)]
        to: Option<String>,
        /// Silver: the timestamp column the range is on (default: the table's
        /// partition_by_day). Gold ranges are on window_start.
        #[arg(long)]
        column: Option<String>,
    },
    /// Every table of the catalog: snapshots, rows, data files, last commit, pipeline state
    /// (Kafka offsets, cursors).
    Tables {
        /// The catalog: `sqlite://PATH`, `postgres://…` or an Iceberg REST `http(s)://…`.
        #[arg(long, env = "MEDALLION_CATALOG")]
        catalog: String,
        /// A local warehouse whose Delta and Parquet tables (not in the catalog) count too.
        #[arg(long, env = "MEDALLION_WAREHOUSE")]
        warehouse: Option<String>,
        #[arg(long, value_enum, default_value_t = query_cmd::Format::Table)]
        format: query_cmd::Format,
    },
    /// SQL (polars) over the tables' current versions, tables named as in the catalog:
    /// `medallion query "SELECT count(*) FROM bronze.web_events"`.
    Query {
        sql: String,
        /// The catalog: `sqlite://PATH`, `postgres://…` or an Iceberg REST `http(s)://…`.
        #[arg(long, env = "MEDALLION_CATALOG")]
        catalog: String,
        /// A local warehouse whose Delta and Parquet tables (not in the catalog) count too.
        #[arg(long, env = "MEDALLION_WAREHOUSE")]
        warehouse: Option<String>,
        #[arg(long, value_enum, default_value_t = query_cmd::Format::Table)]
        format: query_cmd::Format,
    },
    /// Table maintenance: compaction, snapshot expiry, orphan-file removal, retention.
    Maintain {
        #[command(subcommand)]
        command: maintain_cmd::MaintainCommand,
    },
    /// Produce a generated stream (web events as JSON or sensor readings as Avro) to a topic.
    Generate {
        #[arg(long, env = "MEDALLION_BROKERS")]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, value_enum, default_value_t = Kind::Web)]
        kind: Kind,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Check, register, compare and list Avro schemas in a schema registry.
    Schema {
        #[command(flatten)]
        registry: schema_cmd::RegistryArgs,
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// An Iceberg REST catalog over the SQL catalog (for DuckDB's ATTACH, Trino, Spark,
    /// pyiceberg), read-only unless `--read-write`.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// A Confluent-compatible schema registry (AVRO), kept in SQLite or PostgreSQL.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Data-quality reports.
    Quality {
        #[command(subcommand)]
        command: QualityCommand,
    },
}

#[derive(Subcommand)]
enum QualityCommand {
    /// Per table of a spec: rows over time, dead letters by reason with samples, dedupe rate,
    /// expectation pass rates, column profiles (nulls, distinct, min/max), freshness and lag,
    /// schema versions.
    Report {
        /// The pipeline spec whose tables, topics and dead-letter topics are reported.
        #[arg(long, env = "MEDALLION_SPEC")]
        spec: PathBuf,
        /// The period reported: commits, dead letters and expectation results this recent.
        #[arg(long, default_value = "24h", value_parser = pipelines::spec::parse_duration)]
        since: std::time::Duration,
        #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
        /// Write here instead of to standard output; `%Y`, `%m`, `%d`, `%H`, `%M` (UTC, now)
        /// name one file per run, e.g. `reports/quality-%Y-%m-%d.html` for a daily job.
        #[arg(long)]
        out: Option<String>,
        /// Profile at most about this many rows per table (its first data files').
        #[arg(long, default_value_t = 1_000_000)]
        sample_rows: usize,
        /// Dead-letter records shown per table and reason.
        #[arg(long, default_value_t = 3)]
        samples: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Html,
    Json,
    Md,
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Serve the catalog's tables over the Iceberg REST API until SIGTERM or SIGINT.
    Serve {
        /// Address to listen on (port 0 picks a free port; the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:8181", env = "MEDALLION_CATALOG_ADDR")]
        addr: String,
        /// The SQL catalog the pipelines write: `sqlite://PATH` or `postgres://…`.
        #[arg(long, env = "MEDALLION_CATALOG")]
        catalog: String,
        /// Also serve namespace and table creation and table commits, so that pipelines and
        /// other writers can use this endpoint as their catalog.
        #[arg(long, requires = "warehouse")]
        read_write: bool,
        /// Where tables created through the endpoint are put (with `--read-write`).
        #[arg(long, env = "MEDALLION_WAREHOUSE")]
        warehouse: Option<String>,
    },
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Serve the registry's REST API until SIGTERM or SIGINT.
    Serve {
        /// Address to listen on (port 0 picks a free port; the bound address is printed).
        #[arg(
            long,
            default_value = "127.0.0.1:8081",
            env = "MEDALLION_REGISTRY_ADDR"
        )]
        addr: String,
        /// Where schemas are kept: `sqlite://PATH` or `postgres://…`.
        #[arg(
            long,
            default_value = "sqlite://./warehouse/catalog.db",
            env = "MEDALLION_REGISTRY_STORE"
        )]
        store: String,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Would these schemas be accepted under their subjects' compatibility levels (and, with
    /// --spec, read by the pipeline's tables)? Exits 1 if not.
    Check {
        #[command(flatten)]
        targets: schema_cmd::Targets,
        /// Also check that the bronze tables this pipeline feeds from each subject can read
        /// the schema (with the schema each table reads with now).
        #[arg(long)]
        spec: Option<PathBuf>,
    },
    /// Register these schemas; exits 1 if the registry refuses any.
    Register(schema_cmd::Targets),
    /// The field changes between two versions of a subject (default: the last two).
    Diff {
        subject: String,
        from: Option<u32>,
        to: Option<u32>,
    },
    /// Every subject with its latest version, schema id and compatibility level.
    List,
    /// Show, or set, a subject's compatibility level (without SUBJECT: the global one).
    Level {
        /// The subject; `-` for the global level.
        subject: Option<String>,
        /// NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL or FULL_TRANSITIVE.
        level: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    Bronze,
    Silver,
    Gold,
}

impl Command {
    /// Whether the command does bounded work whose progress is worth showing.
    fn has_progress(&self) -> bool {
        matches!(
            self,
            Self::Run { once: true, .. } | Self::Backfill { .. } | Self::Maintain { .. }
        )
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// Web events, JSON.
    Web,
    /// Sensor readings, Avro (Confluent framing).
    Sensor,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // Escape codes only where a person watches; log collectors get the plain lines.
    if cli.log_format == LogFormat::Text
        && std::io::stderr().is_terminal()
        && cli.command.has_progress()
    {
        progress::show();
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEDALLION_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,pipelines=info,medallion=info")
            }),
        )
        .with_writer(|| progress::LogWriter);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    let outcome = dispatch(cli).await;
    progress::close();
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Runs the command; `Ok(false)` is a verdict (a schema check failed), not an error.
async fn dispatch(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Demo { warehouse, events } => demo::run(&warehouse, events).await?,
        Command::Check { command } => check(&command).await?,
        Command::Run {
            spec,
            once,
            stage,
            shutdown_timeout,
            metrics_addr,
        } => {
            if let Some(addr) = metrics_addr {
                metrics_http::spawn(&addr).await?;
            }
            run(&spec, once, stage, shutdown_timeout).await?
        }
        Command::Schedule(args) => return schedule::run(args).await,
        Command::Quality {
            command:
                QualityCommand::Report {
                    spec,
                    since,
                    format,
                    out,
                    sample_rows,
                    samples,
                },
        } => {
            let options = reports::Options {
                since,
                sample_rows,
                samples_per_reason: samples,
            };
            quality_report(&spec, &options, format, out.as_deref()).await?
        }
        Command::Backfill {
            table,
            spec,
            from,
            to,
            column,
        } => backfill(&spec, &table, from.as_deref(), to.as_deref(), column).await?,
        Command::Maintain { command } => maintain_cmd::run(&command).await?,
        Command::Tables {
            catalog,
            warehouse,
            format,
        } => {
            let catalog = connect_existing(&catalog, warehouse.as_deref()).await?;
            query_cmd::tables(&catalog, format).await?
        }
        Command::Query {
            sql,
            catalog,
            warehouse,
            format,
        } => {
            let catalog = connect_existing(&catalog, warehouse.as_deref()).await?;
            query_cmd::print(&pipelines::query::query(&catalog, &sql).await?, format)?
        }
        Command::Generate {
            brokers,
            topic,
            events,
            kind,
            seed,
        } => generate(&brokers, &topic, events, kind, seed).await?,
        Command::Schema { registry, command } => {
            let client = registry.client()?;
            return match command {
                SchemaCommand::Check { targets, spec } => {
                    let tables = match spec {
                        Some(spec) => schema_cmd::table_readers(&spec).await?,
                        None => Vec::new(),
                    };
                    schema_cmd::check(&client, &targets, &tables).await
                }
                SchemaCommand::Register(targets) => schema_cmd::register(&client, &targets).await,
                SchemaCommand::Diff { subject, from, to } => {
                    schema_cmd::diff(&client, &subject, from, to).await?;
                    Ok(true)
                }
                SchemaCommand::List => {
                    schema_cmd::list(&client).await?;
                    Ok(true)
                }
                SchemaCommand::Level { subject, level } => {
                    let subject = subject.as_deref().filter(|s| *s != "-");
                    schema_cmd::level(&client, subject, level.as_deref()).await?;
                    Ok(true)
                }
            };
        }
        Command::Catalog {
            command:
                CatalogCommand::Serve {
                    addr,
                    catalog,
                    read_write,
                    warehouse,
                },
        } => {
            let catalog = match warehouse {
                Some(warehouse) => connect_with_warehouse(&catalog, Some(&warehouse)).await?,
                None => connect_existing(&catalog, None).await?,
            };
            rest_catalog::serve(&addr, catalog, read_write).await?
        }
        Command::Registry {
            command: RegistryCommand::Serve { addr, store },
        } => registry::serve(&addr, &store).await?,
    }
    Ok(true)
}

/// `medallion check`: parses `args` as a medallion command and checks the files it names (a
/// schedule's jobs are checked in turn).
async fn check(args: &[String]) -> Result<()> {
    let argv = std::iter::once("medallion").chain(args.iter().map(String::as_str));
    let cli = Cli::try_parse_from(argv).map_err(|e| {
        anyhow::anyhow!(
            "not a medallion command line: {}",
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    let spec = match &cli.command {
        Command::Check { .. } => anyhow::bail!("`check` checks other commands, not itself"),
        Command::Run { spec, .. } | Command::Backfill { spec, .. } => Some(spec.clone()),
        Command::Quality {
            command: QualityCommand::Report { spec, out, .. },
        } => {
            if let Some(out) = out {
                report_path(out)?;
            }
            Some(spec.clone())
        }
        Command::Maintain { command } => Some(command.spec().to_path_buf()),
        Command::Schedule(args) => {
            let jobs = schedule::check_file(args)?;
            for job in &jobs {
                Box::pin(check(job)).await?;
            }
            println!("ok: {} ({} jobs)", args.file().display(), jobs.len());
            None
        }
        _ => None,
    };
    if let Some(spec) = spec {
        let [bronze, silver, gold] = check_spec(&spec).await?;
        println!(
            "ok: {} ({bronze} bronze, {silver} silver, {gold} gold tables compiled)",
            spec.display()
        );
    }
    println!("ok: medallion {}", args.join(" "));
    Ok(())
}

/// A spec with every table checked and the catalog connected.
struct Loaded {
    spec: PipelineSpec,
    bronze: Vec<BronzeConfig>,
    silver: Vec<SilverConfig>,
    gold: Vec<pipelines::gold::GoldConfig>,
    catalog: std::sync::Arc<lakehouse::Catalog>,
}

async fn load(path: &Path) -> Result<Loaded> {
    let origin = path.display().to_string();
    let spec = PipelineSpec::from_file(path)?;
    let bronze = bronze_configs(&spec, &origin)?;
    let catalog = lakehouse::connect(&(&spec.lakehouse).into())
        .await
        .with_context(|| format!("{origin}: lakehouse.catalog"))?;
    let silver = silver_configs(&spec, &bronze, Some(&catalog), &origin).await?;
    let gold = gold_configs(&spec, &silver, Some(&catalog), &origin).await?;
    Ok(Loaded {
        spec,
        bronze,
        silver,
        gold,
        catalog,
    })
}

/// Checks a spec as `load` does, without connecting to anything: silver and gold tables
/// compile against the columns this spec's own tables get (those reading a table another
/// spec writes are not compiled). The number of tables per layer checked.
async fn check_spec(path: &Path) -> Result<[usize; 3]> {
    let origin = path.display().to_string();
    let spec = PipelineSpec::from_file(path)?;
    let bronze = bronze_configs(&spec, &origin)?;
    let silver = silver_configs(&spec, &bronze, None, &origin).await?;
    let gold = gold_configs(&spec, &silver, None, &origin).await?;
    Ok([bronze.len(), silver.len(), gold.len()])
}

fn bronze_configs(spec: &PipelineSpec, origin: &str) -> Result<Vec<BronzeConfig>> {
    Ok(spec
        .bronze
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let config = BronzeConfig::from_spec(b, origin, i)?;
            match &spec.registry {
                Some(registry) => config.read_with_registry(registry, origin),
                None => Ok(config),
            }
        })
        .collect::<Result<_, _>>()?)
}

async fn run(
    path: &Path,
    once: bool,
    stage: Option<Stage>,
    shutdown_timeout: std::time::Duration,
) -> Result<()> {
    let Loaded {
        spec,
        bronze: configs,
        silver,
        gold,
        catalog,
    } = load(path).await?;
    let kafka = KafkaConnection::from(&spec.kafka);
    let options = RunOptions { once };
    let stop = stop_on_signal(shutdown_timeout)?;
    // Every table is checked at start; `--stage` only chooses which ones run.
    let runs = |s: Stage| stage.is_none_or(|only| only == s);
    let bronze_runs = futures::future::join_all(
        configs
            .iter()
            .filter(|_| runs(Stage::Bronze))
            .map(|c| bronze::run(&kafka, catalog.clone(), c, options, stop.clone())),
    );
    let silver_runs = || {
        futures::future::join_all(
            silver
                .iter()
                .filter(|_| runs(Stage::Silver))
                .map(|c| silver::run(&kafka, catalog.clone(), c, options, stop.clone())),
        )
    };
    let gold_runs = || {
        futures::future::join_all(
            gold.iter()
                .filter(|_| runs(Stage::Gold))
                .map(|c| pipelines::gold::run(&kafka, catalog.clone(), c, options, stop.clone())),
        )
    };
    // Once: each layer reads what the one below committed in this run. Continuously: side
    // by side.
    let (bronze_reports, silver_reports, gold_reports) = if once {
        let b = bronze_runs.await;
        let s = silver_runs().await;
        (b, s, gold_runs().await)
    } else {
        tokio::join!(bronze_runs, silver_runs(), gold_runs())
    };
    for report in gold_reports {
        let r = report?;
        tracing::info!(
            table = %r.table,
            source_snapshots = r.source_snapshots,
            rows_read = r.rows_read,
            rows = r.rows_written,
            late = r.late,
            no_event_time = r.untimed,
            alerts = r.alerts,
            commits = r.commits,
            open_windows = r.open_windows,
            state_bytes = r.state_bytes,
            "gold run finished"
        );
    }
    for report in silver_reports {
        let r = report?;
        tracing::info!(
            table = %r.table,
            source_snapshots = r.source_snapshots,
            rows_read = r.rows_read,
            rows = r.rows_written,
            dropped = r.rows_dropped,
            commits = r.commits,
            "silver run finished"
        );
    }
    for report in bronze_reports {
        let r = report?;
        tracing::info!(
            table = %r.table,
            consumed = r.records_consumed,
            rows = r.rows_written,
            duplicates = r.duplicates_dropped,
            dead_lettered = ?r.dead_lettered,
            commits = r.commits,
            fenced = r.fenced,
            columns_added = ?r.columns_added,
            registry_pauses = r.registry_pauses,
            "bronze run finished"
        );
    }
    Ok(())
}

async fn backfill(
    path: &Path,
    table: &str,
    from: Option<&str>,
    to: Option<&str>,
    column: Option<String>,
) -> Result<()> {
    let loaded = load(path).await?;
    let from = from.map(|t| parse_time("--from", t)).transpose()?;
    let to = to.map(|t| parse_time("--to", t)).transpose()?;
    if let Some(config) = loaded.gold.iter().find(|c| c.spec.table == table) {
        if column.is_some() {
            anyhow::bail!("{table} is a gold table: its range is on window_start, drop --column");
        }
        let r = pipelines::gold::backfill(loaded.catalog.clone(), config, from, to).await?;
        progress::close();
        let at = |micros: i64| {
            chrono::DateTime::from_timestamp_micros(micros).map_or(micros.to_string(), |t| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
        };
        println!(
            "{}: windows starting in [{}, {}) rebuilt from {} source rows up to snapshot {}: {} rows replaced by {}, {} alerts raised, {} files removed, {} added{}",
            r.table,
            r.from.map_or("the first window".to_string(), at),
            at(r.to),
            r.rows_read,
            r.source_snapshot,
            r.rows_replaced,
            r.rows_written,
            r.alerts,
            r.files_removed,
            r.files_added,
            match r.restarts {
                0 => String::new(),
                n => format!(" (started over {n} times: a live run committed meanwhile)"),
            }
        );
        return Ok(());
    }
    let Some(config) = loaded.silver.iter().find(|c| c.spec.table == table) else {
        let known: Vec<&str> = loaded
            .silver
            .iter()
            .map(|c| c.spec.table.as_str())
            .chain(loaded.gold.iter().map(|c| c.spec.table.as_str()))
            .collect();
        anyhow::bail!(
            "{}: no [[silver]] or [[gold]] table {table} (tables: {})",
            path.display(),
            known.join(", ")
        );
    };
    let column = match column.or_else(|| config.spec.partition_by_day.clone()) {
        Some(c) => c,
        None if from.is_none() && to.is_none() => String::new(),
        None => anyhow::bail!(
            "{table} has no partition_by_day column: name the timestamp column of the range with --column"
        ),
    };
    let range = silver::TimeRange { column, from, to };
    let kafka = KafkaConnection::from(&loaded.spec.kafka);
    let r = silver::backfill(&kafka, loaded.catalog.clone(), config, &range).await?;
    progress::close();
    println!(
        "{}: rebuilt from {} source snapshots up to {} ({} rows read): {} rows replaced by {} ({} dropped by expectations), {} files removed, {} added{}",
        r.table,
        r.source_snapshots,
        r.source_snapshot,
        r.rows_read,
        r.rows_replaced,
        r.rows_written,
        r.rows_dropped,
        r.files_removed,
        r.files_added,
        match r.restarts {
            0 => String::new(),
            n => format!("; started over {n} times because a live run committed"),
        }
    );
    for (name, failed) in r.expectation_failures.iter().filter(|(_, f)| **f > 0) {
        println!("  expectation {name}: {failed} rows failed");
    }
    Ok(())
}

/// Connects to a catalog that must exist already (a SQLite file is not created).
/// Connects to the existing catalog `uri`; with `warehouse`, a local directory, its Delta and
/// Parquet tables are found too.
async fn connect_existing(
    uri: &str,
    warehouse: Option<&str>,
) -> Result<std::sync::Arc<lakehouse::Catalog>> {
    if let Some(path) = uri.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        anyhow::ensure!(
            Path::new(path).is_file(),
            "--catalog {uri}: no SQLite catalog at {path}"
        );
    }
    // Reading Iceberg tables needs no warehouse: they carry their own locations, and S3 is
    // reached as the AWS environment variables say.
    if let Some(dir) = warehouse {
        anyhow::ensure!(
            Path::new(dir).is_dir(),
            "--warehouse {dir}: no such directory"
        );
    }
    connect_with_warehouse(uri, warehouse).await
}

/// Connects to the catalog `uri`, creating new tables under `warehouse`.
async fn connect_with_warehouse(
    uri: &str,
    warehouse: Option<&str>,
) -> Result<std::sync::Arc<lakehouse::Catalog>> {
    let location = lakehouse::LakehouseLocation {
        catalog_uri: uri.to_string(),
        warehouse: warehouse.map(str::to_string),
        s3: Default::default(),
    };
    lakehouse::connect(&location)
        .await
        .with_context(|| format!("--catalog {uri}"))
}

async fn quality_report(
    path: &Path,
    options: &reports::Options,
    format: ReportFormat,
    out: Option<&str>,
) -> Result<()> {
    let origin = path.display().to_string();
    let spec = PipelineSpec::from_file(path)?;
    let catalog = lakehouse::connect(&(&spec.lakehouse).into())
        .await
        .with_context(|| format!("{origin}: lakehouse.catalog"))?;
    let report = reports::build(&spec, &origin, catalog, options).await?;
    let format = match format {
        ReportFormat::Html => reports::Format::Html,
        ReportFormat::Json => reports::Format::Json,
        ReportFormat::Md => reports::Format::Markdown,
    };
    let text = reports::render(&report, format)?;
    let Some(out) = out else {
        print!("{text}");
        return Ok(());
    };
    let file = report_path(out)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out: creating {}", dir.display()))?;
    }
    std::fs::write(&file, text).with_context(|| format!("--out: writing {}", file.display()))?;
    println!("{}", file.display());
    Ok(())
}

/// `--out` with its strftime fields filled in for now (UTC).
fn report_path(out: &str) -> Result<PathBuf> {
    let mut file = String::new();
    // Writing (not `to_string`) so that a bad `%` field is an error, not a panic.
    std::fmt::Write::write_fmt(
        &mut file,
        format_args!("{}", chrono::Utc::now().format(out)),
    )
    .map_err(|_| anyhow::anyhow!("--out {out:?}: not a valid strftime pattern"))?;
    Ok(PathBuf::from(file))
}

/// A point in time given as RFC 3339 or as a UTC date, in microseconds since the epoch.
fn parse_time(flag: &str, text: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    anyhow::bail!(
        "{flag} {text:?} is neither RFC 3339 (2026-11-03T10:00:00Z) nor a date (2026-11-03)"
    )
}

/// The columns of `table` when a catalog is given and has it.
async fn existing_schema(
    catalog: Option<&std::sync::Arc<lakehouse::Catalog>>,
    table: &str,
) -> Result<Option<arrow::datatypes::SchemaRef>> {
    let Some(catalog) = catalog else {
        return Ok(None);
    };
    let table = lakehouse::Table::open_existing(catalog.clone(), table).await?;
    Ok(table.map(|t| t.arrow_schema().clone()))
}

/// Compiles each silver table against its source's columns: the table's in the catalog, or,
/// before the first run, those a bronze table of this spec will be created with.
async fn silver_configs(
    spec: &PipelineSpec,
    bronze: &[BronzeConfig],
    catalog: Option<&std::sync::Arc<lakehouse::Catalog>>,
    origin: &str,
) -> Result<Vec<SilverConfig>> {
    let mut out = Vec::new();
    for (i, s) in spec.silver.iter().enumerate() {
        let existing = existing_schema(catalog, &s.source)
            .await
            .with_context(|| format!("{origin}: silver[{i}].source"))?;
        let source = match existing {
            Some(schema) => schema,
            None => match bronze.iter().find(|b| b.table == s.source) {
                Some(b) => bronze::table_schema(b),
                None if catalog.is_none() => continue,
                None => anyhow::bail!(
                    "{origin}: silver[{i}].source: table {} does not exist, and no [[bronze]] of this spec writes it",
                    s.source
                ),
            },
        };
        out.push(SilverConfig::new(s, &source, origin, i)?);
    }
    Ok(out)
}

/// Compiles each gold table against its source's columns: the table's in the catalog, or,
/// before the first run, those a silver table of this spec will be created with.
async fn gold_configs(
    spec: &PipelineSpec,
    silver: &[SilverConfig],
    catalog: Option<&std::sync::Arc<lakehouse::Catalog>>,
    origin: &str,
) -> Result<Vec<pipelines::gold::GoldConfig>> {
    let mut out = Vec::new();
    for (i, g) in spec.gold.iter().enumerate() {
        let existing = existing_schema(catalog, &g.source)
            .await
            .with_context(|| format!("{origin}: gold[{i}].source"))?;
        let source = match existing {
            Some(schema) => schema,
            None => match silver.iter().find(|s| s.spec.table == g.source) {
                Some(s) => s.output().clone(),
                None if catalog.is_none() => continue,
                None => anyhow::bail!(
                    "{origin}: gold[{i}].source: table {} does not exist, and no [[silver]] of this spec writes it",
                    g.source
                ),
            },
        };
        out.push(pipelines::gold::GoldConfig::new(g, &source, origin, i)?);
    }
    Ok(out)
}

/// Turns true on the first SIGTERM or SIGINT; a second one, or `bound` passing first, exits at
/// once (every commit is atomic, so that is safe too).
fn stop_on_signal(bound: std::time::Duration) -> Result<tokio::sync::watch::Receiver<bool>> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut signals = signals::StopSignals::listen()?;
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!(bound = ?bound, "signal received: finishing the open batches");
        let _ = tx.send(true);
        tokio::select! {
            _ = signals.recv() => std::process::exit(130),
            _ = tokio::time::sleep(bound) => {
                tracing::error!(bound = ?bound, "the open batches did not commit within the shutdown timeout: exiting; a restart resumes from the tables");
                std::process::exit(1);
            }
        }
    });
    Ok(rx)
}

async fn generate(brokers: &str, topic: &str, events: usize, kind: Kind, seed: u64) -> Result<()> {
    let start_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let generated = match kind {
        Kind::Web => generator::web_events(events, seed, start_ms, 40),
        Kind::Sensor => {
            let schema = schemas::EventSchema::parse(
                "sensor_reading",
                include_str!("../../schemas/avro/sensor_reading.avsc"),
                "sensor_reading.avsc",
            )?;
            generator::sensor_readings(
                &schema.avro,
                generator::SENSOR_SCHEMA_ID,
                events,
                seed,
                start_ms,
            )
        }
    };
    generator::produce(brokers, topic, &generated.messages).await?;
    println!(
        "{} messages to {topic} ({} duplicates, {} malformed)",
        generated.messages.len(),
        generated.duplicates,
        generated.malformed
    );
    Ok(())
}
