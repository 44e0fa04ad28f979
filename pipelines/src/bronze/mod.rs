//! The bronze stage: raw topics → decode, validate, dedupe → `bronze.<table>`, with the Kafka
//! offsets in the same commit, and everything refused on the dead-letter topic.

mod batch;
mod config;
mod decode;
mod dedupe;
mod writers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lakehouse::{Catalog, CommitOutcome, OffsetFence, Table, TableDefinition, TableFormat};
use schemas::EventSchema;
use tokio::sync::watch;
use tokio::time::sleep_until;

pub use config::{BronzeConfig, KafkaConnection, RegistryRead};

use crate::dlq::DeadLetter;
use crate::error::{Error, Result};
use crate::progress::{self, Progress, Unit};
use crate::source::{
    KafkaSource, OffsetLookup, SourceCommand, SourceConfig, SourceEvent, SourceRecord,
    StartPositions,
};
use batch::BatchBuilder;
use decode::RowDecoder;
use dedupe::Deduplicator;
use writers::{Lookup, Verdict, WriterSchemas};

/// Table property holding the Avro schema the table's records are read with, once a writer
/// schema from the registry has grown it.
pub const READER_SCHEMA_PROPERTY: &str = "medallion.avro.reader-schema";
/// Snapshot property of a bronze commit: what became of the batch's records (JSON
/// [`BatchCounts`]), so that reports read exact dedupe and dead-letter counts from the tables.
pub const BATCH_COUNTS_PROPERTY: &str = "medallion.bronze.batch";

/// The records of one committed bronze batch: rows written, copies dedupe dropped and records
/// sent to the dead-letter topic by reason code. Their sum is the records the batch consumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchCounts {
    pub rows: u64,
    pub duplicates: u64,
    pub dead_letters: BTreeMap<String, u64>,
}

/// First wait before asking an unavailable registry again; doubled up to the maximum.
const REGISTRY_RETRY_FIRST: Duration = Duration::from_secs(1);
const REGISTRY_RETRY_MAX: Duration = Duration::from_secs(15);

/// A partition of the assignment.
type PartitionKey = (Arc<str>, i32);

/// Where a record's writer schema stands.
enum WriterOf {
    /// Decode with this writer schema (None: the table's reader schema).
    Schema(Option<Arc<schemas::registry::RegisteredSchema>>),
    /// Dead-letter the record.
    Rejected(&'static str, String),
    /// The registry cannot answer now: the record waits.
    Wait,
}

/// How the stage runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Stop once everything that was in the topics at start is committed.
    pub once: bool,
}

/// What a bronze run did.
#[derive(Debug, Clone, Default)]
pub struct BronzeReport {
    pub table: String,
    pub records_consumed: u64,
    pub rows_written: u64,
    pub dead_lettered: BTreeMap<&'static str, u64>,
    pub duplicates_dropped: u64,
    pub commits: u64,
    /// Commits refused because another worker had moved a partition first.
    pub fenced: u64,
    pub dedupe_keys: usize,
    pub dedupe_bytes: usize,
    pub dedupe_evicted_early: u64,
    /// Columns the table gained from new writer schemas.
    pub columns_added: Vec<String>,
    /// Times a partition was paused because the schema registry did not answer.
    pub registry_pauses: u64,
}

struct TableOffsets {
    runtime: tokio::runtime::Handle,
    catalog: Arc<Catalog>,
    table: String,
    format: TableFormat,
}

