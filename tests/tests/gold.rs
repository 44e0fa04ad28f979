//! Gold tables built through the real broker, bronze and silver, checked against the same
//! windows computed in one batch by DuckDB over silver, minus exactly the records of each
//! table's late output: 20 seeded random streams with disorder and lateness, each through its
//! own silver table and four gold tables (tumbling, sliding and session windows in final mode,
//! tumbling in update mode), run in two parts so the second restores the open windows. The
//! same with every table kept as a Delta table (6 streams): silver follows bronze's Delta
//! commits, gold silver's, and DuckDB's delta extension reads them; and with bronze, silver and
//! the final-mode gold tables as Parquet tables (3 streams; update mode is Delta there).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use e2e::{create_topic, produce, read_topic, run_once, unique, Workspace};

const SEEDS: u64 = 20;
/// Streams of the Delta run: every window kind and both emit modes, in a third of the time.
const DELTA_SEEDS: u64 = 6;
/// Streams of the Parquet run (bronze, silver and final-mode gold tables in Parquet).
const PARQUET_SEEDS: u64 = 3;
const EVENTS_PER_SEED: usize = 240;
const MIN: i64 = 60_000_000;
const LATENESS: i64 = 30_000_000;

/// Silver and gold tables of one stream. Silver carries the Kafka partition, so gold's
/// watermark is per partition where the table says so (the session table keeps one watermark
/// for all partitions, so records of a partition bronze reads later are mostly late there).
fn layers(seed: u64) -> String {
    format!(
        r#"
[[silver]]
table = "silver.s{seed}"
source = "bronze.web_events"
filter = "session_id = 's{seed}'"
columns = [
  {{ name = "event_id", expr = "event_id" }},
  {{ name = "user_id", expr = "user_id" }},
  {{ name = "country", expr = "country" }},
  {{ name = "amount", expr = "amount" }},
  {{ name = "event_time", expr = "event_time" }},
  {{ name = "part", expr = "_kafka_partition" }},
]
batch_snapshots = 1

[[gold]]
table = "gold.s{seed}_minute"
source = "silver.s{seed}"
event_time = "event_time"
window = {{ tumbling = "1m" }}
watermark = {{ max_out_of_orderness = "20s", partition_column = "part", partitions = 3, idle_timeout = "1h" }}
allowed_lateness = "30s"
group_by = ["country"]
aggregates = [
  {{ name = "events", fn = "count" }},
  {{ name = "revenue", fn = "sum", expr = "amount" }},
  {{ name = "avg_amount", fn = "avg", expr = "amount" }},
  {{ name = "low", fn = "min", expr = "amount" }},
  {{ name = "high", fn = "max", expr = "amount" }},
  {{ name = "users", fn = "count_distinct", expr = "user_id" }},
]
alerts = [
  {{ name = "big_minute", when = "revenue > 1200", severity = "warning" }},
  {{ name = "quiet", when = "events < 4 AND country = 'DE'", severity = "info" }},
]
dlq_topic = "DLQ{seed}"
batch_snapshots = 3

[[gold]]
table = "gold.s{seed}_sliding"
source = "silver.s{seed}"
event_time = "event_time"
window = {{ sliding = "5m", slide = "1m" }}
watermark = {{ max_out_of_orderness = "20s", partition_column = "part", partitions = 3 }}
allowed_lateness = "30s"
group_by = ["country"]
aggregates = [{{ name = "events", fn = "count" }}, {{ name = "revenue", fn = "sum", expr = "amount" }}]
top = {{ n = 2, by = "revenue" }}
dlq_topic = "DLQ{seed}"
batch_snapshots = 4

[[gold]]
table = "gold.s{seed}_sessions"
source = "silver.s{seed}"
event_time = "event_time"
window = {{ session = "20s" }}
watermark = {{ max_out_of_orderness = "20s" }}
allowed_lateness = "30s"
group_by = ["user_id"]
aggregates = [{{ name = "events", fn = "count" }}, {{ name = "revenue", fn = "sum", expr = "amount" }}]
dlq_topic = "DLQ{seed}"
batch_snapshots = 2

[[gold]]
table = "gold.s{seed}_live"
source = "silver.s{seed}"
event_time = "event_time"
window = {{ tumbling = "1m" }}
watermark = {{ max_out_of_orderness = "10s", partition_column = "part", partitions = 3 }}
allowed_lateness = "1m"
emit = "update"
group_by = ["country"]
aggregates = [{{ name = "events", fn = "count" }}, {{ name = "revenue", fn = "sum", expr = "amount" }}]
dlq_topic = "DLQ{seed}"
batch_snapshots = 3
"#
    )
}

