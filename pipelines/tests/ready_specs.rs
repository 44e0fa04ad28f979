//! Every ready pipeline in `pipelines/specs/` parses and resolves against the repository's
//! schemas (paths in specs are relative to the repository root, where they are run from).

use pipelines::bronze::{self, BronzeConfig};
use pipelines::gold::GoldConfig;
use pipelines::silver::SilverConfig;
use pipelines::spec::PipelineSpec;
use std::path::PathBuf;

#[test]
fn ready_specs_are_valid() {
    // web.toml hashes user ids: like a user, the check provides the salt.
    std::env::set_var("MEDALLION_PII_SALT", "ready-specs");
    let root = manifest_dir().join("..");
    let dir = root.join("pipelines/specs");
    let (mut checked, mut gold) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let origin = path.display().to_string();
        let mut spec = PipelineSpec::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut bronze = Vec::new();
        for (i, b) in spec.bronze.iter_mut().enumerate() {
            b.schema = root.join(&b.schema);
            bronze.push(BronzeConfig::from_spec(b, &origin, i).unwrap_or_else(|e| panic!("{e}")));
        }
        // Silver tables compile against the bronze tables they read, gold against silver.
        let mut silver = Vec::new();
        for (i, s) in spec.silver.iter().enumerate() {
            let source = bronze
                .iter()
                .find(|b| b.table == s.source)
                .unwrap_or_else(|| panic!("{origin}: silver[{i}] reads {}", s.source));
            silver.push(
                SilverConfig::new(s, &bronze::table_schema(source), &origin, i)
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        for (i, g) in spec.gold.iter().enumerate() {
            let source = silver
                .iter()
                .find(|s| s.spec.table == g.source)
                .unwrap_or_else(|| panic!("{origin}: gold[{i}] reads {}", g.source));
            GoldConfig::new(g, source.output(), &origin, i).unwrap_or_else(|e| panic!("{e}"));
            gold += 1;
        }
        checked += 1;
    }
    assert!(checked >= 7, "found {checked} specs in {}", dir.display());
    assert!(gold >= 14, "found {gold} gold tables");
}

#[test]
fn floating_point_dedupe_keys_are_refused() {
    let root = manifest_dir().join("..");
    let text = format!(
        r#"
[kafka]
brokers = "localhost:9092"
[lakehouse]
warehouse = "./warehouse"
[[bronze]]
table = "bronze.sensor_readings"
topics = ["iot.sensors"]
format = "avro"
schema = "{}"
event_time = "event_time"
dedupe = {{ key = ["device_id", "temperature_c"], horizon = "1h" }}
"#,
        root.join("schemas/avro/sensor_reading.avsc").display()
    );
    let spec = PipelineSpec::parse(&text, "float.toml").unwrap();
    let err = BronzeConfig::from_spec(&spec.bronze[0], "float.toml", 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "float.toml: bronze[0].dedupe.key: field temperature_c is floating-point; keys must be exact (string, integer, boolean, bytes, date or timestamp)"
    );
}

/// The package directory as cargo gives it when running the test: a path baked in at compile
/// time goes stale when the build is reused from another checkout.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}