impl OffsetLookup for TableOffsets {
    fn lookup(&self, partitions: &[(String, i32)]) -> Result<StartPositions> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.runtime.block_on(async {
                let table =
                    Table::open_if_exists(self.catalog.clone(), &self.table, self.format).await?;
                // The stage created the table before starting the source: gone means dropped.
                let table = table.ok_or_else(|| {
                    lakehouse::Error::Config(format!(
                        "table {} no longer exists ({} format)",
                        self.table, self.format
                    ))
                })?;
                table.stored_offsets(partitions).await
            });
            match result {
                Ok(stored) => {
                    return Ok(partitions
                        .iter()
                        .map(|(t, p)| (t.clone(), *p, stored.get(t, *p)))
                        .collect())
                }
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %e, attempt, "reading stored offsets failed, retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[derive(Debug)]
struct Position {
    /// The next offset the table holds for the partition.
    committed: Option<i64>,
    /// The next offset to consume.
    next: Option<i64>,
}

impl Position {
    fn dirty(&self) -> bool {
        self.next.is_some() && self.next != self.committed
    }
}

/// How long a `--once` worker without partitions waits for them, or for the table to reach
/// the topics' ends through other workers.
const ONCE_IDLE_LIMIT: Duration = Duration::from_secs(300);

/// How often each assigned partition's lag is measured for the metrics.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Runs one bronze table until `once` completes, `stop` turns true, or the source fails.
///
/// On `stop` the open batch is committed and the consumer leaves its group, so the partitions
/// move to the other workers at once.
pub async fn run(
    kafka: &KafkaConnection,
    catalog: Arc<Catalog>,
    config: &BronzeConfig,
    options: RunOptions,
    stop: watch::Receiver<bool>,
) -> Result<BronzeReport> {
    Stage::start(kafka, catalog, config)
        .await?
        .run(options, stop)
        .await
}

struct Stage<'a> {
    config: &'a BronzeConfig,
    table: Table,
    decoder: RowDecoder,
    dedupe: Option<Deduplicator>,
    dlq: DeadLetter,
    // Declared (so dropped) before the source: its thread may be blocked sending an event,
    // and must see the receiver gone before the source joins it.
    events: tokio::sync::mpsc::Receiver<SourceEvent>,
    source: KafkaSource,
    batch: BatchBuilder,
    batch_bytes: u64,
    batch_deadline: Option<Instant>,
    generation: Option<u64>,
    positions: HashMap<PartitionKey, Position>,
    end_offsets: Option<HashMap<PartitionKey, i64>>,
    /// Registry mode: writer schemas by id.
    writers: Option<WriterSchemas>,
    /// Records of paused partitions, in offset order, waiting for the registry.
    held: BTreeMap<PartitionKey, VecDeque<SourceRecord>>,
    registry_retry: Option<Instant>,
    registry_backoff: Duration,
    report: BronzeReport,
    /// `records_consumed` and `duplicates_dropped` as last counted into the metrics.
    published: (u64, u64),
    /// Records of the open batch that dedupe dropped.
    batch_duplicates: u64,
    /// Records consumed; in once mode out of those up to the end offsets at start.
    progress: Progress,
}

impl<'a> Stage<'a> {
    async fn start(
        kafka: &KafkaConnection,
        catalog: Arc<Catalog>,
        config: &'a BronzeConfig,
    ) -> Result<Self> {
        crate::metrics::stage_starting(&config.table);
        let table = Table::open_or_create(
            catalog.clone(),
            &TableDefinition {
                name: config.table.clone(),
                schema: batch::bronze_schema(&config.schema),
                partition_by_day: config.partition_by_day.then(|| config.event_time.clone()),
            },
            config.table_format,
        )
        .await?;
        // First contact with the brokers: fails fast, naming them, when Kafka is unreachable.
        let dlq = DeadLetter::connect(
            &kafka.brokers,
            &kafka.producer_properties,
            &config.dlq_topic,
            "bronze",
            &config.table,
            kafka.connect_timeout,
        )
        .await?;
        let lookup = TableOffsets {
            runtime: tokio::runtime::Handle::current(),
            catalog,
            table: config.table.clone(),
            format: config.table_format,
        };
        let source_config = SourceConfig {
            brokers: kafka.brokers.clone(),
            group_id: config.group_id.clone(),
            topics: config.topics.clone(),
            properties: kafka.consumer_properties.clone(),
            connect_timeout: kafka.connect_timeout,
        };
        let (source, events) = KafkaSource::start(&source_config, Arc::new(lookup), 8192)?;
        let (reader, writers) = match &config.registry {
            None => (config.schema.clone(), None),
            Some(registry) => (
                reader_schema(&table, config)?,
                Some(WriterSchemas::new(schemas::registry::RegistryClient::new(
                    registry.client.clone(),
                )?)),
            ),
        };
        let event_time = config.event_time_index();
        let dedupe = config
            .dedupe
            .as_ref()
            .map(|d| Deduplicator::new(d.key_indices.clone(), d.horizon_micros, d.max_keys));
        Ok(Self {
            config,
            table,
            batch: BatchBuilder::new(&reader),
            decoder: RowDecoder::new(reader, config.format, event_time, config.max_record_bytes),
            dedupe,
            dlq,
            source,
            events,
            batch_bytes: 0,
            batch_deadline: None,
            generation: None,
            positions: HashMap::new(),
            end_offsets: None,
            writers,
            held: BTreeMap::new(),
            registry_retry: None,
            registry_backoff: REGISTRY_RETRY_FIRST,
            report: BronzeReport {
                table: config.table.clone(),
                ..Default::default()
            },
            published: (0, 0),
            batch_duplicates: 0,
            progress: progress::start(&config.table, Unit::Records, None),
        })
    }

