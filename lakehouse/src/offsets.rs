use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Snapshot summary key holding the next Kafka offset of every partition the table has consumed.
pub const KAFKA_OFFSETS_PROPERTY: &str = "medallion.kafka.offsets";

/// The next offset to consume per topic and partition, as stored in a table commit.
///
/// Every commit stores the whole map (not only the partitions it touched), so the current
/// snapshot alone says where every partition resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffsets(BTreeMap<String, BTreeMap<i32, i64>>);

impl SourceOffsets {
    /// The next offset of `topic`/`partition`, if the table has consumed it before.
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0.get(topic).and_then(|p| p.get(&partition)).copied()
    }

    pub fn set(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.0
            .entry(topic.to_string())
            .or_default()
            .insert(partition, next_offset);
    }

    pub(crate) fn to_property(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    pub(crate) fn from_property(value: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(value).map(Self)
    }
}

/// The compare-and-set condition of a bronze commit: for each partition in the batch, the
/// offset the table must still hold (where the batch started) and the offset it moves to.
#[derive(Debug, Clone, Default)]
pub struct OffsetFence {
    moves: Vec<OffsetMove>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OffsetMove {
    topic: String,
    partition: i32,
    /// `None` when the table has never seen the partition.
    from: Option<i64>,
    to: i64,
}

/// Why a fenced commit was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceViolation {
    pub topic: String,
    pub partition: i32,
    pub expected: Option<i64>,
    pub found: Option<i64>,
}

impl std::fmt::Display for FenceViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[{}]: batch starts at {:?} but the table holds {:?}",
            self.topic, self.partition, self.expected, self.found
        )
    }
}

impl OffsetFence {
    /// Records that the batch covers `topic`/`partition` from `from` (the offset the table held
    /// when the batch started) up to `to` (the next offset to consume after it).
    pub fn cover(&mut self, topic: &str, partition: i32, from: Option<i64>, to: i64) {
        self.moves.push(OffsetMove {
            topic: topic.to_string(),
            partition,
            from,
            to,
        });
    }

    /// The partitions the batch covers.
    pub fn partitions(&self) -> Vec<(String, i32)> {
        self.moves
            .iter()
            .map(|m| (m.topic.clone(), m.partition))
            .collect()
    }

    /// Checks the fence against the offsets the table holds now and returns the offsets to
    /// store with the commit: the current ones with this batch's partitions moved forward.
    pub fn apply(&self, current: &SourceOffsets) -> Result<SourceOffsets, FenceViolation> {
        let mut next = current.clone();
        for m in &self.moves {
            let found = current.get(&m.topic, m.partition);
            if found != m.from {
                return Err(FenceViolation {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    expected: m.from,
                    found,
                });
            }
            next.set(&m.topic, m.partition, m.to);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_moves_only_its_partitions() {
        let mut current = SourceOffsets::default();
        current.set("t", 0, 10);
        current.set("t", 1, 20);
        let mut fence = OffsetFence::default();
        fence.cover("t", 1, Some(20), 25);
        fence.cover("t", 2, None, 3);
        let next = fence.apply(&current).unwrap();
        assert_eq!(next.get("t", 0), Some(10));
        assert_eq!(next.get("t", 1), Some(25));
        assert_eq!(next.get("t", 2), Some(3));
    }

    #[test]
    fn fence_refuses_a_moved_partition() {
        let mut current = SourceOffsets::default();
        current.set("t", 0, 12);
        let mut fence = OffsetFence::default();
        fence.cover("t", 0, Some(10), 15);
        let err = fence.apply(&current).unwrap_err();
        assert_eq!(err.expected, Some(10));
        assert_eq!(err.found, Some(12));
        let mut fresh = OffsetFence::default();
        fresh.cover("t", 0, None, 5);
        assert!(fresh.apply(&current).is_err());
    }

    #[test]
    fn property_round_trip() {
        let mut o = SourceOffsets::default();
        o.set("a.b", 3, 99);
        let back = SourceOffsets::from_property(&o.to_property()).unwrap();
        assert_eq!(back, o);
    }
}
