//! `medallion registry serve` against a client we did not write (confluent-kafka's
//! SchemaRegistryClient and AvroSerializer, producing to the real broker), on SQLite and on
//! PostgreSQL; and the `medallion schema` workflow a producer team runs.

use anyhow::Result;
use e2e::{
    broker, create_topic, medallion_output, peer_json, run_once, unique, RegistryServer, Workspace,
};
use serde_json::json;

/// What confluent-kafka's client must see, per Confluent's API documentation: ids are global
/// and start at 1, versions per subject start at 1, BACKWARD refuses a new required field
/// (HTTP 409), unknown subject / version / id are 40401 / 40402 / 40403, an invalid schema is
/// 42201, a permanent delete needs a soft delete first (40405).
fn scenario_against(store: &str, ws: &Workspace) -> Result<()> {
    let registry = RegistryServer::start(store, "127.0.0.1:0", &ws.path().join("registry.log"))?;
    let topic = unique("shop.purchases");
    create_topic(&topic, 1)?;
    let subject = format!("{topic}-value");
    let seen = peer_json(
        "registry_client.py",
        &[
            "--registry",
            &registry.url,
            "--broker",
            &broker(),
            "--topic",
            &topic,
            "--events",
            "200",
        ],
    )?;
    let expected = json!({
        "set_global_level": {"compatibility": "BACKWARD"},
        "produced": 200,
        "undelivered": 0,
        "frames": [[0, 1]],
        "subjects": [subject],
        "versions": [1],
        "latest": {"subject": subject, "version": 1, "id": 1},
        "schema_by_id_equals_v1": true,
        "schema_types": ["AVRO"],
        "lookup": {"subject": subject, "version": 1, "id": 1},
        "subjects_of_id": [subject],
        "global_level": "BACKWARD",
        "v2_compatible": true,
        "v3_compatible": false,
        "v3_compatible_all": false,
        "v2_id": 2,
        "v2_again_id": 2,
        "versions_after_v2": [1, 2],
        "v3_register_error": {"error_code": 409, "http_status": 409},
        "subject_level": {"compatibility": "NONE"},
        "subject_level_read": "NONE",
        "v3_id_under_none": 3,
        "unknown_subject_error": {"error_code": 40401, "http_status": 404},
        "unknown_version_error": {"error_code": 40402, "http_status": 404},
        "unknown_id_error": {"error_code": 40403, "http_status": 404},
        "invalid_schema_error": {"error_code": 42201, "http_status": 422},
        "hard_delete_first_error": {"error_code": 40405, "http_status": 404},
        "soft_deleted": [1],
        "hard_deleted": [1],
        "subjects_at_end": [subject],
    });
    assert_eq!(seen, expected, "store {store}");
    // The frames on the broker carry the id the registry gave.
    let records = e2e::read_topic(&topic)?;
    assert_eq!(records.len(), 200);
    assert!(records
        .iter()
        .all(|r| r.value.as_deref().and_then(|v| v.get(..5)) == Some(&[0, 0, 0, 0, 1][..])));

    // The pipeline lands what confluent-kafka produced, decoding by the frames' schema id.
    create_topic(&format!("{topic}.dlq"), 1)?;
    let schema = ws.write("purchase.avsc", PURCHASE_V1)?;
    let spec = ws.registry_spec(
        "bronze.purchases",
        &topic,
        &registry.url,
        &schema,
        r#"{ interval = "1s" }"#,
    )?;
    run_once(ws, &spec)?;
    let rows = ws.duckdb(
        "bronze.purchases",
        "SELECT count(*), count(DISTINCT order_id), CAST(sum(amount) * 2 AS BIGINT), min(event_time) = make_timestamp(1700000000000000) FROM t",
    )?;
    assert_eq!(rows, [[json!(200), json!(200), json!(59700), json!(true)]]);
    assert!(e2e::read_topic(&format!("{topic}.dlq"))?.is_empty());
    Ok(())
}

/// The Python scenario's v1, as the pipeline's schema file.
const PURCHASE_V1: &str = r#"{"type":"record","name":"Purchase","namespace":"shop","fields":[
  {"name":"order_id","type":"string"},
  {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"amount","type":"double"}]}"#;

#[test]
fn confluent_client_on_sqlite_store() -> Result<()> {
    let ws = Workspace::new()?;
    let store = format!("sqlite://{}", ws.path().join("registry.db").display());
    scenario_against(&store, &ws)
}

