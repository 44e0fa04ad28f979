//! The pipeline spec: a TOML file with `[kafka]`, `[lakehouse]` and `[[bronze]]` sections.
//!
//! Parsing is strict: unknown keys and bad values are refused with the file, the key and what
//! was expected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub kafka: KafkaSpec,
    #[serde(default)]
    pub lakehouse: LakehouseSpec,
    /// The schema registry Avro topics are decoded with; without it, Avro records are decoded
    /// with the table's local `.avsc` and the schema id in their frame is not looked up.
    #[serde(default)]
    pub registry: Option<RegistrySpec>,
    /// One entry per bronze table.
    #[serde(default)]
    pub bronze: Vec<BronzeSpec>,
    /// One entry per silver table.
    #[serde(default)]
    pub silver: Vec<SilverSpec>,
    /// One entry per gold table.
    #[serde(default)]
    pub gold: Vec<GoldSpec>,
}

/// A gold table: event-time windowed aggregates of a source table, per group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldSpec {
    /// `gold.NAME`.
    pub table: String,
    /// The table it reads, e.g. `silver.purchases`.
    pub source: String,
    /// The source's timestamp column windows are over.
    pub event_time: String,
    pub window: WindowSpec,
    #[serde(default)]
    pub watermark: WatermarkSpec,
    /// How long after a window's end records still change it; later ones go to the late
    /// output (the DLQ, reason `late`).
    #[serde(default = "zero", deserialize_with = "duration")]
    pub allowed_lateness: Duration,
    #[serde(default)]
    pub emit: EmitSpec,
    /// Source columns the results are grouped by (none: one row per window).
    #[serde(default)]
    pub group_by: Vec<String>,
    pub aggregates: Vec<AggregateSpec>,
    /// Keep only the `n` groups with the largest `by` per window (and per `per` columns),
    /// ranked in a `rank` column; final mode, tumbling or sliding windows.
    #[serde(default)]
    pub top: Option<TopSpec>,
    /// Conditions on the rows written that raise an alert (a row in `gold.alerts`, once per
    /// alert, window and group).
    #[serde(default)]
    pub alerts: Vec<AlertSpec>,
    /// Topic of the late output and of records without an event time; default `<table>.dlq`.
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// How often the source is checked for new snapshots.
    #[serde(default = "default_poll", deserialize_with = "duration")]
    pub poll: Duration,
    /// At most this many source snapshots go into one commit.
    #[serde(default = "default_batch_snapshots")]
    pub batch_snapshots: usize,
    /// How the table is kept: `iceberg` (the default, partitioned by day of `window_start`),
    /// `delta` (a Delta Lake table at `WAREHOUSE/gold/NAME`, not partitioned) or `parquet`
    /// (day folders of `window_start`; `emit = "final"` only, as it cannot replace rows).
    /// Delta and Parquet need a local warehouse.
    #[serde(default)]
    pub table_format: lakehouse::TableFormat,
}

/// Top-N per window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopSpec {
    pub n: usize,
    /// The aggregate ranked on, largest first (ties: by the group columns, ascending).
    pub by: String,
    /// Group columns ranked separately, e.g. the top products per region; default: none (one
    /// ranking per window).
    #[serde(default)]
    pub per: Vec<String>,
}

/// An alert on a gold table's rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// Lower-case letters, digits and `_`.
    pub name: String,
    /// SQL boolean over the gold table's columns (window_start, window_end, the group columns,
    /// the aggregates), e.g. `success_rate < 0.8`.
    pub when: String,
    pub severity: Severity,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The shape of a gold table's windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Fixed windows of this size, e.g. `1m`.
    #[serde(default, deserialize_with = "some_duration")]
    pub tumbling: Option<Duration>,
    /// Windows of this size starting every `slide`, e.g. `5m`.
    #[serde(default, deserialize_with = "some_duration")]
    pub sliding: Option<Duration>,
    #[serde(default, deserialize_with = "some_duration")]
    pub slide: Option<Duration>,
    /// Sessions per group that close after this gap without records, e.g. `30m`.
    #[serde(default, deserialize_with = "some_duration")]
    pub session: Option<Duration>,
}

