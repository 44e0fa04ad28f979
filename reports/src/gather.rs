//! Reads the tables' committed state into the report.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use chrono::{DateTime, SecondsFormat, Utc};
use lakehouse::{Catalog, IcebergTable, Table, TableFormat};
use pipelines::bronze::{BatchCounts, BATCH_COUNTS_PROPERTY};
use pipelines::spec::PipelineSpec;
use serde_json::Value;

use crate::model::*;
use crate::{kafka, profile, Error, Options, Result};

/// Buckets `rows_over_time` cuts the period in.
const BUCKETS: i64 = 24;

/// One table of the spec: its name, layer, and its source (a bronze table's are topics).
struct Planned<'a> {
    name: &'a str,
    layer: &'static str,
    source: Source<'a>,
}

enum Source<'a> {
    Topics(&'a [String]),
    Table(&'a str, &'static str),
}

pub(crate) async fn report(
    spec: &PipelineSpec,
    spec_name: &str,
    catalog: Arc<Catalog>,
    options: &Options,
) -> Result<QualityReport> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let period_ms = i64::try_from(options.since.as_millis()).unwrap_or(i64::MAX);
    let since_ms = now_ms.saturating_sub(period_ms);
    let mut planned = Vec::new();
    let mut unreported_tables = BTreeMap::new();
    for b in &spec.bronze {
        planned.push(Planned {
            name: &b.table,
            layer: "bronze",
            source: Source::Topics(&b.topics),
        });
    }
    for s in &spec.silver {
        planned.push(Planned {
            name: &s.table,
            layer: "silver",
            source: Source::Table(&s.source, pipelines::silver::CURSOR_PROPERTY),
        });
    }
    for g in &spec.gold {
        planned.push(Planned {
            name: &g.table,
            layer: "gold",
            source: Source::Table(&g.source, pipelines::gold::CURSOR_PROPERTY),
        });
    }
    let expectations = expectation_results(&catalog, since_ms).await?;
    let kafka = kafka::Kafka::connect(&spec.kafka).await;
    let mut tables = Vec::new();
    let mut missing_tables = Vec::new();
    for plan in &planned {
        let format = spec.table_format(plan.name);
        if format != TableFormat::Iceberg {
            let why = format!("{format} tables are not in the quality report yet");
            unreported_tables.insert(plan.name.to_string(), why);
            continue;
        }
        let Some(table) = IcebergTable::open_if_exists(catalog.clone(), plan.name).await? else {
            missing_tables.push(plan.name.to_string());
            continue;
        };
        let mut report = table_report(&table, plan.layer, since_ms, now_ms, options).await?;
        match plan.source {
            Source::Topics(topics) => {
                report.kafka_lag = Some(kafka.lag(topics, &table.stored_offsets()?).await);
            }
            Source::Table(source, cursor) => {
                report.upstream_lag = Some(upstream_lag(&catalog, &table, source, cursor).await?);
            }
        }
        report.expectations = expectations.get(plan.name).cloned().unwrap_or_default();
        tracing::debug!(table = plan.name, "reported");
        tables.push(report);
    }
    let mut dlq_topics: Vec<String> = spec.bronze.iter().map(|b| b.dlq_topic()).collect();
    dlq_topics.extend(spec.silver.iter().map(|s| s.dlq_topic()));
    dlq_topics.extend(spec.gold.iter().map(|g| g.dlq_topic()));
    let mut seen = std::collections::HashSet::new();
    dlq_topics.retain(|t| seen.insert(t.clone()));
    let attribution = kafka::Attribution {
        bronze_topics: spec
            .bronze
            .iter()
            .flat_map(|b| b.topics.iter().map(|t| (t.clone(), b.table.clone())))
            .collect(),
        dlq_owners: planned
            .iter()
            .map(|p| (dlq_topic_of(spec, p.name), p.name.to_string()))
            .collect(),
    };
    let dead_letters = kafka
        .dead_letters(
            &dlq_topics,
            since_ms,
            options.samples_per_reason,
            &attribution,
        )
        .await;
    Ok(QualityReport {
        kind: KIND.to_string(),
        version: VERSION,
        spec: spec_name.to_string(),
        generated_at: rfc3339(now_ms),
        since: rfc3339(since_ms),
        tables,
        missing_tables,
        unreported_tables,
        dead_letters,
    })
}

fn dlq_topic_of(spec: &PipelineSpec, table: &str) -> String {
    let bronze = spec
        .bronze
        .iter()
        .find(|b| b.table == table)
        .map(|b| b.dlq_topic());
    let silver = || {
        spec.silver
            .iter()
            .find(|s| s.table == table)
            .map(|s| s.dlq_topic())
    };
    let gold = || {
        spec.gold
            .iter()
            .find(|g| g.table == table)
            .map(|g| g.dlq_topic())
    };
    bronze.or_else(silver).or_else(gold).unwrap_or_default()
}

