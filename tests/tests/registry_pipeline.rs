//! Bronze in registry mode against `medallion registry serve` and the real broker: tables
//! follow compatible writer schemas without a restart and dead-letter the rest; a registry
//! outage pauses the partitions that need it and loses nothing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use apache_avro::types::Value;
use apache_avro::Schema;
use e2e::{
    assert_exactly_once, create_topic, medallion_output, produce_to, read_topic, spawn_run,
    terminate, unique, RegistryServer, Workspace,
};

const V1: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"order_id","type":"string"},
  {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"amount","type":"double"}]}"#;
/// v1 plus an optional field with a default.
const V2: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"order_id","type":"string"},
  {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"amount","type":"double"},
  {"name":"coupon","type":["null","string"],"default":null}]}"#;
/// v2 without the required field `amount`.
const V3: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"order_id","type":"string"},
  {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"coupon","type":["null","string"],"default":null}]}"#;

const TABLE: &str = "bronze.orders";
const T0: i64 = 1_767_225_600_000;

struct Setup {
    ws: Workspace,
    topic: String,
    subject: String,
    files: [PathBuf; 3],
    spec: PathBuf,
}

fn setup(partitions: i32, registry_url: &str) -> Result<Setup> {
    let ws = Workspace::new()?;
    let topic = unique("orders");
    create_topic(&topic, partitions)?;
    create_topic(&format!("{topic}.dlq"), 1)?;
    let files = [
        ws.write("v1.avsc", V1)?,
        ws.write("v2.avsc", V2)?,
        ws.write("v3.avsc", V3)?,
    ];
    let spec = ws.registry_spec(
        TABLE,
        &topic,
        registry_url,
        &files[0],
        r#"{ interval = "1s", max_rows = 10000 }"#,
    )?;
    Ok(Setup {
        subject: format!("{topic}-value"),
        ws,
        topic,
        files,
        spec,
    })
}

