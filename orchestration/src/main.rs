//! `medallion`: raw Kafka topics into a queryable lakehouse.

mod demo;
mod generator;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use pipelines::bronze::{self, BronzeConfig, KafkaConnection, RunOptions};
use pipelines::spec::PipelineSpec;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "medallion",
    version,
    about = "Streaming lakehouse ETL: Kafka → bronze Iceberg tables"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Run a pipeline spec.
    Run {
        spec: PathBuf,
        /// Process what is in the topics now, commit, and exit.
        #[arg(long)]
        once: bool,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEDALLION_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,pipelines=info,medallion=info")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(e) = dispatch(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { warehouse, events } => demo::run(&warehouse, events).await,
        Command::Run { spec, once } => run(&spec, once).await,
        Command::Generate {
            brokers,
            topic,
            events,
            kind,
            seed,
        } => generate(&brokers, &topic, events, kind, seed).await,
    }
}

async fn run(path: &Path, once: bool) -> Result<()> {
    let origin = path.display().to_string();
    let spec = PipelineSpec::from_file(path)?;
    let configs: Vec<BronzeConfig> = spec
        .bronze
        .iter()
        .enumerate()
        .map(|(i, b)| BronzeConfig::from_spec(b, &origin, i))
        .collect::<Result<_, _>>()?;
    let catalog = lakehouse::connect(&(&spec.lakehouse).into())
        .await
        .with_context(|| format!("{origin}: lakehouse.catalog"))?;
    let kafka = KafkaConnection::from(&spec.kafka);
    let options = RunOptions { once };
    let stop = stop_on_signal()?;
    let runs = configs
        .iter()
        .map(|c| bronze::run(&kafka, catalog.clone(), c, options, stop.clone()));
    for report in futures::future::join_all(runs).await {
        let r = report?;
        tracing::info!(
            table = %r.table,
            consumed = r.records_consumed,
            rows = r.rows_written,
            duplicates = r.duplicates_dropped,
            dead_lettered = ?r.dead_lettered,
            commits = r.commits,
            fenced = r.fenced,
            "bronze run finished"
        );
    }
    Ok(())
}

/// Turns true on the first SIGTERM or SIGINT; a second one exits at once (every commit is
/// atomic, so that is safe too).
fn stop_on_signal() -> Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if n > 0 {
                std::process::exit(130);
            }
            tracing::info!("signal received: finishing the open batches");
            let _ = tx.send(true);
        }
    });
    Ok(rx)
}

async fn generate(brokers: &str, topic: &str, events: usize, kind: Kind, seed: u64) -> Result<()> {
    let start_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let generated = match kind {
        Kind::Web => generator::web_events(events, seed, start_ms),
        Kind::Sensor => {
            let schema = schemas::EventSchema::parse(
                "sensor_reading",
                include_str!("../../schemas/avro/sensor_reading.avsc"),
                "sensor_reading.avsc",
            )?;
            generator::sensor_readings(&schema.avro, events, seed, start_ms)
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