pub(crate) fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn number(properties: &HashMap<String, String>, key: &str) -> u64 {
    properties
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn table_report(
    table: &IcebergTable,
    layer: &str,
    since_ms: i64,
    now_ms: i64,
    options: &Options,
) -> Result<TableReport> {
    let name = table.name();
    let corrupt = |message: String| Error::Table {
        table: name.clone(),
        message,
    };
    // Oldest first.
    let mut history: Vec<(i64, i64, &HashMap<String, String>)> = table.history().collect();
    history.reverse();
    let total_at = |ms: i64| {
        history
            .iter()
            .take_while(|(_, at, _)| *at <= ms)
            .last()
            .map_or(0, |(_, _, p)| number(p, "total-records"))
    };
    let current = history.last();
    let rows = current.map_or(0, |(_, _, p)| number(p, "total-records"));
    let width = ((now_ms - since_ms) / BUCKETS).max(1);
    let rows_over_time = (1..=BUCKETS)
        .map(|i| {
            let end = if i == BUCKETS {
                now_ms
            } else {
                since_ms + i * width
            };
            let start = end - width;
            RowsAt {
                at: rfc3339(end),
                rows: total_at(end),
                commits: history
                    .iter()
                    .filter(|(_, at, _)| *at > start && *at <= end)
                    .count() as u64,
            }
        })
        .collect();
    let in_period: Vec<&HashMap<String, String>> = history
        .iter()
        .filter(|(_, at, _)| *at > since_ms)
        .map(|(_, _, p)| *p)
        .collect();
    let ingest = match layer {
        "bronze" => {
            let mut sum = BatchCounts::default();
            for properties in &in_period {
                let Some(json) = properties.get(BATCH_COUNTS_PROPERTY) else {
                    continue;
                };
                let counts: BatchCounts = serde_json::from_str(json)
                    .map_err(|e| corrupt(format!("{BATCH_COUNTS_PROPERTY}: {e}")))?;
                sum.rows += counts.rows;
                sum.duplicates += counts.duplicates;
                for (reason, n) in counts.dead_letters {
                    *sum.dead_letters.entry(reason).or_default() += n;
                }
            }
            let dead_letters: u64 = sum.dead_letters.values().sum();
            let consumed = sum.rows + sum.duplicates + dead_letters;
            Some(Ingest {
                consumed,
                rows: sum.rows,
                duplicates: sum.duplicates,
                dedupe_rate: ratio(sum.duplicates, consumed).unwrap_or(0.0),
                dead_letters,
            })
        }
        _ => None,
    };
    let (batches, sampled) = table.scan_first(options.sample_rows).await?;
    let profile = profile::profile(table.arrow_schema().clone(), &batches, sampled)
        .map_err(|m| corrupt(format!("profiling: {m}")))?;
    let metadata = table.metadata_json()?;
    Ok(TableReport {
        layer: layer.to_string(),
        rows,
        data_files: current.map_or(0, |(_, _, p)| number(p, "total-data-files")),
        snapshots: metadata["snapshots"].as_array().map_or(0, Vec::len) as u64,
        last_commit: current.map(|(_, at, _)| rfc3339(*at)),
        freshness_seconds: current.map(|(_, at, _)| (now_ms - at) as f64 / 1000.0),
        commits_in_period: in_period.len() as u64,
        rows_added_in_period: rows as i64 - total_at(since_ms) as i64,
        rows_over_time,
        ingest,
        kafka_lag: None,
        upstream_lag: None,
        expectations: Vec::new(),
        profile,
        schema_versions: schema_versions(&metadata),
        name,
    })
}

pub(crate) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// How far `table` is behind its source: the source's data commits after the one its cursor
/// names.
async fn upstream_lag(
    catalog: &Arc<Catalog>,
    table: &IcebergTable,
    source: &str,
    cursor: &str,
) -> Result<UpstreamLag> {
    let read_snapshot = table.snapshot_property(cursor).and_then(|c| c.parse().ok());
    let (mut commits_behind, mut rows_behind, mut source_snapshot) = (0, 0, None);
    if let Some(mut upstream) = Table::open_existing(catalog.clone(), source).await? {
        source_snapshot = upstream.current_commit();
        // The appends the stage reads next; all of them when its cursor has expired.
        let pending = match upstream.appends_after(read_snapshot).await {
            Ok(pending) => pending,
            Err(_) => upstream.appends_after(None).await?,
        };
        commits_behind = pending.len() as u64;
        rows_behind = upstream.added_rows(&pending).unwrap_or(0);
    }
    Ok(UpstreamLag {
        source: source.to_string(),
        read_snapshot,
        source_snapshot,
        commits_behind,
        rows_behind,
    })
}

/// The schemas of a table's metadata, oldest first, each with its changes from the one before.
fn schema_versions(metadata: &Value) -> Vec<SchemaVersion> {
    let current = metadata["current-schema-id"].as_i64();
    let mut first_used: BTreeMap<i64, i64> = BTreeMap::new();
    for snapshot in metadata["snapshots"].as_array().into_iter().flatten() {
        if let (Some(id), Some(at)) = (
            snapshot["schema-id"].as_i64(),
            snapshot["timestamp-ms"].as_i64(),
        ) {
            let first = first_used.entry(id).or_insert(at);
            *first = (*first).min(at);
        }
    }
    let mut schemas: Vec<&Value> = metadata["schemas"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    schemas.sort_by_key(|s| s["schema-id"].as_i64());
    let mut out = Vec::new();
    let mut previous: Vec<(String, String)> = Vec::new();
    for schema in schemas {
        let id = schema["schema-id"].as_i64().unwrap_or_default();
        let fields: Vec<(String, String)> = schema["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let kind = match &f["type"] {
                    Value::String(s) => s.clone(),
                    other => other["type"].as_str().unwrap_or("nested").to_string(),
                };
                (f["name"].as_str().unwrap_or_default().to_string(), kind)
            })
            .collect();
        let type_of = |list: &[(String, String)], name: &str| {
            list.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone())
        };
        out.push(SchemaVersion {
            schema_id: id,
            first_used: first_used.get(&id).map(|ms| rfc3339(*ms)),
            added: fields
                .iter()
                .filter(|(n, _)| type_of(&previous, n).is_none())
                .map(|(n, _)| n.clone())
                .collect(),
            removed: previous
                .iter()
                .filter(|(n, _)| type_of(&fields, n).is_none())
                .map(|(n, _)| n.clone())
                .collect(),
            retyped: fields
                .iter()
                .filter_map(|(n, t)| match type_of(&previous, n) {
                    Some(old) if old != *t => Some(format!("{n}: {old} -> {t}")),
                    _ => None,
                })
                .collect(),
            current: Some(id) == current,
        });
        previous = fields;
    }
    out
}

