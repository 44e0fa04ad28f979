//! Expectations: named SQL checks on a silver table's output rows, each warning, dropping or
//! failing; every row is judged by every expectation, so the counts do not depend on order.

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::{and, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};

use super::transform;
use crate::spec::{ExpectationSpec, OnFail};

/// The expectations of one table, compiled into one query.
#[derive(Debug)]
pub(crate) struct Expectations {
    specs: Vec<ExpectationSpec>,
    sql: Option<String>,
}

/// One expectation's result on one batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Count {
    pub name: String,
    pub action: String,
    pub passed: u64,
    pub failed: u64,
}

/// What the expectations made of a batch.
pub(crate) struct Judged {
    /// The rows to write.
    pub kept: RecordBatch,
    /// Rows dropped, each with the first drop expectation it failed.
    pub dropped: Vec<(RecordBatch, String)>,
    pub counts: Vec<Count>,
    /// The first `fail` expectation that failed, with its count and a failing row.
    pub failure: Option<(String, u64, RecordBatch)>,
}

impl Expectations {
    /// Compiles the checks against the output columns; errors are `(key, message)`.
    pub fn new(specs: &[ExpectationSpec], output: &SchemaRef) -> Result<Self, (String, String)> {
        let empty = RecordBatch::new_empty(output.clone());
        for e in specs {
            let sql = format!("SELECT ({}) AS ok FROM {}", e.check, transform::SOURCE);
            let out = transform::run(&sql, &empty)
                .map_err(|m| (format!("expectations.{}", e.name), m))?;
            let kind = out.schema().field(0).data_type().clone();
            if !matches!(kind, DataType::Boolean | DataType::Null) {
                return Err((
                    format!("expectations.{}", e.name),
                    format!("the check is {kind}, not a boolean"),
                ));
            }
        }
        let sql = (!specs.is_empty()).then(|| {
            let checks: Vec<String> = specs
                .iter()
                .enumerate()
                .map(|(i, e)| format!("COALESCE(({}), false) AS \"e{i}\"", e.check))
                .collect();
            format!("SELECT {} FROM {}", checks.join(", "), transform::SOURCE)
        });
        Ok(Self {
            specs: specs.to_vec(),
            sql,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Judges every row by every expectation.
    pub fn judge(&self, batch: RecordBatch) -> Result<Judged, String> {
        let Some(sql) = &self.sql else {
            return Ok(Judged {
                kept: batch,
                dropped: Vec::new(),
                counts: Vec::new(),
                failure: None,
            });
        };
        let verdicts = transform::run(sql, &batch)?;
        let mut counts = Vec::new();
        let mut failure = None;
        let mut keep = BooleanArray::from(vec![true; batch.num_rows()]);
        let mut dropped = Vec::new();
        for (spec, column) in self.specs.iter().zip(verdicts.columns()) {
            let ok = column
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .unwrap_or_else(|| BooleanArray::from(vec![false; batch.num_rows()]));
            let failed = (ok.len() - ok.true_count()) as u64;
            counts.push(Count {
                name: spec.name.clone(),
                action: spec.on_fail.as_str().to_string(),
                passed: ok.true_count() as u64,
                failed,
            });
            if failed == 0 {
                continue;
            }
            let bad = arrow::compute::not(&ok).map_err(|e| e.to_string())?;
            match spec.on_fail {
                OnFail::Warn => {}
                OnFail::Fail => {
                    if failure.is_none() {
                        let rows = filter_record_batch(&batch, &bad).map_err(|e| e.to_string())?;
                        failure = Some((spec.name.clone(), failed, rows.slice(0, 1)));
                    }
                }
                OnFail::Drop => {
                    // Rows still kept that fail this one are dropped on its account.
                    let newly = and(&keep, &bad).map_err(|e| e.to_string())?;
                    if newly.true_count() > 0 {
                        let rows =
                            filter_record_batch(&batch, &newly).map_err(|e| e.to_string())?;
                        dropped.push((rows, spec.name.clone()));
                    }
                    keep = and(&keep, &ok).map_err(|e| e.to_string())?;
                }
            }
        }
        let kept = filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?;
        Ok(Judged {
            kept,
            dropped,
            counts,
            failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn spec(name: &str, check: &str, on_fail: OnFail) -> ExpectationSpec {
        ExpectationSpec {
            name: name.into(),
            check: check.into(),
            on_fail,
        }
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8, true),
                Field::new("amount", DataType::Float64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
                Arc::new(Float64Array::from(vec![
                    Some(5.0),
                    Some(-1.0),
                    None,
                    Some(500.0),
                ])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn counts_every_expectation_on_every_row_and_drops_once() {
        let e = Expectations::new(
            &[
                spec("positive", "amount > 0", OnFail::Drop),
                spec("small", "amount < 100", OnFail::Drop),
                spec("has_amount", "amount IS NOT NULL", OnFail::Warn),
            ],
            &batch().schema(),
        )
        .unwrap();
        let j = e.judge(batch()).unwrap();
        let counts: Vec<(&str, u64, u64)> = j
            .counts
            .iter()
            .map(|c| (c.name.as_str(), c.passed, c.failed))
            .collect();
        // null fails a check: `amount > 0` is null for c.
        assert_eq!(
            counts,
            [("positive", 2, 2), ("small", 2, 2), ("has_amount", 3, 1)]
        );
        let ids = |b: &RecordBatch| -> Vec<String> {
            let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            a.iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(ids(&j.kept), ["a"]);
        let dropped: Vec<(Vec<String>, &str)> = j
            .dropped
            .iter()
            .map(|(b, n)| (ids(b), n.as_str()))
            .collect();
        assert_eq!(
            dropped,
            [
                (vec!["b".to_string(), "c".to_string()], "positive"),
                (vec!["d".to_string()], "small")
            ]
        );
        assert!(j.failure.is_none());
        assert_eq!(
            crate::dlq::rows_as_json(&j.dropped[0].0).unwrap()[0],
            br#"{"id":"b","amount":-1.0}"#
        );
    }

    #[test]
    fn a_failing_fail_expectation_reports_a_row() {
        let e = Expectations::new(
            &[spec("positive", "amount > 0", OnFail::Fail)],
            &batch().schema(),
        )
        .unwrap();
        let (name, failed, row) = e.judge(batch()).unwrap().failure.unwrap();
        assert_eq!((name.as_str(), failed, row.num_rows()), ("positive", 2, 1));
    }

    #[test]
    fn checks_must_compile_and_be_boolean() {
        let (key, _) = Expectations::new(&[spec("x", "amount >", OnFail::Warn)], &batch().schema())
            .unwrap_err();
        assert_eq!(key, "expectations.x");
        let (key, message) =
            Expectations::new(&[spec("y", "amount + 1", OnFail::Warn)], &batch().schema())
                .unwrap_err();
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("expectations.y", "the check is Float64, not a boolean")
        );
    }
}
