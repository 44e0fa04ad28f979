//! Helpers for the end-to-end tests: the real broker started by `tests/run`, the `medallion`
//! binary as a child process, and the third-party readers in the Python venv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through tests/run, which starts the broker and sets it")
    })
}

static OWN_BROKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The Kafka-protocol broker: the one started by `tests/run`, or this test binary's own
/// (see [`own_broker`]).
pub fn broker() -> String {
    OWN_BROKER
        .get()
        .cloned()
        .unwrap_or_else(|| env("MEDALLION_TEST_BROKER"))
}

/// A Tansu broker of this test binary's own, for tests whose consumer-group timing must not
/// depend on the load earlier tests left on the shared broker. Every helper of this crate uses
/// it from then on; it stops when the returned guard drops.
pub fn own_broker() -> Result<OwnBroker> {
    let dir = scratch_dir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let url = format!("tcp://{addr}");
    let log = std::fs::File::create(dir.path().join("tansu.log"))?;
    let child = Command::new("tansu")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://broker.db"])
        .env_remove("SCHEMA_REGISTRY")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start tansu (tests/run installs it)")?;
    let guard = OwnBroker { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline {
            bail!("tansu did not listen on {addr} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    OWN_BROKER
        .set(addr)
        .map_err(|_| anyhow::anyhow!("own_broker() called twice"))?;
    Ok(guard)
}

/// Stops the broker of [`own_broker`] when dropped.
pub struct OwnBroker {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        sigkill(&mut self.child);
    }
}

/// A name no other test (or earlier run) uses: topics are never deleted on the test broker.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand::random::<u32>())
}

pub fn create_topic(name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let res = rt.block_on(admin.create_topics([&topic], &AdminOptions::new()))?;
    for r in res {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }
    Ok(())
}

/// Where a produced message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Landed {
    pub partition: i32,
    pub offset: i64,
}

/// Produces each payload to the given partition, in order.
pub fn produce_to(topic: &str, messages: &[(i32, Vec<u8>)]) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("enable.idempotence", "true")
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut pending = Vec::with_capacity(messages.len());
        for (partition, payload) in messages {
            let rec = FutureRecord::<(), [u8]>::to(topic)
                .partition(*partition)
                .payload(payload.as_slice());
            pending.push(producer.send_result(rec).map_err(|(e, _)| e)?);
        }
        for p in pending {
            p.await?.map_err(|(e, _)| e)?;
        }
        Ok(())
    })
}

/// Produces keyed messages and returns where each landed, in order.
pub fn produce(topic: &str, messages: &[(String, Vec<u8>)]) -> Result<Vec<Landed>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut out = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(5_000) {
            let mut pending = Vec::with_capacity(chunk.len());
            for (k, v) in chunk {
                let rec = FutureRecord::to(topic)
                    .key(k.as_bytes())
                    .payload(v.as_slice());
                // Enqueued at once; the 5,000-message chunks stay within librdkafka's queue.
                pending.push(producer.send_result(rec).map_err(|(e, _)| e)?);
            }
            for p in pending {
                let d = p.await?.map_err(|(e, _)| e)?;
                out.push(Landed {
                    partition: d.partition,
                    offset: d.offset,
                });
            }
        }
        Ok(out)
    })
}

/// A dead-lettered record as read back from the DLQ topic.
#[derive(Debug, Clone)]
pub struct DeadLetterRecord {
    pub headers: BTreeMap<String, String>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl DeadLetterRecord {
    pub fn header(&self, k: &str) -> &str {
        self.headers.get(k).map(String::as_str).unwrap_or("")
    }

    pub fn source(&self) -> Landed {
        Landed {
            partition: self
                .header("medallion.error.source.partition")
                .parse()
                .unwrap_or(-1),
            offset: self
                .header("medallion.error.source.offset")
                .parse()
                .unwrap_or(-1),
        }
    }
}

/// Reads every record of a topic up to its end.
pub fn read_topic(topic: &str) -> Result<Vec<DeadLetterRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()?;
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let partitions = meta
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in 0..partitions as i32 {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(30))?;
        remaining += high - low;
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < remaining {
        if Instant::now() > deadline {
            bail!("read {} of {remaining} records of {topic}", out.len());
        }
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(DeadLetterRecord {
                headers,
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
            });
        }
    }
    Ok(out)
}

/// The end offset of every partition of a topic.
pub fn end_offsets(topic: &str, partitions: i32) -> Result<Vec<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()?;
    (0..partitions)
        .map(|p| {
            Ok(consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))?
                .1)
        })
        .collect()
}