/// How the watermark follows the records.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    /// The watermark is the largest event time seen minus this.
    #[serde(default = "zero", deserialize_with = "duration")]
    pub max_out_of_orderness: Duration,
    /// Source column naming the partition a record came from (e.g. `_kafka_partition` carried
    /// through silver): the watermark is then the smallest of the partitions' watermarks.
    #[serde(default)]
    pub partition_column: Option<String>,
    /// How many partitions there are (`0..n`): each holds the watermark back from the start,
    /// even before its first record (until `idle_timeout`). Without it a partition counts
    /// from its first record on.
    #[serde(default)]
    pub partitions: Option<i32>,
    /// A partition without records for this long (source commit time) stops holding the
    /// watermark back.
    #[serde(default, deserialize_with = "some_duration")]
    pub idle_timeout: Option<Duration>,
}

/// When a gold table's rows are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmitSpec {
    /// One row per window and group, once the window can no longer change; append-only.
    #[default]
    Final,
    /// A row as soon as the watermark passes the window's end, replaced when allowed-late
    /// records change it.
    Update,
}

/// One aggregate column of a gold table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    pub name: String,
    /// `count`, `count_distinct`, `approx_count_distinct`, `sum`, `avg`, `min`, `max` or
    /// `approx_percentile`.
    #[serde(rename = "fn")]
    pub function: String,
    /// A SQL expression over the source's columns (polars SQL), e.g. `amount` or
    /// `CASE WHEN step = 'checkout' THEN 1 ELSE 0 END`; `count` without it counts rows.
    #[serde(default)]
    pub expr: Option<String>,
    /// The quantile of `approx_percentile`, in [0, 1].
    #[serde(default)]
    pub q: Option<f64>,
}

/// A silver table: rows of a source table that pass `filter`, as the typed, cleansed
/// `columns`, read incrementally (each commit records the last source snapshot it consumed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilverSpec {
    /// `silver.NAME`.
    pub table: String,
    /// The table it reads, e.g. `bronze.web_events`.
    pub source: String,
    /// SQL boolean over the source's columns; rows for which it is not true are skipped.
    #[serde(default)]
    pub filter: Option<String>,
    /// The output columns, in order, each a SQL expression over the source's columns.
    pub columns: Vec<ColumnSpec>,
    /// Checks on the output rows, in the style of declarative pipelines.
    #[serde(default)]
    pub expectations: Vec<ExpectationSpec>,
    /// Topic for rows dropped by expectations; default `<table>.dlq` (e.g. `silver.purchases.dlq`).
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// Timestamp output column whose day partitions the table, if any (not on Delta tables).
    #[serde(default)]
    pub partition_by_day: Option<String>,
    /// How often the source is checked for new snapshots.
    #[serde(default = "default_poll", deserialize_with = "duration")]
    pub poll: Duration,
    /// At most this many source snapshots go into one commit.
    #[serde(default = "default_batch_snapshots")]
    pub batch_snapshots: usize,
    /// How the table is kept: `iceberg` (the default), `delta` (a Delta Lake table at
    /// `WAREHOUSE/silver/NAME`) or `parquet` (Parquet files with medallion's commit log);
    /// Delta and Parquet need a local warehouse.
    #[serde(default)]
    pub table_format: lakehouse::TableFormat,
}

/// A named check on a silver table's output rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationSpec {
    /// Lower-case letters, digits and `_`; the DLQ reason is `expectation.<name>`.
    pub name: String,
    /// SQL boolean over the output columns; a row fails when it is false or null.
    pub check: String,
    pub on_fail: OnFail,
}

/// What a failed expectation does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    /// Keep the row; count it.
    Warn,
    /// Send the row (as JSON) to the DLQ with reason `expectation.<name>`; count it.
    Drop,
    /// Stop the stage; nothing of the batch is committed.
    Fail,
}

impl OnFail {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFail::Warn => "warn",
            OnFail::Drop => "drop",
            OnFail::Fail => "fail",
        }
    }
}