    async fn run(
        mut self,
        options: RunOptions,
        mut stop: watch::Receiver<bool>,
    ) -> Result<BronzeReport> {
        // Once: every partition's end at start, which a worker without partitions waits for
        // the table to reach (other workers, or itself once a dead member's are reassigned).
        let once_target = match options.once {
            false => Vec::new(),
            true => {
                let partitions = self.source.partitions(&self.config.topics).await?;
                let ends = self.source.end_offsets(&partitions).await?;
                partitions.into_iter().zip(ends).collect()
            }
        };
        let mut idle_since: Option<Instant> = None;
        let mut lag_tick = tokio::time::interval(LAG_INTERVAL);
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let far = Instant::now() + Duration::from_secs(3600);
            let deadline = self.batch_deadline.unwrap_or(far);
            let retry_at = self.registry_retry.unwrap_or(far);
            let idle = options.once && self.generation.is_some() && self.positions.is_empty();
            idle_since = idle.then(|| idle_since.unwrap_or_else(Instant::now));
            if idle_since.is_some_and(|t| t.elapsed() > ONCE_IDLE_LIMIT) {
                return Err(self.fail(&format!(
                    "--once: no partition of {} was assigned within {ONCE_IDLE_LIMIT:?} and the table has not reached their ends: another member of consumer group {} holds them (a crashed one is evicted after its session.timeout.ms)",
                    self.config.topics.join(", "),
                    self.config.group_id
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)), if idle => {
                    self.table.refresh().await?;
                }
                event = self.events.recv() => match event {
                    None => return Err(self.fail("the Kafka source stopped")),
                    Some(SourceEvent::Failed(message)) => return Err(self.fail(&message)),
                    Some(SourceEvent::Revoked) => {
                        self.discard_batch();
                        self.generation = None;
                        self.positions.clear();
                    }
                    Some(SourceEvent::Assigned { generation, start }) => {
                        self.assigned(generation, start, options).await?;
                    }
                    Some(SourceEvent::Record(record)) => {
                        self.record(record).await?;
                        if self.batch_full() || (options.once && self.reached_end()) {
                            self.flush().await?;
                        }
                    }
                },
                _ = sleep_until(deadline.into()) => self.flush().await?,
                _ = lag_tick.tick() => self.publish_lag().await,
                _ = sleep_until(retry_at.into()), if self.registry_retry.is_some() => {
                    self.retry_held().await?;
                }
                // A dropped sender means nobody can ask to stop: wait on the other branches.
                Ok(_) = stop.wait_for(|s| *s) => {
                    tracing::info!(table = %self.config.table, "stopping: committing the open batch");
                    self.flush().await?;
                    break;
                }
            }
            if options.once && self.generation.is_some() && !self.any_dirty() {
                let done = match self.positions.is_empty() {
                    false => self.reached_end(),
                    true => self.table_covers(&once_target).await?,
                };
                if done {
                    break;
                }
            }
        }
        self.finish_report();
        self.progress.finish();
        Ok(self.report)
    }