/// Each silver table's expectation results over the commits since `since_ms`.
async fn expectation_results(
    catalog: &Arc<Catalog>,
    since_ms: i64,
) -> Result<HashMap<String, Vec<ExpectationResult>>> {
    let quality = pipelines::silver::QUALITY_TABLE;
    let Some(table) = IcebergTable::open_if_exists(catalog.clone(), quality).await? else {
        return Ok(HashMap::new());
    };
    let columns = ["dataset", "expectation", "action", "passed", "failed"].map(String::from);
    let batches = table
        .scan_since(&columns, "committed_at", since_ms.saturating_mul(1000))
        .await?;
    let mut sums: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    for batch in &batches {
        add_expectation_rows(batch, &mut sums).ok_or_else(|| Error::Table {
            table: quality.to_string(),
            message: "columns are not dataset, expectation, action (text), passed, failed (long)"
                .to_string(),
        })?;
    }
    let mut out: HashMap<String, Vec<ExpectationResult>> = HashMap::new();
    for ((dataset, name, action), (passed, failed)) in sums {
        out.entry(dataset).or_default().push(ExpectationResult {
            name,
            action,
            passed,
            failed,
            pass_rate: ratio(passed, passed + failed),
        });
    }
    Ok(out)
}

fn add_expectation_rows(
    batch: &RecordBatch,
    sums: &mut BTreeMap<(String, String, String), (u64, u64)>,
) -> Option<()> {
    let text = |i: usize| batch.column(i).as_string_opt::<i32>();
    let long = |i: usize| batch.column(i).as_primitive_opt::<Int64Type>();
    let (dataset, name, action) = (text(0)?, text(1)?, text(2)?);
    let (passed, failed) = (long(3)?, long(4)?);
    for i in 0..batch.num_rows() {
        if dataset.is_null(i) {
            continue;
        }
        let key = (
            dataset.value(i).to_string(),
            name.value(i).to_string(),
            action.value(i).to_string(),
        );
        let sum = sums.entry(key).or_default();
        sum.0 += passed.value(i).max(0) as u64;
        sum.1 += failed.value(i).max(0) as u64;
    }
    Some(())
}