/// One output column of a silver table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    /// A SQL expression (polars SQL), e.g. `lower(trim(user_id))` or `CAST(amount AS DOUBLE)`;
    /// `json_get(column, 'a.b')` reads a field of a JSON text column (nested payloads).
    pub expr: String,
    /// Personal data: `hash` (salted SHA-256, hex; the salt comes from the environment
    /// variable `MEDALLION_PII_SALT`) or `mask` (all but the last 4 characters as `*`).
    #[serde(default)]
    pub pii: Option<Pii>,
}

/// How a column of personal data is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pii {
    Hash,
    Mask,
}

/// A Confluent-compatible schema registry (Confluent SR, Karapace, Apicurio, Redpanda, or
/// `medallion registry serve`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySpec {
    /// `http(s)://[user:password@]host:port[,…]`: several URLs of one registry are tried in turn.
    pub url: String,
    /// PEM file of CA certificates to trust for an https registry.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file with a client certificate and key, for mutual TLS.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// Time limit of one request.
    #[serde(default = "default_registry_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

impl RegistrySpec {
    /// The client settings; `origin` names the spec file in errors.
    pub fn client_config(&self, origin: &str) -> Result<schemas::registry::RegistryConfig> {
        let mut config = schemas::registry::RegistryConfig::new(&self.url)
            .map_err(|e| Error::Spec(format!("{origin}: registry.url: {e}")))?;
        config.ca_file = self.ca_file.clone();
        config.identity_file = self.identity_file.clone();
        config.timeout = self.timeout;
        Ok(config)
    }
}

/// The Kafka cluster the raw topics live on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSpec {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// librdkafka properties for every client (e.g. `"security.protocol" = "SASL_SSL"`).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// librdkafka properties for the consumers only (e.g. `"session.timeout.ms"`).
    #[serde(default)]
    pub consumer_properties: std::collections::BTreeMap<String, String>,
    /// librdkafka properties for the dead-letter producers only.
    #[serde(default)]
    pub producer_properties: std::collections::BTreeMap<String, String>,
    /// How long to wait for the brokers at start before refusing to run.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
}

/// Where the tables live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakehouseSpec {
    /// Where table data and metadata are written: a local directory, `file://PATH`, or
    /// `s3://BUCKET/PREFIX` (AWS S3, MinIO or another S3-compatible store; see `s3`).
    #[serde(default = "default_warehouse")]
    pub warehouse: String,
    /// The Iceberg catalog: a SQL catalog `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`,
    /// or a REST catalog `http(s)://HOST:PORT[/PATH]` (the warehouse is passed to it as its
    /// `warehouse` property).
    #[serde(default = "default_catalog")]
    pub catalog: String,
    /// Endpoint, region and addressing of an `s3://` warehouse; credentials come from the
    /// usual AWS environment variables, never from this file.
    #[serde(default)]
    pub s3: lakehouse::S3Settings,
}

impl From<&LakehouseSpec> for lakehouse::LakehouseLocation {
    fn from(spec: &LakehouseSpec) -> Self {
        Self {
            catalog_uri: spec.catalog.clone(),
            warehouse: Some(spec.warehouse.clone()),
            s3: spec.s3.clone(),
        }
    }
}

impl Default for LakehouseSpec {
    fn default() -> Self {
        Self {
            warehouse: default_warehouse(),
            catalog: default_catalog(),
            s3: lakehouse::S3Settings::default(),
        }
    }
}

/// Wire format of a raw topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per message.
    Json,
    /// Avro in the Confluent wire format (magic byte, schema id, body).
    Avro,
}

/// How a bronze table is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partitioning {
    /// By day of the event time (the default).
    Day,
    /// Not partitioned.
    None,
}