    fn fail(&self, message: &str) -> Error {
        Error::Stage {
            table: self.config.table.clone(),
            message: message.to_string(),
        }
    }

    async fn assigned(
        &mut self,
        generation: u64,
        start: StartPositions,
        options: RunOptions,
    ) -> Result<()> {
        self.discard_batch();
        self.generation = Some(generation);
        crate::metrics::stage_ready(&self.config.table);
        self.positions = start
            .iter()
            .map(|(t, p, o)| {
                (
                    (Arc::from(t.as_str()), *p),
                    Position {
                        committed: *o,
                        next: *o,
                    },
                )
            })
            .collect();
        self.table.refresh().await?;
        self.rebuild_dedupe().await?;
        if options.once && self.end_offsets.is_none() {
            let keys: Vec<(Arc<str>, i32)> = self.positions.keys().cloned().collect();
            let partitions: Vec<(String, i32)> =
                keys.iter().map(|(t, p)| (t.to_string(), *p)).collect();
            let ends = self.source.end_offsets(&partitions).await?;
            // A partition without stored offsets is read from its start, taken as offset 0.
            let left: i64 = keys
                .iter()
                .zip(&ends)
                .map(|(key, end)| {
                    let from = self.positions.get(key).and_then(|p| p.committed);
                    (end - from.unwrap_or(0)).max(0)
                })
                .sum();
            self.progress.set_total(self.progress.done() + left as u64);
            self.end_offsets = Some(keys.into_iter().zip(ends).collect());
        }
        Ok(())
    }

    /// Rebuilds the dedupe keys from the part of the table within the horizon.
    async fn rebuild_dedupe(&mut self) -> Result<()> {
        let Some(spec) = &self.config.dedupe else {
            return Ok(());
        };
        let event_time = &self.config.event_time;
        let Some(max) = self.table.max_timestamp_micros(event_time).await? else {
            return Ok(());
        };
        let mut columns = spec.key.clone();
        columns.push(event_time.clone());
        let started = Instant::now();
        let batches = self
            .table
            .scan_since(
                &columns,
                event_time,
                max.saturating_sub(spec.horizon_micros),
            )
            .await?;
        let mut fresh =
            Deduplicator::new(spec.key_indices.clone(), spec.horizon_micros, spec.max_keys);
        for b in &batches {
            fresh.load_committed(b);
        }
        tracing::info!(table = %self.config.table, keys = fresh.len(), elapsed_ms = started.elapsed().as_millis() as u64, "dedupe state rebuilt from the table");
        self.dedupe = Some(fresh);
        Ok(())
    }

    async fn record(&mut self, record: SourceRecord) -> Result<()> {
        if Some(record.generation) != self.generation {
            return Ok(());
        }
        let key = (record.topic.clone(), record.partition);
        let Some(pos) = self.positions.get(&key) else {
            return Ok(());
        };
        if pos.next.is_some_and(|n| record.offset < n) {
            return Ok(());
        }
        if let Some(queue) = self.held.get_mut(&key) {
            queue.push_back(record);
            return Ok(());
        }
        if let Some(record) = self.ingest(record).await? {
            self.hold(key, record);
        }
        Ok(())
    }

