//! The gold stage: event-time windowed aggregates of a source table (usually silver), per
//! group, into `gold.<table>`.
//!
//! Each commit records the last source snapshot it consumed and a checkpoint: the first source
//! snapshot whose records are still in open windows and the watermark clock as it stood before
//! it. A restart replays the source from there (the operator decides per snapshot, so the
//! replay rebuilds exactly the open windows, writing nothing) and goes on: no state store.

pub mod aggregate;
mod alerts;
mod backfill;
mod config;
mod rows;
pub mod window;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::{filter_record_batch, take};
use lakehouse::{Catalog, DataFiles, Table, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::bronze::{KafkaConnection, RunOptions};
use crate::dlq::{rows_as_json, DeadLetter};
use crate::error::{Error, Result};
use crate::follow::{open_source, wait};
use crate::progress::{self, Unit};
use aggregate::Value;
use alerts::Alerts;
pub use alerts::ALERTS_TABLE;
pub use backfill::{backfill, GoldBackfillReport};
pub use config::GoldConfig;
use window::{Change, Clock, Emit, WindowKind, WindowOperator, WindowRow};

/// Snapshot property of a gold commit: the last source snapshot it consumed.
pub const CURSOR_PROPERTY: &str = "medallion.gold.source-snapshot";
/// Snapshot property of a gold commit: its [`Checkpoint`] (JSON).
pub const STATE_PROPERTY: &str = "medallion.gold.state";

/// Where a restart replays from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    /// The first source snapshot with records in open windows (none: no open windows).
    replay_from: Option<i64>,
    /// The clock before `replay_from` (or after the cursor, without one).
    clock: Clock,
    /// The watermark after the cursor, microseconds.
    watermark: Option<i64>,
}

/// The first source snapshot a restart from this checkpoint (the `STATE_PROPERTY` value)
/// replays, if any.
pub(crate) fn replay_from(state: &str) -> Option<i64> {
    serde_json::from_str::<Checkpoint>(state).ok()?.replay_from
}

/// What a gold run did.
#[derive(Debug, Clone, Default)]
pub struct GoldReport {
    pub table: String,
    pub source_snapshots: u64,
    pub rows_read: u64,
    /// Rows written (in update mode, a replaced row counts again).
    pub rows_written: u64,
    /// Records of the late output, and records without an event time (both in the DLQ).
    pub late: u64,
    pub untimed: u64,
    /// Alerts raised (rows appended to `gold.alerts`).
    pub alerts: u64,
    pub commits: u64,
    /// Open windows (per group) after the last commit, and the bytes their partials hold.
    pub open_windows: usize,
    pub state_bytes: usize,
}

/// One gold table's moving parts.
struct Gold<'a> {
    config: &'a GoldConfig,
    source: Table,
    table: Table,
    operator: WindowOperator,
    /// Per source snapshot since the replay point: (sequence, id, clock before it).
    history: VecDeque<(i64, i64, Clock)>,
    dlq: DeadLetter,
    alerts: Alerts,
}

