//! Aggregates of gold windows, as mergeable accumulators: a sliding window is the merge of its
//! panes' partials, and merging sessions merges theirs.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// A group-key value or an aggregate's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Value {
    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::Float(v) => Some(*v),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Text(_) => 3,
        }
    }
}

// Floats compare by total order (so NaN is a value like any other) and equal ints and floats
// are the same value, as in SQL.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            (a, b) if a.rank() == 2 && b.rank() == 2 => {
                let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Value::Null => 0u8.hash(state),
            Value::Bool(b) => b.hash(state),
            // Equal ints and floats must hash alike.
            Value::Int(v) => (*v as f64).to_bits().hash(state),
            Value::Float(v) => v.to_bits().hash(state),
            Value::Text(s) => s.hash(state),
        }
    }
}

/// What an aggregate computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Function {
    /// Rows, or non-null values of the column if one is named.
    Count,
    /// Exact distinct non-null values.
    CountDistinct,
    /// HyperLogLog with 2^14 registers: standard error 1.04/√16384 ≈ 0.81 %.
    ApproxCountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    /// DDSketch with relative accuracy 1 %: the value returned is within 1 % of the true
    /// quantile's value.
    ApproxPercentile(f64),
}

/// The relative accuracy of [`Function::ApproxPercentile`].
pub const PERCENTILE_ACCURACY: f64 = 0.01;
const HLL_BITS: u32 = 14;

/// The partial result of one aggregate over some rows.
#[derive(Debug, Clone)]
pub enum Accumulator {
    Count(i64),
    Distinct(HashSet<Value>),
    Hll(Box<[u8]>),
    /// Integers are summed exactly; a float input turns the sum into a float.
    SumInt(Option<i128>),
    SumFloat(Option<f64>),
    Avg {
        sum: f64,
        count: i64,
    },
    Min(Option<Value>),
    Max(Option<Value>),
    Sketch(Sketch),
}

impl Accumulator {
    pub fn new(function: Function) -> Self {
        match function {
            Function::Count => Accumulator::Count(0),
            Function::CountDistinct => Accumulator::Distinct(HashSet::new()),
            Function::ApproxCountDistinct => {
                Accumulator::Hll(vec![0u8; 1 << HLL_BITS].into_boxed_slice())
            }
            Function::Sum => Accumulator::SumInt(None),
            Function::Avg => Accumulator::Avg { sum: 0.0, count: 0 },
            Function::Min => Accumulator::Min(None),
            Function::Max => Accumulator::Max(None),
            Function::ApproxPercentile(_) => Accumulator::Sketch(Sketch::default()),
        }
    }

    /// Adds one row's input (`Value::Null` for a row without one; `count` of rows gets
    /// `Value::Bool(true)`).
    pub fn update(&mut self, value: &Value) {
        if matches!(value, Value::Null) {
            return;
        }
        match self {
            Accumulator::Count(n) => *n += 1,
            Accumulator::Distinct(set) => {
                if !set.contains(value) {
                    set.insert(value.clone());
                }
            }
            Accumulator::Hll(registers) => hll_add(registers, value),
            Accumulator::SumInt(sum) => match value {
                Value::Int(v) => *sum = Some(sum.unwrap_or(0) + i128::from(*v)),
                other => {
                    let so_far = sum.map(|s| s as f64);
                    *self = Accumulator::SumFloat(so_far);
                    self.update(other);
                }
            },
            Accumulator::SumFloat(sum) => {
                if let Some(v) = value.as_f64() {
                    *sum = Some(sum.unwrap_or(0.0) + v);
                }
            }
            Accumulator::Avg { sum, count } => {
                if let Some(v) = value.as_f64() {
                    *sum += v;
                    *count += 1;
                }
            }
            Accumulator::Min(m) => {
                if m.as_ref().is_none_or(|m| value < m) {
                    *m = Some(value.clone());
                }
            }
            Accumulator::Max(m) => {
                if m.as_ref().is_none_or(|m| value > m) {
                    *m = Some(value.clone());
                }
            }
            Accumulator::Sketch(s) => {
                if let Some(v) = value.as_f64() {
                    s.add(v);
                }
            }
        }
    }

