use std::collections::BTreeMap;
use std::time::Duration;

use schemas::registry::RegistryConfig;
use schemas::{EventSchema, FieldKind};

use crate::error::{Error, Result};
use crate::spec::{BronzeSpec, CommitSpec, Format, KafkaSpec, Partitioning, RegistrySpec};

/// How to reach Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConnection {
    pub brokers: String,
    /// librdkafka properties of the consumers.
    pub consumer_properties: Vec<(String, String)>,
    /// librdkafka properties of the dead-letter producers.
    pub producer_properties: Vec<(String, String)>,
    pub connect_timeout: Duration,
}

impl From<&KafkaSpec> for KafkaConnection {
    fn from(spec: &KafkaSpec) -> Self {
        Self {
            brokers: spec.brokers.clone(),
            consumer_properties: merged(&spec.properties, &spec.consumer_properties),
            producer_properties: merged(&spec.properties, &spec.producer_properties),
            connect_timeout: spec.connect_timeout,
        }
    }
}

/// Common properties, then the client-specific ones (which win).
fn merged(
    common: &BTreeMap<String, String>,
    specific: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut all = common.clone();
    all.extend(specific.clone());
    all.into_iter().collect()
}

/// A bronze table's settings, checked against its event schema.
#[derive(Debug, Clone)]
pub struct BronzeConfig {
    pub table: String,
    pub topics: Vec<String>,
    pub format: Format,
    /// The event schema the table is created with (and, without a registry, decoded with).
    pub schema: EventSchema,
    /// Registry subject of the records (used in messages and by `medallion schema`).
    pub subject: String,
    pub event_time: String,
    pub dlq_topic: String,
    pub group_id: String,
    pub partition_by_day: bool,
    pub table_format: lakehouse::TableFormat,
    pub max_record_bytes: u64,
    pub dedupe: Option<DedupeConfig>,
    pub commit: CommitSpec,
    /// Avro records are decoded by the schema id in their frame, looked up here.
    pub registry: Option<RegistryRead>,
}

/// Where an Avro table's writer schemas come from.
#[derive(Debug, Clone)]
pub struct RegistryRead {
    pub client: RegistryConfig,
    pub subject: String,
}

#[derive(Debug, Clone)]
pub struct DedupeConfig {
    pub key: Vec<String>,
    pub key_indices: Vec<usize>,
    pub horizon_micros: i64,
    pub max_keys: usize,
}

impl BronzeConfig {
    /// Loads the schema file and checks every field the spec names; `origin` and `index` name
    /// the spec entry in errors.
    pub fn from_spec(spec: &BronzeSpec, origin: &str, index: usize) -> Result<Self> {
        let schema = EventSchema::from_file(&spec.schema)
            .map_err(|e| Error::Spec(format!("{origin}: bronze[{index}].schema: {e}")))?;
        Self::with_schema(spec, schema, origin, index)
    }

    /// Like [`BronzeConfig::from_spec`], with the schema already loaded.
    pub fn with_schema(
        spec: &BronzeSpec,
        schema: EventSchema,
        origin: &str,
        index: usize,
    ) -> Result<Self> {
        let bad =
            |key: &str, msg: String| Error::Spec(format!("{origin}: bronze[{index}].{key}: {msg}"));
        match schema.field(&spec.event_time) {
            Some(f) if f.kind == FieldKind::Timestamp => {}
            Some(f) => {
                return Err(bad(
                    "event_time",
                    format!(
                    "field {} is {:?}, expected a timestamp (timestamp-millis or timestamp-micros)",
                    f.name, f.kind
                ),
                ))
            }
            None => {
                return Err(bad(
                    "event_time",
                    format!("schema {} has no field {}", schema.subject, spec.event_time),
                ))
            }
        }
        let dedupe = match &spec.dedupe {
            None => None,
            Some(d) => {
                let mut key_indices = Vec::new();
                for k in &d.key {
                    let i = schema
                        .fields
                        .iter()
                        .position(|f| &f.name == k)
                        .ok_or_else(|| {
                            bad(
                                "dedupe.key",
                                format!("schema {} has no field {k}", schema.subject),
                            )
                        })?;
                    match schema.fields[i].kind {
                        FieldKind::Json => {
                            return Err(bad(
                                "dedupe.key",
                                format!("field {k} is nested; keys must be scalar"),
                            ))
                        }
                        // A float read back from the table need not equal the decoded
                        // value bit for bit, so the rebuilt key state would miss duplicates.
                        FieldKind::Float | FieldKind::Double => {
                            return Err(bad(
                                "dedupe.key",
                                format!(
                                    "field {k} is floating-point; keys must be exact (string, integer, boolean, bytes, date or timestamp)"
                                ),
                            ))
                        }
                        _ => {}
                    }
                    key_indices.push(i);
                }
                Some(DedupeConfig {
                    key: d.key.clone(),
                    key_indices,
                    horizon_micros: i64::try_from(d.horizon.as_micros()).unwrap_or(i64::MAX),
                    max_keys: d.max_keys,
                })
            }
        };
        Ok(Self {
            table: spec.table.clone(),
            topics: spec.topics.clone(),
            format: spec.format,
            subject: spec.subject(),
            event_time: spec.event_time.clone(),
            dlq_topic: spec.dlq_topic(),
            group_id: spec.group_id(),
            partition_by_day: spec.partitioning.unwrap_or(match spec.table_format {
                lakehouse::TableFormat::Iceberg | lakehouse::TableFormat::Parquet => {
                    Partitioning::Day
                }
                lakehouse::TableFormat::Delta => Partitioning::None,
            }) == Partitioning::Day,
            table_format: spec.table_format,
            max_record_bytes: spec.max_record_bytes,
            dedupe,
            commit: spec.commit.clone(),
            registry: None,
            schema,
        })
    }

    /// Decodes the table's Avro records by their frames' schema ids, from `registry`; `origin`
    /// names the spec in errors. JSON tables are left as they are.
    pub fn read_with_registry(mut self, registry: &RegistrySpec, origin: &str) -> Result<Self> {
        if self.format == Format::Avro {
            self.registry = Some(RegistryRead {
                client: registry.client_config(origin)?,
                subject: self.subject.clone(),
            });
        }
        Ok(self)
    }

    pub(crate) fn event_time_index(&self) -> usize {
        self.schema
            .fields
            .iter()
            .position(|f| f.name == self.event_time)
            .unwrap_or_default()
    }
}