/// Runs one gold table until `once` has caught up with the source's current snapshot, or
/// `stop` turns true.
pub async fn run(
    kafka: &KafkaConnection,
    catalog: Arc<Catalog>,
    config: &GoldConfig,
    options: RunOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<GoldReport> {
    let spec = &config.spec;
    let mut report = GoldReport {
        table: spec.table.clone(),
        ..Default::default()
    };
    crate::metrics::stage_starting(&spec.table);
    let source = open_source(
        &catalog,
        &spec.source,
        &spec.table,
        options.once,
        spec.poll,
        &mut stop,
    )
    .await?;
    let Some(source) = source else {
        return Ok(report);
    };
    let table = Table::open_or_create(
        catalog.clone(),
        &TableDefinition {
            name: spec.table.clone(),
            schema: config.output().clone(),
            partition_by_day: Some("window_start".to_string()),
        },
        spec.table_format,
    )
    .await?;
    let dlq = DeadLetter::connect(
        &kafka.brokers,
        &kafka.producer_properties,
        &spec.dlq_topic(),
        "gold",
        &spec.table,
        kafka.connect_timeout,
    )
    .await?;
    let alerts = Alerts::open(catalog.clone(), &spec.table, &spec.alerts, &spec.group_by).await?;
    let mut gold = Gold {
        config,
        source,
        table,
        operator: WindowOperator::new(config.settings.clone(), Clock::default()),
        history: VecDeque::new(),
        dlq,
        alerts,
    };
    crate::metrics::stage_ready(&spec.table);
    let progress = progress::start(&spec.table, Unit::Rows, None);
    'restore: loop {
        gold.restore().await?;
        loop {
            gold.source.refresh().await?;
            // Read once per round; each commit of the round moves it (a Delta read replays
            // the log).
            let mut cursor = gold.cursor().await?;
            let pending = gold.source.appends_after(cursor).await?;
            if pending.is_empty() {
                if options.once || wait(&mut stop, spec.poll).await {
                    break 'restore;
                }
                continue;
            }
            if let Some(rows) = gold.source.added_rows(&pending) {
                progress.set_total(progress.done() + rows);
            }
            for chunk in pending.chunks(spec.batch_snapshots) {
                let started = Instant::now();
                let mut output = Output::default();
                let mut files = gold.source.files_added_by(chunk).await?;
                for snapshot in chunk {
                    let added = files.remove(snapshot).unwrap_or_default();
                    let (read, late, untimed) =
                        gold.process(*snapshot, added, Some(&mut output)).await?;
                    report.rows_read += read;
                    progress.advance(read);
                    report.late += late;
                    report.untimed += untimed;
                }
                gold.dlq.flush().await?;
                let last = chunk[chunk.len() - 1];
                let (written, raised) = match gold
                    .commit(cursor_string(cursor), last, output)
                    .await?
                {
                    Some(counts) => counts,
                    None => {
                        tracing::warn!(table = %spec.table, "another worker moved the cursor: restoring from the table");
                        continue 'restore;
                    }
                };
                cursor = Some(last);
                report.source_snapshots += chunk.len() as u64;
                report.rows_written += written;
                report.alerts += raised;
                report.commits += 1;
                (report.open_windows, report.state_bytes) = gold.operator.state_size();
                crate::metrics::committed(&spec.table, written, started.elapsed());
                let labels = [("table", spec.table.as_str())];
                let help = "Alerts raised (rows appended to gold.alerts)";
                crate::metrics::count("medallion_alerts_total", help, &labels, raised);
                if let Some(watermark) = gold.operator.clock().watermark() {
                    let help = "How far the table's watermark is behind the wall clock";
                    let now = chrono::Utc::now().timestamp_micros();
                    let behind = (now - watermark) as f64 / 1e6;
                    crate::metrics::gauge(
                        "medallion_watermark_delay_seconds",
                        help,
                        &labels,
                        behind,
                    );
                }
                let help = "Open windows (per group) after the last commit";
                let open = report.open_windows as f64;
                crate::metrics::gauge("medallion_open_windows", help, &labels, open);
                let help = "Bytes the open windows' partial aggregates hold";
                let bytes = report.state_bytes as f64;
                crate::metrics::gauge("medallion_window_state_bytes", help, &labels, bytes);
                crate::TABLE_COMMITS.notify_waiters();
                tracing::info!(
                    table = %spec.table,
                    source_snapshot = last,
                    rows = written,
                    watermark = ?gold.operator.clock().watermark(),
                    open_windows = report.open_windows,
                    state_bytes = report.state_bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "committed"
                );
                if *stop.borrow() {
                    break 'restore;
                }
            }
        }
    }
    progress.finish();
    Ok(report)
}

fn cursor_string(cursor: Option<i64>) -> Option<String> {
    cursor.map(|c| c.to_string())
}

/// The changes of a commit: rows to append, or (update mode) rows to replace.
#[derive(Default)]
struct Output {
    /// (start, end, key) → the row to write, or `None` to remove it (the last change wins).
    changes: BTreeMap<(i64, i64, Vec<Value>), Option<WindowRow>>,
}

impl Output {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Upsert(row) => {
                self.changes
                    .insert((row.start, row.end, row.key.clone()), Some(row));
            }
            Change::Retract { start, end, key } => {
                self.changes.insert((start, end, key), None);
            }
        }
    }
}

