//! The Kafka source: a consumer-group member whose positions come from the table, not from
//! Kafka's committed offsets.
//!
//! librdkafka is polled on a dedicated thread. On every assignment the rebalance callback asks
//! the table where each partition resumes and assigns exactly those offsets, so the stream that
//! follows starts where the last table commit ended. Each assignment opens a new generation;
//! the stage drops records of older generations, which makes a revoke or a re-seek a clean cut.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// How often an end-offset query is tried before the stage gives up.
const END_OFFSET_ATTEMPTS: u32 = 4;

/// Where each assigned partition resumes: the table's next offset, or `None` when the table
/// has never seen the partition (it is then read from the beginning).
pub type StartPositions = Vec<(String, i32, Option<i64>)>;

/// Looks up, from the table, where the given partitions resume.
pub trait OffsetLookup: Send + Sync + 'static {
    fn lookup(&self, partitions: &[(String, i32)]) -> Result<StartPositions>;
}

/// A consumed record, detached from librdkafka's buffers.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub generation: u64,
}

/// What the source tells the stage, in order.
#[derive(Debug)]
pub enum SourceEvent {
    /// A new assignment: records of older generations must be dropped.
    Assigned {
        generation: u64,
        start: StartPositions,
    },
    /// Every partition was taken away.
    Revoked,
    Record(SourceRecord),
    /// The source cannot go on.
    Failed(String),
}

/// What the stage asks of the source.
#[derive(Debug)]
pub enum SourceCommand {
    /// Record, for lag monitoring, the offsets a table commit reached.
    CommitOffsets(Vec<(String, i32, i64)>),
    /// Re-read positions from the table and seek there (after losing a fenced commit).
    Reposition,
    /// Stop fetching these partitions (their records are waiting for the schema registry).
    Pause(Vec<(String, i32)>),
    /// Fetch them again, from the record after the last one delivered.
    Resume(Vec<(String, i32)>),
}

/// Settings of the source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub brokers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    /// Extra librdkafka properties.
    pub properties: Vec<(String, String)>,
    /// How long to wait for the brokers at start before giving up.
    pub connect_timeout: Duration,
}

struct SourceContext {
    events: mpsc::Sender<SourceEvent>,
    lookup: Arc<dyn OffsetLookup>,
    generation: std::sync::atomic::AtomicU64,
}

impl ClientContext for SourceContext {}

impl SourceContext {
    fn send(&self, event: SourceEvent) {
        // The stage has gone away: nothing left to tell.
        let _ = self.events.blocking_send(event);
    }

    /// Assigns `partitions` at the positions the table holds and announces a new generation.
    fn assign_from_table(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        partitions: &[(String, i32)],
    ) {
        let start = match self.lookup.lookup(partitions) {
            Ok(start) => start,
            Err(e) => {
                self.send(SourceEvent::Failed(format!(
                    "cannot read stored offsets from the table: {e}"
                )));
                return;
            }
        };
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in &start {
            let offset = offset.map_or(Offset::Beginning, Offset::Offset);
            if let Err(e) = tpl.add_partition_offset(topic, *partition, offset) {
                self.send(SourceEvent::Failed(format!("{topic}[{partition}]: {e}")));
                return;
            }
        }
        if let Err(e) = consumer.assign(&tpl) {
            self.send(SourceEvent::Failed(format!("assign failed: {e}")));
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(
            generation,
            ?start,
            "partitions assigned at the table's offsets"
        );
        self.send(SourceEvent::Assigned { generation, start });
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                self.assign_from_table(base_consumer, &partitions);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!("partitions revoked");
                if let Err(e) = base_consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.send(SourceEvent::Revoked);
            }
            other => tracing::warn!(error = ?other, "rebalance error"),
        }
    }
}

