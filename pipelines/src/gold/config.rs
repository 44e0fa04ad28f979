//! A gold table's settings, checked against its source's columns at start.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::aggregate::Function;
use super::alerts::Alerts;
use super::window::{Emit, WindowKind, WindowSettings};
use crate::error::{Error, Result};
use crate::silver::transform::{quoted, Transform};
use crate::spec::{ColumnSpec, EmitSpec, GoldSpec, SilverSpec};

/// Names of the input columns the projection makes.
pub(crate) const EVENT_TIME: &str = "__event_time";
pub(crate) const PARTITION: &str = "__partition";

fn key_column(i: usize) -> String {
    format!("__key_{i}")
}

fn input_column(i: usize) -> String {
    format!("__input_{i}")
}

/// A gold table's settings, checked against its source's columns.
#[derive(Debug)]
pub struct GoldConfig {
    pub spec: GoldSpec,
    /// Source rows → event time, partition, group keys and aggregate inputs.
    pub(crate) projection: Transform,
    pub(crate) settings: WindowSettings,
    /// The gold table's columns: window_start, window_end, the group keys, the aggregates.
    output: SchemaRef,
}

impl GoldConfig {
    /// Compiles the spec against the source's columns; a bad setting or expression is refused
    /// naming the file, the table, the key and the reason.
    pub fn new(spec: &GoldSpec, source: &SchemaRef, origin: &str, index: usize) -> Result<Self> {
        let refused = |key: &str, message: String| {
            Error::Spec(format!(
                "{origin}: gold[{index}].{key} (table {}): {message}",
                spec.table
            ))
        };
        let kind = window_kind(spec).map_err(|m| refused("window", m))?;
        let functions = spec
            .aggregates
            .iter()
            .map(|a| {
                function(&a.function, a.q)
                    .map_err(|m| refused(&format!("aggregates.{}", a.name), m))
            })
            .collect::<Result<Vec<_>>>()?;
        for (a, f) in spec.aggregates.iter().zip(&functions) {
            if a.expr.is_none() && *f != Function::Count {
                return Err(refused(
                    &format!("aggregates.{}", a.name),
                    format!("{} needs `expr`, the value it aggregates", a.function),
                ));
            }
        }

        if spec.watermark.partitions.is_some() && spec.watermark.partition_column.is_none() {
            return Err(refused(
                "watermark.partitions",
                "needs watermark.partition_column, the column the partition comes in".into(),
            ));
        }
        let mut columns = vec![column(EVENT_TIME, &quoted(&spec.event_time))];
        if let Some(p) = &spec.watermark.partition_column {
            columns.push(column(PARTITION, &format!("CAST({} AS BIGINT)", quoted(p))));
        }
        for (i, k) in spec.group_by.iter().enumerate() {
            columns.push(column(&key_column(i), &quoted(k)));
        }
        for (i, a) in spec.aggregates.iter().enumerate() {
            columns.push(column(
                &input_column(i),
                a.expr.as_deref().unwrap_or("TRUE"),
            ));
        }
        let projection = Transform::new(
            &SilverSpec {
                table: spec.table.clone(),
                source: spec.source.clone(),
                filter: None,
                columns,
                expectations: Vec::new(),
                dlq_topic: None,
                partition_by_day: None,
                poll: spec.poll,
                batch_snapshots: spec.batch_snapshots,
                table_format: Default::default(),
            },
            source,
        )
        .map_err(|(key, message)| {
            let key = spec_key(spec, &key);
            refused(&key, message)
        })?;
        let projected = projection.output().clone();
        let time_type = projected.field(0).data_type();
        if !matches!(time_type, DataType::Timestamp(_, _)) {
            return Err(refused(
                "event_time",
                format!("{} is {time_type}, not a timestamp", spec.event_time),
            ));
        }
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some(schemas::UTC.into()));
        let mut fields = vec![
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
        ];
        for (i, k) in spec.group_by.iter().enumerate() {
            let t = type_of(&projected, &key_column(i));
            if !supported(&t) {
                return Err(refused(
                    "group_by",
                    format!("{k} is {t}, which cannot be a group key"),
                ));
            }
            fields.push(Field::new(k, t, true));
        }
        for (i, (a, f)) in spec.aggregates.iter().zip(&functions).enumerate() {
            let input = type_of(&projected, &input_column(i));
            let out = match f {
                Function::Count | Function::CountDistinct | Function::ApproxCountDistinct => {
                    Some(DataType::Int64)
                }
                Function::Sum if input.is_integer() => Some(DataType::Int64),
                Function::Sum | Function::Avg | Function::ApproxPercentile(_) => {
                    input.is_numeric().then_some(DataType::Float64)
                }
                Function::Min | Function::Max => supported(&input).then_some(input.clone()),
            };
            let Some(out) = out else {
                return Err(refused(
                    &format!("aggregates.{}", a.name),
                    format!("{} cannot aggregate values of type {input}", a.function),
                ));
            };
            fields.push(Field::new(&a.name, out, true));
        }
        if spec.top.is_some() {
            fields.push(Field::new("rank", DataType::Int64, false));
        }
        let output = Arc::new(Schema::new(fields));
        Alerts::check(&spec.alerts, &output)
            .map_err(|(alert, message)| refused(&format!("alerts.{alert}"), message))?;
        let settings = WindowSettings {
            kind,
            max_out_of_orderness: micros(spec.watermark.max_out_of_orderness),
            idle_timeout_ms: spec.watermark.idle_timeout.map(|d| d.as_millis() as i64),
            partitions: spec.watermark.partitions,
            allowed_lateness: micros(spec.allowed_lateness),
            emit: match spec.emit {
                EmitSpec::Final => Emit::Final,
                EmitSpec::Update => Emit::Update,
            },
            functions,
        };
        Ok(Self {
            spec: spec.clone(),
            projection,
            settings,
            output,
        })
    }

    /// The gold table's columns.
    pub fn output(&self) -> &SchemaRef {
        &self.output
    }
}