/// One bronze table fed by one or more raw topics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BronzeSpec {
    /// `bronze.NAME`.
    pub table: String,
    /// Raw topics read into the table.
    pub topics: Vec<String>,
    pub format: Format,
    /// Avro schema file (`.avsc`) describing the events, for JSON and Avro alike.
    pub schema: PathBuf,
    /// Field holding the event time (a timestamp; JSON accepts RFC 3339 text or epoch millis).
    pub event_time: String,
    /// Registry subject of the records (Avro with a `[registry]`); default `<first topic>-value`.
    #[serde(default)]
    pub subject: Option<String>,
    /// Topic for records that cannot be ingested; default `<first topic>.dlq`.
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// Consumer group; default `medallion.<table>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Default: by day of the event time for Iceberg and Parquet tables; Delta tables are not
    /// partitioned.
    #[serde(default)]
    pub partitioning: Option<Partitioning>,
    /// How the table is kept: `iceberg` (the default), `delta` (a Delta Lake table at
    /// `WAREHOUSE/bronze/NAME`) or `parquet` (Parquet files in Hive-style day folders with
    /// medallion's commit log beside them); Delta and Parquet need a local warehouse. Named
    /// `table_format` because `format` is the records' encoding.
    #[serde(default)]
    pub table_format: lakehouse::TableFormat,
    /// Larger records go to the DLQ with reason `validate.too_large`.
    #[serde(default = "default_max_record_bytes", deserialize_with = "bytes")]
    pub max_record_bytes: u64,
    #[serde(default)]
    pub dedupe: Option<DedupeSpec>,
    #[serde(default)]
    pub commit: CommitSpec,
}

/// Duplicate removal on a key within an event-time horizon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeSpec {
    /// Fields whose values identify an event.
    pub key: Vec<String>,
    /// How far back in event time a duplicate is recognised.
    #[serde(deserialize_with = "duration")]
    pub horizon: Duration,
    /// Upper bound on remembered keys; the oldest are forgotten first (and counted).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

/// When a batch is committed: on time, rows or bytes, whichever comes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitSpec {
    #[serde(default = "default_commit_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_commit_rows")]
    pub max_rows: usize,
    #[serde(default = "default_commit_bytes", deserialize_with = "bytes")]
    pub max_bytes: u64,
}

impl Default for CommitSpec {
    fn default() -> Self {
        Self {
            interval: default_commit_interval(),
            max_rows: default_commit_rows(),
            max_bytes: default_commit_bytes(),
        }
    }
}

