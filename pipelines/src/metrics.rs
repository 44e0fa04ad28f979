//! The process's metrics, in Prometheus' text exposition format, and the readiness of its
//! stages. One registry per process, like the stages' wake-up: every stage of a `medallion run`
//! counts into it, and `--metrics-addr` serves it.
//!
//! Counts of what reached a table are taken when the commit lands, so a scrape never shows
//! rows a reader cannot see yet: once the tables are idle, the counters equal them exactly.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Upper bounds (seconds) of the commit-latency histogram's buckets.
const COMMIT_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

type Labels = Vec<(&'static str, String)>;

enum Series {
    Counter(f64),
    Gauge(f64),
    Histogram {
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

struct Family {
    help: &'static str,
    series: BTreeMap<Labels, Series>,
}

#[derive(Default)]
struct Registry {
    families: BTreeMap<&'static str, Family>,
    /// Stage name (`bronze.web_events`) → whether it is ready.
    stages: BTreeMap<String, bool>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    families: BTreeMap::new(),
    stages: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves plain numbers behind: still worth serving.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn series<'a>(
    registry: &'a mut Registry,
    name: &'static str,
    help: &'static str,
    pairs: &[(&'static str, &str)],
    new: impl FnOnce() -> Series,
) -> &'a mut Series {
    registry
        .families
        .entry(name)
        .or_insert_with(|| Family {
            help,
            series: BTreeMap::new(),
        })
        .series
        .entry(labels(pairs))
        .or_insert_with(new)
}

/// Adds `by` to a counter.
pub fn count(name: &'static str, help: &'static str, pairs: &[(&'static str, &str)], by: u64) {
    if let Series::Counter(v) = series(&mut registry(), name, help, pairs, || Series::Counter(0.0))
    {
        *v += by as f64;
    }
}

/// Sets a gauge.
pub fn gauge(name: &'static str, help: &'static str, pairs: &[(&'static str, &str)], to: f64) {
    if let Series::Gauge(v) = series(&mut registry(), name, help, pairs, || Series::Gauge(0.0)) {
        *v = to;
    }
}

/// Records one commit's latency for `table`.
pub fn commit_latency(table: &str, took: Duration) {
    let new = || Series::Histogram {
        counts: vec![0; COMMIT_BUCKETS.len()],
        sum: 0.0,
        count: 0,
    };
    let mut registry = registry();
    let help = "Time from the start of a commit (dead letters, data files, catalog) to its landing";
    let entry = series(
        &mut registry,
        "medallion_commit_seconds",
        help,
        &[("table", table)],
        new,
    );
    if let Series::Histogram { counts, sum, count } = entry {
        let secs = took.as_secs_f64();
        for (bucket, bound) in counts.iter_mut().zip(COMMIT_BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        *sum += secs;
        *count += 1;
    }
}

/// One commit of `rows` rows landed in `table`, `took` after it started.
pub fn committed(table: &str, rows: u64, took: Duration) {
    let labels = [("table", table)];
    count(
        "medallion_rows_written_total",
        "Rows committed to the table (update mode: a replaced row counts again)",
        &labels,
        rows,
    );
    count("medallion_commits_total", "Commits that landed", &labels, 1);
    commit_latency(table, took);
}

/// A stage that `/readyz` waits for: not ready until [`stage_ready`].
pub fn stage_starting(stage: &str) {
    registry().stages.insert(stage.to_string(), false);
}

pub fn stage_ready(stage: &str) {
    registry().stages.insert(stage.to_string(), true);
}

/// The stages not ready yet; `None` when no stage has started.
pub fn not_ready() -> Option<Vec<String>> {
    let registry = registry();
    if registry.stages.is_empty() {
        return None;
    }
    Some(
        registry
            .stages
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(stage, _)| stage.clone())
            .collect(),
    )
}

/// Every metric in Prometheus' text exposition format (version 0.0.4).
pub fn render() -> String {
    let registry = registry();
    let mut out = String::new();
    for (name, family) in &registry.families {
        let kind = match family.series.values().next() {
            Some(Series::Counter(_)) => "counter",
            Some(Series::Gauge(_)) => "gauge",
            Some(Series::Histogram { .. }) => "histogram",
            None => continue,
        };
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, series) in &family.series {
            match series {
                Series::Counter(v) | Series::Gauge(v) => {
                    let _ = writeln!(out, "{name}{} {v}", label_text(labels, None));
                }
                Series::Histogram { counts, sum, count } => {
                    for (c, bound) in counts.iter().zip(COMMIT_BUCKETS) {
                        let le = bound.to_string();
                        let _ = writeln!(out, "{name}_bucket{} {c}", label_text(labels, Some(&le)));
                    }
                    let all = label_text(labels, Some("+Inf"));
                    let _ = writeln!(out, "{name}_bucket{all} {count}");
                    let plain = label_text(labels, None);
                    let _ = writeln!(out, "{name}_sum{plain} {sum}");
                    let _ = writeln!(out, "{name}_count{plain} {count}");
                }
            }
        }
    }
    out
}

fn label_text(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    match parts.is_empty() {
        true => String::new(),
        false => format!("{{{}}}", parts.join(",")),
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histogram_buckets() {
        count("t_rows_total", "Rows.", &[("table", "bronze.a")], 3);
        count("t_rows_total", "Rows.", &[("table", "bronze.a")], 2);
        count(
            "t_dlq_total",
            "Dead letters.",
            &[("table", "x"), ("reason", "a\"b")],
            1,
        );
        gauge("t_keys", "Keys.", &[("table", "bronze.a")], 7.0);
        commit_latency("t.table", Duration::from_millis(30));
        commit_latency("t.table", Duration::from_secs(20));
        let text = render();
        assert!(
            text.contains("# TYPE t_rows_total counter\nt_rows_total{table=\"bronze.a\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("t_dlq_total{table=\"x\",reason=\"a\\\"b\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE t_keys gauge\nt_keys{table=\"bronze.a\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("medallion_commit_seconds_bucket{table=\"t.table\",le=\"0.025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("medallion_commit_seconds_bucket{table=\"t.table\",le=\"0.05\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("medallion_commit_seconds_bucket{table=\"t.table\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("medallion_commit_seconds_count{table=\"t.table\"} 2\n"),
            "{text}"
        );
    }
}
