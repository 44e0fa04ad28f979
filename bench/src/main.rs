//! Benchmarks of `medallion run --once`: bronze (events/s from broker to committed Iceberg
//! table, beside the raw consume rate of the same topic by a consumer that discards); with
//! `silver`, the silver stage over that bronze table (rows/s); with `gold`, tumbling, sliding
//! and session aggregation over 10,000 keys (rows/s, one table at a time), then freshness of a
//! continuous run. Each prints peak RSS and commit latency percentiles.
//!
//! Usage: medallion-bench BROKER MEDALLION_BIN WORKDIR [EVENTS] [silver|gold]
//!
//! `TABLE_FORMAT=delta` or `=parquet` keeps the bronze and silver tables in that format
//! (default iceberg).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: medallion-bench BROKER MEDALLION_BIN WORKDIR [EVENTS] [silver|gold]");
    }
    let (broker, bin, dir) = (&args[1], &args[2], std::path::PathBuf::from(&args[3]));
    let events: usize = args.get(4).map_or(Ok(1_000_000), |s| s.parse())?;
    let mode = args.get(5).map(String::as_str).unwrap_or("");
    let format = std::env::var("TABLE_FORMAT").unwrap_or_else(|_| "iceberg".to_string());
    let topic = format!("bench-{}", std::process::id());

    create_topic(broker, &topic).await?;
    let t = Instant::now();
    let bytes = produce(broker, &topic, events).await?;
    let produce_s = t.elapsed().as_secs_f64();
    println!(
        "produced {events} events ({:.1} MiB) in {produce_s:.1} s",
        bytes as f64 / 1048576.0
    );

    let raw = raw_consume(broker, &topic, events)?;
    let raw_rate = events as f64 / raw.as_secs_f64();
    println!(
        "raw consume (discarding): {:.1} s, {raw_rate:.0} events/s",
        raw.as_secs_f64()
    );

    let schema = std::fs::canonicalize("schemas/avro/web_event.avsc")?;
    let spec = dir.join("bench.toml");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        &spec,
        format!(
            r#"[kafka]
brokers = "{broker}"
[lakehouse]
warehouse = "{w}"
catalog = "sqlite://{w}/catalog.db"
[[bronze]]
table = "bronze.bench"
topics = ["{topic}"]
format = "json"
schema = "{schema}"
event_time = "event_time"
dedupe = {{ key = ["event_id"], horizon = "1h" }}
commit = {{ interval = "5s", max_rows = 50000 }}
table_format = "{format}"
"#,
            w = dir.join("warehouse").display(),
            schema = schema.display()
        ),
    )?;
    let bronze = run_stage(bin, &spec, &dir.join("bronze.log"), "bronze")?;
    let rate = events as f64 / bronze.wall.as_secs_f64();
    println!(
        "bronze (broker → committed {format} table): {:.1} s, {rate:.0} events/s, peak RSS {:.0} MiB, {}",
        bronze.wall.as_secs_f64(),
        bronze.peak_rss_mib,
        bronze.commits()
    );
    println!("ratio raw/bronze: {:.2}x", raw_rate / rate);
    println!(
        "bronze --once: exit 0, {} rows committed of {events} events; dedupe state at the end {:.0} MiB (keys within the horizon, part of the peak RSS)",
        finished_rows(&dir.join("bronze.log"))?,
        last_field(&dir.join("bronze.log"), "dedupe_bytes=")? as f64 / 1048576.0
    );
    let again = run_stage(bin, &spec, &dir.join("bronze-again.log"), "bronze")?;
    println!(
        "second --once, nothing new: exit 0 in {:.1} s, {} commits, {} rows",
        again.wall.as_secs_f64(),
        again.commit_ms.len(),
        finished_rows(&dir.join("bronze-again.log"))?
    );
    if mode == "silver" || mode == "gold" {
        // Delta tables are not partitioned.
        let silver = match format.as_str() {
            "delta" => SILVER.replace("partition_by_day = \"event_time\"\n", ""),
            _ => SILVER.to_string(),
        };
        let silver = format!("{silver}table_format = \"{format}\"\n");
        std::fs::write(&spec, std::fs::read_to_string(&spec)? + &silver)?;
        let s = run_stage(bin, &spec, &dir.join("silver.log"), "silver")?;
        println!(
            "silver (bronze → filtered, typed, hashed, judged, committed): {}",
            s.summary(events)
        );
    }
    if mode == "gold" {
        let head = std::fs::read_to_string(&spec)?;
        let head = &head[..head.find("[[bronze]]").unwrap_or(head.len())];
        for (shape, window) in GOLD_WINDOWS {
            let name = shape.split(' ').next().unwrap_or(shape);
            let gold_spec = dir.join(format!("gold-{name}.toml"));
            let table = GOLD
                .replace("WINDOW", window)
                .replace("gold.bench", &format!("gold.bench_{name}"));
            std::fs::write(&gold_spec, format!("{head}{table}"))?;
            let g = run_stage(bin, &gold_spec, &dir.join("gold.log"), "gold")?;
            println!(
                "gold {shape} over 10,000 keys (silver → windows → committed): {}",
                g.summary(events)
            );
        }
        freshness(broker, bin, &dir, head).await?;
    }
    Ok(())
}