    /// Folds `other` (an accumulator of the same function) into this one.
    pub fn merge(&mut self, other: &Accumulator) {
        match (&mut *self, other) {
            (Accumulator::Count(a), Accumulator::Count(b)) => *a += b,
            (Accumulator::Distinct(a), Accumulator::Distinct(b)) => {
                a.extend(b.iter().cloned());
            }
            (Accumulator::Hll(a), Accumulator::Hll(b)) => {
                for (x, y) in a.iter_mut().zip(b.iter()) {
                    *x = (*x).max(*y);
                }
            }
            (Accumulator::SumInt(a), Accumulator::SumInt(Some(b))) => {
                *a = Some(a.unwrap_or(0) + b);
            }
            (Accumulator::SumFloat(a), Accumulator::SumFloat(Some(b))) => {
                *a = Some(a.unwrap_or(0.0) + b);
            }
            (Accumulator::SumInt(a), Accumulator::SumFloat(b)) => {
                let a = a.map(|a| a as f64);
                *self = Accumulator::SumFloat(match (a, b) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
                });
            }
            (Accumulator::SumFloat(a), Accumulator::SumInt(Some(b))) => {
                *a = Some(a.unwrap_or(0.0) + *b as f64);
            }
            (Accumulator::Avg { sum, count }, Accumulator::Avg { sum: s, count: c }) => {
                *sum += s;
                *count += c;
            }
            (Accumulator::Min(_), Accumulator::Min(Some(b)))
            | (Accumulator::Max(_), Accumulator::Max(Some(b))) => self.update(b),
            (Accumulator::Sketch(a), Accumulator::Sketch(b)) => a.merge(b),
            _ => {}
        }
    }

    /// The aggregate's value; `function` gives the quantile of a percentile.
    pub fn result(&self, function: Function) -> Value {
        match self {
            Accumulator::Count(n) => Value::Int(*n),
            Accumulator::Distinct(set) => Value::Int(set.len() as i64),
            Accumulator::Hll(registers) => Value::Int(hll_estimate(registers)),
            Accumulator::SumInt(None) | Accumulator::SumFloat(None) => Value::Null,
            Accumulator::SumInt(Some(s)) => match i64::try_from(*s) {
                Ok(v) => Value::Int(v),
                Err(_) => Value::Float(*s as f64),
            },
            Accumulator::SumFloat(Some(s)) => Value::Float(*s),
            Accumulator::Avg { count: 0, .. } => Value::Null,
            Accumulator::Avg { sum, count } => Value::Float(sum / *count as f64),
            Accumulator::Min(v) | Accumulator::Max(v) => v.clone().unwrap_or(Value::Null),
            Accumulator::Sketch(s) => match function {
                Function::ApproxPercentile(q) => s.quantile(q).map_or(Value::Null, Value::Float),
                _ => Value::Null,
            },
        }
    }

    /// Approximate heap bytes held, for the state-size metric.
    pub fn bytes(&self) -> usize {
        match self {
            Accumulator::Distinct(set) => set.len() * 48,
            Accumulator::Hll(r) => r.len(),
            Accumulator::Sketch(s) => s.bins.len() * 24,
            _ => 0,
        }
    }
}