impl Gold<'_> {
    fn name(&self) -> &str {
        &self.config.spec.table
    }

    fn stage_err(&self, message: String) -> Error {
        Error::Stage {
            table: self.name().to_string(),
            message,
        }
    }

    async fn cursor(&self) -> Result<Option<i64>> {
        let cursor = self.table.cursor(CURSOR_PROPERTY).await?;
        crate::follow::parse_cursor(CURSOR_PROPERTY, cursor.as_deref())
            .map_err(|m| self.stage_err(m))
    }

    /// Rebuilds the operator from the table's checkpoint by replaying the source from it.
    async fn restore(&mut self) -> Result<()> {
        self.table.refresh().await?;
        self.source.refresh().await?;
        let checkpoint: Checkpoint = match self.table.commit_property(STATE_PROPERTY) {
            None => Checkpoint::default(),
            Some(json) => serde_json::from_str(json)
                .map_err(|e| self.stage_err(format!("snapshot property {STATE_PROPERTY}: {e}")))?,
        };
        self.operator = WindowOperator::new(self.config.settings.clone(), checkpoint.clock.clone());
        self.history.clear();
        if let WindowKind::Session { gap } = self.config.settings.kind {
            self.restore_final_sessions(checkpoint.clock.watermark(), gap)
                .await?;
        }
        let (Some(from), Some(cursor)) = (checkpoint.replay_from, self.cursor().await?) else {
            return Ok(());
        };
        let appends = self.source.appends_after(None).await?;
        let start = appends.iter().position(|s| *s == from);
        let end = appends.iter().position(|s| *s == cursor);
        let (Some(start), Some(end)) = (start, end) else {
            return Err(self.stage_err(format!(
                "source snapshots {from}..={cursor} (the replay range of the checkpoint) are not in {}'s history any more",
                self.config.spec.source
            )));
        };
        let started = Instant::now();
        let replay = &appends[start..=end];
        let mut files = self.source.files_added_by(replay).await?;
        for snapshot in replay {
            let added = files.remove(snapshot).unwrap_or_default();
            self.process(*snapshot, added, None).await?;
        }
        tracing::info!(table = %self.name(), snapshots = end + 1 - start, elapsed_ms = started.elapsed().as_millis() as u64, "open windows rebuilt from the source");
        Ok(())
    }

    /// Sessions the table already holds as final (ended by `lateness` before the watermark):
    /// records before their end are late. Only sessions ending within `gap + lateness` of the
    /// watermark matter: a record before an earlier end is late by its own window anyway.
    async fn restore_final_sessions(&mut self, watermark: Option<i64>, gap: i64) -> Result<()> {
        let Some(watermark) = watermark else {
            return Ok(());
        };
        let lateness = self.config.settings.allowed_lateness;
        let keys = self.config.spec.group_by.len();
        let mut columns = vec!["window_start".to_string(), "window_end".to_string()];
        columns.extend(self.config.spec.group_by.iter().cloned());
        let since = watermark.saturating_sub(gap.saturating_add(lateness));
        for batch in self.table.scan_since(&columns, "window_end", since).await? {
            for (_, end, key) in rows::row_ids(&batch, keys).map_err(|m| self.stage_err(m))? {
                if end + lateness <= watermark {
                    self.operator.session_final_until(key, end);
                }
            }
        }
        Ok(())
    }

    /// Feeds one source snapshot (the data files it added) to the operator; with `output`, its
    /// changes go there and its late records to the DLQ (a replay writes nothing). Returns rows
    /// read, late and untimed.
    async fn process(
        &mut self,
        snapshot: i64,
        files: DataFiles,
        output: Option<&mut Output>,
    ) -> Result<(u64, u64, u64)> {
        let Some((seq, committed_ms)) = self.source.commit_meta(snapshot) else {
            return Err(self.stage_err(format!(
                "source snapshot {snapshot} is not in {}'s metadata",
                self.config.spec.source
            )));
        };
        let batches = self.source.scan_data_files(&files).await?;
        let keys = self.config.spec.group_by.len();
        let inputs = self.config.spec.aggregates.len();
        let mut records = Vec::new();
        // Per record: its batch and row, to send the source row to the late output.
        let mut origin = Vec::new();
        let mut untimed_rows: Vec<(usize, usize)> = Vec::new();
        let mut read = 0;
        for (b, batch) in batches.iter().enumerate() {
            read += batch.num_rows() as u64;
            let projected = self
                .config
                .projection
                .apply(batch)
                .map_err(|m| self.stage_err(m))?;
            let (mut r, untimed) =
                rows::records(&projected, keys, inputs).map_err(|m| self.stage_err(m))?;
            let untimed_set: HashSet<usize> = untimed.iter().copied().collect();
            origin.extend(
                (0..batch.num_rows())
                    .filter(|i| !untimed_set.contains(i))
                    .map(|i| (b, i)),
            );
            untimed_rows.extend(untimed.into_iter().map(|i| (b, i)));
            records.append(&mut r);
        }
        let clock_before = self.operator.clock().clone();
        let step = self.operator.snapshot(seq, committed_ms, &records);
        self.history.push_back((seq, snapshot, clock_before));
        let (late, untimed) = (step.late.len() as u64, untimed_rows.len() as u64);
        if let Some(output) = output {
            let range = snapshot.to_string();
            let watermark = self.operator.clock().watermark();
            let late_rows: Vec<(usize, usize)> = step.late.iter().map(|i| origin[*i]).collect();
            self.send(&batches, &late_rows, "late", &format!("the window of this record was already final (watermark {watermark:?} µs, allowed lateness {} µs)", self.config.settings.allowed_lateness), &range)?;
            self.send(
                &batches,
                &untimed_rows,
                "gold.no_event_time",
                &format!("{} is null", self.config.spec.event_time),
                &range,
            )?;
            for change in step.changes {
                output.apply(change);
            }
        }
        Ok((read, late, untimed))
    }

    /// Sends the given source rows to the DLQ as JSON.
    fn send(
        &mut self,
        batches: &[RecordBatch],
        rows: &[(usize, usize)],
        reason: &str,
        message: &str,
        range: &str,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut by_batch: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        for (b, i) in rows {
            by_batch.entry(*b).or_default().push(*i as u32);
        }
        for (b, indices) in by_batch {
            let batch = &batches[b];
            let indices = arrow::array::UInt32Array::from(indices);
            let columns = batch
                .columns()
                .iter()
                .map(|c| take(c, &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.stage_err(e.to_string()))?;
            let picked = RecordBatch::try_new(batch.schema(), columns)
                .map_err(|e| self.stage_err(e.to_string()))?;
            let spec = &self.config.spec;
            for json in rows_as_json(&picked).map_err(|m| self.stage_err(m))? {
                self.dlq
                    .send_row(&json, &spec.table, reason, message, (&spec.source, range))?;
            }
        }
        Ok(())
    }

    /// The checkpoint after the snapshots processed so far; drops history it no longer needs.
    fn checkpoint(&mut self) -> Checkpoint {
        let replay_from = self.operator.replay_from();
        while self
            .history
            .front()
            .is_some_and(|(seq, _, _)| replay_from.is_none_or(|from| *seq < from))
        {
            self.history.pop_front();
        }
        let watermark = self.operator.clock().watermark();
        match (replay_from, self.history.front()) {
            (Some(_), Some((_, snapshot, clock))) => Checkpoint {
                replay_from: Some(*snapshot),
                clock: clock.clone(),
                watermark,
            },
            _ => Checkpoint {
                replay_from: None,
                clock: self.operator.clock().clone(),
                watermark,
            },
        }
    }

    /// Commits `output` with the cursor at `last`, if the cursor is still `expected`, after
    /// raising the alerts its rows call for; `None`: the cursor had moved. Returns the rows
    /// written and the alerts raised.
    async fn commit(
        &mut self,
        expected: Option<String>,
        last: i64,
        output: Output,
    ) -> Result<Option<(u64, u64)>> {
        let state =
            serde_json::to_string(&self.checkpoint()).map_err(|e| self.stage_err(e.to_string()))?;
        let state = [(STATE_PROPERTY.to_string(), state)];
        let next = last.to_string();
        let cursor = (CURSOR_PROPERTY, expected.as_deref(), next.as_str());
        let spec = &self.config.spec;
        let schema = self.config.output().clone();
        let keys = spec.group_by.len();
        let mut rows: Vec<WindowRow> = output.changes.values().flatten().cloned().collect();
        if let Some(top) = &spec.top {
            rows = top_n(rows, top, spec);
        }
        let batch = rows::to_batch(&rows, &schema).map_err(|m| self.stage_err(m))?;
        let raised = self.alerts.raise(&batch, &rows, last).await? as u64;
        let counts = Some((rows.len() as u64, raised));
        let mut staged = self.table.write(&batch).await?;
        if self.config.settings.emit == Emit::Final || output.changes.is_empty() {
            let committed = self
                .table
                .commit_cursor(&HashSet::new(), staged, cursor, &state, &[])
                .await?;
            return Ok(committed.then_some(counts).flatten());
        }
        // Update mode: rewrite the files holding rows of the changed windows.
        let starts = output.changes.keys().map(|(s, _, _)| *s);
        let (low, high) = (starts.clone().min().unwrap_or(0), starts.max().unwrap_or(0));
        let files = self
            .table
            .files_in_range("window_start", Some(low), Some(high + 1))
            .await?;
        for old in self.table.scan_files(files.clone()).await? {
            let ids = rows::row_ids(&old, keys).map_err(|m| self.stage_err(m))?;
            let keep: arrow::array::BooleanArray = ids
                .into_iter()
                .map(|id| Some(!output.changes.contains_key(&id)))
                .collect();
            let kept =
                filter_record_batch(&old, &keep).map_err(|e| self.stage_err(e.to_string()))?;
            staged.extend(self.table.write(&kept).await?)?;
        }
        let committed = self
            .table
            .commit_cursor(&files, staged, cursor, &state, &[])
            .await?;
        Ok(committed.then_some(counts).flatten())
    }
}

