//! The report's data: what `--format json` prints, field for field. Fields are only ever added
//! (with `version` unchanged); a removal or change of meaning raises `version`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `kind` of every report.
pub const KIND: &str = "medallion.quality-report";
/// Version of the JSON shape.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QualityReport {
    /// Always [`KIND`].
    pub kind: String,
    /// Always [`VERSION`] for this shape.
    pub version: u32,
    /// The pipeline spec the report is about.
    pub spec: String,
    /// RFC 3339, UTC.
    pub generated_at: String,
    /// Start of the reported period (`--since` before `generated_at`), RFC 3339.
    pub since: String,
    /// Tables of the spec, bronze then silver then gold, in spec order.
    pub tables: Vec<TableReport>,
    /// Tables the spec names that the catalog does not have yet.
    pub missing_tables: Vec<String>,
    /// Tables of the spec this report does not cover, with why (Delta tables, for now).
    pub unreported_tables: BTreeMap<String, String>,
    pub dead_letters: DeadLetters,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableReport {
    /// As the catalog names it, e.g. `bronze.web_events`.
    pub name: String,
    /// `bronze`, `silver` or `gold`.
    pub layer: String,
    /// Rows in the current snapshot (its summary's `total-records`).
    pub rows: u64,
    pub data_files: u64,
    /// Snapshots the table's metadata holds.
    pub snapshots: u64,
    /// Commit time of the current snapshot, RFC 3339; null before the first commit.
    pub last_commit: Option<String>,
    /// Seconds from `last_commit` to `generated_at`.
    pub freshness_seconds: Option<f64>,
    /// Commits in the period.
    pub commits_in_period: u64,
    /// Rows now minus rows at the start of the period.
    pub rows_added_in_period: i64,
    /// The period cut in equal buckets: rows at the end of each and the commits in it.
    pub rows_over_time: Vec<RowsAt>,
    /// Bronze: what became of the records its commits in the period consumed.
    pub ingest: Option<Ingest>,
    /// Bronze: records in its topics that the table does not hold yet.
    pub kafka_lag: Option<KafkaLag>,
    /// Silver and gold: source commits not read yet.
    pub upstream_lag: Option<UpstreamLag>,
    /// Silver: each expectation over the commits in the period (from `quality.expectations`).
    pub expectations: Vec<ExpectationResult>,
    pub profile: Profile,
    /// Every schema the table has had, oldest first.
    pub schema_versions: Vec<SchemaVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowsAt {
    /// End of the bucket, RFC 3339.
    pub at: String,
    pub rows: u64,
    pub commits: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ingest {
    /// Records the period's commits consumed: `rows + duplicates + dead_letters`.
    pub consumed: u64,
    pub rows: u64,
    /// Records dropped as copies of one seen within the dedupe horizon.
    pub duplicates: u64,
    /// `duplicates / consumed` (0 when nothing was consumed).
    pub dedupe_rate: f64,
    /// Records sent to the dead-letter topic.
    pub dead_letters: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KafkaLag {
    /// Sum over the partitions.
    pub records: u64,
    pub partitions: Vec<PartitionLag>,
    /// Why the lag could not be read (Kafka unreachable); the partitions are then empty.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The next offset the table reads; null if it never read the partition.
    pub table_offset: Option<i64>,
    /// The partition's high watermark.
    pub end_offset: i64,
    pub lag: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamLag {
    pub source: String,
    /// The last source snapshot the table has read; null before its first commit.
    pub read_snapshot: Option<i64>,
    pub source_snapshot: Option<i64>,
    /// Source data commits after `read_snapshot`.
    pub commits_behind: u64,
    /// Rows those commits added.
    pub rows_behind: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpectationResult {
    pub name: String,
    /// `warn`, `drop` or `fail`.
    pub action: String,
    pub passed: u64,
    pub failed: u64,
    /// `passed / (passed + failed)`; null when no row was checked.
    pub pass_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Rows profiled: all of the current snapshot's, or its first rows when `sampled`.
    pub rows: u64,
    pub sampled: bool,
    pub columns: Vec<ColumnProfile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    /// The column's type as polars names it.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nulls: u64,
    /// `nulls / rows` (0 for no rows).
    pub null_rate: f64,
    /// Distinct non-null values.
    pub distinct: u64,
    /// Smallest and largest non-null value: numbers as numbers, timestamps as RFC 3339, text as
    /// text; null for nested and binary columns or when every value is null.
    pub min: serde_json::Value,
    pub max: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// The Iceberg schema id.
    pub schema_id: i64,
    /// Commit time of the first snapshot written with it; null if none was.
    pub first_used: Option<String>,
    /// Columns new in this version (all of them in the first).
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// `name: old type -> new type`.
    pub retyped: Vec<String>,
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetters {
    /// Records in the period per dead-letter topic of the spec.
    pub topics: Vec<DeadLetterTopic>,
    /// The period's records by table, stage and reason code, most first.
    pub reasons: Vec<DeadLetterReason>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetterTopic {
    pub topic: String,
    pub records: u64,
    /// Why the topic could not be read; `records` is then 0.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetterReason {
    /// The table the record was on its way to (`unknown` if its headers do not tell).
    pub table: String,
    /// `bronze`, `silver` or `gold`.
    pub stage: String,
    pub reason: String,
    pub records: u64,
    /// The newest few records.
    pub samples: Vec<DeadLetterSample>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetterSample {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The dead-letter record's timestamp, RFC 3339.
    pub timestamp: Option<String>,
    /// `medallion.error.message`.
    pub message: String,
    /// Where the record came from: `topic[partition]@offset`, or a table and its snapshots.
    pub source: String,
    /// The start of the payload as text (invalid UTF-8 replaced), at most 200 bytes.
    pub payload: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The object keys at every path of `v` (array entries merged).
    fn keys(v: &Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let here = format!("{path}.{k}");
                    out.insert(here.clone());
                    keys(child, &here, out);
                }
            }
            Value::Array(items) => items
                .iter()
                .for_each(|i| keys(i, &format!("{path}[]"), out)),
            _ => {}
        }
    }

    #[test]
    fn documented_shape_is_the_written_shape() {
        let doc = include_str!("../../docs/quality-report.md");
        let example = doc
            .split("```json\n")
            .nth(1)
            .and_then(|rest| rest.split("\n```").next())
            .unwrap_or_default();
        let documented: Value = serde_json::from_str(example).unwrap_or_default();
        let report: QualityReport =
            serde_json::from_value(documented.clone()).expect("the example reads as a report");
        assert_eq!(report.kind, KIND);
        assert_eq!(report.version, VERSION);
        let written = serde_json::to_value(&report).unwrap_or_default();
        let (mut a, mut b) = (Default::default(), Default::default());
        keys(&documented, "", &mut a);
        keys(&written, "", &mut b);
        assert_eq!(a, b);
        assert!(a.len() > 60, "{a:?}");
    }
}