fn zero() -> Duration {
    Duration::ZERO
}
fn default_batch_snapshots() -> usize {
    32
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_registry_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_warehouse() -> String {
    "./warehouse".into()
}
fn default_catalog() -> String {
    "sqlite://./warehouse/catalog.db".into()
}
fn default_max_record_bytes() -> u64 {
    1 << 20
}
fn default_max_keys() -> usize {
    1_000_000
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_commit_rows() -> usize {
    100_000
}
fn default_commit_bytes() -> u64 {
    64 << 20
}

impl PipelineSpec {
    /// Reads and checks a spec file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Spec(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses spec text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let spec: Self = from_toml(text, origin)?;
        spec.check(origin)?;
        Ok(spec)
    }

    /// How the spec's table `name` is kept (Iceberg for tables the spec does not name).
    pub fn table_format(&self, name: &str) -> lakehouse::TableFormat {
        let bronze = self.bronze.iter().map(|b| (&b.table, b.table_format));
        let silver = self.silver.iter().map(|t| (&t.table, t.table_format));
        let gold = self.gold.iter().map(|g| (&g.table, g.table_format));
        bronze
            .chain(silver)
            .chain(gold)
            .find(|(table, _)| *table == name)
            .map(|(_, format)| format)
            .unwrap_or_default()
    }

    fn check(&self, origin: &str) -> Result<()> {
        let bad = |key: String, msg: &str| Err(Error::Spec(format!("{origin}: {key}: {msg}")));
        let on_s3 = self.lakehouse.warehouse.starts_with("s3://");
        let local_only = |key: String, format: lakehouse::TableFormat| match format {
            lakehouse::TableFormat::Iceberg => Ok(()),
            _ if !on_s3 => Ok(()),
            _ => bad(
                key,
                &format!(
                    "{format} tables need a local warehouse yet; lakehouse.warehouse is on S3"
                ),
            ),
        };
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers".into(), "must name at least one broker");
        }
        if let Err(e) = lakehouse::check_warehouse(&self.lakehouse.warehouse) {
            return bad("lakehouse.warehouse".into(), &e.to_string());
        }
        if self.bronze.is_empty() && self.silver.is_empty() && self.gold.is_empty() {
            return bad(
                "bronze".into(),
                "at least one [[bronze]], [[silver]] or [[gold]] table is required",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, b) in self.bronze.iter().enumerate() {
            let key = |k: &str| format!("bronze[{i}].{k}");
            match b.table.split_once('.') {
                Some(("bronze", name)) if !name.is_empty() && !name.contains('.') => {}
                _ => return bad(key("table"), "expected `bronze.NAME`"),
            }
            if !seen.insert(&b.table) {
                return bad(key("table"), "table is defined twice");
            }
            if b.topics.is_empty() || b.topics.iter().any(|t| t.trim().is_empty()) {
                return bad(key("topics"), "expected a non-empty list of topic names");
            }
            if b.event_time.is_empty() {
                return bad(key("event_time"), "expected a field name");
            }
            let format = b.table_format;
            if format == lakehouse::TableFormat::Delta && b.partitioning == Some(Partitioning::Day)
            {
                return bad(
                    key("partitioning"),
                    "Delta tables are not partitioned yet; remove it or set \"none\"",
                );
            }
            local_only(key("table_format"), format)?;
            if let Some(d) = &b.dedupe {
                if d.key.is_empty() {
                    return bad(key("dedupe.key"), "expected at least one field");
                }
                if d.horizon.is_zero() {
                    return bad(key("dedupe.horizon"), "must be longer than zero");
                }
                if d.max_keys == 0 {
                    return bad(key("dedupe.max_keys"), "must be at least 1");
                }
            }
            if b.subject.is_some() && (b.format != Format::Avro || self.registry.is_none()) {
                return bad(
                    key("subject"),
                    "only Avro tables read with a [registry] have a subject",
                );
            }
            if b.commit.interval.is_zero() || b.commit.max_rows == 0 || b.commit.max_bytes == 0 {
                return bad(
                    key("commit"),
                    "interval, max_rows and max_bytes must be above zero",
                );
            }
        }
        for (i, t) in self.silver.iter().enumerate() {
            let key = |k: &str| format!("silver[{i}].{k}");
            match t.table.split_once('.') {
                Some(("silver", name)) if !name.is_empty() && !name.contains('.') => {}
                _ => return bad(key("table"), "expected `silver.NAME`"),
            }
            if !seen.insert(&t.table) {
                return bad(key("table"), "table is defined twice");
            }
            if t.source.split('.').count() != 2 || t.source == t.table {
                return bad(
                    key("source"),
                    "expected another table, as NAMESPACE.NAME (e.g. bronze.web_events)",
                );
            }
            local_only(key("table_format"), t.table_format)?;
            if t.table_format == lakehouse::TableFormat::Delta && t.partition_by_day.is_some() {
                return bad(
                    key("partition_by_day"),
                    "Delta tables are not partitioned yet; remove it",
                );
            }
            if t.columns.is_empty() {
                return bad(key("columns"), "expected at least one column");
            }
            let mut names = std::collections::HashSet::new();
            for c in &t.columns {
                if c.name.trim().is_empty() || !names.insert(c.name.as_str()) {
                    return bad(
                        key("columns"),
                        &format!("column name {:?} is empty or repeated", c.name),
                    );
                }
            }
            let mut checks = std::collections::HashSet::new();
            for e in &t.expectations {
                let valid = !e.name.is_empty()
                    && e.name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid || !checks.insert(e.name.as_str()) {
                    return bad(
                        key("expectations"),
                        &format!(
                            "expectation name {:?} is repeated or not lower-case letters, digits and _",
                            e.name
                        ),
                    );
                }
            }
            if t.poll.is_zero() {
                return bad(key("poll"), "must be longer than zero");
            }
            if t.batch_snapshots == 0 {
                return bad(key("batch_snapshots"), "must be at least 1");
            }
        }
        for (i, g) in self.gold.iter().enumerate() {
            let key = |k: &str| format!("gold[{i}].{k}");
            match g.table.split_once('.') {
                Some(("gold", name)) if !name.is_empty() && !name.contains('.') => {}
                _ => return bad(key("table"), "expected `gold.NAME`"),
            }
            if !seen.insert(&g.table) {
                return bad(key("table"), "table is defined twice");
            }
            if g.source.split('.').count() != 2 || g.source == g.table {
                return bad(
                    key("source"),
                    "expected another table, as NAMESPACE.NAME (e.g. silver.purchases)",
                );
            }
            local_only(key("table_format"), g.table_format)?;
            if g.table_format == lakehouse::TableFormat::Parquet && g.emit == EmitSpec::Update {
                return bad(
                    key("table_format"),
                    "emit = \"update\" replaces rows, which plain Parquet cannot do atomically; use iceberg or delta, or emit = \"final\"",
                );
            }
            if g.aggregates.is_empty() {
                return bad(key("aggregates"), "expected at least one aggregate");
            }
            let mut names: std::collections::HashSet<&str> =
                ["window_start", "window_end", "rank"].into_iter().collect();
            for n in g
                .group_by
                .iter()
                .chain(g.aggregates.iter().map(|a| &a.name))
            {
                if n.trim().is_empty() || !names.insert(n.as_str()) {
                    return bad(
                        key("aggregates"),
                        &format!("column name {n:?} is empty, repeated or reserved"),
                    );
                }
            }
            let mut alerts = std::collections::HashSet::new();
            for a in &g.alerts {
                let valid = !a.name.is_empty()
                    && a.name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid || !alerts.insert(a.name.as_str()) {
                    return bad(
                        key("alerts"),
                        &format!(
                            "alert name {:?} is repeated or not lower-case letters, digits and _",
                            a.name
                        ),
                    );
                }
            }
            if let Some(top) = &g.top {
                if top.n == 0 {
                    return bad(key("top.n"), "must be at least 1");
                }
                if !g.aggregates.iter().any(|a| a.name == top.by) {
                    return bad(
                        key("top.by"),
                        &format!("{:?} is not an aggregate of the table", top.by),
                    );
                }
                if let Some(p) = top.per.iter().find(|p| !g.group_by.contains(p)) {
                    return bad(key("top.per"), &format!("{p:?} is not a group_by column"));
                }
                if g.emit != EmitSpec::Final || g.window.session.is_some() {
                    return bad(
                        key("top"),
                        "top-N needs emit = \"final\" and tumbling or sliding windows",
                    );
                }
            }
            if g.poll.is_zero() {
                return bad(key("poll"), "must be longer than zero");
            }
            if g.batch_snapshots == 0 {
                return bad(key("batch_snapshots"), "must be at least 1");
            }
        }
        Ok(())
    }
}

impl GoldSpec {
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.table))
    }
}

