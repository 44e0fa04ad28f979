//! The dead-letter topic: every record that cannot go on, with its original key, value and
//! headers, plus `medallion.error.*` headers saying where it came from and why.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::RecordBatch;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::error::{Error, Result};
use crate::source::SourceRecord;

pub(crate) struct DeadLetter {
    producer: FutureProducer,
    topic: String,
    stage: &'static str,
    /// The table whose records these are, for the metrics.
    table: String,
    in_flight: Vec<DeliveryFuture>,
    /// Reason codes of the records in flight, counted in the metrics once acknowledged.
    pending: BTreeMap<String, u64>,
    /// Records sent per reason code since start.
    pub counts: BTreeMap<&'static str, u64>,
}

impl DeadLetter {
    /// Connects a producer and makes sure the topic exists.
    pub async fn connect(
        brokers: &str,
        properties: &[(String, String)],
        topic: &str,
        stage: &'static str,
        table: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            // At-least-once by design (duplicates carry their source coordinates); idempotence
            // would add a producer-id handshake that some Kafka-API brokers serve poorly.
            .set("acks", "all")
            .set("linger.ms", "20");
        for (k, v) in properties {
            config.set(k, v);
        }
        let producer: FutureProducer = config
            .create()
            .map_err(|e| Error::Kafka(format!("cannot create the DLQ producer: {e}")))?;
        let metadata = producer
            .client()
            .fetch_metadata(None, timeout)
            .map_err(|e| {
                Error::Kafka(format!(
                    "cannot reach Kafka at {brokers} within {timeout:?}: {e}"
                ))
            })?;
        if !metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none())
        {
            create_topic(&config, topic).await?;
        }
        Ok(Self {
            producer,
            topic: topic.to_string(),
            stage,
            table: table.to_string(),
            in_flight: Vec::new(),
            pending: BTreeMap::new(),
            counts: BTreeMap::new(),
        })
    }

    /// Queues a record for the DLQ; [`DeadLetter::flush`] waits for it to be acknowledged.
    pub fn send(
        &mut self,
        record: &SourceRecord,
        reason: &'static str,
        message: &str,
    ) -> Result<()> {
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let mut headers = OwnedHeaders::new();
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let headers = self.error_headers(
            headers,
            reason,
            message,
            [
                ("medallion.error.source.topic", &record.topic),
                ("medallion.error.source.partition", &partition),
                ("medallion.error.source.offset", &offset),
            ],
        );
        let mut future_record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = &record.key {
            future_record = future_record.key(k.as_slice());
        }
        if let Some(p) = &record.payload {
            future_record = future_record.payload(p.as_slice());
        }
        produce(
            &self.producer,
            &mut self.in_flight,
            &self.topic,
            future_record,
        )?;
        *self.counts.entry(reason).or_default() += 1;
        *self.pending.entry(reason.to_string()).or_default() += 1;
        Ok(())
    }

    /// Queues a table row (as JSON) that the derived table `table` refused, naming the table
    /// and the snapshot range it was read from.
    pub fn send_row(
        &mut self,
        row_json: &[u8],
        table: &str,
        reason: &str,
        message: &str,
        source: (&str, &str),
    ) -> Result<()> {
        let headers = self.error_headers(
            OwnedHeaders::new(),
            reason,
            message,
            [
                ("medallion.error.table", table),
                ("medallion.error.source.table", source.0),
                ("medallion.error.source.snapshots", source.1),
            ],
        );
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
            .headers(headers)
            .payload(row_json);
        produce(&self.producer, &mut self.in_flight, &self.topic, record)?;
        *self.pending.entry(reason.to_string()).or_default() += 1;
        Ok(())
    }

    fn error_headers<const N: usize>(
        &self,
        mut headers: OwnedHeaders,
        reason: &str,
        message: &str,
        source: [(&str, &str); N],
    ) -> OwnedHeaders {
        for (key, value) in [
            ("medallion.error.stage", self.stage),
            ("medallion.error.reason", reason),
            ("medallion.error.message", message),
        ]
        .into_iter()
        .chain(source)
        {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        headers
    }

    /// Waits until every queued record is acknowledged by the broker; the records flushed, by
    /// reason code.
    pub async fn flush(&mut self) -> Result<BTreeMap<String, u64>> {
        for delivery in self.in_flight.drain(..) {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(Error::Kafka(format!("DLQ {}: {e}", self.topic))),
                Err(_) => {
                    return Err(Error::Kafka(format!(
                        "DLQ {}: delivery cancelled",
                        self.topic
                    )))
                }
            }
        }
        let flushed = std::mem::take(&mut self.pending);
        for (reason, records) in &flushed {
            crate::metrics::count(
                "medallion_dead_letters_total",
                "Records produced to the dead-letter topic, by reason code",
                &[("table", &self.table), ("reason", reason)],
                *records,
            );
        }
        Ok(flushed)
    }
}

/// Queues a record, waiting while librdkafka's queue is full.
fn produce(
    producer: &FutureProducer,
    in_flight: &mut Vec<DeliveryFuture>,
    topic: &str,
    mut record: FutureRecord<'_, [u8], [u8]>,
) -> Result<()> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => {
                in_flight.push(delivery);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(Error::Kafka(format!("DLQ {topic}: {e}"))),
        }
    }
}

async fn create_topic(config: &ClientConfig, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| Error::Kafka(format!("cannot create an admin client: {e}")))?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| Error::Kafka(format!("cannot create DLQ topic {topic}: {e}")))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(Error::Kafka(format!("cannot create DLQ topic {t}: {code}")))
            }
        }
    }
    Ok(())
}

/// Each row of `batch` as a JSON object.
pub(crate) fn rows_as_json(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
    let mut buf = Vec::new();
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