/// One stream: events a second apart from 2026-01-01, a fifth of them out of order by up to
/// 40 s and a few by up to 5 minutes, over 3 countries and 12 users; amounts are whole
/// numbers, so every sum is exact. The stream's tag rides in `session_id`.
fn stream(seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let base = 1_767_225_600_000i64;
    (0..EVENTS_PER_SEED)
        .map(|i| {
            let mut t = base + i as i64 * 1_000;
            let roll: f64 = rng.gen();
            if roll < 0.2 {
                t -= rng.gen_range(0..40_000);
            } else if roll < 0.24 {
                t -= rng.gen_range(60_000..300_000);
            }
            let user = format!("u{}", rng.gen_range(0..12));
            let country = ["DE", "FR", "US"][rng.gen_range(0..3)];
            let event = serde_json::json!({
                "event_id": format!("{seed}-{i}"),
                "event_type": "purchase",
                "event_time": t,
                "user_id": user,
                "session_id": format!("s{seed}"),
                "country": country,
                "amount": f64::from(rng.gen_range(1..100)),
            });
            (format!("s{seed}-{user}"), event.to_string().into_bytes())
        })
        .collect()
}

/// How a run in `format` keeps the gold table `suffix`: update mode (`live`) needs Delta
/// where the run's format is Parquet.
fn gold_format<'a>(format: &'a str, suffix: &str) -> &'a str {
    match (format, suffix) {
        ("parquet", "live") => "delta",
        _ => format,
    }
}

/// The table's current snapshot id (Iceberg) or version (Delta, as the deltalake package reads
/// it).
fn version(ws: &Workspace, table: &str, delta: bool) -> Result<Option<i64>> {
    match delta {
        true => Ok(ws.delta_log(table, &[])?["version"].as_i64()),
        false => ws.current_snapshot(table),
    }
}

/// The watermark (µs) the table's last commit recorded: in its snapshot summary (Iceberg), its
/// configuration as the deltalake package reads it (Delta), or its newest log entry that set
/// it (Parquet).
fn watermark(ws: &Workspace, table: &str, format: &str) -> Result<i64> {
    const STATE: &str = "medallion.gold.state";
    let state = match format {
        "delta" => ws.delta_log(table, &[])?["configuration"][STATE]
            .as_str()
            .map(str::to_string),
        "parquet" => ws
            .parquet_log(table)?
            .iter()
            .rev()
            .find_map(|e| e["properties"][STATE].as_str().map(str::to_string)),
        _ => ws.snapshot_property(table, STATE)?,
    };
    let state = state.with_context(|| format!("{table}: no gold state"))?;
    let state: serde_json::Value = serde_json::from_str(&state)?;
    state["watermark"]
        .as_i64()
        .with_context(|| format!("{table}: no watermark"))
}

/// Silver minus the late records, as the CTE `r`.
fn on_time(late: Option<&BTreeSet<String>>) -> String {
    match late.filter(|l| !l.is_empty()) {
        None => "r AS (SELECT * FROM t)".into(),
        Some(ids) => {
            let ids: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
            format!(
                "r AS (SELECT * FROM t WHERE event_id NOT IN ({}))",
                ids.join(",")
            )
        }
    }
}

/// A gold table (by suffix), its oracle over silver `t` given the CTE `r` and the watermark,
/// and the gold table's rows in the oracle's shape.
type Check = (&'static str, fn(&str, i64) -> String, &'static str);