/// Under `tests/run`, scratch directories stay in `MEDALLION_TEST_ARTIFACTS` (wiped at the
/// start of each run) so a failure's logs and tables can be looked at afterwards.
fn scratch_dir() -> Result<tempfile::TempDir> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("medallion-e2e");
        b
    };
    match std::env::var_os("MEDALLION_TEST_ARTIFACTS") {
        Some(root) => {
            std::fs::create_dir_all(&root)?;
            let mut dir = builder.tempdir_in(root)?;
            dir.disable_cleanup(true);
            Ok(dir)
        }
        None => Ok(builder.tempdir()?),
    }
}

/// A scratch directory with a warehouse and a SQLite catalog.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// `None`: a SQLite catalog in the warehouse; `Some`: this PostgreSQL URL.
    postgres: Option<String>,
    /// `Some`: the table data goes to this S3 store, under a prefix of its own.
    s3: Option<S3Warehouse>,
}

/// An `s3://` warehouse and the endpoint of the store that holds it.
#[derive(Debug, Clone)]
pub struct S3Warehouse {
    pub endpoint: String,
    pub url: String,
}

impl Workspace {
    pub fn new() -> Result<Self> {
        Ok(Self {
            dir: scratch_dir()?,
            postgres: None,
            s3: None,
        })
    }

    /// A workspace whose table data goes to `bucket` of the S3 store at `endpoint` (SQLite
    /// catalog, kept locally).
    pub fn with_s3(endpoint: &str, bucket: &str) -> Result<Self> {
        let url = format!("s3://{bucket}/{}", unique("warehouse"));
        Ok(Self {
            s3: Some(S3Warehouse {
                endpoint: endpoint.to_string(),
                url,
            }),
            ..Self::new()?
        })
    }

    /// The warehouse as `medallion` takes it: the local directory, or the `s3://` URL.
    pub fn warehouse_uri(&self) -> String {
        match &self.s3 {
            Some(s3) => s3.url.clone(),
            None => self.warehouse().display().to_string(),
        }
    }

    /// A workspace whose catalog is the PostgreSQL database started by `tests/run`.
    pub fn with_postgres() -> Result<Self> {
        Ok(Self {
            postgres: Some(env("MEDALLION_TEST_PG_URL")),
            ..Self::new()?
        })
    }

