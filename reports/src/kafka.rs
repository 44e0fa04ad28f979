//! What the report reads from Kafka: the topics' end offsets (lag) and the dead-letter topics.
//! Kafka being unreachable does not stop the report (it is most wanted when something is
//! wrong): the sections it would fill say why they are empty.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lakehouse::SourceOffsets;
use pipelines::spec::KafkaSpec;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::gather::rfc3339;
use crate::model::{
    DeadLetterReason, DeadLetterSample, DeadLetterTopic, DeadLetters, KafkaLag, PartitionLag,
};

/// Time allowed for each metadata, watermark or offset query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for reading one dead-letter topic up to its end.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Payload bytes a sample shows.
const PAYLOAD_PREVIEW: usize = 200;

/// One consumer for every query of the report (a new client per topic would connect anew).
pub(crate) struct Kafka {
    consumer: Result<Arc<BaseConsumer>, String>,
}

/// Which table a dead letter belongs to, when its headers do not name it.
pub(crate) struct Attribution {
    /// Raw topic → the bronze table reading it.
    pub bronze_topics: HashMap<String, String>,
    /// Dead-letter topic → a table that writes to it.
    pub dlq_owners: HashMap<String, String>,
}

impl Kafka {
    /// A consumer of the cluster, once it has answered a metadata request: an unreachable
    /// cluster is found once, and every section that needs it then says so at once.
    pub async fn connect(spec: &KafkaSpec) -> Self {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &spec.brokers)
            .set("group.id", "medallion-quality-report")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        for (k, v) in spec.properties.iter().chain(&spec.consumer_properties) {
            config.set(k, v);
        }
        let brokers = spec.brokers.clone();
        let consumer = match config.create::<BaseConsumer>() {
            Ok(consumer) => tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(None, QUERY_TIMEOUT)
                    .map(|_| Arc::new(consumer))
                    .map_err(|e| format!("cannot reach Kafka at {brokers}: {e}"))
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r),
            Err(e) => Err(format!("cannot create a Kafka consumer for {brokers}: {e}")),
        };
        if let Err(error) = &consumer {
            tracing::warn!(%error, "the report's lag and dead-letter sections stay empty");
        }
        Self { consumer }
    }

    /// Per partition of `topics`: the records after the table's offset.
    pub async fn lag(&self, topics: &[String], stored: &SourceOffsets) -> KafkaLag {
        let consumer = match &self.consumer {
            Ok(c) => c.clone(),
            Err(e) => return lag_error(e.clone()),
        };
        let topics = topics.to_vec();
        let stored = stored.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut partitions = Vec::new();
            for topic in &topics {
                for partition in partitions_of(&consumer, topic)? {
                    let (low, high) = consumer
                        .fetch_watermarks(topic, partition, QUERY_TIMEOUT)
                        .map_err(|e| format!("cannot read the end of {topic}[{partition}]: {e}"))?;
                    let table_offset = stored.get(topic, partition);
                    let held = table_offset.map_or(low, |o| o.max(low));
                    partitions.push(PartitionLag {
                        topic: topic.clone(),
                        partition,
                        table_offset,
                        end_offset: high,
                        lag: (high - held).max(0) as u64,
                    });
                }
            }
            Ok::<_, String>(partitions)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match read {
            Ok(partitions) => KafkaLag {
                records: partitions.iter().map(|p| p.lag).sum(),
                partitions,
                error: None,
            },
            Err(e) => lag_error(e),
        }
    }

    /// The records of the dead-letter `topics` since `since_ms`, counted by table, stage and
    /// reason, with the newest `samples` of each.
    pub async fn dead_letters(
        &self,
        topics: &[String],
        since_ms: i64,
        samples: usize,
        attribution: &Attribution,
    ) -> DeadLetters {
        let mut out = DeadLetters {
            topics: Vec::new(),
            reasons: Vec::new(),
        };
        let mut reasons: BTreeMap<(String, String, String), (u64, VecDeque<DeadLetterSample>)> =
            BTreeMap::new();
        for topic in topics {
            let read = match &self.consumer {
                Ok(consumer) => {
                    let consumer = consumer.clone();
                    let topic = topic.clone();
                    tokio::task::spawn_blocking(move || {
                        let read = read_topic(&consumer, &topic, since_ms);
                        // An assigned consumer makes each later query wait for its fetches.
                        let _ = consumer.unassign();
                        read
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                }
                Err(e) => Err(e.clone()),
            };
            tracing::debug!(topic = %topic, "dead letters read");
            match read {
                Ok(records) => {
                    out.topics.push(DeadLetterTopic {
                        topic: topic.clone(),
                        records: records.len() as u64,
                        error: None,
                    });
                    for record in records {
                        let key = (
                            attribution.table_of(&record),
                            record.header("medallion.error.stage").to_string(),
                            record.header("medallion.error.reason").to_string(),
                        );
                        let entry = reasons.entry(key).or_default();
                        entry.0 += 1;
                        if samples > 0 {
                            if entry.1.len() == samples {
                                entry.1.pop_front();
                            }
                            entry.1.push_back(record.sample());
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(topic = %topic, %error, "dead-letter topic not read");
                    out.topics.push(DeadLetterTopic {
                        topic: topic.clone(),
                        records: 0,
                        error: Some(error),
                    });
                }
            }
        }
        out.reasons = reasons
            .into_iter()
            .map(
                |((table, stage, reason), (records, samples))| DeadLetterReason {
                    table,
                    stage,
                    reason,
                    records,
                    samples: samples.into_iter().rev().collect(),
                },
            )
            .collect();
        out.reasons.sort_by_key(|r| std::cmp::Reverse(r.records));
        out
    }
}

fn lag_error(error: String) -> KafkaLag {
    tracing::warn!(%error, "consumer lag not measured");
    KafkaLag {
        records: 0,
        partitions: Vec::new(),
        error: Some(error),
    }
}

fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), QUERY_TIMEOUT)
        .map_err(|e| format!("cannot read the metadata of {topic}: {e}"))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Vec::new());
    };
    // A topic nobody produced to yet is not an error: it has no records.
    if found.error().is_some() {
        return Ok(Vec::new());
    }
    Ok(found.partitions().iter().map(|p| p.id()).collect())
}

