//! Writer schemas by registry id. Each id is fetched once (the client caches it) and judged
//! once against the table's reader schema, until that schema changes.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use schemas::evolution::{evolve, Evolution};
use schemas::registry::{codes, RegisteredSchema, RegistryClient, RegistryError};

/// What to do with the records of one writer schema.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    /// Decode them, resolving from this writer schema (None: it is the reader schema itself).
    Decode(Option<Arc<RegisteredSchema>>),
    /// The table must first gain the `added` fields; `reader` is its grown reader schema.
    Evolve { reader: Schema, added: Vec<String> },
    /// Dead-letter them.
    Reject {
        reason: &'static str,
        message: String,
    },
}

/// A verdict, or why there is none yet.
pub(crate) enum Lookup {
    Ready(Verdict),
    /// The registry could not answer; the records must wait, never be dead-lettered.
    Unavailable(String),
}

pub(crate) struct WriterSchemas {
    client: RegistryClient,
    verdicts: HashMap<u32, Verdict>,
}

impl WriterSchemas {
    pub fn new(client: RegistryClient) -> Self {
        Self {
            client,
            verdicts: HashMap::new(),
        }
    }

    /// The verdict on records framed with schema `id`, for a table read with `reader`.
    pub async fn verdict(&mut self, id: u32, reader: &Schema) -> Lookup {
        if let Some(v) = self.verdicts.get(&id) {
            return Lookup::Ready(v.clone());
        }
        let verdict = match self.client.schema_by_id(id).await {
            Ok(found) => judge(&found, reader),
            Err(e) if e.code() == Some(codes::SCHEMA_NOT_FOUND) => Verdict::Reject {
                reason: "schema.unknown_id",
                message: format!(
                    "schema id {id} is not in the registry at {}",
                    self.client.url()
                ),
            },
            Err(RegistryError::InvalidSchema { message, .. }) => Verdict::Reject {
                reason: "schema.incompatible",
                message: format!("schema {id} in the registry is not valid Avro: {message}"),
            },
            Err(e) => return Lookup::Unavailable(e.to_string()),
        };
        self.verdicts.insert(id, verdict.clone());
        Lookup::Ready(verdict)
    }

    /// Forgets the verdicts: they were relative to a reader schema that has changed.
    pub fn reader_changed(&mut self) {
        self.verdicts.clear();
    }
}

fn judge(found: &Arc<RegisteredSchema>, reader: &Schema) -> Verdict {
    let Some(writer) = &found.avro else {
        return Verdict::Reject {
            reason: "schema.bad_framing",
            message: format!(
                "schema {} is {}, not Avro: the record is not Avro",
                found.id, found.schema_type
            ),
        };
    };
    match evolve(reader, writer, &format!("schema {}", found.id)) {
        // Equal canonical forms encode alike: decode with the reader directly.
        Ok(Evolution::Readable) if writer == reader => Verdict::Decode(None),
        Ok(Evolution::Readable) => Verdict::Decode(Some(found.clone())),
        Ok(Evolution::AddFields { reader, added }) => Verdict::Evolve { reader, added },
        Err(problems) => Verdict::Reject {
            reason: "schema.incompatible",
            message: problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        },
    }
}
