//! The full stack in `docker-compose.yml`, checked without a Docker engine: its structure
//! (the services issue 7 names, dependencies, health checks, ports, mounted files), that the
//! services agree on each other's addresses and keys, and that every medallion command in it
//! is one the binary accepts, with the spec or schedule file it names (`medallion check`, run
//! with the service's environment, so the files' `${…}` references are resolved as there).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use e2e::{medallion, peer_json, readme};
use serde_json::Value;

fn repo() -> PathBuf {
    readme().parent().map(PathBuf::from).unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A service's environment as name → value.
fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default()
}

fn command(service: &Value) -> Vec<String> {
    service["command"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default()
}

/// The value following `flag` in a command line.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// `KEY=VALUE` lines of a Java properties file.
fn properties(path: &std::path::Path) -> Result<BTreeMap<String, String>> {
    let body = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Ok(body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

#[test]
fn the_compose_stack_is_complete_consistent_and_every_medallion_command_is_accepted() -> Result<()>
{
    let root = repo();
    let file = root.join("docker-compose.yml");
    let doc = peer_json("compose.py", &[&file.display().to_string()])?;
    let services = doc["services"].as_object().context("no services")?;
    let image = |name: &str| text(&services[name]["image"]);

    // The parts of the stack, by image.
    assert!(image("kafka").starts_with("apache/kafka:"));
    let kafka = environment(&services["kafka"]);
    assert_eq!(kafka["KAFKA_PROCESS_ROLES"], "broker,controller", "KRaft");
    assert!(
        services.keys().all(|s| !s.contains("zookeeper")),
        "KRaft needs no ZooKeeper"
    );
    assert!(image("schema-registry").starts_with("confluentinc/cp-schema-registry:"));
    assert!(image("minio").starts_with("minio/minio:"));
    assert!(image("postgres").starts_with("postgres:"));
    assert!(image("trino").starts_with("trinodb/trino:"));
    let medallion_services: Vec<&String> = services
        .iter()
        .filter(|(_, s)| s["build"] == ".")
        .map(|(name, _)| name)
        .collect();
    for (name, wanted) in [
        ("ecommerce", "run pipelines/specs/ecommerce.toml"),
        ("iot", "run pipelines/specs/iot.toml"),
        ("catalog", "catalog serve"),
    ] {
        ensure!(
            medallion_services.contains(&&name.to_string())
                && command(&services[name]).join(" ").starts_with(wanted),
            "{name} should run `medallion {wanted}`"
        );
    }

    // Dependencies name services; a health condition needs a health check, and a completion
    // condition a one-shot service.
    for (name, service) in services {
        for (on, how) in service["depends_on"].as_object().into_iter().flatten() {
            let target = services
                .get(on)
                .with_context(|| format!("{name} depends on unknown {on}"))?;
            match how["condition"].as_str() {
                Some("service_healthy") => ensure!(
                    target["healthcheck"].is_object(),
                    "{name} waits for {on} to be healthy, which has no health check"
                ),
                Some("service_completed_successfully") => ensure!(
                    target["restart"].is_null() || target["restart"] == "no",
                    "{name} waits for {on} to complete, which restarts"
                ),
                Some("service_started") => {}
                other => anyhow::bail!("{name} depends on {on} with condition {other:?}"),
            }
        }
    }

    // Host ports are not published twice; mounted files exist.
    let mut published = BTreeSet::new();
    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            let host = text(port).split(':').next().unwrap_or_default().to_string();
            ensure!(
                published.insert(host.clone()),
                "{name}: port {host} published twice"
            );
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = text(volume)
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string();
            if source.starts_with("./") {
                ensure!(
                    root.join(&source).exists(),
                    "{name} mounts missing {source}"
                );
            }
        }
    }
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile"))?;
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let source = line.split_whitespace().nth(1).unwrap_or_default();
        ensure!(
            root.join(source).exists(),
            "Dockerfile copies missing {source}"
        );
    }

    // The services agree on each other's addresses and keys.
    let env = environment(&services["ecommerce"]);
    let postgres = environment(&services["postgres"]);
    assert_eq!(
        env["MEDALLION_CATALOG"],
        format!(
            "postgres://{}:{}@postgres:5432/{}",
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
        )
    );
    let catalog_cmd = command(&services["catalog"]);
    assert_eq!(
        flag(&catalog_cmd, "--catalog"),
        Some(env["MEDALLION_CATALOG"].as_str())
    );
    assert!(kafka["KAFKA_ADVERTISED_LISTENERS"]
        .contains(&format!("PLAINTEXT://{}", env["KAFKA_BROKERS"])));
    let registry = environment(&services["schema-registry"]);
    let registry_port = registry["SCHEMA_REGISTRY_LISTENERS"]
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        env["SCHEMA_REGISTRY_URL"],
        format!("http://schema-registry:{registry_port}")
    );
    let minio = environment(&services["minio"]);
    assert_eq!(
        (&env["AWS_ACCESS_KEY_ID"], &env["AWS_SECRET_ACCESS_KEY"]),
        (&minio["MINIO_ROOT_USER"], &minio["MINIO_ROOT_PASSWORD"])
    );
    assert_eq!(env["AWS_ENDPOINT_URL"], "http://minio:9000");
    let bucket = env["MEDALLION_WAREHOUSE"]
        .strip_prefix("s3://")
        .and_then(|w| w.split('/').next())
        .context("the warehouse is not in S3")?
        .to_string();
    ensure!(
        command(&services["bucket"])
            .join(" ")
            .contains(&format!("mb --ignore-existing lake/{bucket}")),
        "the bucket service does not create {bucket}"
    );
    for name in &medallion_services {
        assert_eq!(
            environment(&services[name.as_str()]),
            env,
            "{name}'s environment"
        );
    }

    // Trino's catalog: documented properties only, pointing at the stack's REST catalog and
    // MinIO, with the keys the stack gives it.
    let trino = &services["trino"];
    let mount = trino["volumes"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .map(text)
                .find(|v| v.contains("/etc/trino/catalog/"))
        })
        .context("trino mounts no catalog")?;
    let props = properties(&root.join(mount.split(':').next().unwrap_or_default()))?;
    let known = [
        "connector.name",
        "iceberg.catalog.type",
        "iceberg.rest-catalog.uri",
        "fs.native-s3.enabled",
        "s3.endpoint",
        "s3.region",
        "s3.path-style-access",
        "s3.aws-access-key",
        "s3.aws-secret-key",
    ];
    for key in props.keys() {
        ensure!(
            known.contains(&key.as_str()),
            "unexpected Trino property {key}"
        );
    }
    assert_eq!(props["connector.name"], "iceberg");
    assert_eq!(props["iceberg.catalog.type"], "rest");
    let addr = flag(&catalog_cmd, "--addr").unwrap_or_default();
    let port = addr.rsplit(':').next().unwrap_or_default();
    assert_eq!(
        props["iceberg.rest-catalog.uri"],
        format!("http://catalog:{port}")
    );
    assert_eq!(props["s3.endpoint"], env["AWS_ENDPOINT_URL"]);
    assert_eq!(props["s3.path-style-access"], "true");
    let trino_env = environment(trino);
    for (prop, var) in [
        ("s3.aws-access-key", "AWS_ACCESS_KEY_ID"),
        ("s3.aws-secret-key", "AWS_SECRET_ACCESS_KEY"),
    ] {
        assert_eq!(props[prop], format!("${{ENV:{var}}}"));
        assert_eq!(trino_env[var], env[var]);
    }

    // Every medallion command is one the binary accepts, files and settings included.
    for name in &medallion_services {
        let service = &services[name.as_str()];
        let args = command(service);
        let out = medallion()
            .arg("check")
            .args(&args)
            .envs(environment(service))
            .current_dir(&root)
            .output()?;
        ensure!(
            out.status.success(),
            "{name}: medallion check {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{name}: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(())
}
