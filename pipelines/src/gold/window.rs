//! The window operator: event-time windows over records that arrive one source snapshot at a
//! time, with Flink's semantics (DESIGN.md, "Windows").
//!
//! Decisions are made per snapshot, never per record: every record of a snapshot is judged
//! against the watermark as it stood before the snapshot, and the watermark moves after it.
//! The result therefore does not depend on the order of rows within a snapshot, nor on how
//! snapshots are grouped into commits, so replaying the same snapshots from a checkpoint
//! rebuilds exactly the state an uninterrupted run had.
//!
//! - Windows are `[start, end)`. Tumbling windows are sliding windows whose slide is their size;
//!   sliding windows are merged from slide-sized panes.
//! - A pane record is late when the earliest window holding it is late (pane end + allowed
//!   lateness ≤ watermark): it then counts in none of its windows, so the result is the batch
//!   result over the records that were not late.
//! - A session record is late when its own window `[t, t + gap)` is late, or when it lies
//!   before the end of a session of its key that was already final: a record that is not late
//!   can never change a final result.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::aggregate::{Accumulator, Function, Value};

/// Window shapes; sizes in microseconds of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Session { gap: i64 },
}

/// When results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Once a window can no longer change (watermark ≥ end + allowed lateness).
    Final,
    /// When the watermark passes the end, then again whenever allowed-late records change it.
    Update,
}

/// What the operator computes.
#[derive(Debug, Clone)]
pub struct WindowSettings {
    pub kind: WindowKind,
    /// Watermark = (per partition) max event time − this, microseconds.
    pub max_out_of_orderness: i64,
    /// A partition with no records in the snapshots of this many milliseconds (of source
    /// commit time) stops holding the watermark back.
    pub idle_timeout_ms: Option<i64>,
    /// Partitions `0..n` hold the watermark back from the first snapshot on, before their
    /// first record (otherwise a partition counts once it has sent one).
    pub partitions: Option<i32>,
    /// Microseconds after a window's end during which records still update it.
    pub allowed_lateness: i64,
    pub emit: Emit,
    pub functions: Vec<Function>,
}

/// One input record.
#[derive(Debug, Clone)]
pub struct Record {
    /// The source partition (for per-partition watermarks).
    pub partition: i32,
    /// Microseconds since the epoch.
    pub event_time: i64,
    pub key: Vec<Value>,
    /// One input per aggregate.
    pub inputs: Vec<Value>,
}

/// A window's result for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub start: i64,
    pub end: i64,
    pub key: Vec<Value>,
    pub values: Vec<Value>,
}

/// A change to the windows' output.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Write this row, replacing any row of the same window and key.
    Upsert(WindowRow),
    /// Remove the row of this window and key (a session merged into another or grew).
    Retract {
        start: i64,
        end: i64,
        key: Vec<Value>,
    },
}

/// What one snapshot did.
#[derive(Debug, Default)]
pub struct Step {
    /// Indices of the snapshot's records that were late (for the late output).
    pub late: Vec<usize>,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PartitionClock {
    max_event: i64,
    last_active_ms: i64,
}

/// Where the watermark stands: stored with each gold commit so a restart can replay from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    partitions: BTreeMap<i32, PartitionClock>,
    watermark: Option<i64>,
}

impl Clock {
    /// Microseconds; `None` before any record.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    fn is_late(&self, t: i64) -> bool {
        self.watermark.is_some_and(|w| t <= w)
    }
}

struct Partial {
    accs: Vec<Accumulator>,
    /// The first snapshot (sequence) whose records are in it.
    first_seq: i64,
}

struct Session {
    start: i64,
    /// The latest event time in it; the window ends at `last + gap`.
    last: i64,
    partial: Partial,
    dirty: bool,
    /// The window its row was last written for (update mode).
    emitted: Option<(i64, i64)>,
}

/// Windows over records that arrive in source snapshots.
pub struct WindowOperator {
    settings: WindowSettings,
    clock: Clock,
    /// Pane start → key → partial (tumbling and sliding).
    panes: BTreeMap<i64, HashMap<Vec<Value>, Partial>>,
    /// Panes that got records in the current snapshot.
    dirty_panes: HashSet<(i64, Vec<Value>)>,
    sessions: HashMap<Vec<Value>, Vec<Session>>,
    /// Per key, the end of its latest final session.
    final_until: HashMap<Vec<Value>, i64>,
}

