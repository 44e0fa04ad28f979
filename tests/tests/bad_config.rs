//! Bad configuration and unreachable infrastructure give clear errors, not panics.

use anyhow::Result;
use e2e::*;

fn refused(ws: &Workspace, spec_text: &str, expect: &[&str]) -> Result<()> {
    let spec = ws.write("bad.toml", spec_text)?;
    let out = medallion_output(
        &["run", spec.to_str().unwrap_or_default(), "--once"],
        ws.path(),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
    }
    Ok(())
}

fn spec(broker: &str, catalog: &str, bronze_extra: &str, topic: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{broker}"
connect_timeout = "3s"

[lakehouse]
warehouse = "./warehouse"
catalog = "{catalog}"

[[bronze]]
table = "bronze.web"
topics = ["{topic}"]
format = "json"
schema = "{schema}"
event_time = "event_time"
{bronze_extra}
"#,
        schema = web_event_schema().display()
    )
}

#[test]
fn bad_specs_name_the_file_and_key() -> Result<()> {
    let ws = Workspace::new()?;
    let b = broker();
    let cat = "sqlite://./warehouse/catalog.db";
    let t = unique("cfg");
    create_topic(&t, 1)?;
    refused(
        &ws,
        &spec(&b, cat, "colour = \"blue\"", &t),
        &["bad.toml", "colour"],
    )?;
    refused(
        &ws,
        &spec(&b, cat, "", &t).replace("\"json\"", "\"xml\""),
        &["bad.toml", "format", "json"],
    )?;
    refused(
        &ws,
        &spec(&b, cat, "commit = { interval = \"soon\" }", &t),
        &["bad.toml", "bronze.commit.interval", "not a duration"],
    )?;
    refused(
        &ws,
        &spec(&b, cat, "", &t).replace("\"event_time\"\n", "\"created\"\n"),
        &["bad.toml", "bronze[0].event_time", "created"],
    )?;
    refused(
        &ws,
        &spec(
            &b,
            cat,
            "dedupe = { key = [\"nope\"], horizon = \"1h\" }",
            &t,
        ),
        &["bad.toml", "dedupe.key", "nope"],
    )?;
    refused(
        &ws,
        &spec(&b, cat, "", &t).replace("web_event.avsc", "missing.avsc"),
        &["bad.toml", "bronze[0].schema", "missing.avsc"],
    )?;
    refused(
        &ws,
        &spec(&b, cat, "", &t).replace("\"./warehouse\"", "\"gs://lake/wh\""),
        &["bad.toml", "lakehouse.warehouse", "s3://BUCKET/PREFIX"],
    )?;
    refused(
        &ws,
        &spec(&b, cat, "", &t).replace(
            "warehouse = \"./warehouse\"",
            "warehouse = \"s3://lake/wh\"\ns3 = { endpoint_url = \"http://minio:9000\" }",
        ),
        &["bad.toml", "endpoint_url"],
    )?;
    refused(&ws, "[kafka\nbrokers=1", &["bad.toml"])?;
    let missing = ws.path().join("nope.toml");
    let out = medallion_output(&["run", missing.to_str().unwrap_or_default()], ws.path())?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
    Ok(())
}

#[test]
fn unreachable_broker_and_catalog_are_named() -> Result<()> {
    let ws = Workspace::new()?;
    let t = unique("unreach");
    refused(
        &ws,
        &spec("127.0.0.1:1", "sqlite://./warehouse/catalog.db", "", &t),
        &["cannot reach Kafka at 127.0.0.1:1"],
    )?;
    create_topic(&t, 1)?;
    refused(
        &ws,
        &spec(&broker(), "postgres://postgres@127.0.0.1:1/nowhere", "", &t),
        &["lakehouse.catalog", "127.0.0.1:1"],
    )?;
    refused(
        &ws,
        &spec(&broker(), "http://127.0.0.1:1/lake", "", &t),
        &["lakehouse.catalog", "http://127.0.0.1:1/lake/v1/config"],
    )?;
    refused(
        &ws,
        &spec(&broker(), "mysql://127.0.0.1/lake", "", &t),
        &["lakehouse.catalog", "mysql://", "http(s)://HOST:PORT"],
    )?;
    let missing_topic = unique("absent");
    refused(
        &ws,
        &spec(
            &broker(),
            "sqlite://./warehouse/catalog.db",
            "",
            &missing_topic,
        ),
        &["topic", &missing_topic, "does not exist"],
    )?;
    Ok(())
}

#[test]
fn check_refuses_bad_command_lines_and_unset_variables() -> Result<()> {
    let ws = Workspace::new()?;
    let t = unique("check");
    let good = spec(
        &broker(),
        "${MEDALLION_TEST_CATALOG:-sqlite://./warehouse/catalog.db}",
        "",
        &t,
    );
    let good = ws.write("good.toml", &good)?;
    let good = good.to_str().unwrap_or_default();
    let check = |args: &[&str]| -> Result<(Option<i32>, String)> {
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        let out = medallion_output(&all, ws.path())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("panicked"), "{text}");
        Ok((out.status.code(), text))
    };
    let (code, text) = check(&["run", good, "--once"])?;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1 bronze, 0 silver, 0 gold"), "{text}");
    let (code, text) = check(&["run", good, "--onse"])?;
    assert_eq!(code, Some(1));
    assert!(
        text.contains("not a medallion command line") && text.contains("--onse"),
        "{text}"
    );
    let (code, text) = check(&["run", "missing.toml"])?;
    assert_eq!(code, Some(1));
    assert!(text.contains("missing.toml"), "{text}");
    let unset = ws.write(
        "unset.toml",
        &spec(&broker(), "${MEDALLION_TEST_UNSET_CATALOG}", "", &t),
    )?;
    let (code, text) = check(&["run", unset.to_str().unwrap_or_default()])?;
    assert_eq!(code, Some(1));
    assert!(
        text.contains("unset.toml (line 8)") && text.contains("MEDALLION_TEST_UNSET_CATALOG"),
        "{text}"
    );
    Ok(())
}