    /// The catalog URI as `medallion` takes it.
    pub fn catalog_uri(&self) -> String {
        match &self.postgres {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.catalog_db().display()),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn warehouse(&self) -> PathBuf {
        self.path().join("warehouse")
    }

    pub fn catalog_db(&self) -> PathBuf {
        self.warehouse().join("catalog.db")
    }

    /// Writes a file into the workspace and returns its path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let p = self.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    }

    pub fn lakehouse(&self) -> lakehouse::LakehouseLocation {
        lakehouse::LakehouseLocation {
            catalog_uri: self.catalog_uri(),
            warehouse: Some(self.warehouse_uri()),
            s3: lakehouse::S3Settings {
                endpoint: self.s3.as_ref().map(|s| s.endpoint.clone()),
                ..Default::default()
            },
        }
    }

    /// The offsets stored in a table's current snapshot (progress checks; verdicts come from
    /// third-party readers).
    pub fn stored_offsets(&self, table: &str) -> Result<lakehouse::SourceOffsets> {
        OffsetReader::connect(self)?.read(table)
    }

    /// The table's current snapshot id (`None`: no commit yet, or no table).
    pub fn current_snapshot(&self, table: &str) -> Result<Option<i64>> {
        Ok(self.current_snapshots(&[table])?.pop().flatten())
    }

    /// Each table's current snapshot id, read through one catalog connection.
    pub fn current_snapshots(&self, tables: &[impl AsRef<str>]) -> Result<Vec<Option<i64>>> {
        let reader = OffsetReader::connect(self)?;
        reader.rt.block_on(async {
            let mut out = Vec::new();
            for table in tables {
                let table =
                    lakehouse::IcebergTable::open_if_exists(reader.catalog.clone(), table.as_ref())
                        .await?;
                out.push(table.and_then(|t| t.current_snapshot_id()));
            }
            Ok(out)
        })
    }

    /// Appends TOML (more tables) to a spec file this workspace wrote.
    pub fn append(&self, spec: &Path, text: &str) -> Result<()> {
        let mut file = std::fs::OpenOptions::new().append(true).open(spec)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        Ok(())
    }

    /// A snapshot property of the table, from the newest snapshot that carries it.
    pub fn snapshot_property(&self, table: &str, key: &str) -> Result<Option<String>> {
        let reader = OffsetReader::connect(self)?;
        reader.rt.block_on(async {
            Ok(
                lakehouse::IcebergTable::open_if_exists(reader.catalog.clone(), table)
                    .await?
                    .and_then(|t| t.snapshot_property(key).map(str::to_string)),
            )
        })
    }

    /// Waits until the table has consumed `topic` up to `ends`.
    pub fn wait_for_offsets(
        &self,
        table: &str,
        topic: &str,
        ends: &[i64],
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let reader = OffsetReader::connect(self)?;
        loop {
            let stored = reader.read(table)?;
            let done = ends
                .iter()
                .enumerate()
                .all(|(p, &end)| end == 0 || stored.get(topic, p as i32) == Some(end));
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{table} did not reach {ends:?} on {topic} within {timeout:?}: {stored:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Reads stored offsets through one catalog connection.
struct OffsetReader {
    rt: tokio::runtime::Runtime,
    catalog: std::sync::Arc<lakehouse::Catalog>,
}

impl OffsetReader {
    fn connect(ws: &Workspace) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let catalog = rt.block_on(lakehouse::connect(&ws.lakehouse()))?;
        Ok(Self { rt, catalog })
    }

    /// A table that does not exist yet has consumed nothing.
    fn read(&self, table: &str) -> Result<lakehouse::SourceOffsets> {
        self.rt.block_on(async {
            match lakehouse::IcebergTable::open(self.catalog.clone(), table).await {
                Ok(t) => Ok(t.stored_offsets()?),
                Err(_) => Ok(lakehouse::SourceOffsets::default()),
            }
        })
    }
}

/// The `medallion` binary built by `tests/run`.
pub fn medallion() -> Command {
    Command::new(env("MEDALLION_BIN"))
}

/// Runs `medallion` to completion.
pub fn medallion_output(args: &[&str], cwd: &Path) -> Result<Output> {
    Ok(medallion()
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()?)
}

/// Runs `medallion args` in `cwd`; its stdout, or an error with its stderr.
pub fn medallion_stdout(args: &[&str], cwd: &Path) -> Result<String> {
    let out = medallion_output(args, cwd)?;
    if !out.status.success() {
        bail!(
            "medallion {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with stdout and stderr on a new pseudo-terminal of 160 columns, and prints
/// what the terminal received (escape codes included) once the command has closed it.
const ON_TERMINAL: &str = r#"
import fcntl, os, pty, struct, subprocess, sys, termios
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
os.close(slave)
screen = bytearray()
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:  # EIO: every writer has closed the terminal
        break
    if not chunk:
        break
    screen += chunk
sys.stdout.buffer.write(screen)
sys.exit(child.wait())
"#;

/// Runs `medallion args` in `cwd` on a terminal (`TERM=xterm`); what the terminal showed
/// (stdout and stderr, as written), or an error with it if the command failed.
pub fn medallion_on_terminal(args: &[&str], cwd: &Path) -> Result<String> {
    let out = Command::new(python())
        .args(["-c", ON_TERMINAL, &env("MEDALLION_BIN")])
        .args(args)
        .current_dir(cwd)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()?;
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "medallion {args:?} on a terminal failed ({}):\n{screen}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(screen)
}

/// `medallion maintain ARGS[0] --spec SPEC ARGS[1..]` in the workspace; its stdout.
pub fn maintain(ws: &Workspace, spec: &Path, args: &[&str]) -> Result<String> {
    let spec = spec.display().to_string();
    let mut all = vec!["maintain", args[0], "--spec", &spec];
    all.extend(&args[1..]);
    medallion_stdout(&all, ws.path())
}

/// Silver and gold over a `bronze.web_events` table, so that a run goes through every layer:
/// `silver.views` (id, user, time) and `gold.views_per_minute` (views and users per minute).
pub const VIEW_LAYERS: &str = r#"
[[silver]]
table = "silver.views"
source = "bronze.web_events"
columns = [{ name = "event_id", expr = "event_id" }, { name = "user_id", expr = "user_id" }, { name = "event_time", expr = "event_time" }]

[[gold]]
table = "gold.views_per_minute"
source = "silver.views"
event_time = "event_time"
window = { tumbling = "1m" }
aggregates = [{ name = "views", fn = "count" }, { name = "users", fn = "count_distinct", expr = "user_id" }]
"#;

/// [`VIEW_LAYERS`]' silver table with a `drop` and a `warn` expectation (on users `u0` and
/// `u1`), and a per-minute count of its views.
pub const EXPECTATION_LAYERS: &str = r#"
[[silver]]
table = "silver.views"
source = "bronze.web_events"
columns = [{ name = "event_id", expr = "event_id" }, { name = "user_id", expr = "user_id" }, { name = "event_time", expr = "event_time" }]
expectations = [
  { name = "not_u0", check = "user_id <> 'u0'", on_fail = "drop" },
  { name = "not_u1", check = "user_id <> 'u1'", on_fail = "warn" },
]

[[gold]]
table = "gold.views_per_minute"
source = "silver.views"
event_time = "event_time"
window = { tumbling = "1m" }
aggregates = [{ name = "views", fn = "count" }]
"#;

/// A topic of 3 partitions named after `prefix` holding 20,000 [`minute_events`], 500 copies of
/// the first of them (producer retries, which dedupe drops) and 40 records that are no JSON,
/// and a spec of bronze (4,000-row batches) with [`EXPECTATION_LAYERS`] over it. The topic,
/// the spec, and each partition's end offset.
pub fn dirty_view_stream(ws: &Workspace, prefix: &str) -> Result<(String, PathBuf, Vec<i64>)> {
    let topic = unique(prefix);
    create_topic(&topic, 3)?;
    let spec = ws.web_spec(
        &topic,
        "bronze.web_events",
        r#"{ interval = "1s", max_rows = 4000 }"#,
        r#"connect_timeout = "60s""#,
    )?;
    ws.append(&spec, EXPECTATION_LAYERS)?;
    let events = minute_events(prefix, 20_000);
    produce(&topic, &events)?;
    produce(&topic, &events[..500])?;
    let malformed: Vec<(i32, Vec<u8>)> = (0..40).map(|i| (i % 3, b"{not json".to_vec())).collect();
    produce_to(&topic, &malformed)?;
    let ends = end_offsets(&topic, 3)?;
    Ok((topic, spec, ends))
}

/// After a run over `minute_events(_, n)` on `topic` with [`VIEW_LAYERS`], as DuckDB reads
/// the tables: bronze holds every offset once, silver every event once, and gold the minutes
/// that are final (all but the one the last event is in), with every view of them.
pub fn assert_view_layers(ws: &Workspace, topic: &str, partitions: i32, n: i64) -> Result<()> {
    assert_exactly_once(ws, "bronze.web_events", &end_offsets(topic, partitions)?)?;
    let silver = ws.duckdb(
        "silver.views",
        "SELECT count(*), count(DISTINCT event_id) FROM t",
    )?;
    assert_eq!(silver, [[serde_json::json!(n), serde_json::json!(n)]]);
    let minutes = (n - 1) * 10 / 60_000;
    let gold = ws.duckdb(
        "gold.views_per_minute",
        "SELECT count(*), CAST(sum(views) AS BIGINT) FROM t",
    )?;
    assert_eq!(
        gold,
        [[
            serde_json::json!(minutes),
            serde_json::json!(minutes * 6_000)
        ]]
    );
    Ok(())
}

/// `n` web events of 97 users, 10 ms apart from the start of 2026 (a minute's start), ids
/// `{prefix}-{i}`, keyed by user.
pub fn minute_events(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let user = format!("u{}", i % 97);
            let event = web_event(
                &format!("{prefix}-{i}"),
                &user,
                1_767_225_600_000 + i as i64 * 10,
            );
            (user, event)
        })
        .collect()
}

/// Runs `medallion run SPEC --once` and fails with its stderr if it does.
pub fn run_once(ws: &Workspace, spec: &Path) -> Result<()> {
    let spec = spec.to_str().context("spec path is not UTF-8")?;
    let out = medallion_output(&["run", spec, "--once"], ws.path())?;
    if !out.status.success() {
        bail!(
            "medallion run --once failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Starts `medallion run SPEC` in the background with its log in `log`.
pub fn spawn_run(spec: &Path, log: &Path, extra: &[&str]) -> Result<Child> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Ok(medallion()
        .arg("run")
        .arg(spec)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()?)
}

/// SIGTERM, then waits up to 30 s for the process to finish its batch and exit.
pub fn terminate(child: &mut Child) -> Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "exited with {status} after SIGTERM");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    sigkill(child);
    bail!("did not exit within 30 s of SIGTERM")
}

pub fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `medallion run SPEC` `kills` times, each time SIGKILLing it at a random moment up to
/// `max_ms` after its next commit (a ` committed` line in `log`, which it appends to); returns
/// how many kills came after a commit (the others hit start-up).
pub fn kill_repeatedly(
    spec: &Path,
    log: &Path,
    kills: usize,
    max_ms: u64,
    rng: &mut impl rand::Rng,
) -> Result<usize> {
    let commits = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches(" committed")
            .count()
    };
    let mut mid_run = 0;
    for _ in 0..kills {
        let before = commits();
        let mut child = spawn_run(spec, log, &[])?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while commits() == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..max_ms)));
        sigkill(&mut child);
        if commits() > before {
            mid_run += 1;
        }
    }
    Ok(mid_run)
}

/// One snapshot as pyiceberg and DuckDB read it.
#[derive(Debug)]
pub struct SnapshotRead {
    pub operation: String,
    /// `total-records` of the snapshot's summary.
    pub total_records: Option<u64>,
    pub pyiceberg: u64,
    pub duckdb: u64,
}

/// What a third-party reader saw.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ReaderView {
    pub rows: u64,
    pub digest: String,
}

