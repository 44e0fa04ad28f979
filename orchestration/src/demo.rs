//! `medallion demo`: the whole pipeline, bronze to gold, on embedded parts (librdkafka's in-process mock
//! cluster, a SQLite catalog, a local warehouse), then a summary of what landed where.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lakehouse::{IcebergTable, LakehouseLocation};
use pipelines::bronze::{self, BronzeConfig, BronzeReport, KafkaConnection, RunOptions};
use pipelines::gold::{self, GoldConfig};
use pipelines::silver::{self, SilverConfig};
use pipelines::spec::{PipelineSpec, RegistrySpec};
use rdkafka::mocking::MockCluster;
use schemas::registry::RegistryClient;
use schemas::EventSchema;

use crate::generator;

const MARKER: &str = ".medallion-demo";
const WEB_SCHEMA: &str = include_str!("../../schemas/avro/web_event.avsc");
const SENSOR_SCHEMA: &str = include_str!("../../schemas/avro/sensor_reading.avsc");
/// The demo's pipeline; the brokers are replaced by the mock cluster's address.
const DEMO_SPEC: &str = include_str!("../../pipelines/specs/demo.toml");

pub async fn run(warehouse: &Path, events: usize) -> Result<()> {
    prepare_warehouse(warehouse)?;
    let cluster = MockCluster::new(1).context("cannot start the in-process Kafka mock cluster")?;
    let brokers = cluster.bootstrap_servers();
    let spec = PipelineSpec::parse(DEMO_SPEC, "pipelines/specs/demo.toml")?;
    let schemas = [
        EventSchema::parse("web_event", WEB_SCHEMA, "schemas/avro/web_event.avsc")?,
        EventSchema::parse(
            "sensor_reading",
            SENSOR_SCHEMA,
            "schemas/avro/sensor_reading.avsc",
        )?,
    ];
    // The sensor readings go through a schema registry, as in production: an in-process
    // `medallion registry serve` keeping its schemas in the catalog database.
    let registry_url =
        crate::registry::spawn_local(&format!("sqlite://{}/catalog.db", warehouse.display()))
            .await?;
    let registry = RegistrySpec {
        url: registry_url.clone(),
        ca_file: None,
        identity_file: None,
        timeout: Duration::from_secs(10),
    };
    let mut configs: Vec<BronzeConfig> = spec
        .bronze
        .iter()
        .zip(schemas.clone())
        .enumerate()
        .map(|(i, (b, s))| BronzeConfig::with_schema(b, s, "demo", i))
        .collect::<Result<_, _>>()?;
    configs[1] = configs[1].clone().read_with_registry(&registry, "demo")?;
    let client = RegistryClient::new(registry.client_config("demo")?)?;
    let sensor_id = client.register(&configs[1].subject, SENSOR_SCHEMA).await?;
    println!(
        "schema registry at {registry_url}: {} is schema id {sensor_id}",
        configs[1].subject
    );
    let silver = spec
        .silver
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let source = configs
                .iter()
                .find(|c| c.table == s.source)
                .with_context(|| {
                    format!(
                        "demo: silver[{i}].source {} is not a bronze table",
                        s.source
                    )
                })?;
            Ok(SilverConfig::new(
                s,
                &bronze::table_schema(source),
                "demo",
                i,
            )?)
        })
        .collect::<Result<Vec<_>>>()?;
    let gold = spec
        .gold
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let source = silver
                .iter()
                .find(|s| s.spec.table == g.source)
                .with_context(|| {
                    format!("demo: gold[{i}].source {} is not a silver table", g.source)
                })?;
            Ok(GoldConfig::new(g, source.output(), "demo", i)?)
        })
        .collect::<Result<Vec<_>>>()?;
    for s in &spec.silver {
        cluster.create_topic(&s.dlq_topic(), 1, 1)?;
    }
    for g in &spec.gold {
        cluster.create_topic(&g.dlq_topic(), 1, 1)?;
    }
    for (c, partitions) in configs.iter().zip([3, 2]) {
        for topic in &c.topics {
            cluster.create_topic(topic, partitions, 1)?;
        }
        // The mock cluster does not serve topic creation through the admin API.
        cluster.create_topic(&c.dlq_topic, 1, 1)?;
    }

    // Three hours of events, so hourly windows close.
    let start_ms = chrono::Utc::now().timestamp_millis() - 3 * 3_600_000;
    let web = generator::web_events(events * 4 / 5, 7, start_ms, 1_300);
    let sensors = generator::sensor_readings(
        &schemas[1].avro,
        sensor_id,
        events - events * 4 / 5,
        11,
        start_ms,
    );
    println!(
        "producing {} web events (JSON) and {} sensor readings (Avro) to the mock cluster …",
        web.messages.len(),
        sensors.messages.len()
    );
    generator::produce(&brokers, &configs[0].topics[0], &web.messages).await?;
    generator::produce(&brokers, &configs[1].topics[0], &sensors.messages).await?;

    let location = LakehouseLocation {
        catalog_uri: format!("sqlite://{}/catalog.db", warehouse.display()),
        warehouse: Some(warehouse.display().to_string()),
        s3: Default::default(),
    };
    let catalog = lakehouse::connect(&location).await?;
    let kafka = KafkaConnection {
        brokers,
        consumer_properties: Vec::new(),
        producer_properties: Vec::new(),
        connect_timeout: Duration::from_secs(10),
    };
    let started = Instant::now();
    let once = RunOptions { once: true };
    // The demo runs to the end of what it produced; nothing asks it to stop early.
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let (a, b) = tokio::join!(
        bronze::run(&kafka, catalog.clone(), &configs[0], once, stop.clone()),
        bronze::run(&kafka, catalog.clone(), &configs[1], once, stop.clone()),
    );
    let reports = [a?, b?];
    // Silver reads what bronze committed, one table per event type.
    let silver_started = Instant::now();
    let mut silver_reports = Vec::new();
    for config in &silver {
        silver_reports
            .push(silver::run(&kafka, catalog.clone(), config, once, stop.clone()).await?);
    }
    let silver_elapsed = silver_started.elapsed();
    // Gold reads what silver committed: the e-commerce and web-analytics windows.
    let gold_started = Instant::now();
    let mut gold_reports = Vec::new();
    for config in &gold {
        gold_reports.push(gold::run(&kafka, catalog.clone(), config, once, stop.clone()).await?);
    }
    let gold_elapsed = gold_started.elapsed();
    let elapsed = started.elapsed();

    println!(
        "\nbronze ingestion finished in {:.1} s\n",
        elapsed.as_secs_f64()
    );
    println!(
        "{:<24} {:>10} {:>10} {:>11}  dead letters by reason",
        "table", "consumed", "rows", "duplicates"
    );
    for r in &reports {
        print_report(r);
    }
    println!(
        "\nsilver finished in {:.1} s\n\n{:<24} {:>10} {:>10} {:>11}  rows failing each expectation",
        silver_elapsed.as_secs_f64(),
        "table",
        "read",
        "rows",
        "dropped"
    );
    for r in &silver_reports {
        print_row(
            &r.table,
            [r.rows_read, r.rows_written, r.rows_dropped],
            &r.expectation_failures,
        );
    }
    println!(
        "\ngold finished in {:.1} s (windows still open wait for later events)\n\n{:<30} {:>8} {:>8} {:>6} {:>7} {:>13}",
        gold_elapsed.as_secs_f64(),
        "table",
        "read",
        "rows",
        "late",
        "alerts",
        "open windows"
    );
    for r in &gold_reports {
        println!(
            "{:<30} {:>8} {:>8} {:>6} {:>7} {:>13}",
            r.table, r.rows_read, r.rows_written, r.late, r.alerts, r.open_windows
        );
    }
    println!(
        "\ngenerated: {} duplicates and {} malformed web events, {} malformed sensor readings",
        web.duplicates, web.malformed, sensors.malformed
    );
    let abs = std::fs::canonicalize(warehouse)?;
    println!(
        "\nwarehouse: {}   catalog: {}/catalog.db",
        abs.display(),
        abs.display()
    );
    println!("\nquery it with DuckDB (iceberg extension):");
    let tables = reports
        .iter()
        .map(|r| &r.table)
        .chain(silver_reports.iter().map(|r| &r.table))
        .chain(gold_reports.iter().map(|r| &r.table))
        .map(String::as_str)
        .chain([silver::QUALITY_TABLE, gold::ALERTS_TABLE]);
    for name in tables {
        let table = IcebergTable::open(catalog.clone(), name).await?;
        if let Some(meta) = table.metadata_location() {
            let path = meta.strip_prefix("file://").unwrap_or(meta);
            println!("  SELECT count(*) FROM iceberg_scan('{path}');");
        }
    }
    // The run's data-quality report, while the in-process cluster still serves the
    // dead-letter topics.
    let mut report_spec = spec.clone();
    report_spec.kafka.brokers = kafka.brokers.clone();
    let options = reports::Options {
        since: Duration::from_secs(24 * 3600),
        sample_rows: 1_000_000,
        samples_per_reason: 3,
    };
    let report =
        reports::build(&report_spec, "pipelines/specs/demo.toml", catalog, &options).await?;
    let path = abs.join("quality-report.html");
    std::fs::write(&path, reports::render(&report, reports::Format::Html)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("\ndata-quality report: {}", path.display());
    Ok(())
}

fn print_report(r: &BronzeReport) {
    print_row(
        &r.table,
        [r.records_consumed, r.rows_written, r.duplicates_dropped],
        &r.dead_lettered,
    );
}

/// A table, three counts, and `reason=count` pairs (or `-`).
fn print_row<K: std::fmt::Display>(
    table: &str,
    counts: [u64; 3],
    by: &std::collections::BTreeMap<K, u64>,
) {
    let by: Vec<String> = by.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "{:<24} {:>10} {:>10} {:>11}  {}",
        table,
        counts[0],
        counts[1],
        counts[2],
        if by.is_empty() {
            "-".to_string()
        } else {
            by.join(" ")
        }
    );
}

/// The demo starts from an empty warehouse, and only ever wipes one it created itself.
fn prepare_warehouse(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by the demo; choose another --warehouse",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(PathBuf::from(dir).join(MARKER), "made by medallion demo\n")?;
    Ok(())
}