/// The `top.n` rows with the largest `top.by` per window (and `top.per` columns), each with
/// its rank appended to its values; ties go to the smaller group key.
fn top_n(
    rows: Vec<WindowRow>,
    top: &crate::spec::TopSpec,
    spec: &crate::spec::GoldSpec,
) -> Vec<WindowRow> {
    let by = spec
        .aggregates
        .iter()
        .position(|a| a.name == top.by)
        .unwrap_or(0);
    let per: Vec<usize> = top
        .per
        .iter()
        .filter_map(|p| spec.group_by.iter().position(|g| g == p))
        .collect();
    let mut groups: BTreeMap<(i64, i64, Vec<Value>), Vec<WindowRow>> = BTreeMap::new();
    for row in rows {
        let scope = per.iter().map(|i| row.key[*i].clone()).collect();
        groups
            .entry((row.start, row.end, scope))
            .or_default()
            .push(row);
    }
    let mut out = Vec::new();
    for (_, mut ranked) in groups {
        ranked.sort_by(|a, b| {
            b.values[by]
                .cmp(&a.values[by])
                .then_with(|| a.key.cmp(&b.key))
        });
        for (rank, mut row) in ranked.into_iter().take(top.n).enumerate() {
            row.values.push(Value::Int(rank as i64 + 1));
            out.push(row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use crate::spec::PipelineSpec;

    const HEAD: &str = "[kafka]\nbrokers = \"b:9092\"\n";

    fn source() -> arrow::datatypes::SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("event_time", ts, true),
            Field::new("region", DataType::Utf8, true),
            Field::new("product", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ]))
    }

    /// The config of a one-table spec, or the error it is refused with.
    fn config(gold: &str) -> std::result::Result<GoldConfig, String> {
        let text = format!("{HEAD}[[gold]]\ntable = \"gold.t\"\nsource = \"silver.s\"\nevent_time = \"event_time\"\n{gold}");
        let spec = PipelineSpec::parse(&text, "p.toml").map_err(|e| e.to_string())?;
        GoldConfig::new(&spec.gold[0], &source(), "p.toml", 0).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let agg = "aggregates = [{ name = \"n\", fn = \"count\" }]";
        let cases = [
            (
                format!("window = {{ sliding = \"5m\", slide = \"2m\" }}\n{agg}"),
                "p.toml: gold[0].window (table gold.t): sliding windows are built from slide-sized panes",
            ),
            (
                format!("window = {{ tumbling = \"1m\", session = \"1m\" }}\n{agg}"),
                "p.toml: gold[0].window (table gold.t): expected one of",
            ),
            (
                "window = { tumbling = \"1m\" }\naggregates = [{ name = \"x\", fn = \"median\", expr = \"amount\" }]".into(),
                "p.toml: gold[0].aggregates.x (table gold.t): unknown function \"median\"",
            ),
            (
                "window = { tumbling = \"1m\" }\naggregates = [{ name = \"x\", fn = \"sum\", expr = \"amout\" }]".into(),
                "p.toml: gold[0].aggregates.x (table gold.t): ",
            ),
            (
                "window = { tumbling = \"1m\" }\naggregates = [{ name = \"x\", fn = \"sum\", expr = \"region\" }]".into(),
                "p.toml: gold[0].aggregates.x (table gold.t): sum cannot aggregate values of type Utf8",
            ),
            (
                format!("window = {{ tumbling = \"1m\" }}\n{agg}\nalerts = [{{ name = \"a\", when = \"nn > 3\", severity = \"warning\" }}]"),
                "p.toml: gold[0].alerts.a (table gold.t): ",
            ),
            (
                format!("window = {{ tumbling = \"1m\" }}\n{agg}\nemit = \"update\"\ntop = {{ n = 3, by = \"n\" }}"),
                "p.toml: gold[0].top: top-N needs emit = \"final\"",
            ),
            (
                format!("window = {{ session = \"1m\" }}\n{agg}\nwatermark = {{ partitions = 3 }}"),
                "p.toml: gold[0].watermark.partitions (table gold.t): needs watermark.partition_column",
            ),
        ];
        for (gold, want) in cases {
            let err = config(&gold).err().unwrap_or_default();
            assert!(
                err.starts_with(want),
                "{gold}\n  gave: {err}\n  want: {want}…"
            );
        }
        let ok = config(&format!("window = {{ sliding = \"5m\", slide = \"1m\" }}\ngroup_by = [\"region\", \"product\"]\n{agg}\ntop = {{ n = 2, by = \"n\", per = [\"region\"] }}")).unwrap();
        let names: Vec<&str> = ok
            .output()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "window_start",
                "window_end",
                "region",
                "product",
                "n",
                "rank"
            ]
        );
    }

    #[test]
    fn top_n_ranks_per_window_and_scope_with_ties_to_the_smaller_key() {
        let spec = config(
            "window = { tumbling = \"1m\" }\ngroup_by = [\"region\", \"product\"]\naggregates = [{ name = \"revenue\", fn = \"sum\", expr = \"amount\" }]\ntop = { n = 2, by = \"revenue\", per = [\"region\"] }",
        )
        .unwrap()
        .spec;
        let row = |start: i64, region: &str, product: &str, revenue: i64| WindowRow {
            start,
            end: start + 60,
            key: vec![Value::Text(region.into()), Value::Text(product.into())],
            values: vec![Value::Int(revenue)],
        };
        let rows = vec![
            row(0, "eu", "a", 5),
            row(0, "eu", "b", 9),
            row(0, "eu", "c", 9),
            row(0, "us", "a", 1),
            row(60, "eu", "a", 3),
        ];
        let ranked: Vec<(i64, String, String, i64)> =
            top_n(rows, spec.top.as_ref().unwrap(), &spec)
                .into_iter()
                .map(|r| {
                    let text = |v: &Value| match v {
                        Value::Text(s) => s.clone(),
                        _ => String::new(),
                    };
                    let Value::Int(rank) = r.values[1] else {
                        panic!()
                    };
                    (r.start, text(&r.key[0]), text(&r.key[1]), rank)
                })
                .collect();
        assert_eq!(
            ranked,
            vec![
                (0, "eu".into(), "b".into(), 1),
                (0, "eu".into(), "c".into(), 2),
                (0, "us".into(), "a".into(), 1),
                (60, "eu".into(), "a".into(), 1),
            ]
        );
    }
}