fn column(name: &str, expr: &str) -> ColumnSpec {
    ColumnSpec {
        name: name.to_string(),
        expr: expr.to_string(),
        pii: None,
    }
}

/// The spec key behind a projection column the projection refused.
fn spec_key(spec: &GoldSpec, key: &str) -> String {
    let column = key.strip_prefix("columns.").unwrap_or(key);
    if column == EVENT_TIME {
        return "event_time".into();
    }
    if column == PARTITION {
        return "watermark.partition_column".into();
    }
    if let Some(i) = column
        .strip_prefix("__key_")
        .and_then(|i| i.parse::<usize>().ok())
    {
        return format!(
            "group_by.{}",
            spec.group_by.get(i).map_or("", |s| s.as_str())
        );
    }
    if let Some(i) = column
        .strip_prefix("__input_")
        .and_then(|i| i.parse::<usize>().ok())
    {
        return format!(
            "aggregates.{}",
            spec.aggregates.get(i).map_or("", |a| a.name.as_str())
        );
    }
    key.to_string()
}

fn type_of(schema: &Schema, column: &str) -> DataType {
    schema
        .field_with_name(column)
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Null)
}

/// Types a group key or a min/max can have.
fn supported(t: &DataType) -> bool {
    t.is_integer()
        || t.is_floating()
        || matches!(
            t,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Boolean
                | DataType::Date32
                | DataType::Timestamp(_, _)
        )
}

fn micros(d: std::time::Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

fn window_kind(spec: &GoldSpec) -> std::result::Result<WindowKind, String> {
    let w = &spec.window;
    let positive = |d: std::time::Duration, what: &str| match micros(d) {
        0 => Err(format!("{what} must be longer than zero")),
        m => Ok(m),
    };
    match (w.tumbling, w.sliding, w.slide, w.session) {
        (Some(size), None, None, None) => Ok(WindowKind::Tumbling {
            size: positive(size, "tumbling")?,
        }),
        (None, Some(size), Some(slide), None) => {
            let (size, slide) = (positive(size, "sliding")?, positive(slide, "slide")?);
            if size % slide != 0 {
                return Err("sliding windows are built from slide-sized panes: the size must be a multiple of the slide".to_string());
            }
            Ok(WindowKind::Sliding { size, slide })
        }
        (None, None, None, Some(gap)) => Ok(WindowKind::Session {
            gap: positive(gap, "session")?,
        }),
        _ => Err(
            "expected one of { tumbling = \"1m\" }, { sliding = \"5m\", slide = \"1m\" } or { session = \"30m\" }"
                .to_string(),
        ),
    }
}

fn function(name: &str, q: Option<f64>) -> std::result::Result<Function, String> {
    let f = match name {
        "count" => Function::Count,
        "count_distinct" => Function::CountDistinct,
        "approx_count_distinct" => Function::ApproxCountDistinct,
        "sum" => Function::Sum,
        "avg" => Function::Avg,
        "min" => Function::Min,
        "max" => Function::Max,
        "approx_percentile" => match q {
            Some(q) if (0.0..=1.0).contains(&q) => Function::ApproxPercentile(q),
            _ => return Err("approx_percentile needs `q`, a quantile in [0, 1]".into()),
        },
        other => {
            return Err(format!(
                "unknown function {other:?}: expected count, count_distinct, approx_count_distinct, sum, avg, min, max or approx_percentile"
            ))
        }
    };
    if q.is_some() && !matches!(f, Function::ApproxPercentile(_)) {
        return Err("`q` belongs to approx_percentile only".into());
    }
    Ok(f)
}