/// A running source; dropping it stops the consumer thread.
pub struct KafkaSource {
    /// A group-less client for watermark queries.
    meta: Arc<BaseConsumer>,
    commands: std::sync::mpsc::Sender<SourceCommand>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KafkaSource {
    /// Connects, checks that the topics exist, subscribes, and starts polling. Events arrive on
    /// the returned receiver.
    pub fn start(
        config: &SourceConfig,
        lookup: Arc<dyn OffsetLookup>,
        buffer: usize,
    ) -> Result<(Self, mpsc::Receiver<SourceEvent>)> {
        let (tx, rx) = mpsc::channel(buffer);
        let context = SourceContext {
            events: tx,
            lookup,
            generation: Default::default(),
        };
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Eager rebalancing: every rebalance revokes everything, then assigns afresh.
            .set("partition.assignment.strategy", "range")
            .set("enable.partition.eof", "false");
        for (k, v) in &config.properties {
            client.set(k, v);
        }
        let meta: Arc<BaseConsumer> = Arc::new(
            client
                .create()
                .map_err(|e| Error::Kafka(format!("cannot create consumer: {e}")))?,
        );
        let consumer: BaseConsumer<SourceContext> = client
            .create_with_context(context)
            .map_err(|e| Error::Kafka(format!("cannot create consumer: {e}")))?;
        check_topics(
            &consumer,
            &config.brokers,
            &config.topics,
            config.connect_timeout,
        )?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| Error::Kafka(format!("cannot subscribe to {topics:?}: {e}")))?;

        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-source".into())
            .spawn(move || poll_loop(consumer, cmd_rx, thread_stop))
            .map_err(|e| Error::Kafka(format!("cannot start the consumer thread: {e}")))?;
        Ok((
            Self {
                meta,
                commands: cmd_tx,
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// Every partition of `topics`.
    pub async fn partitions(&self, topics: &[String]) -> Result<Vec<(String, i32)>> {
        let meta = self.meta.clone();
        let topics = topics.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for t in &topics {
                let md = meta
                    .fetch_metadata(Some(t), Duration::from_secs(10))
                    .map_err(|e| Error::Kafka(format!("cannot read the partitions of {t}: {e}")))?;
                for topic in md.topics() {
                    out.extend(topic.partitions().iter().map(|p| (t.clone(), p.id())));
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::Kafka(format!("metadata query failed: {e}")))?
    }

    /// Each partition's first and next offset (`(low, high)`), now, asking once.
    pub async fn watermarks(&self, partitions: &[(String, i32)]) -> Result<Vec<(i64, i64)>> {
        let meta = self.meta.clone();
        let parts = partitions.to_vec();
        tokio::task::spawn_blocking(move || {
            parts
                .iter()
                .map(|(t, p)| {
                    meta.fetch_watermarks(t, *p, Duration::from_secs(10))
                        .map_err(|e| Error::Kafka(format!("cannot read the end of {t}[{p}]: {e}")))
                })
                .collect()
        })
        .await
        .map_err(|e| Error::Kafka(format!("watermark query failed: {e}")))?
    }

    /// The offset after the last record of each partition, now. Retried with backoff: a
    /// loaded broker can be slow to answer.
    pub async fn end_offsets(&self, partitions: &[(String, i32)]) -> Result<Vec<i64>> {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.watermarks(partitions).await {
                Ok(marks) => return Ok(marks.into_iter().map(|(_, high)| high).collect()),
                Err(e) if attempt < END_OFFSET_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn command(&self, command: SourceCommand) {
        // The thread only ends when stopped, after which commands do not matter.
        let _ = self.commands.send(command);
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fails with a clear message when the brokers cannot be reached or a topic does not exist.
fn check_topics<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    brokers: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<()> {
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| {
        Error::Kafka(format!(
            "cannot reach Kafka at {brokers} within {timeout:?}: {e}"
        ))
    })?;
    for topic in topics {
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {}
            _ => {
                return Err(Error::Kafka(format!(
                    "topic {topic:?} does not exist on {brokers}"
                )))
            }
        }
    }
    Ok(())
}

fn partition_list(partitions: &[(String, i32)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

fn poll_loop(
    consumer: BaseConsumer<SourceContext>,
    commands: std::sync::mpsc::Receiver<SourceCommand>,
    stop: Arc<AtomicBool>,
) {
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                SourceCommand::CommitOffsets(offsets) => {
                    let mut tpl = TopicPartitionList::new();
                    for (t, p, o) in &offsets {
                        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
                    }
                    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                        tracing::debug!(error = %e, "group offset commit failed (monitoring only)");
                    }
                }
                SourceCommand::Reposition => {
                    let partitions: Vec<(String, i32)> = match consumer.assignment() {
                        Ok(tpl) => tpl
                            .elements()
                            .iter()
                            .map(|e| (e.topic().to_string(), e.partition()))
                            .collect(),
                        Err(e) => {
                            consumer.context().send(SourceEvent::Failed(format!(
                                "cannot read the assignment: {e}"
                            )));
                            return;
                        }
                    };
                    consumer.context().assign_from_table(&consumer, &partitions);
                }
                SourceCommand::Pause(partitions) => {
                    if let Err(e) = consumer.pause(&partition_list(&partitions)) {
                        tracing::warn!(error = %e, ?partitions, "pause failed");
                    }
                }
                SourceCommand::Resume(partitions) => {
                    // A partition revoked meanwhile is no longer paused: nothing to do.
                    if let Err(e) = consumer.resume(&partition_list(&partitions)) {
                        tracing::debug!(error = %e, ?partitions, "resume failed");
                    }
                }
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let topic = names
                    .entry(m.topic().to_string())
                    .or_insert_with(|| Arc::from(m.topic()))
                    .clone();
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                let record = SourceRecord {
                    topic,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers,
                    generation: consumer.context().generation.load(Ordering::SeqCst),
                };
                if consumer
                    .context()
                    .events
                    .blocking_send(SourceEvent::Record(record))
                    .is_err()
                {
                    return;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
        }
    }
}