impl WindowOperator {
    pub fn new(settings: WindowSettings, clock: Clock) -> Self {
        Self {
            settings,
            clock,
            panes: BTreeMap::new(),
            dirty_panes: HashSet::new(),
            sessions: HashMap::new(),
            final_until: HashMap::new(),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Sets the end of the latest final session of `key` (from the gold table, on restart).
    pub fn session_final_until(&mut self, key: Vec<Value>, end: i64) {
        let at = self.final_until.entry(key).or_insert(end);
        *at = (*at).max(end);
    }

    /// The first snapshot sequence whose records are still in open windows: a restart
    /// replays from there.
    pub fn replay_from(&self) -> Option<i64> {
        let panes = self.panes.values().flat_map(|m| m.values());
        let sessions = self.sessions.values().flatten().map(|s| &s.partial);
        panes.chain(sessions).map(|p| p.first_seq).min()
    }

    /// Open windows and keys, and the approximate bytes their partials hold.
    pub fn state_size(&self) -> (usize, usize) {
        let partials: Vec<&Partial> = self
            .panes
            .values()
            .flat_map(|m| m.values())
            .chain(self.sessions.values().flatten().map(|s| &s.partial))
            .collect();
        let bytes = partials
            .iter()
            .map(|p| 64 + p.accs.iter().map(|a| 32 + a.bytes()).sum::<usize>())
            .sum();
        (partials.len(), bytes)
    }

    /// Processes the records of one source snapshot (`seq` increasing, `committed_ms` its
    /// commit time), then moves the watermark and emits what it closes.
    pub fn snapshot(&mut self, seq: i64, committed_ms: i64, records: &[Record]) -> Step {
        let mut step = Step::default();
        let before = self.clock.watermark;
        for (i, record) in records.iter().enumerate() {
            let accepted = match self.settings.kind {
                WindowKind::Tumbling { size } => self.add_to_pane(seq, size, record),
                WindowKind::Sliding { slide, .. } => self.add_to_pane(seq, slide, record),
                WindowKind::Session { gap } => self.add_to_session(seq, gap, record, &mut step),
            };
            if !accepted {
                step.late.push(i);
            }
        }
        self.advance(committed_ms, records);
        let after = self.clock.watermark;
        match self.settings.kind {
            WindowKind::Tumbling { size } => self.fire_panes(size, size, before, after, &mut step),
            WindowKind::Sliding { size, slide } => {
                self.fire_panes(size, slide, before, after, &mut step)
            }
            WindowKind::Session { gap } => self.fire_sessions(gap, before, after, &mut step),
        }
        self.dirty_panes.clear();
        step
    }

    /// Closes and emits every window still open, as if the watermark had passed them all:
    /// the end of a batch over complete data (a backfill).
    pub fn finish(&mut self) -> Step {
        let mut step = Step::default();
        let before = self.clock.watermark;
        // Far enough to close any window, with room for the lateness added to its end.
        let after = Some(i64::MAX / 4);
        match self.settings.kind {
            WindowKind::Tumbling { size } => self.fire_panes(size, size, before, after, &mut step),
            WindowKind::Sliding { size, slide } => {
                self.fire_panes(size, slide, before, after, &mut step)
            }
            WindowKind::Session { gap } => self.fire_sessions(gap, before, after, &mut step),
        }
        step
    }

    fn new_partial(&self, seq: i64) -> Partial {
        Partial {
            accs: self
                .settings
                .functions
                .iter()
                .map(|f| Accumulator::new(*f))
                .collect(),
            first_seq: seq,
        }
    }

    fn add_to_pane(&mut self, seq: i64, slide: i64, record: &Record) -> bool {
        let pane = record.event_time.div_euclid(slide) * slide;
        if self
            .clock
            .is_late(pane + slide + self.settings.allowed_lateness)
        {
            return false;
        }
        let fresh = self.new_partial(seq);
        let partial = self
            .panes
            .entry(pane)
            .or_default()
            .entry(record.key.clone())
            .or_insert(fresh);
        for (acc, input) in partial.accs.iter_mut().zip(&record.inputs) {
            acc.update(input);
        }
        self.dirty_panes.insert((pane, record.key.clone()));
        true
    }

    fn add_to_session(&mut self, seq: i64, gap: i64, record: &Record, step: &mut Step) -> bool {
        let t = record.event_time;
        if self.clock.is_late(t + gap + self.settings.allowed_lateness)
            || self
                .final_until
                .get(&record.key)
                .is_some_and(|end| t < *end)
        {
            return false;
        }
        let mut merged = Session {
            start: t,
            last: t,
            partial: self.new_partial(seq),
            dirty: true,
            emitted: None,
        };
        for (acc, input) in merged.partial.accs.iter_mut().zip(&record.inputs) {
            acc.update(input);
        }
        let sessions = self.sessions.entry(record.key.clone()).or_default();
        let mut kept = Vec::with_capacity(sessions.len() + 1);
        for s in sessions.drain(..) {
            let overlaps = s.start < t + gap && t < s.last + gap;
            if !overlaps {
                kept.push(s);
                continue;
            }
            if let Some((start, end)) = s.emitted {
                step.changes.push(Change::Retract {
                    start,
                    end,
                    key: record.key.clone(),
                });
            }
            merged.start = merged.start.min(s.start);
            merged.last = merged.last.max(s.last);
            merged.partial.first_seq = merged.partial.first_seq.min(s.partial.first_seq);
            for (a, b) in merged.partial.accs.iter_mut().zip(&s.partial.accs) {
                a.merge(b);
            }
        }
        kept.push(merged);
        kept.sort_by_key(|s| s.start);
        *sessions = kept;
        true
    }

    /// Moves each record's partition clock and the watermark (which never goes back).
    fn advance(&mut self, committed_ms: i64, records: &[Record]) {
        for p in 0..self.settings.partitions.unwrap_or(0) {
            self.clock.partitions.entry(p).or_insert(PartitionClock {
                max_event: i64::MIN,
                last_active_ms: committed_ms,
            });
        }
        for r in records {
            let c = self
                .clock
                .partitions
                .entry(r.partition)
                .or_insert(PartitionClock {
                    max_event: r.event_time,
                    last_active_ms: committed_ms,
                });
            c.max_event = c.max_event.max(r.event_time);
            c.last_active_ms = committed_ms;
        }
        let active = |c: &&PartitionClock| {
            self.settings
                .idle_timeout_ms
                .is_none_or(|idle| c.last_active_ms >= committed_ms - idle)
        };
        let clocks = self.clock.partitions.values();
        let held = clocks.clone().filter(active).map(|c| c.max_event).min();
        // With every partition idle, the most advanced one leads.
        let Some(max_event) = held.or_else(|| clocks.map(|c| c.max_event).max()) else {
            return;
        };
        if max_event == i64::MIN {
            // A partition that has sent nothing yet holds it.
            return;
        }
        let candidate = max_event - self.settings.max_out_of_orderness;
        self.clock.watermark = Some(self.clock.watermark.map_or(candidate, |w| w.max(candidate)));
    }

    fn fire_panes(
        &mut self,
        size: i64,
        slide: i64,
        before: Option<i64>,
        after: Option<i64>,
        step: &mut Step,
    ) {
        let Some(after) = after else {
            return;
        };
        let lateness = self.settings.allowed_lateness;
        let newly = |moment: i64| before.is_none_or(|b| moment > b) && moment <= after;
        // The windows holding a pane with data that are written now: in final mode those that
        // just became final; in update mode those the watermark just passed, and those passed
        // earlier that a pane of got allowed-late records.
        let dirty: HashSet<i64> = self.dirty_panes.iter().map(|(p, _)| *p).collect();
        let mut starts: HashSet<i64> = HashSet::new();
        for pane in self.panes.keys() {
            let mut start = pane - size + slide;
            while start <= *pane {
                let end = start + size;
                let write = match self.settings.emit {
                    Emit::Final => newly(end + lateness),
                    Emit::Update => newly(end) || (end <= after && dirty.contains(pane)),
                };
                if write {
                    starts.insert(start);
                }
                start += slide;
            }
        }
        let mut starts: Vec<i64> = starts.into_iter().collect();
        starts.sort_unstable();
        for start in starts {
            let end = start + size;
            let mut by_key: BTreeMap<Vec<Value>, Vec<Accumulator>> = BTreeMap::new();
            for (_, keys) in self.panes.range(start..end) {
                for (key, partial) in keys {
                    match by_key.get_mut(key) {
                        Some(accs) => {
                            for (a, b) in accs.iter_mut().zip(&partial.accs) {
                                a.merge(b);
                            }
                        }
                        None => {
                            by_key.insert(key.clone(), partial.accs.clone());
                        }
                    }
                }
            }
            let all_keys = self.settings.emit == Emit::Final || newly(end);
            for (key, accs) in by_key {
                let changed = all_keys
                    || self
                        .panes
                        .range(start..end)
                        .any(|(p, _)| self.dirty_panes.contains(&(*p, key.clone())));
                if changed {
                    step.changes
                        .push(Change::Upsert(self.row(start, end, key, &accs)));
                }
            }
        }
        // A pane goes once the last window holding it, which starts at the pane, is final.
        self.panes.retain(|pane, _| pane + size + lateness > after);
    }

    fn fire_sessions(
        &mut self,
        gap: i64,
        before: Option<i64>,
        after: Option<i64>,
        step: &mut Step,
    ) {
        let Some(after) = after else {
            return;
        };
        let lateness = self.settings.allowed_lateness;
        let emit = self.settings.emit;
        let functions = self.settings.functions.clone();
        let mut finals: Vec<(Vec<Value>, i64)> = Vec::new();
        for (key, sessions) in self.sessions.iter_mut() {
            for s in sessions.iter_mut() {
                let end = s.last + gap;
                let write = match emit {
                    Emit::Final => end + lateness <= after,
                    Emit::Update => end <= after && (s.dirty || before.is_none_or(|b| end > b)),
                };
                if write {
                    if let Some((start, old_end)) = s.emitted.filter(|w| *w != (s.start, end)) {
                        step.changes.push(Change::Retract {
                            start,
                            end: old_end,
                            key: key.clone(),
                        });
                    }
                    let values = s
                        .partial
                        .accs
                        .iter()
                        .zip(&functions)
                        .map(|(a, f)| a.result(*f))
                        .collect();
                    step.changes.push(Change::Upsert(WindowRow {
                        start: s.start,
                        end,
                        key: key.clone(),
                        values,
                    }));
                    s.emitted = Some((s.start, end));
                }
                s.dirty = false;
                if end + lateness <= after {
                    finals.push((key.clone(), end));
                }
            }
            sessions.retain(|s| s.last + gap + lateness > after);
        }
        self.sessions.retain(|_, s| !s.is_empty());
        for (key, end) in finals {
            self.session_final_until(key, end);
        }
        // A record before a forgotten end is late by its own window anyway.
        self.final_until
            .retain(|_, end| *end + gap + lateness > after);
    }

    fn row(&self, start: i64, end: i64, key: Vec<Value>, accs: &[Accumulator]) -> WindowRow {
        WindowRow {
            start,
            end,
            key,
            values: accs
                .iter()
                .zip(&self.settings.functions)
                .map(|(a, f)| a.result(*f))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const MIN: i64 = 60 * S;

    fn settings(kind: WindowKind, emit: Emit) -> WindowSettings {
        WindowSettings {
            kind,
            max_out_of_orderness: 0,
            idle_timeout_ms: None,
            partitions: None,
            allowed_lateness: 0,
            emit,
            functions: vec![Function::Count, Function::Sum],
        }
    }

    /// A record of key `k` at `secs` seconds with value `v`, from partition 0.
    fn rec(secs: i64, k: &str, v: i64) -> Record {
        Record {
            partition: 0,
            event_time: secs * S,
            key: vec![Value::Text(k.into())],
            inputs: vec![Value::Bool(true), Value::Int(v)],
        }
    }

    /// An output row: start and end (seconds), key, count, sum.
    type Row = (i64, i64, String, i64, i64);

    /// Feeds the snapshots (one per inner slice, committed a second apart) and returns the
    /// output table the changes leave, as (start s, end s, key, count, sum), and the late
    /// records as (snapshot, index).
    fn run(s: WindowSettings, snapshots: &[Vec<Record>]) -> (Vec<Row>, Vec<(usize, usize)>) {
        let mut op = WindowOperator::new(s, Clock::default());
        let mut table: BTreeMap<(i64, i64, Vec<Value>), Vec<Value>> = BTreeMap::new();
        let mut late = Vec::new();
        for (n, records) in snapshots.iter().enumerate() {
            let step = op.snapshot(n as i64, 1000 * n as i64, records);
            late.extend(step.late.iter().map(|i| (n, *i)));
            for c in step.changes {
                match c {
                    Change::Upsert(r) => {
                        table.insert((r.start, r.end, r.key), r.values);
                    }
                    Change::Retract { start, end, key } => {
                        assert!(
                            table.remove(&(start, end, key)).is_some(),
                            "retract of a row never written"
                        );
                    }
                }
            }
        }
        let rows = table
            .into_iter()
            .map(|((start, end, key), v)| {
                let Value::Text(k) = &key[0] else { panic!() };
                let int = |x: &Value| match x {
                    Value::Int(i) => *i,
                    _ => panic!("{x:?}"),
                };
                (start / S, end / S, k.clone(), int(&v[0]), int(&v[1]))
            })
            .collect();
        (rows, late)
    }

    /// All records in one snapshot, then `finish`: the windows of a batch over complete data.
    fn batch(s: WindowSettings, records: Vec<Record>) -> Vec<Row> {
        let mut op = WindowOperator::new(s, Clock::default());
        let first = op.snapshot(0, 0, &records);
        assert!(first.late.is_empty(), "nothing is late in a batch");
        let mut rows: Vec<Row> = first
            .changes
            .into_iter()
            .chain(op.finish().changes)
            .map(|c| match c {
                Change::Upsert(r) => {
                    let Value::Text(k) = &r.key[0] else { panic!() };
                    let int = |x: &Value| match x {
                        Value::Int(i) => *i,
                        _ => panic!("{x:?}"),
                    };
                    (
                        r.start / S,
                        r.end / S,
                        k.clone(),
                        int(&r.values[0]),
                        int(&r.values[1]),
                    )
                }
                Change::Retract { .. } => panic!("a batch writes each window once"),
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn finish_closes_every_window_of_a_batch_once() {
        // Far out of order: in one snapshot nothing is late, and each window is written once.
        let records = vec![
            rec(130, "a", 1),
            rec(5, "a", 2),
            rec(61, "b", 3),
            rec(2, "a", 4),
        ];
        let tumbling = settings(WindowKind::Tumbling { size: MIN }, Emit::Final);
        assert_eq!(
            batch(tumbling, records.clone()),
            vec![
                (0, 60, "a".into(), 2, 6),
                (60, 120, "b".into(), 1, 3),
                (120, 180, "a".into(), 1, 1),
            ]
        );
        let mut update = settings(WindowKind::Tumbling { size: MIN }, Emit::Update);
        update.allowed_lateness = MIN;
        assert_eq!(batch(update, records.clone()).len(), 3);
        let sessions = settings(WindowKind::Session { gap: 10 * S }, Emit::Final);
        assert_eq!(
            batch(sessions, records),
            vec![
                (2, 15, "a".into(), 2, 6),
                (61, 71, "b".into(), 1, 3),
                (130, 140, "a".into(), 1, 1),
            ]
        );
    }

    #[test]
    fn tumbling_windows_fire_when_the_watermark_passes_their_end() {
        let (rows, late) = run(
            settings(WindowKind::Tumbling { size: MIN }, Emit::Final),
            &[
                vec![rec(5, "a", 1), rec(59, "a", 2), rec(30, "b", 4)],
                vec![rec(61, "a", 8)],
                // The watermark (120 s) passes the second window's end: it fires too.
                vec![rec(120, "b", 16)],
            ],
        );
        assert_eq!(
            rows,
            vec![
                (0, 60, "a".into(), 2, 3),
                (0, 60, "b".into(), 1, 4),
                (60, 120, "a".into(), 1, 8)
            ]
        );
        assert!(late.is_empty());
    }

    #[test]
    fn sliding_windows_come_from_panes_and_empty_windows_write_no_row() {
        let (rows, _) = run(
            settings(
                WindowKind::Sliding {
                    size: 3 * MIN,
                    slide: MIN,
                },
                Emit::Final,
            ),
            &[
                vec![rec(10, "a", 1), rec(70, "a", 2)],
                // Nothing from 2 min to 6 min: windows holding only empty panes write no row.
                vec![rec(400, "a", 4)],
                vec![rec(1000, "a", 0)],
            ],
        );
        let windows: Vec<(i64, i64, i64, i64)> =
            rows.iter().map(|r| (r.0, r.1, r.3, r.4)).collect();
        assert_eq!(
            windows,
            vec![
                (-120, 60, 1, 1),
                (-60, 120, 2, 3),
                (0, 180, 2, 3),
                (60, 240, 1, 2),
                (240, 420, 1, 4),
                (300, 480, 1, 4),
                (360, 540, 1, 4),
            ]
        );
    }

    #[test]
    fn out_of_order_records_within_the_bound_count() {
        let mut s = settings(WindowKind::Tumbling { size: MIN }, Emit::Final);
        s.max_out_of_orderness = 30 * S;
        let (rows, late) = run(
            s,
            &[
                vec![rec(50, "a", 1), rec(80, "a", 2)],
                // Watermark 50 s: the first window is still open for this one.
                vec![rec(55, "a", 4)],
                vec![rec(200, "a", 0)],
            ],
        );
        assert_eq!(rows[0], (0, 60, "a".into(), 2, 5));
        assert!(late.is_empty());
    }

    #[test]
    fn allowed_late_records_replace_the_row_in_update_mode() {
        let mut s = settings(WindowKind::Tumbling { size: MIN }, Emit::Update);
        s.allowed_lateness = MIN;
        let mut op = WindowOperator::new(s, Clock::default());
        let first = op.snapshot(0, 0, &[rec(10, "a", 1), rec(70, "a", 2)]);
        let row = |count, sum| {
            Change::Upsert(WindowRow {
                start: 0,
                end: MIN,
                key: vec![Value::Text("a".into())],
                values: vec![Value::Int(count), Value::Int(sum)],
            })
        };
        assert_eq!(
            first.changes,
            vec![row(1, 1)],
            "written when the watermark passes the end"
        );
        let second = op.snapshot(1, 1000, &[rec(20, "a", 4)]);
        assert_eq!(
            second.changes,
            vec![row(2, 5)],
            "written again, replacing it"
        );
        assert!(second.late.is_empty());
        // Beyond the lateness: late output, no change.
        let third = op.snapshot(2, 2000, &[rec(200, "a", 0)]);
        let fourth = op.snapshot(3, 3000, &[rec(30, "a", 8)]);
        assert_eq!(fourth.late, vec![0]);
        assert!(fourth.changes.is_empty(), "{:?}", fourth.changes);
        assert!(third.late.is_empty());
    }

    #[test]
    fn allowed_late_records_count_in_final_mode_and_later_ones_go_to_the_late_output() {
        let mut s = settings(WindowKind::Tumbling { size: MIN }, Emit::Final);
        s.allowed_lateness = MIN;
        let (rows, late) = run(
            s,
            &[
                vec![rec(10, "a", 1), rec(70, "a", 2)],
                // Watermark 70 s: the first window ended but may still change.
                vec![rec(20, "a", 4)],
                // Watermark 130 s: final now; this record is beyond the lateness.
                vec![rec(130, "a", 0)],
                vec![rec(30, "a", 8)],
            ],
        );
        assert_eq!(rows[0], (0, 60, "a".into(), 2, 5));
        assert_eq!(late, vec![(3, 0)]);
    }

    #[test]
    fn an_idle_partition_stops_holding_the_watermark_back() {
        let mut s = settings(WindowKind::Tumbling { size: MIN }, Emit::Final);
        s.idle_timeout_ms = Some(5_000);
        let on = |p: i32, secs: i64| Record {
            partition: p,
            ..rec(secs, "a", 1)
        };
        let mut op = WindowOperator::new(s, Clock::default());
        op.snapshot(0, 0, &[on(0, 10), on(1, 10)]);
        // Partition 1 is silent: 4 s later it still holds the watermark at 10 s.
        let held = op.snapshot(1, 4_000, &[on(0, 100)]);
        assert!(held.changes.is_empty());
        assert_eq!(op.clock().watermark(), Some(10 * S));
        // 6 s after its last record it is idle, and partition 0 alone moves the watermark.
        let moved = op.snapshot(2, 6_000, &[on(0, 110)]);
        assert_eq!(op.clock().watermark(), Some(110 * S));
        assert_eq!(moved.changes.len(), 1);
        // Back with a record: it holds the watermark again (which never goes back).
        op.snapshot(3, 7_000, &[on(1, 115), on(0, 300)]);
        assert_eq!(op.clock().watermark(), Some(115 * S));
    }

    #[test]
    fn a_window_spanning_midnight_holds_both_days() {
        let day = 86_400;
        let (rows, _) = run(
            settings(
                WindowKind::Sliding {
                    size: 3600 * S,
                    slide: 1800 * S,
                },
                Emit::Final,
            ),
            &[
                vec![rec(day - 1000, "a", 1), rec(day + 1000, "a", 2)],
                vec![rec(day + 9000, "a", 0)],
            ],
        );
        let windows: Vec<(i64, i64, i64, i64)> = rows
            .iter()
            .map(|r| (r.0 - day, r.1 - day, r.3, r.4))
            .collect();
        assert_eq!(
            windows,
            vec![(-3600, 0, 1, 1), (-1800, 1800, 2, 3), (0, 3600, 1, 2)]
        );
    }

    #[test]
    fn sessions_merge_when_a_record_bridges_them_late_records_included() {
        let mut s = settings(WindowKind::Session { gap: 10 * S }, Emit::Update);
        s.allowed_lateness = 100 * S;
        let (rows, late) = run(
            s,
            &[
                vec![rec(0, "a", 1), rec(5, "a", 2), rec(30, "a", 4)],
                // Watermark 30 s: [0, 15) is written. 12 s, within the lateness, grows it to
                // [0, 22): the row is retracted and written again.
                vec![rec(12, "a", 8), rec(60, "a", 0)],
                // Watermark 60 s: 21 s bridges [0, 22) and [30, 40) into one session.
                vec![rec(21, "a", 16)],
                vec![rec(500, "b", 0)],
            ],
        );
        let a: Vec<_> = rows.iter().filter(|r| r.2 == "a").cloned().collect();
        assert_eq!(
            a,
            vec![(0, 40, "a".into(), 5, 31), (60, 70, "a".into(), 1, 0)]
        );
        assert!(late.is_empty());
    }

    #[test]
    fn session_records_before_a_final_session_end_are_late() {
        let s = settings(WindowKind::Session { gap: 10 * S }, Emit::Final);
        let (rows, late) = run(
            s,
            &[
                // Watermark 10 s: a's session [0, 10) is final.
                vec![rec(0, "a", 1), rec(10, "b", 0)],
                // 5 s is not late by its own window [5, 15), but it would change a final
                // session: late.
                vec![rec(5, "a", 2), rec(12, "a", 4)],
                vec![rec(500, "c", 0)],
            ],
        );
        assert_eq!(late, vec![(1, 0)]);
        let a: Vec<_> = rows.iter().filter(|r| r.2 == "a").cloned().collect();
        assert_eq!(
            a,
            vec![(0, 10, "a".into(), 1, 1), (12, 22, "a".into(), 1, 4)]
        );
    }

    #[test]
    fn replay_from_names_the_oldest_snapshot_in_open_windows() {
        let mut op = WindowOperator::new(
            settings(WindowKind::Tumbling { size: MIN }, Emit::Final),
            Clock::default(),
        );
        assert_eq!(op.replay_from(), None);
        op.snapshot(7, 0, &[rec(10, "a", 1)]);
        op.snapshot(8, 0, &[rec(70, "a", 1)]);
        assert_eq!(
            op.replay_from(),
            Some(8),
            "the first window fired and is gone"
        );
        assert_eq!(op.state_size().0, 1);
    }
}