    /// Ingests the next record of its partition, or gives it back when it must wait for the
    /// schema registry.
    async fn ingest(&mut self, record: SourceRecord) -> Result<Option<SourceRecord>> {
        let writer = match self.writer_of(&record).await? {
            WriterOf::Wait => return Ok(Some(record)),
            // Evolving the table flushed; a fenced flush started a new generation.
            _ if Some(record.generation) != self.generation => return Ok(None),
            WriterOf::Rejected(reason, message) => {
                self.consume(&record);
                self.dlq.send(&record, reason, &message)?;
                return Ok(None);
            }
            WriterOf::Schema(writer) => writer,
        };
        self.consume(&record);
        let writer = writer.as_ref().and_then(|w| w.avro.as_ref());
        match self.decoder.decode(record.payload.as_deref(), writer) {
            Err(rejection) => {
                self.dlq
                    .send(&record, rejection.reason, &rejection.message)?;
            }
            Ok((cells, event_time)) => {
                let duplicate = self
                    .dedupe
                    .as_mut()
                    .is_some_and(|d| d.is_duplicate(&cells, event_time));
                if duplicate {
                    self.report.duplicates_dropped += 1;
                    self.batch_duplicates += 1;
                } else {
                    let now = chrono::Utc::now().timestamp_micros();
                    self.batch.push(&cells, &record, now);
                }
            }
        }
        Ok(None)
    }

    /// Moves the record's partition past it and counts it into the open batch.
    fn consume(&mut self, record: &SourceRecord) {
        if let Some(pos) = self
            .positions
            .get_mut(&(record.topic.clone(), record.partition))
        {
            pos.next = Some(record.offset + 1);
        }
        self.report.records_consumed += 1;
        self.progress.advance(1);
        if self.batch_deadline.is_none() {
            self.batch_deadline = Some(Instant::now() + self.config.commit.interval);
        }
        self.batch_bytes += record.payload.as_ref().map_or(0, Vec::len) as u64;
    }

    /// In registry mode: the writer schema named by the record's frame, judged against the
    /// table's reader schema, growing the table first when the writer adds fields.
    async fn writer_of(&mut self, record: &SourceRecord) -> Result<WriterOf> {
        let (Some(_), Some(payload)) = (&self.writers, record.payload.as_deref()) else {
            return Ok(WriterOf::Schema(None));
        };
        let id = match schemas::wire::split_frame(payload) {
            Ok((id, _)) => id,
            Err(e) => return Ok(WriterOf::Rejected("schema.bad_framing", e.to_string())),
        };
        // At most one evolution per writer schema: after it the writer is readable.
        for _ in 0..2 {
            let reader = self.decoder.schema().avro.clone();
            let Some(writers) = self.writers.as_mut() else {
                return Ok(WriterOf::Schema(None));
            };
            match writers.verdict(id, &reader).await {
                Lookup::Unavailable(message) => {
                    tracing::warn!(table = %self.config.table, schema_id = id, error = %message, "schema registry unavailable");
                    return Ok(WriterOf::Wait);
                }
                Lookup::Ready(Verdict::Decode(writer)) => return Ok(WriterOf::Schema(writer)),
                Lookup::Ready(Verdict::Reject { reason, message }) => {
                    return Ok(WriterOf::Rejected(reason, message))
                }
                Lookup::Ready(Verdict::Evolve { reader, added }) => {
                    let origin = format!("schema {id}");
                    let grown = serde_json::to_string(&reader)
                        .map_err(|e| e.to_string())
                        .and_then(|text| {
                            EventSchema::parse(&self.config.subject, &text, &origin)
                                .map_err(|e| e.to_string())
                        });
                    match grown {
                        Ok(event) => self.evolve(id, event, &added).await?,
                        Err(message) => {
                            return Ok(WriterOf::Rejected("schema.incompatible", message))
                        }
                    }
                }
            }
        }
        Err(self.fail(&format!(
            "schema {id} still needs the table to grow after growing it"
        )))
    }