fn checks() -> [Check; 4] {
    [
        (
            "minute",
            |r, wm| format!(
                "WITH {r}, w AS (SELECT epoch_us(event_time) // {MIN} * {MIN} AS ws, * FROM r) \
                 SELECT ws, ws + {MIN}, country, count(*), sum(amount), round(avg(amount), 6), min(amount), max(amount), count(DISTINCT user_id) \
                 FROM w GROUP BY ws, country HAVING ws + {MIN} + {LATENESS} <= {wm} ORDER BY 1, 3"
            ),
            "SELECT epoch_us(window_start), epoch_us(window_end), country, events, revenue, round(avg_amount, 6), low, high, users FROM t ORDER BY 1, 3",
        ),
        (
            "sliding",
            |r, wm| format!(
                "WITH {r}, w AS (SELECT epoch_us(event_time) // {MIN} * {MIN} - k * {MIN} AS ws, * FROM r, range(5) s(k)), \
                 a AS (SELECT ws, ws + 5 * {MIN}, country, count(*), sum(amount) AS revenue FROM w \
                 GROUP BY ws, country HAVING ws + 5 * {MIN} + {LATENESS} <= {wm}) \
                 SELECT *, row_number() OVER (PARTITION BY ws ORDER BY revenue DESC, country) AS rank FROM a \
                 QUALIFY rank <= 2 ORDER BY 1, 3"
            ),
            "SELECT epoch_us(window_start), epoch_us(window_end), country, events, revenue, rank FROM t ORDER BY 1, 3",
        ),
        (
            "sessions",
            |r, wm| {
                let gap = MIN / 3;
                format!(
                    "WITH {r}, o AS (SELECT user_id, epoch_us(event_time) AS ts, amount, lag(epoch_us(event_time)) OVER (PARTITION BY user_id ORDER BY epoch_us(event_time)) AS prev FROM r), \
                     g AS (SELECT *, sum(CASE WHEN prev IS NULL OR ts >= prev + {gap} THEN 1 ELSE 0 END) OVER (PARTITION BY user_id ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid FROM o) \
                     SELECT min(ts), max(ts) + {gap}, user_id, count(*), sum(amount) FROM g GROUP BY user_id, sid \
                     HAVING max(ts) + {gap} + {LATENESS} <= {wm} ORDER BY 3, 1"
                )
            },
            "SELECT epoch_us(window_start), epoch_us(window_end), user_id, events, revenue FROM t ORDER BY 3, 1",
        ),
        (
            // Update mode: every window the watermark passed, with every record not late.
            "live",
            |r, wm| format!(
                "WITH {r}, w AS (SELECT epoch_us(event_time) // {MIN} * {MIN} AS ws, * FROM r) \
                 SELECT ws, ws + {MIN}, country, count(*), sum(amount) FROM w \
                 GROUP BY ws, country HAVING ws + {MIN} <= {wm} ORDER BY 1, 3"
            ),
            "SELECT epoch_us(window_start), epoch_us(window_end), country, events, revenue FROM t ORDER BY 1, 3",
        ),
    ]
}

#[test]
fn gold_tables_equal_a_batch_recomputation_over_silver_minus_the_late_output() -> Result<()> {
    let (ws, spec) = oracle("iceberg", SEEDS)?;
    backfills_rebuild_final_windows_from_all_of_silver(&ws, &spec, false)
}

#[test]
fn delta_gold_tables_equal_a_batch_recomputation_over_silver_minus_the_late_output() -> Result<()> {
    let (ws, spec) = oracle("delta", DELTA_SEEDS)?;
    // The tables are Delta tables, not Iceberg ones of the same names, and DuckDB's delta
    // extension and polars read identical rows from each.
    for table in ["bronze.web_events", "silver.s1"] {
        assert_eq!(ws.current_snapshot(table)?, None, "{table}");
        let version = ws.delta_log(table, &[])?["version"].as_u64();
        assert!(version.is_some_and(|v| v > 2), "{table}: {version:?}");
    }
    for (suffix, _, _) in checks() {
        let table = format!("gold.s1_{suffix}");
        assert_eq!(ws.current_snapshot(&table)?, None);
        let views = ws.peer_views(&table, &[])?;
        assert_eq!(views.len(), 2, "{views:?}");
        assert!(views["duckdb"].rows > 0, "{table}: {views:?}");
        assert_eq!(views["duckdb"].digest, views["polars"].digest, "{table}");
    }
    backfills_rebuild_final_windows_from_all_of_silver(&ws, &spec, true)
}