#[test]
fn confluent_client_on_postgres_store() -> Result<()> {
    let ws = Workspace::new()?;
    let store = e2e::postgres_database("registry")?;
    scenario_against(&store, &ws)
}

const V1: &str = r#"{"type":"record","name":"Order","fields":[
  {"name":"order_id","type":"string"},
  {"name":"amount","type":"double"}]}"#;
const V2: &str = r#"{"type":"record","name":"Order","fields":[
  {"name":"order_id","type":"string"},
  {"name":"amount","type":"double"},
  {"name":"coupon","type":["null","string"],"default":null}]}"#;
const V3: &str = r#"{"type":"record","name":"Order","fields":[
  {"name":"order_id","type":"string"},
  {"name":"amount","type":"double"},
  {"name":"channel","type":"string"}]}"#;

fn schema_cmd(ws: &Workspace, registry: &str, args: &[&str]) -> Result<(i32, String)> {
    let mut all = vec!["schema"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--registry", registry]);
    let out = medallion_output(&all, ws.path())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

#[test]
fn schema_workflow_for_producer_teams() -> Result<()> {
    let ws = Workspace::new()?;
    let store = format!("sqlite://{}", ws.path().join("registry.db").display());
    let registry = RegistryServer::start(&store, "127.0.0.1:0", &ws.path().join("registry.log"))?;
    let url = registry.url.as_str();
    let dir = ws.path().join("avro");
    std::fs::create_dir_all(&dir)?;
    let write = |name: &str, text: &str| -> Result<String> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };
    let (v1, v2, v3) = (
        write("v1.avsc", V1)?,
        write("v2.avsc", V2)?,
        write("v3.avsc", V3)?,
    );

    let (code, out) = schema_cmd(&ws, url, &["check", "orders-value", &v1])?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("orders-value: compatible"), "{out}");

    let (code, out) = schema_cmd(&ws, url, &["register", "orders-value", &v1])?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("orders-value: {v1} is version 1 (id 1)\n"));

    let (code, out) = schema_cmd(&ws, url, &["check", "orders-value", &v2])?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!("orders-value (BACKWARD, 1 version(s), latest 1) <- {v2}: compatible\n")
    );

    // v3 adds a required field: the new schema cannot read version 1's records.
    let (code, out) = schema_cmd(&ws, url, &["check", "orders-value", &v3])?;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "orders-value (BACKWARD, 1 version(s), latest 1) <- {v3}: NOT compatible\n  - field `channel` is in the new schema without a default, and version 1 does not write it (READER_FIELD_MISSING_DEFAULT_VALUE at /fields/2)\n"
        )
    );
    let (code, out) = schema_cmd(&ws, url, &["register", "orders-value", &v3])?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!(
            "orders-value: refused, {v3} is NOT compatible\n  - field `channel`"
        )),
        "{out}"
    );

    let (code, out) = schema_cmd(&ws, url, &["register", "orders-value", &v2])?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("orders-value: {v2} is version 2 (id 2)\n"));

    let (code, out) = schema_cmd(&ws, url, &["diff", "orders-value"])?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "orders-value: version 1 -> version 2\n  + coupon: [null, string] (default null)\n  backward (version 2 reads version 1 data): yes\n  forward (version 1 reads version 2 data): yes\n"
    );

    // --all: one file per subject, named after it.
    let all = ws.path().join("all");
    std::fs::create_dir_all(&all)?;
    std::fs::write(all.join("orders-value.avsc"), V3)?;
    std::fs::write(all.join("payments-value.avsc"), V1)?;
    let all = all.display().to_string();
    let (code, out) = schema_cmd(&ws, url, &["check", "--all", "--dir", &all])?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("orders-value (BACKWARD, 2 version(s), latest 2)"),
        "{out}"
    );
    assert!(out.contains("payments-value: compatible"), "{out}");

    let (code, out) = schema_cmd(&ws, url, &["list"])?;
    assert_eq!(code, 0, "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("orders-value"))
        .unwrap_or_default();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["orders-value", "2", "2", "2", "BACKWARD"],
        "{out}"
    );

    let (code, out) = schema_cmd(&ws, "http://127.0.0.1:1", &["list"])?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("registry unavailable"), "{out}");
    Ok(())
}