/// An order framed with schema `id`, written with `schema`; `coupon` only where it exists.
fn order(schema: &str, id: u32, n: i64, coupon: Option<&str>) -> Result<Vec<u8>> {
    let schema = Schema::parse_str(schema)?;
    let mut fields = vec![
        ("order_id".to_string(), Value::String(format!("o-{n}"))),
        ("event_time".to_string(), Value::TimestampMillis(T0 + n)),
    ];
    let has = |name: &str| matches!(&schema, Schema::Record(r) if r.fields.iter().any(|f| f.name == name));
    if has("amount") {
        fields.push(("amount".to_string(), Value::Double(n as f64 / 4.0)));
    }
    if has("coupon") {
        let value = match coupon {
            Some(c) => Value::Union(1, Box::new(Value::String(c.to_string()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        fields.push(("coupon".to_string(), value));
    }
    let body = apache_avro::to_avro_datum(&schema, Value::Record(fields))?;
    Ok(schemas::wire::frame(id, &body))
}

fn schema_cmd(s: &Setup, url: &str, args: &[&str]) -> Result<(i32, String)> {
    let mut all = vec!["schema"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--registry", url]);
    let out = medallion_output(&all, s.ws.path())?;
    Ok((
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

fn ints(rows: &[Vec<serde_json::Value>]) -> Vec<Vec<i64>> {
    rows.iter()
        .map(|r| r.iter().map(|v| v.as_i64().unwrap_or(-1)).collect())
        .collect()
}

#[test]
fn table_follows_compatible_writers_and_dead_letters_the_rest() -> Result<()> {
    let scratch = Workspace::new()?;
    let store = format!("sqlite://{}", scratch.path().join("registry.db").display());
    let registry = RegistryServer::start(&store, "127.0.0.1:0", &scratch.path().join("r.log"))?;
    let s = setup(1, &registry.url)?;
    let cwd = s.ws.path();
    let v1 = registry.register(&s.subject, &s.files[0], cwd)?;
    let mut run = spawn_run(&s.spec, &cwd.join("run.log"), &[])?;

    let batch: Vec<(i32, Vec<u8>)> = (0..40)
        .map(|n| Ok((0, order(V1, v1, n, None)?)))
        .collect::<Result<_>>()?;
    produce_to(&s.topic, &batch)?;
    s.ws.wait_for_offsets(TABLE, &s.topic, &[40], Duration::from_secs(60))?;

    // v2 adds an optional field: the running pipeline grows the table and goes on.
    let spec = s.spec.display().to_string();
    let v2_file = s.files[1].display().to_string();
    let (code, out) = schema_cmd(
        &s,
        &registry.url,
        &["check", &s.subject, &v2_file, "--spec", &spec],
    )?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!(
            "{} (BACKWARD, 1 version(s), latest 1) <- {v2_file}: compatible\n  table {TABLE}: reads it after gaining the column(s) coupon\n",
            s.subject
        )
    );
    let v2 = registry.register(&s.subject, &s.files[1], cwd)?;
    let batch: Vec<(i32, Vec<u8>)> = (40..80)
        .map(|n| {
            let coupon = (n % 2 == 0).then(|| format!("SAVE{n}"));
            Ok((0, order(V2, v2, n, coupon.as_deref())?))
        })
        .collect::<Result<_>>()?;
    produce_to(&s.topic, &batch)?;
    s.ws.wait_for_offsets(TABLE, &s.topic, &[80], Duration::from_secs(60))?;

    // v3 drops the required `amount`. BACKWARD allows that (the new schema reads old data),
    // so the registry takes it, but the table cannot: `schema check --spec` says so, naming
    // the field and the rule. FULL refuses it in the registry too.
    let v3_file = s.files[2].display().to_string();
    let (code, out) = schema_cmd(&s, &registry.url, &["check", &s.subject, &v3_file])?;
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with(": compatible\n"), "{out}");
    let (code, out) = schema_cmd(
        &s,
        &registry.url,
        &["check", &s.subject, &v3_file, "--spec", &spec],
    )?;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "{} (BACKWARD, 2 version(s), latest 2) <- {v3_file}: compatible\n  table {TABLE}: CANNOT read it (its records would be dead-lettered as schema.incompatible)\n  - field `amount` is in the table's schema without a default, and {v3_file} does not write it (READER_FIELD_MISSING_DEFAULT_VALUE at /fields/2)\n",
            s.subject
        )
    );
    let (code, out) = schema_cmd(&s, &registry.url, &["level", &s.subject, "FULL"])?;
    assert_eq!(
        (code, out.as_str()),
        (0, &*format!("{}: FULL\n", s.subject))
    );
    let (code, out) = schema_cmd(&s, &registry.url, &["check", &s.subject, &v3_file])?;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "{} (FULL, 2 version(s), latest 2) <- {v3_file}: NOT compatible\n  - field `amount` is in version 2 without a default, and the new schema does not write it (READER_FIELD_MISSING_DEFAULT_VALUE at /fields/2)\n",
            s.subject
        )
    );
    let (code, out) = schema_cmd(&s, &registry.url, &["level", &s.subject, "BACKWARD"])?;
    assert_eq!(code, 0, "{out}");
    // Sent anyway: the table cannot read them (its `amount` is required), so they are
    // dead-lettered, as are a record without the Confluent frame and one with an unknown id.
    let v3 = registry.register(&s.subject, &s.files[2], cwd)?;
    let mut batch: Vec<(i32, Vec<u8>)> = (80..100)
        .map(|n| Ok((0, order(V3, v3, n, Some("X"))?)))
        .collect::<Result<_>>()?;
    batch.push((0, b"{\"order_id\":\"json\"}".to_vec()));
    batch.push((0, order(V1, 999, 100, None)?));
    produce_to(&s.topic, &batch)?;
    s.ws.wait_for_offsets(TABLE, &s.topic, &[102], Duration::from_secs(60))?;
    terminate(&mut run)?;

    let counts = s.ws.duckdb(
        TABLE,
        "SELECT count(*), count(coupon), count(*) FILTER (WHERE coupon IS NULL AND _kafka_offset < 40), count(*) FILTER (WHERE coupon = 'SAVE' || CAST(_kafka_offset AS VARCHAR)) FROM t",
    )?;
    assert_eq!(ints(&counts), [[80, 20, 40, 20]]);
    // pyiceberg, DuckDB and polars read the grown table alike, old rows with a null coupon.
    let views = s.ws.peer_views(TABLE, &["order_id", "amount", "coupon"])?;
    let first = views.values().next().cloned();
    assert_eq!(views.len(), 3, "{views:?}");
    for (reader, view) in &views {
        assert_eq!(view.rows, 80, "{reader}");
        assert_eq!(Some(view), first.as_ref(), "{reader} differs: {views:?}");
    }

    let dead = read_topic(&format!("{}.dlq", s.topic))?;
    let mut reasons: Vec<(i64, String)> = dead
        .iter()
        .map(|d| {
            (
                d.source().offset,
                d.header("medallion.error.reason").to_string(),
            )
        })
        .collect();
    reasons.sort();
    let mut expected: Vec<(i64, String)> = (80..100)
        .map(|o| (o, "schema.incompatible".to_string()))
        .collect();
    expected.push((100, "schema.bad_framing".to_string()));
    expected.push((101, "schema.unknown_id".to_string()));
    assert_eq!(reasons, expected);
    let incompatible = dead
        .iter()
        .find(|d| d.header("medallion.error.reason") == "schema.incompatible")
        .map(|d| d.header("medallion.error.message").to_string())
        .unwrap_or_default();
    assert_eq!(
        incompatible,
        format!("field `amount` is in the table's schema without a default, and schema {v3} does not write it (READER_FIELD_MISSING_DEFAULT_VALUE at /fields/2)")
    );

    // A restart reads with the grown schema the table recorded, not the spec's v1 file: v1
    // and v2 records both land, and the table is not grown again.
    let mut run = spawn_run(&s.spec, &cwd.join("run2.log"), &[])?;
    let batch: Vec<(i32, Vec<u8>)> = (102..112)
        .map(|n| {
            let (schema, id) = if n % 2 == 0 { (V1, v1) } else { (V2, v2) };
            Ok((0, order(schema, id, n, Some("AGAIN"))?))
        })
        .collect::<Result<_>>()?;
    produce_to(&s.topic, &batch)?;
    s.ws.wait_for_offsets(TABLE, &s.topic, &[112], Duration::from_secs(60))?;
    terminate(&mut run)?;
    let counts = s.ws.duckdb(
        TABLE,
        "SELECT count(*), count(*) FILTER (WHERE coupon = 'AGAIN') FROM t WHERE _kafka_offset >= 102",
    )?;
    assert_eq!(ints(&counts), [[10, 5]]);
    let second = std::fs::read_to_string(cwd.join("run2.log"))?;
    assert!(!second.contains("table grew"), "{second}");
    Ok(())
}

#[test]
fn registry_outage_pauses_only_the_partitions_that_need_it() -> Result<()> {
    let scratch = Workspace::new()?;
    let store = format!("sqlite://{}", scratch.path().join("registry.db").display());
    let log = scratch.path().join("r.log");
    let registry = RegistryServer::start(&store, "127.0.0.1:0", &log)?;
    let s = setup(2, &registry.url)?;
    let cwd = s.ws.path();
    let v1 = registry.register(&s.subject, &s.files[0], cwd)?;
    let v2 = registry.register(&s.subject, &s.files[1], cwd)?;
    let run_log = cwd.join("run.log");
    let mut run = spawn_run(&s.spec, &run_log, &[])?;

    let v1_orders = |range: std::ops::Range<i64>, partition: i32| -> Result<Vec<(i32, Vec<u8>)>> {
        range
            .map(|n| Ok((partition, order(V1, v1, n, None)?)))
            .collect()
    };
    let mut batch = v1_orders(0..30, 0)?;
    batch.extend(v1_orders(100..130, 1)?);
    produce_to(&s.topic, &batch)?;
    s.ws.wait_for_offsets(TABLE, &s.topic, &[30, 30], Duration::from_secs(60))?;

    // The registry goes away; partition 0 then carries records of a schema the pipeline has
    // not seen, partition 1 more of the one it knows.
    let addr = registry.addr().to_string();
    drop(registry);
    let stopped = Instant::now();
    let mut batch: Vec<(i32, Vec<u8>)> = (30..60)
        .map(|n| Ok((0, order(V2, v2, n, Some("OUTAGE"))?)))
        .collect::<Result<_>>()?;
    batch.extend(v1_orders(130..160, 1)?);
    produce_to(&s.topic, &batch)?;
    s.ws.wait_for_offsets(TABLE, &s.topic, &[30, 60], Duration::from_secs(25))?;
    std::thread::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed()));
    assert_eq!(
        s.ws.stored_offsets(TABLE)?.get(&s.topic, 0),
        Some(30),
        "partition 0 must wait for the registry"
    );

    let _registry = RegistryServer::start(&store, &addr, &log)?;
    s.ws.wait_for_offsets(TABLE, &s.topic, &[60, 60], Duration::from_secs(60))?;
    terminate(&mut run)?;

    assert_exactly_once(&s.ws, TABLE, &[60, 60])?;
    let coupons = s.ws.duckdb(TABLE, "SELECT count(coupon) FROM t")?;
    assert_eq!(ints(&coupons), [[30]]);
    assert!(read_topic(&format!("{}.dlq", s.topic))?.is_empty());
    let text = std::fs::read_to_string(&run_log)?;
    assert!(
        text.contains("pausing the partition until the schema registry answers"),
        "{text}"
    );
    assert!(
        text.contains("schema registry answered: partition resumed"),
        "{text}"
    );
    Ok(())
}