impl SilverSpec {
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.table))
    }
}

impl BronzeSpec {
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topics[0]))
    }

    pub fn subject(&self) -> String {
        self.subject
            .clone()
            .unwrap_or_else(|| format!("{}-value", self.topics[0]))
    }

    pub fn group_id(&self) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("medallion.{}", self.table))
    }
}

/// Deserializes a TOML config file's text, after putting in the environment variables it
/// names (`${NAME}`, `${NAME:-default}`); an error names `origin` (the file) and the key.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    let expanded = expand_env(text, origin, |name| std::env::var(name).ok())?;
    let text = expanded.as_str();
    toml::from_str(text).map_err(|e| {
        let at = match e.span() {
            Some(span) => {
                // Several `[[table]]` entries share a key path: the line tells them apart.
                let line = text
                    .get(..span.start)
                    .map_or(0, |t| t.matches('\n').count())
                    + 1;
                match key_at(text, span.start) {
                    Some(key) => format!(" (line {line}, key `{key}`)"),
                    None => format!(" (line {line})"),
                }
            }
            None => String::new(),
        };
        Error::Spec(format!("{origin}{at}: {}", e.message()))
    })
}

/// Replaces `${NAME}` with the variable's value and `${NAME:-default}` with its value, or the
/// default when it is unset or empty, so one file serves a laptop and a deployment (addresses
/// and credentials from the environment, as containers pass them). `$${` is a literal `${`.
fn expand_env(text: &str, origin: &str, var: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at]);
            out.push('{');
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let line = text.len() - rest.len() + at;
        let line = text[..line].matches('\n').count() + 1;
        let Some(end) = rest[at..].find('}') else {
            return Err(Error::Spec(format!(
                "{origin} (line {line}): `${{` without a closing `}}`"
            )));
        };
        let inner = &rest[at + 2..at + end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Spec(format!(
                "{origin} (line {line}): `${{{inner}}}` is not an environment variable reference"
            )));
        }
        match (var(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(Error::Spec(format!(
                    "{origin} (line {line}): environment variable {name} is not set (write `${{{name}:-DEFAULT}}` for a default)"
                )))
            }
        }
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The dotted key whose value starts at byte `pos`, found by walking the TOML text backwards
/// (serde's errors carry a position but not the key path).
fn key_at(text: &str, pos: usize) -> Option<String> {
    let before = text.get(..pos)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let prefix = &before[line_start..];
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"');
    let mut path = Vec::new();
    if let Some((line_key, _)) = prefix.split_once('=') {
        path.push(line_key.trim().to_string());
        // Inside an inline table: the key right before the value's `=`.
        let inner = prefix.trim_end().trim_end_matches('=').trim_end();
        let start = inner.rfind(|c: char| !is_key_char(c)).map_or(0, |i| i + 1);
        let inner_key = &inner[start..];
        if !inner_key.is_empty() && inner_key != path[0] {
            path.push(inner_key.to_string());
        }
    }
    let table = before[..line_start]
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .map(|l| l.trim().trim_matches(|c| c == '[' || c == ']').to_string());
    if let Some(t) = table {
        path.insert(0, t);
    }
    (!path.is_empty()).then(|| path.join("."))
}