/// The gold windows benchmarked, one table at a time.
const GOLD_WINDOWS: [(&str, &str); 3] = [
    ("tumbling 1 min", r#"{ tumbling = "1m" }"#),
    (
        "sliding 5 min / 1 min",
        r#"{ sliding = "5m", slide = "1m" }"#,
    ),
    ("session 20 s", r#"{ session = "20s" }"#),
];

/// A gold table over the silver table, grouped by user (10,000 keys).
const GOLD: &str = r#"
[[gold]]
table = "gold.bench"
source = "silver.bench"
event_time = "event_time"
window = WINDOW
watermark = { max_out_of_orderness = "5s" }
group_by = ["user_hash"]
aggregates = [
  { name = "events", fn = "count" },
  { name = "pages", fn = "count_distinct", expr = "page" },
  { name = "first_seen", fn = "min", expr = "event_time" },
]
"#;

/// Freshness of a continuous run: events produced for 30 s (10 every 5 ms) with the current time
/// as event time, through bronze, silver and 1-second tumbling windows; for each window, the
/// time from its end (when its last event was produced) to the gold commit that wrote it.
async fn freshness(broker: &str, bin: &str, dir: &Path, head: &str) -> Result<()> {
    let topic = format!("fresh-{}", std::process::id());
    create_topic(broker, &topic).await?;
    let schema = std::fs::canonicalize("schemas/avro/web_event.avsc")?;
    let spec = dir.join("fresh.toml");
    std::fs::write(
        &spec,
        format!(
            r#"{head}
[[bronze]]
table = "bronze.fresh"
topics = ["{topic}"]
format = "json"
schema = "{schema}"
event_time = "event_time"
commit = {{ interval = "200ms" }}

[[silver]]
table = "silver.fresh"
source = "bronze.fresh"
columns = [{{ name = "user_id", expr = "user_id" }}, {{ name = "event_time", expr = "event_time" }}]
poll = "100ms"

[[gold]]
table = "gold.fresh"
source = "silver.fresh"
event_time = "event_time"
window = {{ tumbling = "1s" }}
aggregates = [{{ name = "events", fn = "count" }}]
poll = "100ms"
"#,
            schema = schema.display()
        ),
    )?;
    let log = dir.join("fresh.log");
    let mut child = Command::new(bin)
        .args(["run", spec.to_str().unwrap_or_default()])
        .env("MEDALLION_LOG", "warn,pipelines=info,medallion=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("cannot start medallion")?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "5")
        .create()?;
    // Let the pipeline start (group join) before the measured events.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(30) {
        for _ in 0..10 {
            let now = chrono::Utc::now().timestamp_millis();
            let v = serde_json::json!({
                "event_id": format!("f-{n}"), "event_type": "page_view", "event_time": now,
                "user_id": format!("u{}", n % 100),
            })
            .to_string();
            let key = format!("k{n}");
            producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&v))
                .map_err(|(e, _)| e)?;
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    producer.flush(Duration::from_secs(10))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait()?;
    // Gold commits: (commit time, watermark), µs.
    let mut commits: Vec<(i64, i64)> = Vec::new();
    for line in std::fs::read_to_string(&log)?.lines() {
        if !line.contains("pipelines::gold") || !line.contains(" committed") {
            continue;
        }
        let at = line
            .split_whitespace()
            .next()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let wm = line
            .split("watermark=Some(")
            .nth(1)
            .and_then(|w| w.split(')').next())
            .and_then(|w| w.parse::<i64>().ok());
        if let (Some(at), Some(wm)) = (at, wm) {
            commits.push((at.timestamp_micros(), wm));
        }
    }
    let mut lags: Vec<f64> = Vec::new();
    let mut previous: Option<i64> = None;
    for (at, wm) in commits {
        let second = 1_000_000;
        let mut end = previous.map_or(wm / second * second, |p| (p / second + 1) * second);
        while end <= wm {
            if previous.is_some() {
                lags.push((at - end) as f64 / 1000.0);
            }
            end += second;
        }
        previous = Some(wm);
    }
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "freshness (continuous run, {n} events over 30 s, 1 s windows): window end → gold commit p50 {:.0} ms, p99 {:.0} ms over {} windows (add the window itself, 1 s, for an event's wait)",
        pct(0.5),
        pct(0.99),
        lags.len()
    );
    Ok(())
}

/// The silver table of the benchmark: every cleansing kind the README lists, one hashed
/// column and a warn expectation, over every bronze row.
const SILVER: &str = r#"
[[silver]]
table = "silver.bench"
source = "bronze.bench"
filter = "event_type = 'page_view'"
columns = [
  { name = "event_id", expr = "event_id" },
  { name = "page", expr = "lower(trim(page))" },
  { name = "country", expr = "CASE country WHEN 'DE' THEN 'Germany' ELSE 'other' END" },
  { name = "user_hash", expr = "user_id", pii = "hash" },
  { name = "user_agent", expr = "json_get(payload, 'user_agent')" },
  { name = "event_time", expr = "event_time" },
]
partition_by_day = "event_time"
expectations = [{ name = "has_page", check = "page IS NOT NULL", on_fail = "warn" }]
"#;

/// One `medallion run --once --stage S`.
struct StageRun {
    wall: Duration,
    peak_rss_mib: f64,
    /// Per commit, from the log.
    commit_ms: Vec<u64>,
}

impl StageRun {
    /// Wall time, rows/s over `rows`, peak RSS and commits.
    fn summary(&self, rows: usize) -> String {
        format!(
            "{:.1} s, {:.0} rows/s, peak RSS {:.0} MiB, {}",
            self.wall.as_secs_f64(),
            rows as f64 / self.wall.as_secs_f64(),
            self.peak_rss_mib,
            self.commits()
        )
    }

    fn commits(&self) -> String {
        let pct = |p: f64| {
            self.commit_ms
                .get(((self.commit_ms.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        format!(
            "{} commits, commit latency p50 {} ms p99 {} ms",
            self.commit_ms.len(),
            pct(0.5),
            pct(0.99)
        )
    }
}

fn run_stage(bin: &str, spec: &Path, log: &Path, stage: &str) -> Result<StageRun> {
    let t = Instant::now();
    let child = Command::new(bin)
        .args([
            "run",
            spec.to_str().unwrap_or_default(),
            "--once",
            "--stage",
            stage,
        ])
        .env("MEDALLION_LOG", "warn,pipelines=info,medallion=info")
        .env("MEDALLION_PII_SALT", "bench")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("cannot start medallion")?;
    let (ok, peak_rss_mib) = wait_with_peak_rss(child.id())?;
    let wall = t.elapsed();
    if !ok {
        bail!("medallion failed; see {}", log.display());
    }
    let mut commit_ms: Vec<u64> = std::fs::read_to_string(log)?
        .lines()
        .filter(|l| l.contains(" committed"))
        .filter_map(|l| {
            l.split("elapsed_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    commit_ms.sort_unstable();
    Ok(StageRun {
        wall,
        peak_rss_mib,
        commit_ms,
    })
}

/// The rows the bronze run wrote, from its `bronze run finished` line.
fn finished_rows(log: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(log)?;
    let line = text
        .lines()
        .find(|l| l.contains("bronze run finished"))
        .with_context(|| format!("no `bronze run finished` line in {}", log.display()))?;
    line.split(" rows=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no rows= in {line:?}"))
}

/// The last value of a `key=` field in a log.
fn last_field(log: &Path, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(log)?;
    text.lines()
        .rev()
        .find_map(|l| l.split(key).nth(1)?.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in {}", log.display()))
}

/// Waits for the child and returns whether it succeeded and its own peak RSS (MiB).
fn wait_with_peak_rss(pid: u32) -> Result<(bool, f64)> {
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 fills the status and the struct it is given, for our own child.
    let waited = unsafe { libc::wait4(pid as i32, &mut status, 0, usage.as_mut_ptr()) };
    if waited != pid as i32 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call above.
    let usage = unsafe { usage.assume_init() };
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((ok, usage.ru_maxrss as f64 / 1024.0))
}

async fn create_topic(broker: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()?;
    let t = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    for r in admin.create_topics([&t], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    Ok(())
}

async fn produce(broker: &str, topic: &str, events: usize) -> Result<usize> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()?;
    let base = 1_767_225_600_000i64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut bytes = 0;
    let mut pending = Vec::with_capacity(20_000);
    for i in 0..events {
        let user = format!("u{}", rng.gen_range(0..10_000));
        let v = serde_json::json!({
            "event_id": format!("b-{i}"), "event_type": "page_view", "event_time": base + i as i64,
            "user_id": user, "session_id": format!("s{}", i % 20000), "page": "/product/42",
            "country": "DE", "payload": {"user_agent": "bench/1.0"}
        })
        .to_string();
        bytes += v.len();
        let delivery = producer
            .send_result(FutureRecord::to(topic).key(&user).payload(&v))
            .map_err(|(e, _)| e)?;
        pending.push(delivery);
        if pending.len() == 20_000 {
            for p in pending.drain(..) {
                p.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    Ok(bytes)
}

fn raw_consume(broker: &str, topic: &str, events: usize) -> Result<Duration> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("raw-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let t = Instant::now();
    let mut n = 0;
    while n < events {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            m?;
            n += 1;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("raw consume read {n} of {events} in 10 minutes");
        }
    }
    Ok(t.elapsed())
}
