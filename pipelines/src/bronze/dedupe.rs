//! Duplicate removal on a key within an event-time horizon.
//!
//! Keys seen in the open batch are kept apart from committed ones, so a batch that is thrown
//! away (revoked partitions, a lost fence) takes its keys with it and a replay of the same
//! records decides exactly as before.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Int32Type, Int64Type, TimestampMicrosecondType};

use super::decode::Cell;

/// 128-bit digest of a key: two independent 64-bit hashes (collisions are negligible).
type KeyDigest = u128;

pub(crate) struct Deduplicator {
    fields: Vec<usize>,
    horizon_micros: i64,
    max_keys: usize,
    committed: HashMap<KeyDigest, i64>,
    pending: HashMap<KeyDigest, i64>,
    by_time: BinaryHeap<Reverse<(i64, KeyDigest)>>,
    max_event_micros: i64,
    /// Keys forgotten because `max_keys` was reached before the horizon passed.
    pub evicted_early: u64,
}

/// The parts of a key value that identify it, the same whether it comes from a decoded cell or
/// from a column read back from the table.
#[derive(Hash)]
enum KeyPart<'a> {
    Null,
    Int(i64),
    Text(&'a [u8]),
}

fn digest(parts: &[KeyPart<'_>]) -> KeyDigest {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0xa5u8.hash(&mut b);
    parts.hash(&mut a);
    parts.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

impl Deduplicator {
    pub fn new(fields: Vec<usize>, horizon_micros: i64, max_keys: usize) -> Self {
        Self {
            fields,
            horizon_micros,
            max_keys,
            committed: HashMap::new(),
            pending: HashMap::new(),
            by_time: BinaryHeap::new(),
            max_event_micros: i64::MIN,
            evicted_early: 0,
        }
    }

    /// Remembered keys (committed and pending).
    pub fn len(&self) -> usize {
        self.committed.len() + self.pending.len()
    }

    /// Approximate memory held by the key state.
    pub fn approx_bytes(&self) -> usize {
        // Hash map slot (digest + time + control byte) plus the eviction heap entry.
        self.len() * (16 + 8 + 1 + 24)
    }

    /// True when the row's key was already seen within the horizon; otherwise remembers it.
    pub fn is_duplicate(&mut self, cells: &[Cell<'_>], event_micros: i64) -> bool {
        let parts: Vec<KeyPart<'_>> = self
            .fields
            .iter()
            .map(|&i| match &cells[i] {
                Cell::Null => KeyPart::Null,
                Cell::Bool(b) => KeyPart::Int(i64::from(*b)),
                Cell::Long(v) | Cell::Micros(v) => KeyPart::Int(*v),
                Cell::Days(d) => KeyPart::Int(i64::from(*d)),
                Cell::Double(f) => KeyPart::Int(f.to_bits() as i64),
                Cell::Str(s) => KeyPart::Text(s.as_bytes()),
                Cell::Bytes(b) => KeyPart::Text(b),
            })
            .collect();
        let key = digest(&parts);
        if self.committed.contains_key(&key) || self.pending.contains_key(&key) {
            return true;
        }
        self.pending.insert(key, event_micros);
        self.max_event_micros = self.max_event_micros.max(event_micros);
        false
    }

    /// The batch's keys become permanent; keys past the horizon are forgotten.
    pub fn commit(&mut self) {
        for (k, t) in self.pending.drain() {
            self.committed.insert(k, t);
            self.by_time.push(Reverse((t, k)));
        }
        self.evict();
    }

    /// Forgets the keys of a batch that was not committed.
    pub fn discard(&mut self) {
        self.pending.clear();
        self.max_event_micros = self
            .by_time
            .iter()
            .map(|r| r.0 .0)
            .max()
            .unwrap_or(i64::MIN);
    }

    fn evict(&mut self) {
        let cutoff = self.max_event_micros.saturating_sub(self.horizon_micros);
        while let Some(Reverse((t, k))) = self.by_time.peek().copied() {
            let over = self.committed.len() > self.max_keys;
            if t >= cutoff && !over {
                break;
            }
            if t >= cutoff {
                self.evicted_early += 1;
            }
            self.by_time.pop();
            self.committed.remove(&k);
        }
    }

    /// Remembers the keys of rows read back from the table: `batch` holds the key columns in
    /// key order, then the event time.
    pub fn load_committed(&mut self, batch: &RecordBatch) {
        let n = self.fields.len();
        let time = batch.column(n).as_primitive::<TimestampMicrosecondType>();
        for row in 0..batch.num_rows() {
            let parts: Vec<KeyPart<'_>> = (0..n).map(|c| key_part(batch.column(c), row)).collect();
            let t = time.value(row);
            let key = digest(&parts);
            if self.committed.insert(key, t).is_none() {
                self.by_time.push(Reverse((t, key)));
            }
            self.max_event_micros = self.max_event_micros.max(t);
        }
        self.evict();
    }
}

fn key_part(array: &dyn Array, row: usize) -> KeyPart<'_> {
    if array.is_null(row) {
        return KeyPart::Null;
    }
    match array.data_type() {
        DataType::Utf8 => KeyPart::Text(array.as_string::<i32>().value(row).as_bytes()),
        DataType::Binary => KeyPart::Text(array.as_binary::<i32>().value(row)),
        DataType::Int32 => KeyPart::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => KeyPart::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Date32 => KeyPart::Int(array.as_primitive::<Date32Type>().value(row).into()),
        DataType::Timestamp(_, _) => {
            KeyPart::Int(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Boolean => KeyPart::Int(i64::from(array.as_boolean().value(row))),
        DataType::Float64 => KeyPart::Int(
            array
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(row)
                .to_bits() as i64,
        ),
        DataType::Float32 => KeyPart::Int(
            f64::from(
                array
                    .as_primitive::<arrow::datatypes::Float32Type>()
                    .value(row),
            )
            .to_bits() as i64,
        ),
        _ => KeyPart::Null,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn row(id: &str) -> Vec<Cell<'static>> {
        vec![Cell::Str(Cow::Owned(id.to_string()))]
    }

    #[test]
    fn pending_keys_go_with_a_discarded_batch() {
        let mut d = Deduplicator::new(vec![0], 1_000, 100);
        assert!(!d.is_duplicate(&row("a"), 10));
        assert!(d.is_duplicate(&row("a"), 11));
        d.discard();
        assert!(!d.is_duplicate(&row("a"), 10));
        d.commit();
        assert!(d.is_duplicate(&row("a"), 12));
    }

    #[test]
    fn forgets_keys_past_the_horizon_and_over_the_cap() {
        let mut d = Deduplicator::new(vec![0], 1_000, 2);
        assert!(!d.is_duplicate(&row("old"), 0));
        d.commit();
        assert!(!d.is_duplicate(&row("new"), 5_000));
        d.commit();
        assert!(!d.is_duplicate(&row("old"), 5_001), "past the horizon");
        assert!(!d.is_duplicate(&row("x"), 5_002));
        assert!(!d.is_duplicate(&row("y"), 5_003));
        d.commit();
        assert_eq!(d.len(), 2);
        assert!(d.evicted_early >= 1);
    }

    #[test]
    fn keys_read_back_match_decoded_keys() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("t", schemas::FieldKind::Timestamp.arrow_type(), false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(TimestampMicrosecondArray::from(vec![1, 2]).with_timezone("+00:00")),
            ],
        )
        .unwrap();
        let mut d = Deduplicator::new(vec![0], 1_000, 100);
        d.load_committed(&batch);
        assert!(d.is_duplicate(&row("b"), 3));
        assert!(!d.is_duplicate(&row("c"), 3));
    }
}