/// Parses `500ms`, `5s`, `10m`, `1h`, `7d`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit: expected e.g. 500ms, 5s, 10m, 1h, 7d"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: expected e.g. 500ms, 5s, 10m, 1h, 7d"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?}: expected ms, s, m, h or d"
            ))
        }
    };
    Ok(Duration::from_millis(n * ms))
}

/// Parses `1048576`, `512KiB`, `64MiB`, `1GiB`.
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size: expected e.g. 1048576, 512KiB, 64MiB"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?}: expected B, KiB, MiB or GiB"
            ))
        }
    };
    Ok(n * mult)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn some_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        N(u64),
        S(String),
    }
    match Size::deserialize(d)? {
        Size::N(n) => Ok(n),
        Size::S(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn environment_variables_are_put_in_with_defaults() {
        let var = |name: &str| match name {
            "BROKERS" => Some("kafka:9092".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let expand = |text: &str| super::expand_env(text, "f.toml", var);
        assert_eq!(
            expand("b = \"${BROKERS}\"\nw = \"${WH:-./warehouse}\"\ne = \"${EMPTY:-x}\"").unwrap(),
            "b = \"kafka:9092\"\nw = \"./warehouse\"\ne = \"x\""
        );
        assert_eq!(
            expand("sql = \"$${BROKERS}\"").unwrap(),
            "sql = \"${BROKERS}\""
        );
        let unset = expand("a = 1\nb = \"${NOPE}\"").unwrap_err().to_string();
        assert!(
            unset.contains("f.toml (line 2)") && unset.contains("NOPE"),
            "{unset}"
        );
        assert!(expand("b = \"${BRO KERS}\"").is_err());
        assert!(expand("b = \"${BROKERS\"").is_err());
    }

    use super::*;

    const GOOD: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"

[[bronze]]
table = "bronze.events"
topics = ["events"]
format = "json"
schema = "schemas/avro/event.avsc"
event_time = "event_time"
dedupe = { key = ["event_id"], horizon = "1h" }
commit = { interval = "2s", max_rows = 5000, max_bytes = "8MiB" }
"#;

    #[test]
    fn parses_a_good_spec() {
        let spec = PipelineSpec::parse(GOOD, "p.toml").unwrap();
        let b = &spec.bronze[0];
        assert_eq!(b.commit.interval, Duration::from_secs(2));
        assert_eq!(b.commit.max_bytes, 8 << 20);
        assert_eq!(b.dlq_topic(), "events.dlq");
        assert_eq!(b.group_id(), "medallion.bronze.events");
        assert_eq!(spec.lakehouse.catalog, "sqlite://./warehouse/catalog.db");
    }

    fn err(text: &str) -> String {
        PipelineSpec::parse(text, "p.toml").unwrap_err().to_string()
    }

    #[test]
    fn names_file_and_key_of_unknown_keys() {
        let e = err(&GOOD.replace("format = \"json\"", "format = \"json\"\nformt = 1"));
        assert!(e.starts_with("p.toml"), "{e}");
        assert!(e.contains("formt"), "{e}");
    }

    #[test]
    fn a_table_format_is_checked_against_what_it_supports() {
        let delta = GOOD.replace(
            "format = \"json\"",
            "format = \"json\"\ntable_format = \"delta\"",
        );
        let spec = PipelineSpec::parse(&delta, "p.toml").unwrap();
        assert_eq!(
            spec.table_format("bronze.events"),
            lakehouse::TableFormat::Delta
        );
        assert_eq!(
            spec.table_format("silver.x"),
            lakehouse::TableFormat::Iceberg
        );
        let e = err(&GOOD.replace(
            "format = \"json\"",
            "format = \"json\"\ntable_format = \"hudi\"",
        ));
        assert!(
            e.contains("bronze.table_format") && e.contains("delta"),
            "{e}"
        );
        let e = err(&delta.replace("event_time = ", "partitioning = \"day\"\nevent_time = "));
        assert!(e.contains("bronze[0].partitioning"), "{e}");
        let s3 = delta.replace(
            "[[bronze]]",
            "[lakehouse]\nwarehouse = \"s3://b/w\"\n\n[[bronze]]",
        );
        assert!(err(&s3).contains("bronze[0].table_format"));
        let silver = "\n[[silver]]\ntable = \"silver.e\"\nsource = \"bronze.events\"\ncolumns = [{ name = \"id\", expr = \"event_id\" }, { name = \"t\", expr = \"ts\" }]\ntable_format = \"delta\"\n";
        let spec = PipelineSpec::parse(&format!("{delta}{silver}"), "p.toml").unwrap();
        assert_eq!(spec.table_format("silver.e"), lakehouse::TableFormat::Delta);
        let by_day = silver.replace("table_format", "partition_by_day = \"t\"\ntable_format");
        let e = err(&format!("{delta}{by_day}"));
        assert!(e.contains("silver[0].partition_by_day"), "{e}");
        let gold = "\n[[gold]]\ntable = \"gold.g\"\nsource = \"silver.e\"\nevent_time = \"t\"\nwindow = { tumbling = \"1m\" }\naggregates = [{ name = \"n\", fn = \"count\" }]\ntable_format = \"parquet\"\n";
        PipelineSpec::parse(&format!("{delta}{silver}{gold}"), "p.toml").unwrap();
        let update = gold.replace("table_format", "emit = \"update\"\ntable_format");
        let e = err(&format!("{delta}{silver}{update}"));
        assert!(
            e.contains("gold[0].table_format") && e.contains("emit"),
            "{e}"
        );
    }

    #[test]
    fn names_bad_values() {
        let e = err(&GOOD.replace("\"json\"", "\"xml\""));
        assert!(e.contains("bronze.format") && e.contains("json"), "{e}");
        let e = err(&GOOD.replace("\"2s\"", "\"2 weeks\""));
        assert!(
            e.contains("bronze.commit.interval") && e.contains("unknown unit"),
            "{e}"
        );
        let e = err(&GOOD.replace("bronze.events", "silver.events"));
        assert!(e.contains("bronze[0].table"), "{e}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_bytes("512KiB").unwrap(), 512 * 1024);
        assert!(parse_bytes("1TB").is_err());
    }
}