    /// Commits the open batch (read with the old schema), then adds the new columns and
    /// records the grown reader schema in one metadata commit.
    async fn evolve(&mut self, id: u32, event: EventSchema, added: &[String]) -> Result<()> {
        self.flush().await?;
        let text = serde_json::to_string(&*event.avro)
            .map_err(|e| self.fail(&format!("cannot store the grown schema: {e}")))?;
        let columns: Vec<arrow::datatypes::Field> = batch::bronze_schema(&event)
            .fields()
            .iter()
            .filter(|f| added.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect();
        self.table
            .add_columns(&columns, &[(READER_SCHEMA_PROPERTY.to_string(), text)])
            .await?;
        tracing::info!(table = %self.config.table, schema_id = id, ?added, "table grew to read a new writer schema");
        self.report.columns_added.extend(added.iter().cloned());
        self.batch = BatchBuilder::new(&event);
        self.decoder.set_schema(event);
        if let Some(w) = self.writers.as_mut() {
            w.reader_changed();
        }
        Ok(())
    }

    /// Parks a record whose writer schema the registry could not give, pausing its partition
    /// so nothing behind it is read until the registry answers.
    fn hold(&mut self, key: PartitionKey, record: SourceRecord) {
        tracing::warn!(
            table = %self.config.table,
            topic = %key.0,
            partition = key.1,
            offset = record.offset,
            "pausing the partition until the schema registry answers"
        );
        self.report.registry_pauses += 1;
        self.source
            .command(SourceCommand::Pause(vec![(key.0.to_string(), key.1)]));
        self.held.entry(key).or_default().push_back(record);
        if self.registry_retry.is_none() {
            self.registry_retry = Some(Instant::now() + self.registry_backoff);
        }
    }

    /// Tries the held records again, in order per partition; resumes the partitions emptied.
    async fn retry_held(&mut self) -> Result<()> {
        self.registry_retry = None;
        let keys: Vec<PartitionKey> = self.held.keys().cloned().collect();
        for key in keys {
            while let Some(record) = self.held.get_mut(&key).and_then(VecDeque::pop_front) {
                if let Some(back) = self.ingest(record).await? {
                    if let Some(queue) = self.held.get_mut(&key) {
                        queue.push_front(back);
                    }
                    break;
                }
                if self.batch_full() {
                    self.flush().await?;
                }
            }
            if self.held.get(&key).is_some_and(VecDeque::is_empty) {
                self.held.remove(&key);
                tracing::info!(table = %self.config.table, topic = %key.0, partition = key.1, "schema registry answered: partition resumed");
                self.source
                    .command(SourceCommand::Resume(vec![(key.0.to_string(), key.1)]));
            }
        }
        if self.held.is_empty() {
            self.registry_backoff = REGISTRY_RETRY_FIRST;
        } else {
            self.registry_backoff = (self.registry_backoff * 2).min(REGISTRY_RETRY_MAX);
            self.registry_retry = Some(Instant::now() + self.registry_backoff);
        }
        Ok(())
    }

    /// Drops the held records (they are read again from the table's offsets) and resumes
    /// their partitions.
    fn release_held(&mut self) {
        let partitions: Vec<(String, i32)> = std::mem::take(&mut self.held)
            .into_keys()
            .map(|(t, p)| (t.to_string(), p))
            .collect();
        if !partitions.is_empty() {
            self.source.command(SourceCommand::Resume(partitions));
        }
        self.registry_retry = None;
        self.registry_backoff = REGISTRY_RETRY_FIRST;
    }

    fn batch_full(&self) -> bool {
        self.batch.rows() >= self.config.commit.max_rows
            || self.batch_bytes >= self.config.commit.max_bytes
    }

    fn any_dirty(&self) -> bool {
        self.positions.values().any(Position::dirty)
    }

    /// Whether the table holds every partition of `target` up to its offset.
    async fn table_covers(&self, target: &[((String, i32), i64)]) -> Result<bool> {
        let partitions: Vec<(String, i32)> = target.iter().map(|(p, _)| p.clone()).collect();
        let stored = self.table.stored_offsets(&partitions).await?;
        Ok(target
            .iter()
            .all(|((t, p), end)| *end == 0 || stored.get(t, *p).is_some_and(|o| o >= *end)))
    }

    /// In `once` mode: every assigned partition has been read up to its end offset at start.
    fn reached_end(&self) -> bool {
        let Some(ends) = &self.end_offsets else {
            return false;
        };
        self.positions.iter().all(|(key, pos)| {
            let end = ends.get(key).copied().unwrap_or(0);
            end == 0 || pos.next.is_some_and(|n| n >= end)
        })
    }

    fn discard_batch(&mut self) {
        self.release_held();
        self.batch.clear();
        self.batch_bytes = 0;
        self.batch_deadline = None;
        self.batch_duplicates = 0;
        if let Some(d) = &mut self.dedupe {
            d.discard();
        }
        for pos in self.positions.values_mut() {
            pos.next = pos.committed;
        }
    }

    /// Dead letters first, then data files, then the fenced commit of data and offsets.
    async fn flush(&mut self) -> Result<()> {
        self.batch_deadline = None;
        if !self.any_dirty() {
            return Ok(());
        }
        let started = Instant::now();
        let dead_letters = self.dlq.flush().await?;
        let dead: u64 = dead_letters.values().sum();
        let rows = self.batch.rows();
        let batch = self.batch.finish().map_err(lakehouse::Error::from)?;
        self.batch_bytes = 0;
        let staged = self.table.write(&batch).await?;
        let mut fence = OffsetFence::default();
        for ((topic, partition), pos) in &self.positions {
            if let (true, Some(next)) = (pos.dirty(), pos.next) {
                fence.cover(topic, *partition, pos.committed, next);
            }
        }
        let counts = BatchCounts {
            rows: rows as u64,
            duplicates: self.batch_duplicates,
            dead_letters,
        };
        let counts = serde_json::to_string(&counts).map_err(|e| Error::Stage {
            table: self.config.table.clone(),
            message: format!("{BATCH_COUNTS_PROPERTY}: {e}"),
        })?;
        let extra = [(BATCH_COUNTS_PROPERTY.to_string(), counts)];
        match self.table.commit_append(staged, &fence, &extra).await? {
            CommitOutcome::Committed { snapshot_id } => {
                self.batch_duplicates = 0;
                let mut offsets = Vec::new();
                for ((topic, partition), pos) in self.positions.iter_mut() {
                    if pos.dirty() {
                        pos.committed = pos.next;
                    }
                    if let Some(o) = pos.committed {
                        offsets.push((topic.to_string(), *partition, o));
                    }
                }
                if let Some(d) = &mut self.dedupe {
                    d.commit();
                }
                self.source.command(SourceCommand::CommitOffsets(offsets));
                crate::TABLE_COMMITS.notify_waiters();
                self.report.commits += 1;
                self.report.rows_written += rows as u64;
                crate::metrics::committed(&self.config.table, rows as u64, started.elapsed());
                let (keys, key_bytes) = self
                    .dedupe
                    .as_ref()
                    .map_or((0, 0), |d| (d.len(), d.approx_bytes()));
                tracing::info!(
                    table = %self.config.table,
                    snapshot_id,
                    rows,
                    dead_lettered = dead,
                    dedupe_keys = keys,
                    dedupe_bytes = key_bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "committed"
                );
            }
            CommitOutcome::Fenced(violation) => {
                tracing::warn!(table = %self.config.table, %violation, "commit fenced: another worker moved the partition; repositioning");
                self.report.fenced += 1;
                self.discard_batch();
                self.generation = None;
                self.source.command(SourceCommand::Reposition);
            }
        }
        self.publish();
        Ok(())
    }

    /// Sets each assigned partition's lag in the metrics: the records in the topic that the
    /// table does not hold yet. A failed query leaves the last values; the next tick asks again.
    async fn publish_lag(&self) {
        let (partitions, committed): (Vec<(String, i32)>, Vec<Option<i64>>) = self
            .positions
            .iter()
            .map(|((t, p), pos)| ((t.to_string(), *p), pos.committed))
            .unzip();
        if partitions.is_empty() {
            return;
        }
        match self.source.watermarks(&partitions).await {
            Ok(marks) => {
                for (((topic, partition), committed), (low, high)) in
                    partitions.iter().zip(committed).zip(marks)
                {
                    let held = committed.map_or(low, |c| c.max(low));
                    let partition = partition.to_string();
                    let labels = [
                        ("table", self.config.table.as_str()),
                        ("topic", topic.as_str()),
                        ("partition", partition.as_str()),
                    ];
                    let help = "Records in the partition that the table does not hold yet";
                    let lag = (high - held).max(0) as f64;
                    crate::metrics::gauge("medallion_consumer_lag", help, &labels, lag);
                }
            }
            Err(e) => tracing::debug!(table = %self.config.table, error = %e, "lag not measured"),
        }
    }

    /// Counts what was consumed and dropped since the last time into the metrics, and sets
    /// the dedupe gauges.
    fn publish(&mut self) {
        let labels = [("table", self.config.table.as_str())];
        let (consumed, duplicates) = self.published;
        crate::metrics::count(
            "medallion_records_consumed_total",
            "Kafka records consumed",
            &labels,
            self.report.records_consumed - consumed,
        );
        crate::metrics::count(
            "medallion_duplicates_dropped_total",
            "Records dedupe dropped as copies of one seen within the horizon",
            &labels,
            self.report.duplicates_dropped - duplicates,
        );
        self.published = (self.report.records_consumed, self.report.duplicates_dropped);
        if let Some(d) = &self.dedupe {
            let help = "Keys dedupe holds in memory";
            crate::metrics::gauge("medallion_dedupe_keys", help, &labels, d.len() as f64);
            let help = "Approximate bytes of dedupe's keys";
            let bytes = d.approx_bytes() as f64;
            crate::metrics::gauge("medallion_dedupe_bytes", help, &labels, bytes);
        }
    }

    fn finish_report(&mut self) {
        self.report.dead_lettered = self.dlq.counts.clone();
        if let Some(d) = &self.dedupe {
            self.report.dedupe_keys = d.len();
            self.report.dedupe_bytes = d.approx_bytes();
            self.report.dedupe_evicted_early = d.evicted_early;
        }
    }
}

/// The columns a new bronze table of `config` is created with.
pub fn table_schema(config: &BronzeConfig) -> arrow::datatypes::SchemaRef {
    batch::bronze_schema(&config.schema)
}

/// The schema the table of `config` reads Avro records with now (the spec's, for a table not
/// created yet), as [`run`] would start with it.
pub async fn current_reader_schema(
    catalog: Arc<Catalog>,
    config: &BronzeConfig,
) -> Result<EventSchema> {
    match Table::open_if_exists(catalog, &config.table, config.table_format).await? {
        Some(table) => reader_schema(&table, config),
        None => Ok(config.schema.clone()),
    }
}

/// The schema an Avro table in registry mode reads with: the one a writer schema last grew it
/// to, else the spec's. A grown schema must still begin with the spec's fields, in order (the
/// dedupe key and event time are found by position).
fn reader_schema(table: &Table, config: &BronzeConfig) -> Result<EventSchema> {
    let Some(text) = table.property(READER_SCHEMA_PROPERTY) else {
        return Ok(config.schema.clone());
    };
    let origin = format!("table {} property {READER_SCHEMA_PROPERTY}", config.table);
    let stored = EventSchema::parse(&config.subject, text, &origin)?;
    let spec: Vec<&str> = config
        .schema
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let grown: Vec<&str> = stored.fields.iter().map(|f| f.name.as_str()).collect();
    if !grown.starts_with(&spec) {
        return Err(Error::Stage {
            table: config.table.clone(),
            message: format!(
                "the table has grown to the fields {grown:?}, which do not begin with the schema file's fields {spec:?}: add the new fields at the end of the file"
            ),
        });
    }
    Ok(stored)
}