#[test]
fn parquet_gold_tables_equal_a_batch_recomputation_over_silver_minus_the_late_output() -> Result<()>
{
    let (ws, _) = oracle("parquet", PARQUET_SEEDS)?;
    // Bronze, silver and the final-mode gold tables are Parquet tables, in day folders, with
    // their cursor and window state in the log; the update-mode one is Delta.
    for table in [
        "bronze.web_events",
        "silver.s1",
        "gold.s1_minute",
        "gold.s1_sessions",
    ] {
        assert_eq!(ws.current_snapshot(table)?, None, "{table}");
        let log = ws.parquet_log(table)?;
        assert!(log.len() > 2, "{table}: {} log entries", log.len());
    }
    let cursor = ws.parquet_log("gold.s1_minute")?;
    let cursor = cursor
        .iter()
        .rev()
        .find_map(|e| e["properties"]["medallion.gold.source-snapshot"].as_str());
    assert!(cursor.is_some(), "the gold cursor is in the log");
    // Each row in the folder of its window's day (UTC).
    let days = ws.duckdb(
        "gold.s1_minute",
        "SELECT count(*) FILTER (WHERE CAST(window_start AT TIME ZONE 'UTC' AS DATE) = window_start_day), count(*) FROM t",
    )?;
    assert_eq!(days[0][0], days[0][1], "{days:?}");
    Ok(())
}