/// A stable 64-bit hash (FNV-1a then a splitmix finaliser): HyperLogLog registers must come
/// out the same in every process that rebuilds them.
fn stable_hash(value: &Value) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match value {
        Value::Null => eat(&[0]),
        Value::Bool(b) => eat(&[1, u8::from(*b)]),
        Value::Int(v) => eat(&(*v as f64).to_bits().to_le_bytes()),
        Value::Float(v) => eat(&v.to_bits().to_le_bytes()),
        Value::Text(s) => eat(s.as_bytes()),
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hll_add(registers: &mut [u8], value: &Value) {
    let h = stable_hash(value);
    let index = (h >> (64 - HLL_BITS)) as usize;
    let rest = h << HLL_BITS;
    let rank = (rest.leading_zeros() + 1).min(64 - HLL_BITS + 1) as u8;
    if registers[index] < rank {
        registers[index] = rank;
    }
}

fn hll_estimate(registers: &[u8]) -> i64 {
    let m = registers.len() as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = registers.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
    let raw = alpha * m * m / sum;
    let zeros = registers.iter().filter(|r| **r == 0).count();
    // Small ranges: linear counting is exact-ish where the raw estimate is biased.
    let estimate = if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    estimate.round() as i64
}

/// DDSketch: values in logarithmic bins of ratio γ = (1+α)/(1−α), so any value returned for a
/// quantile is within α of the true one relative to it.
#[derive(Debug, Clone, Default)]
pub struct Sketch {
    /// Bin index (negative values mirrored below zero's bin) → count.
    bins: BTreeMap<i32, u64>,
    zeros: u64,
    count: u64,
}

impl Sketch {
    fn gamma() -> f64 {
        (1.0 + PERCENTILE_ACCURACY) / (1.0 - PERCENTILE_ACCURACY)
    }

    fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.count += 1;
        if v.abs() < 1e-12 {
            self.zeros += 1;
            return;
        }
        let index = v.abs().ln() / Self::gamma().ln();
        let index = index.ceil() as i32;
        // Negative values sort below zero, the largest magnitude first.
        let key = if v > 0.0 { index } else { -index - 1_000_000 };
        *self.bins.entry(key).or_default() += 1;
    }

    fn merge(&mut self, other: &Sketch) {
        for (k, n) in &other.bins {
            *self.bins.entry(*k).or_default() += n;
        }
        self.zeros += other.zeros;
        self.count += other.count;
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        let gamma = Self::gamma();
        let value = |key: i32| {
            let (index, sign) = match key < -500_000 {
                true => (-(key + 1_000_000), -1.0),
                false => (key, 1.0),
            };
            sign * 2.0 * gamma.powi(index) / (gamma + 1.0)
        };
        let mut seen = 0;
        let negatives = self.bins.range(..-500_000).rev();
        for (key, n) in negatives.map(|(k, n)| (*k, *n)) {
            seen += n;
            if seen > rank {
                return Some(value(key));
            }
        }
        seen += self.zeros;
        if seen > rank {
            return Some(0.0);
        }
        for (key, n) in self.bins.range(-500_000..) {
            seen += n;
            if seen > rank {
                return Some(value(*key));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(function: Function, values: &[Value]) -> Value {
        let mut a = Accumulator::new(function);
        for v in values {
            a.update(v);
        }
        a.result(function)
    }

    #[test]
    fn exact_aggregates() {
        let vals = [Value::Int(3), Value::Null, Value::Int(5), Value::Int(3)];
        assert_eq!(run(Function::Count, &vals), Value::Int(3));
        assert_eq!(run(Function::CountDistinct, &vals), Value::Int(2));
        assert_eq!(run(Function::Sum, &vals), Value::Int(11));
        assert_eq!(run(Function::Avg, &vals), Value::Float(11.0 / 3.0));
        assert_eq!(run(Function::Min, &vals), Value::Int(3));
        assert_eq!(run(Function::Max, &vals), Value::Int(5));
        assert_eq!(run(Function::Sum, &[Value::Null]), Value::Null);
        assert_eq!(
            run(Function::Sum, &[Value::Int(1), Value::Float(0.5)]),
            Value::Float(1.5)
        );
    }

    #[test]
    fn merging_partials_equals_one_pass() {
        let values: Vec<Value> = (0..1000).map(|i| Value::Int(i % 37)).collect();
        for f in [
            Function::Count,
            Function::CountDistinct,
            Function::ApproxCountDistinct,
            Function::Sum,
            Function::Min,
            Function::Max,
            Function::ApproxPercentile(0.9),
        ] {
            let mut parts = [Accumulator::new(f), Accumulator::new(f)];
            for (i, v) in values.iter().enumerate() {
                parts[i % 2].update(v);
            }
            let [mut a, b] = parts;
            a.merge(&b);
            assert_eq!(a.result(f), run(f, &values), "{f:?}");
        }
    }

    #[test]
    fn approximations_stay_within_their_stated_error() {
        let values: Vec<Value> = (0..100_000)
            .map(|i| Value::Text(format!("user-{i}")))
            .collect();
        let Value::Int(estimate) = run(Function::ApproxCountDistinct, &values) else {
            panic!("not an int");
        };
        // 4 standard errors (0.81 % each).
        assert!((estimate - 100_000).abs() < 3_300, "{estimate}");
        let small: Vec<Value> = (0..100).map(Value::Int).collect();
        assert_eq!(run(Function::ApproxCountDistinct, &small), Value::Int(100));

        let values: Vec<Value> = (1..=10_000).map(|i| Value::Float(f64::from(i))).collect();
        for q in [0.5, 0.9, 0.99] {
            let Value::Float(got) = run(Function::ApproxPercentile(q), &values) else {
                panic!("not a float");
            };
            let exact = (q * 9_999.0).floor() + 1.0;
            assert!(
                (got - exact).abs() <= exact * PERCENTILE_ACCURACY,
                "q {q}: {got} vs {exact}"
            );
        }
        let signed = [Value::Int(-10), Value::Int(0), Value::Int(10)];
        let Value::Float(low) = run(Function::ApproxPercentile(0.0), &signed) else {
            panic!("not a float");
        };
        assert!((low + 10.0).abs() <= 0.1, "{low}");
    }
}