fn python() -> String {
    env("MEDALLION_TEST_PYTHON")
}

fn peer_script() -> PathBuf {
    manifest_dir().join("peers/read_iceberg.py")
}

fn run_peer(args: &[String]) -> Result<serde_json::Value> {
    let out = Command::new(python())
        .arg(peer_script())
        .args(args)
        .output()
        .context("cannot run the peer reader")?;
    if !out.status.success() {
        bail!(
            "peer reader failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

impl Workspace {
    /// The catalog URI as pyiceberg's SqlCatalog (SQLAlchemy) takes it.
    fn peer_uri(&self) -> String {
        match &self.postgres {
            Some(url) => url.replacen("postgres://", "postgresql+psycopg2://", 1),
            None => format!("sqlite:///{}", self.catalog_db().display()),
        }
    }

    /// Where the peer reader finds tables: the catalog, and a local warehouse's Delta tables.
    fn peer_args(&self) -> Vec<String> {
        let mut args = vec!["--catalog-uri".into(), self.peer_uri()];
        if self.s3.is_none() {
            args.extend(["--warehouse".into(), self.warehouse().display().to_string()]);
        }
        args
    }

    /// The next offset of each of `partitions` of `topic` that Delta table `table` holds, as
    /// the deltalake package reads its `txn` actions (`None`: no `txn` for the partition).
    pub fn delta_offsets(
        &self,
        table: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<Vec<Option<i64>>> {
        let apps: Vec<String> = (0..partitions)
            .map(|p| format!("medallion:{topic}:{p}"))
            .collect();
        let seen = self.delta_log(table, &apps)?;
        Ok(apps.iter().map(|a| seen["txn"][a].as_i64()).collect())
    }

    /// Sets Delta table properties with the deltalake package (as an operator would).
    pub fn set_delta_properties(&self, table: &str, properties: &[(&str, &str)]) -> Result<()> {
        let mut args = vec![
            "--path".to_string(),
            self.delta_path(table)?,
            "--txn-only".into(),
        ];
        for (key, value) in properties {
            args.extend(["--set".into(), format!("{key}={value}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        peer_json("read_delta.py", &args).map(drop)
    }

    /// A Delta table's version, the `txn` versions of `apps` and its configuration, as the
    /// deltalake package reads them.
    pub fn delta_log(&self, table: &str, apps: &[String]) -> Result<serde_json::Value> {
        let mut args = vec![
            "--path".to_string(),
            self.delta_path(table)?,
            "--txn-only".into(),
        ];
        for app in apps {
            args.extend(["--app-id".into(), app.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        peer_json("read_delta.py", &args)
    }

    /// Every version of a Delta table, oldest first: (operation, rows polars reads, rows the
    /// deltalake package reads).
    pub fn delta_versions(&self, table: &str) -> Result<Vec<(String, u64, u64)>> {
        let path = self.delta_path(table)?;
        let seen = peer_json("read_delta.py", &["--path", &path, "--versions"])?;
        let versions = seen["versions"].as_array().cloned().unwrap_or_default();
        Ok(versions
            .iter()
            .map(|v| {
                (
                    v["operation"].as_str().unwrap_or_default().to_string(),
                    v["polars"].as_u64().unwrap_or(u64::MAX),
                    v["deltalake"].as_u64().unwrap_or(u64::MAX - 1),
                )
            })
            .collect())
    }

    /// The entries of a Parquet table's commit log, oldest first.
    pub fn parquet_log(&self, table: &str) -> Result<Vec<serde_json::Value>> {
        let log = PathBuf::from(self.delta_path(table)?).join("_medallion_log");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&log)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?))
            .collect()
    }

    fn delta_path(&self, table: &str) -> Result<String> {
        let (ns, name) = table.split_once('.').context("table is NAMESPACE.NAME")?;
        Ok(self.warehouse().join(ns).join(name).display().to_string())
    }

    /// Row count and content digest of a table as pyiceberg, DuckDB and polars read it (a
    /// Delta table: DuckDB and polars).
    pub fn peer_views(
        &self,
        table: &str,
        columns: &[&str],
    ) -> Result<BTreeMap<String, ReaderView>> {
        let mut args = self.peer_args();
        args.extend(["--table".into(), table.into()]);
        if !columns.is_empty() {
            args.push("--columns".into());
            args.push(columns.join(","));
        }
        let v = run_peer(&args)?;
        Ok(serde_json::from_value(v["readers"].clone())?)
    }

    /// Every snapshot of the table, oldest first, read by pyiceberg and DuckDB.
    pub fn snapshot_reads(&self, table: &str) -> Result<Vec<SnapshotRead>> {
        let mut args = self.peer_args();
        args.extend(["--table".into(), table.into(), "--snapshots".into()]);
        let v = run_peer(&args)?;
        let mut out = Vec::new();
        for s in v["snapshots"].as_array().cloned().unwrap_or_default() {
            out.push(SnapshotRead {
                operation: s["operation"].as_str().unwrap_or_default().to_string(),
                total_records: s["total_records"].as_u64(),
                pyiceberg: s["pyiceberg"].as_u64().context("pyiceberg count")?,
                duckdb: s["duckdb"].as_u64().context("duckdb count")?,
            });
        }
        Ok(out)
    }

    /// Rows of each DuckDB query, run in one connection; each names the tables it reads as
    /// views (`(view, table)` pairs, read with `iceberg_scan`).
    pub fn duckdb_many(
        &self,
        queries: &[(Vec<(&str, String)>, String)],
    ) -> Result<Vec<Vec<Vec<serde_json::Value>>>> {
        let list: Vec<serde_json::Value> = queries
            .iter()
            .map(|(views, sql)| {
                let views: serde_json::Map<String, serde_json::Value> = views
                    .iter()
                    .map(|(v, t)| (v.to_string(), serde_json::Value::String(t.clone())))
                    .collect();
                serde_json::json!({ "views": views, "sql": sql })
            })
            .collect();
        let file = self.write("queries.json", &serde_json::Value::Array(list).to_string())?;
        let mut args = self.peer_args();
        args.extend(["--queries".into(), file.display().to_string()]);
        let v = run_peer(&args)?;
        Ok(serde_json::from_value(v["results"].clone())?)
    }

    /// Rows of a DuckDB query over the table (as view `t`, read with `iceberg_scan`).
    pub fn duckdb(&self, table: &str, sql: &str) -> Result<Vec<Vec<serde_json::Value>>> {
        let mut args = self.peer_args();
        args.extend(["--table".into(), table.into(), "--sql".into(), sql.into()]);
        let v = run_peer(&args)?;
        Ok(serde_json::from_value(v["rows"].clone())?)
    }
}

/// Consumer settings for the consumer-group test. Members that stop leave the group at once
/// (SIGTERM); the session only has to outlast Tansu's slow heartbeat answers under load, which
/// exceed librdkafka's 10 s minimum-style settings there, and the rebalance timeout
/// (`max.poll.interval.ms`) bounds how long a join waits.
pub const GROUP_SETTINGS: &str = r#"consumer_properties = { "session.timeout.ms" = "30000", "heartbeat.interval.ms" = "3000", "max.poll.interval.ms" = "30000" }"#;

/// This package's directory as cargo gives it when running the tests: a path baked in at
/// compile time goes stale when the build is reused from another checkout (CI's clone).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

/// The repository's README, whose recipes a test runs.
pub fn readme() -> PathBuf {
    manifest_dir().join("../README.md")
}

/// The repository's web-event schema, as users reference it.
pub fn web_event_schema() -> PathBuf {
    manifest_dir().join("../schemas/avro/web_event.avsc")
}

impl Workspace {
    /// The `[kafka]` (the test broker, plus `kafka_extra` as TOML) and `[lakehouse]` (this
    /// workspace) sections every test spec starts with.
    pub fn spec_head(&self, kafka_extra: &str) -> String {
        format!(
            r#"
[kafka]
brokers = "{broker}"
{kafka_extra}

[lakehouse]
warehouse = "{warehouse}"
catalog = "{catalog}"
{s3}
"#,
            broker = broker(),
            warehouse = self.warehouse_uri(),
            catalog = self.catalog_uri(),
            s3 = match &self.s3 {
                Some(s3) => format!("s3 = {{ endpoint = \"{}\" }}", s3.endpoint),
                None => String::new(),
            },
        )
    }

    /// A `[[bronze]]` table of the repository's JSON web events from `topic`, by event time;
    /// `extra` is TOML lines added to it as they are (group, dedupe, commit).
    pub fn web_bronze(&self, topic: &str, table: &str, extra: &str) -> String {
        format!(
            r#"
[[bronze]]
table = "{table}"
topics = ["{topic}"]
format = "json"
schema = "{schema}"
event_time = "event_time"
{extra}
"#,
            schema = web_event_schema().display(),
        )
    }

    /// A spec with one JSON bronze table on `topic`, deduplicated on `event_id`.
    /// `kafka_extra` and `commit` are TOML inserted as they are.
    pub fn web_spec(
        &self,
        topic: &str,
        table: &str,
        commit: &str,
        kafka_extra: &str,
    ) -> Result<PathBuf> {
        let bronze = self.web_bronze(
            topic,
            table,
            &format!("dedupe = {{ key = [\"event_id\"], horizon = \"1h\" }}\ncommit = {commit}"),
        );
        let text = self.spec_head(kafka_extra) + &bronze;
        self.write(&format!("{}.toml", table.replace('.', "_")), &text)
    }
}

impl Workspace {
    /// A spec with one Avro bronze table on `topic`, decoded through the registry at
    /// `registry_url`, starting from the schema file `schema`. `commit` is TOML as it is.
    pub fn registry_spec(
        &self,
        table: &str,
        topic: &str,
        registry_url: &str,
        schema: &Path,
        commit: &str,
    ) -> Result<PathBuf> {
        let text = format!(
            r#"{head}
[registry]
url = "{registry_url}"

[[bronze]]
table = "{table}"
topics = ["{topic}"]
format = "avro"
schema = "{schema}"
event_time = "event_time"
commit = {commit}
"#,
            head = self.spec_head(""),
            schema = schema.display(),
        );
        self.write(&format!("{}.toml", table.replace('.', "_")), &text)
    }
}

/// A valid web event as JSON.
pub fn web_event(id: &str, user: &str, event_time_ms: i64) -> Vec<u8> {
    serde_json::json!({
        "event_id": id,
        "event_type": "page_view",
        "event_time": event_time_ms,
        "user_id": user,
        "page": "/product/1",
        "payload": {"ref": "test"},
    })
    .to_string()
    .into_bytes()
}

/// Checks with DuckDB that every offset below `ends[p]` of every partition is in the table
/// exactly once (the tables of these tests hold no duplicates or malformed records).
pub fn assert_exactly_once(ws: &Workspace, table: &str, ends: &[i64]) -> Result<()> {
    let rows = ws.duckdb(
        table,
        "SELECT _kafka_partition, count(*), count(DISTINCT _kafka_offset), min(_kafka_offset), max(_kafka_offset) FROM t GROUP BY 1 ORDER BY 1",
    )?;
    let got: Vec<Vec<i64>> = rows
        .iter()
        .map(|r| r.iter().map(|v| v.as_i64().unwrap_or(-1)).collect())
        .collect();
    let expected: Vec<Vec<i64>> = ends
        .iter()
        .enumerate()
        .filter(|(_, &end)| end > 0)
        .map(|(p, &end)| vec![p as i64, end, end, 0, end - 1])
        .collect();
    assert_eq!(
        got, expected,
        "[partition, rows, distinct offsets, min, max] per partition"
    );
    Ok(())
}

/// A new, empty PostgreSQL database on the server `tests/run` started; its URL.
pub fn postgres_database(prefix: &str) -> Result<String> {
    let base = env("MEDALLION_TEST_PG_URL");
    let name = unique(prefix).replace(['-', '.'], "_");
    let out = Command::new("psql")
        .arg(&base)
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg("-c")
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql CREATE DATABASE failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (server, _) = base
        .rsplit_once('/')
        .context("MEDALLION_TEST_PG_URL has no database part")?;
    Ok(format!("{server}/{name}"))
}

/// Starts a `medallion … serve` command, logging to `log`, and waits for its first stdout
/// line, `… listening on URL`; the child and the URL.
fn serve(args: &[&str], log: &Path) -> Result<(Child, String)> {
    use std::io::BufRead;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut child = medallion()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let Some((_, url)) = line.trim().split_once(" listening on ") else {
        sigkill(&mut child);
        bail!(
            "medallion {args:?} did not start (first line {line:?}); see {}",
            log.display()
        );
    };
    Ok((child, url.to_string()))
}

/// `medallion catalog serve` (the Iceberg REST catalog) as a child process, stopped when
/// dropped.
pub struct CatalogServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl CatalogServer {
    /// Serves the catalog `catalog_uri` on a free loopback port.
    pub fn start(catalog_uri: &str, log: &Path) -> Result<Self> {
        Self::start_with(catalog_uri, &[], log)
    }

    /// Serves the catalog `catalog_uri` with `--read-write` on a free loopback port, creating
    /// tables under `warehouse`.
    pub fn start_read_write(catalog_uri: &str, warehouse: &Path, log: &Path) -> Result<Self> {
        let warehouse = warehouse.to_str().context("warehouse path is not UTF-8")?;
        Self::start_with(
            catalog_uri,
            &["--read-write", "--warehouse", warehouse],
            log,
        )
    }

    fn start_with(catalog_uri: &str, extra: &[&str], log: &Path) -> Result<Self> {
        let mut args = vec![
            "catalog",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--catalog",
            catalog_uri,
        ];
        args.extend_from_slice(extra);
        let (child, url) = serve(&args, log)?;
        Ok(Self { child, url })
    }
}

impl Drop for CatalogServer {
    fn drop(&mut self) {
        sigkill(&mut self.child);
    }
}

/// `medallion registry serve` as a child process, stopped when dropped.
pub struct RegistryServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl RegistryServer {
    /// Starts a registry on `addr` (`127.0.0.1:0` for any free port) over `store`, logging to
    /// `log`, and waits until it listens.
    pub fn start(store: &str, addr: &str, log: &Path) -> Result<Self> {
        let (child, url) = serve(
            &["registry", "serve", "--addr", addr, "--store", store],
            log,
        )?;
        Ok(Self { url, child })
    }

    /// The `HOST:PORT` it listens on.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        sigkill(&mut self.child);
    }
}

impl RegistryServer {
    /// Registers a schema file under a subject with `medallion schema register`; its id.
    pub fn register(&self, subject: &str, file: &Path, cwd: &Path) -> Result<u32> {
        let file = file.to_str().context("schema path is not UTF-8")?;
        let out = medallion_output(
            &["schema", "register", subject, file, "--registry", &self.url],
            cwd,
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text
            .trim()
            .strip_suffix(')')
            .and_then(|t| t.rsplit_once("(id "))
            .and_then(|(_, id)| id.parse().ok());
        match (out.status.success(), id) {
            (true, Some(id)) => Ok(id),
            _ => bail!(
                "schema register {subject} failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

/// Runs a script from `tests/peers` with the venv's Python and parses its JSON output.
pub fn peer_json(script: &str, args: &[&str]) -> Result<serde_json::Value> {
    let path = manifest_dir().join("peers").join(script);
    let out = Command::new(env("MEDALLION_TEST_PYTHON"))
        .arg(&path)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "{script} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{script} printed no JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// An S3-protocol object store: moto's server from the venv (a Python implementation of the
/// S3 API, which we did not write), on a free loopback port, stopped when dropped.
pub struct S3Store {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

/// One HTTP/1.1 request to `base` (`http://HOST:PORT`) with `headers` (`Name: value\r\n`
/// lines): the status and the body.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.lines().next().unwrap_or_default();
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {base}{path}: {status:?}"))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, body.to_string()))
}

/// An `Authorization` header of the shape S3 wants.
const SIGNED: &str = "AWS4-HMAC-SHA256 Credential=medallion-test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

impl S3Store {
    /// Starts the store and points this process's AWS environment at it, as a deployment
    /// would: the keys and region every client here (medallion, pyiceberg, DuckDB, polars)
    /// signs with, and `AWS_ENDPOINT_URL`.
    pub fn start(log: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let file = std::fs::File::create(log)?;
        let child = Command::new(env("MEDALLION_TEST_PYTHON"))
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        let mut store = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || store.child.try_wait()?.is_some() {
                bail!("the S3 store did not start; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "medallion-test"),
            ("AWS_SECRET_ACCESS_KEY", "medallion-test-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", store.endpoint.as_str()),
        ] {
            std::env::set_var(k, v);
        }
        Ok(store)
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        ensure!(
            self.request("PUT", bucket, "")? == 200,
            "CreateBucket {bucket}"
        );
        Ok(())
    }

    /// Writes an object given as `s3://BUCKET/KEY`.
    pub fn put(&self, url: &str, body: &str) -> Result<()> {
        let path = url.strip_prefix("s3://").context("not an s3:// URL")?;
        ensure!(self.request("PUT", path, body)? == 200, "PutObject {url}");
        Ok(())
    }

    /// Whether an object given as `s3://BUCKET/KEY` exists.
    pub fn exists(&self, url: &str) -> Result<bool> {
        let path = url.strip_prefix("s3://").context("not an s3:// URL")?;
        Ok(self.request("HEAD", path, "")? == 200)
    }

    /// The status of a path-style request. Moto checks that a request is signed, not the
    /// signature: an unsigned one is anonymous and may not read private objects.
    fn request(&self, method: &str, path: &str, body: &str) -> Result<u16> {
        let headers = format!("Authorization: {SIGNED}\r\n");
        Ok(http(&self.endpoint, method, &format!("/{path}"), &headers, body)?.0)
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        sigkill(&mut self.child);
    }
}