/// One dead-letter record, as much of it as the report uses.
struct DeadRecord {
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    headers: HashMap<String, String>,
    payload: String,
}

impl DeadRecord {
    fn header(&self, key: &str) -> &str {
        self.headers.get(key).map_or("unknown", String::as_str)
    }

    fn sample(&self) -> DeadLetterSample {
        let source = match self.headers.get("medallion.error.source.topic") {
            Some(topic) => format!(
                "{topic}[{}]@{}",
                self.header("medallion.error.source.partition"),
                self.header("medallion.error.source.offset")
            ),
            None => format!(
                "{} snapshots {}",
                self.header("medallion.error.source.table"),
                self.header("medallion.error.source.snapshots")
            ),
        };
        DeadLetterSample {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp.map(rfc3339),
            message: self.header("medallion.error.message").to_string(),
            source,
            payload: self.payload.clone(),
        }
    }
}

impl Attribution {
    fn table_of(&self, record: &DeadRecord) -> String {
        let named = record.headers.get("medallion.error.table");
        let by_source = || {
            record
                .headers
                .get("medallion.error.source.topic")
                .and_then(|t| self.bronze_topics.get(t))
        };
        named
            .or_else(by_source)
            .or_else(|| self.dlq_owners.get(&record.topic))
            .cloned()
            .unwrap_or_else(|| "unknown".to_string())
    }
}

/// Every record of `topic` from `since_ms` up to the end it has now.
fn read_topic(
    consumer: &BaseConsumer,
    topic: &str,
    since_ms: i64,
) -> Result<Vec<DeadRecord>, String> {
    let mut ranges: HashMap<i32, (i64, i64)> = HashMap::new();
    let mut wanted = TopicPartitionList::new();
    for partition in partitions_of(consumer, topic)? {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, QUERY_TIMEOUT)
            .map_err(|e| format!("cannot read the end of {topic}[{partition}]: {e}"))?;
        if high > low {
            ranges.insert(partition, (low, high));
            wanted
                .add_partition_offset(topic, partition, Offset::Offset(since_ms))
                .map_err(|e| e.to_string())?;
        }
    }
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let starts = consumer
        .offsets_for_times(wanted, QUERY_TIMEOUT)
        .map_err(|e| format!("cannot look up {topic}'s offsets at the period's start: {e}"))?;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for element in starts.elements() {
        let partition = element.partition();
        let Some(&(low, high)) = ranges.get(&partition) else {
            continue;
        };
        let start = match element.offset() {
            Offset::Offset(start) => start.max(low),
            // No record at or after the time, says the broker. Not every broker keeps a time
            // index (librdkafka's mock cluster answers so for any time), so the partition is read
            // from its start when its newest record is in the period after all.
            _ if newest_timestamp(consumer, topic, partition, high)? >= since_ms => low,
            _ => high,
        };
        if start < high {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|e| e.to_string())?;
            ends.insert(partition, high);
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("cannot read {topic}: {e}"))?;
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut records = Vec::new();
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "{topic} was not read to its end within {READ_TIMEOUT:?}"
            ));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(|e| format!("reading {topic}: {e}"))?;
        let Some(end) = ends.get(&message.partition()).copied() else {
            continue;
        };
        if message.offset() + 1 >= end {
            ends.remove(&message.partition());
        }
        let timestamp = message.timestamp().to_millis();
        if message.offset() >= end || timestamp.is_some_and(|t| t < since_ms) {
            continue;
        }
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .filter_map(|header| {
                        let value = header.value?;
                        Some((
                            header.key.to_string(),
                            String::from_utf8_lossy(value).into_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let payload = message.payload().unwrap_or_default();
        records.push(DeadRecord {
            topic: topic.to_string(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp,
            headers,
            payload: preview(payload),
        });
    }
    Ok(records)
}

/// The start of a payload as text: invalid UTF-8 replaced, control characters (Avro's binary
/// encoding has many) written as `\xNN`.
fn preview(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(PAYLOAD_PREVIEW)]);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The timestamp of the record before `high` in a partition (its newest), or `i64::MIN` if it
/// has none there (a transaction marker, say).
fn newest_timestamp(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    high: i64,
) -> Result<i64, String> {
    let mut one = TopicPartitionList::new();
    one.add_partition_offset(topic, partition, Offset::Offset(high - 1))
        .map_err(|e| e.to_string())?;
    consumer
        .assign(&one)
        .map_err(|e| format!("cannot read {topic}: {e}"))?;
    let deadline = Instant::now() + QUERY_TIMEOUT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.partition() == partition && m.offset() >= high - 1 => {
                return Ok(m.timestamp().to_millis().unwrap_or(i64::MIN));
            }
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            _ => {}
        }
    }
    Ok(i64::MIN)
}