/// Runs the streams of `seeds` seeds through bronze and their silver and gold tables, all kept
/// as `format` (but the update-mode gold tables of a `parquet` run, which are Delta), and
/// checks every gold table against the oracle; the workspace and spec.
fn oracle(format: &str, seeds: u64) -> Result<(Workspace, std::path::PathBuf)> {
    let ws = Workspace::new()?;
    let topic = unique("gold");
    create_topic(&topic, 3)?;
    let dlq = |seed: u64| format!("{topic}.s{seed}.gold.dlq");
    let spec = ws.web_spec(
        &topic,
        "bronze.web_events",
        r#"{ interval = "1s", max_rows = 400 }"#,
        "",
    )?;
    let mut text = std::fs::read_to_string(&spec)?;
    // Silver and gold follow the commits of tables in that format.
    let kept = |layer: &str| format!("[[{layer}]]\ntable_format = \"{format}\"\n");
    text = text.replace("[[bronze]]\n", &kept("bronze"));
    for seed in 1..=seeds {
        let live = format!("table = \"gold.s{seed}_live\"");
        text += &layers(seed)
            .replace(&format!("DLQ{seed}"), &dlq(seed))
            .replace("[[silver]]\n", &kept("silver"))
            .replace("[[gold]]\n", &kept("gold"))
            .replace(&format!("parquet\"\n{live}"), &format!("delta\"\n{live}"));
    }
    std::fs::write(&spec, text)?;

    // The streams interleaved, as one topic carries them; two runs, so the second restores
    // the open windows from the first one's checkpoints.
    let streams: Vec<Vec<(String, Vec<u8>)>> = (1..=seeds).map(stream).collect();
    let interleaved: Vec<(String, Vec<u8>)> = (0..EVENTS_PER_SEED)
        .flat_map(|i| streams.iter().map(move |s| s[i].clone()))
        .collect();
    let half = interleaved.len() / 2;
    produce(&topic, &interleaved[..half])?;
    run_once(&ws, &spec)?;
    produce(&topic, &interleaved[half..])?;
    run_once(&ws, &spec)?;

    let mut queries = Vec::new();
    let mut late_total = 0;
    for seed in 1..=seeds {
        // Late output per gold table, each record once.
        let mut late: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for d in read_topic(&dlq(seed))? {
            assert_eq!(d.header("medallion.error.reason"), "late");
            let row: serde_json::Value =
                serde_json::from_slice(d.value.as_deref().unwrap_or_default())?;
            let id = row["event_id"]
                .as_str()
                .context("late row without event_id")?;
            let table = d.header("medallion.error.table").to_string();
            assert!(
                late.entry(table.clone())
                    .or_default()
                    .insert(id.to_string()),
                "{table}: {id} is in the late output twice"
            );
        }
        late_total += late.values().map(BTreeSet::len).sum::<usize>();
        for (suffix, oracle, gold) in checks() {
            let table = format!("gold.s{seed}_{suffix}");
            let wm = watermark(&ws, &table, gold_format(format, suffix))?;
            let r = on_time(late.get(&table));
            let silver = vec![("t", format!("silver.s{seed}"))];
            queries.push((table.clone(), silver, oracle(&r, wm)));
            queries.push((table.clone(), vec![("t", table.clone())], gold.to_string()));
        }
    }
    assert!(
        late_total > 0,
        "the streams have records beyond the allowed lateness"
    );
    let results = ws.duckdb_many(
        &queries
            .iter()
            .map(|(_, views, sql)| (views.clone(), sql.clone()))
            .collect::<Vec<_>>(),
    )?;
    let mut windows = 0;
    for (pair, rows) in queries.chunks(2).zip(results.chunks(2)) {
        let table = &pair[0].0;
        let (expected, got) = (&rows[0], &rows[1]);
        assert!(!expected.is_empty(), "{table}: the oracle has no windows");
        assert_eq!(got.len(), expected.len(), "{table}: rows");
        assert_eq!(got, expected, "{table}");
        windows += got.len();
    }
    // Alerts: exactly the (alert, window, group) of the rows that meet their conditions.
    let alerts = ws.duckdb_many(&[
        (
            vec![("t", "gold.alerts".to_string())],
            "SELECT dataset, alert, epoch_us(window_start), group_key FROM t ORDER BY ALL".into(),
        ),
        (
            (1..=seeds)
                .map(|s| ("t", format!("gold.s{s}_minute")))
                .take(1)
                .collect(),
            "SELECT 'gold.s1_minute', 'big_minute', epoch_us(window_start), '{\"country\":\"' || country || '\"}' FROM t WHERE revenue > 1200 \
             UNION ALL SELECT 'gold.s1_minute', 'quiet', epoch_us(window_start), '{\"country\":\"' || country || '\"}' FROM t WHERE events < 4 AND country = 'DE' ORDER BY ALL".into(),
        ),
    ])?;
    let s1: Vec<_> = alerts[0]
        .iter()
        .filter(|r| r[0] == "gold.s1_minute")
        .cloned()
        .collect();
    assert!(!alerts[1].is_empty(), "no row meets an alert condition");
    assert_eq!(s1, alerts[1], "alerts of gold.s1_minute");
    let raised_tables: BTreeSet<String> = alerts[0]
        .iter()
        .map(|r| r[0].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(raised_tables.len() > 1, "{raised_tables:?}");

    if gold_format(format, "live") == "delta" {
        // Update mode replaced rows (an UPDATE commit removing and adding files); polars and
        // the deltalake package read each version alike.
        let versions = ws.delta_versions("gold.s1_live")?;
        assert!(versions.iter().any(|v| v.0 == "UPDATE"), "{versions:?}");
        for v in &versions {
            assert_eq!(v.1, v.2, "{versions:?}");
        }
    } else {
        // Update mode replaced rows; pyiceberg and DuckDB read each of its snapshots alike.
        let snapshots = ws.snapshot_reads("gold.s1_live")?;
        assert!(
            snapshots.iter().any(|s| s.operation == "overwrite"),
            "{snapshots:?}"
        );
        for s in &snapshots {
            assert_eq!(s.pyiceberg, s.duckdb, "{s:?}");
            assert_eq!(s.total_records, Some(s.pyiceberg), "{s:?}");
        }
    }
    eprintln!(
        "{} gold tables, {windows} windows, {late_total} late records: all equal to the oracle",
        queries.len() / 2
    );
    Ok((ws, spec))
}

/// `medallion backfill` of seed 1's gold tables: the final windows starting in the range
/// equal the oracle over all of silver (the live run's late records included: a batch over
/// complete data), rows outside it stay as they were, and a live run afterwards commits
/// nothing.
fn backfills_rebuild_final_windows_from_all_of_silver(
    ws: &Workspace,
    spec: &std::path::Path,
    delta: bool,
) -> Result<()> {
    const BASE: i64 = 1_767_225_600_000_000;
    let all_silver = on_time(None);
    let mut rebuilt = 0;
    let mut changed = 0;
    for (suffix, oracle, gold) in checks() {
        let table = format!("gold.s1_{suffix}");
        let wm = watermark(ws, &table, if delta { "delta" } else { "iceberg" })?;
        // (--from, --to) in µs; None: the flag is left out.
        let (from, to) = match suffix {
            "minute" => (Some(BASE + MIN), None),
            "sliding" => (None, None),
            "sessions" => (None, Some(BASE + MIN)),
            _ => (Some(BASE), None),
        };
        // Without --to: up to the first window that is not final (size 1 min, or 5 min
        // sliding by 1 min; lateness 30 s, or 1 min for the update-mode table).
        let (size, lateness) = match suffix {
            "sliding" => (5 * MIN, LATENESS),
            "live" => (MIN, MIN),
            _ => (MIN, LATENESS),
        };
        let end = to.unwrap_or((wm - lateness - size).div_euclid(MIN) * MIN + MIN);
        let inside = format!("c0 >= {} AND c0 < {end}", from.map_or(i64::MIN + 1, |f| f));
        let within = |sql: &str, cond: &str| {
            format!("SELECT * FROM ({sql}) s(c0, c1) WHERE {cond} ORDER BY ALL")
        };
        let outside = format!("NOT ({inside})");
        let silver = vec![("t", "silver.s1".to_string())];
        let own = vec![("t", table.clone())];
        let before = ws.duckdb_many(&[
            (own.clone(), within(gold, &outside)),
            (silver.clone(), within(&oracle(&all_silver, wm), &inside)),
            (own.clone(), within(gold, &inside)),
            // Sessions of the batch that start in the range but are not final yet.
            (
                silver,
                within(
                    &oracle(&all_silver, i64::MAX / 4),
                    &format!("{inside} AND c1 + {lateness} > {wm}"),
                ),
            ),
        ])?;
        let (kept, expected, open) = (&before[0], &before[1], &before[3]);
        // The live run left out its late records; the batch counts them.
        changed += usize::from(&before[2] != expected);
        assert!(!expected.is_empty(), "{table}: the range holds windows");
        let iso = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        };
        let spec_arg = spec.display().to_string();
        let mut args = vec![
            "backfill".to_string(),
            table.clone(),
            "--spec".into(),
            spec_arg,
        ];
        if let Some(f) = from {
            args.extend(["--from".to_string(), iso(f)]);
        }
        if let Some(t) = to {
            args.extend(["--to".to_string(), iso(t)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = e2e::medallion_output(&args, ws.path())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let after = ws.duckdb_many(&[
            (own.clone(), within(gold, &outside)),
            (own.clone(), within(gold, &inside)),
        ])?;
        assert!(
            open.is_empty(),
            "{table}: the range holds only final windows"
        );
        assert!(out.status.success(), "{table}: {stderr}");
        assert_eq!(&after[0], kept, "{table}: rows outside the range untouched");
        assert_eq!(
            &after[1], expected,
            "{table}: the range equals the batch over all of silver"
        );
        rebuilt += 1;
        if delta {
            // One UPDATE commit swapped the files; polars and the deltalake package read every
            // version alike.
            let versions = ws.delta_versions(&table)?;
            assert_eq!(
                versions.last().map(|v| v.0.as_str()),
                Some("UPDATE"),
                "{table}"
            );
            for v in &versions {
                assert_eq!(v.1, v.2, "{table}: {versions:?}");
            }
        } else {
            for s in ws.snapshot_reads(&table)? {
                assert_eq!(s.pyiceberg, s.duckdb, "{table}: {s:?}");
                assert_eq!(s.total_records, Some(s.pyiceberg), "{table}: {s:?}");
            }
        }
    }
    assert_eq!(rebuilt, 4);
    assert!(
        changed > 0,
        "some range differed from the live result before the backfill"
    );
    // Windows that are not final yet are the live run's: refused, naming why, nothing written.
    let spec_arg = spec.display().to_string();
    for (table, reason) in [
        ("gold.s1_minute", "are not final yet"),
        ("gold.s1_sessions", "is still open in the live run"),
    ] {
        let before = version(ws, table, delta)?;
        let out = e2e::medallion_output(
            &[
                "backfill",
                table,
                "--spec",
                &spec_arg,
                "--to",
                "2026-01-01T00:10:00Z",
            ],
            ws.path(),
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{table}: {stderr}");
        assert!(stderr.contains(reason), "{table}: {stderr}");
        assert_eq!(
            version(ws, table, delta)?,
            before,
            "{table}: nothing committed"
        );
    }
    // A live run afterwards has nothing new to read: every backfilled table stays as it is.
    let tables: Vec<String> = checks()
        .iter()
        .map(|(s, _, _)| format!("gold.s1_{s}"))
        .collect();
    let versions = |ws: &Workspace| -> Result<Vec<Option<i64>>> {
        tables.iter().map(|t| version(ws, t, delta)).collect()
    };
    let before = versions(ws)?;
    run_once(ws, spec)?;
    assert_eq!(before, versions(ws)?);
    eprintln!("gold backfill: {rebuilt} tables rebuilt ({changed} changed by late records), 2 refused (windows not final)");
    Ok(())
}
