//! `medallion schema check|register|diff|list`: the registry workflow for producer teams.
//!
//! Verdicts come from the registry (it decides what may be registered); the explanations come
//! from medallion's own rules (`schemas::compat`), which name the field and the rule broken.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use apache_avro::Schema;
use pipelines::bronze::{self, BronzeConfig};
use pipelines::spec::{Format, PipelineSpec};
use schemas::compat::{self, CompatibilityLevel};
use schemas::evolution::{self, Evolution};
use schemas::registry::{codes, RegistryClient, RegistryConfig, RegistryError, Version};

/// Where the registry is.
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Registry URL(s), comma-separated; `https://user:password@host` for basic auth.
    #[arg(
        long,
        global = true,
        env = "MEDALLION_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    registry: String,
    /// PEM file of CA certificates to trust for an https registry.
    #[arg(long, global = true, env = "MEDALLION_REGISTRY_CA")]
    registry_ca: Option<PathBuf>,
}

impl RegistryArgs {
    pub fn client(&self) -> Result<RegistryClient> {
        let mut config = RegistryConfig::new(&self.registry)?;
        config.ca_file = self.registry_ca.clone();
        Ok(RegistryClient::new(config)?)
    }
}

/// Which local schemas a command works on.
#[derive(clap::Args)]
pub struct Targets {
    /// Every `<subject>.avsc` in `--dir` (the file name is the subject).
    #[arg(long, conflicts_with_all = ["subject", "file"])]
    all: bool,
    /// The subject (with FILE).
    #[arg(requires = "file")]
    subject: Option<String>,
    /// The Avro schema file (with SUBJECT).
    file: Option<PathBuf>,
    /// Where `--all` looks.
    #[arg(long, default_value = "schemas/avro")]
    dir: PathBuf,
}

impl Targets {
    fn resolve(&self) -> Result<Vec<(String, PathBuf)>> {
        if let (Some(subject), Some(file)) = (&self.subject, &self.file) {
            return Ok(vec![(subject.clone(), file.clone())]);
        }
        if !self.all {
            bail!("give SUBJECT FILE, or --all");
        }
        let mut found = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "avsc") {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    found.push((stem.to_string(), path.clone()));
                }
            }
        }
        found.sort();
        if found.is_empty() {
            bail!("no .avsc files in {}", self.dir.display());
        }
        Ok(found)
    }
}

fn read_schema(path: &Path) -> Result<(String, Schema)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let schema = Schema::parse_str(&text)
        .with_context(|| format!("{}: not a valid Avro schema", path.display()))?;
    Ok((text, schema))
}

fn is_code(e: &RegistryError, code: i64) -> bool {
    e.code() == Some(code)
}

/// A subject's registered versions, oldest first (empty if the subject does not exist).
async fn registered(client: &RegistryClient, subject: &str) -> Result<Vec<(u32, Schema)>> {
    let versions = match client.versions(subject).await {
        Ok(v) => v,
        Err(e) if is_code(&e, codes::SUBJECT_NOT_FOUND) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for v in versions {
        let found = client.version(subject, Version::Number(v)).await?;
        let schema = Schema::parse_str(&found.schema)
            .with_context(|| format!("{subject} version {v} in the registry is not Avro"))?;
        out.push((v, schema));
    }
    Ok(out)
}

/// medallion's explanation of why `new` may not follow the registered versions.
fn explain(level: CompatibilityLevel, new: &Schema, existing: &[(u32, Schema)]) -> Vec<String> {
    let refs: Vec<(u32, &Schema)> = existing.iter().map(|(v, s)| (*v, s)).collect();
    compat::check(level, new, &refs)
        .into_iter()
        .map(|p| p.problem.to_string())
        .collect()
}

/// A bronze table fed from a registry subject, with the schema it reads records with now.
pub struct TableReader {
    subject: String,
    table: String,
    reader: Schema,
}

/// The Avro bronze tables of a pipeline spec that read through its `[registry]`.
pub async fn table_readers(spec_path: &Path) -> Result<Vec<TableReader>> {
    let origin = spec_path.display().to_string();
    let spec = PipelineSpec::from_file(spec_path)?;
    if spec.registry.is_none() {
        bail!("{origin}: the spec has no [registry]: its tables do not read by schema id");
    }
    let catalog = lakehouse::connect(&(&spec.lakehouse).into())
        .await
        .with_context(|| format!("{origin}: lakehouse.catalog"))?;
    let mut readers = Vec::new();
    for (i, b) in spec.bronze.iter().enumerate() {
        if b.format != Format::Avro {
            continue;
        }
        let config = BronzeConfig::from_spec(b, &origin, i)?;
        let reader = bronze::current_reader_schema(catalog.clone(), &config).await?;
        readers.push(TableReader {
            subject: config.subject.clone(),
            table: config.table.clone(),
            reader: (*reader.avro).clone(),
        });
    }
    Ok(readers)
}

/// Checks each target against its subject under the subject's level and, for every table in
/// `tables` fed from the subject, against what the table can read; prints a verdict per
/// subject and table, and returns whether all pass.
pub async fn check(
    client: &RegistryClient,
    targets: &Targets,
    tables: &[TableReader],
) -> Result<bool> {
    let mut all_ok = true;
    for (subject, path) in targets.resolve()? {
        let (text, schema) = read_schema(&path)?;
        all_ok &= registry_verdict(client, &subject, &path, &text, &schema).await?;
        for t in tables.iter().filter(|t| t.subject == subject) {
            let label = path.display().to_string();
            match evolution::evolve(&t.reader, &schema, &label) {
                Ok(Evolution::Readable) => println!("  table {}: reads it", t.table),
                Ok(Evolution::AddFields { added, .. }) => println!(
                    "  table {}: reads it after gaining the column(s) {}",
                    t.table,
                    added.join(", ")
                ),
                Err(problems) => {
                    all_ok = false;
                    println!(
                        "  table {}: CANNOT read it (its records would be dead-lettered as schema.incompatible)",
                        t.table
                    );
                    problems.iter().for_each(|p| println!("  - {p}"));
                }
            }
        }
    }
    Ok(all_ok)
}

/// Prints whether the registry would take `text` under the subject's level, with medallion's
/// explanation of each problem; returns whether it would.
async fn registry_verdict(
    client: &RegistryClient,
    subject: &str,
    path: &Path,
    text: &str,
    schema: &Schema,
) -> Result<bool> {
    let existing = registered(client, subject).await?;
    let Some((latest, _)) = existing.last() else {
        println!(
            "{subject}: compatible ({} would be its first version)",
            path.display()
        );
        return Ok(true);
    };
    let level = client.compatibility(Some(subject)).await?;
    let verdict = client.check_compatibility(subject, None, text).await?;
    let reasons = explain(level, schema, &existing);
    let head = format!(
        "{subject} ({level}, {} version(s), latest {latest}) <- {}",
        existing.len(),
        path.display()
    );
    if verdict.is_compatible {
        println!("{head}: compatible");
        if !reasons.is_empty() {
            println!("  note: medallion's rules disagree with the registry here:");
            reasons.iter().for_each(|r| println!("  - {r}"));
        }
    } else {
        println!("{head}: NOT compatible");
        if reasons.is_empty() {
            verdict
                .messages
                .iter()
                .for_each(|m| println!("  - (registry) {m}"));
        } else {
            reasons.iter().for_each(|r| println!("  - {r}"));
        }
    }
    Ok(verdict.is_compatible)
}

/// Registers each target under its subject; returns whether all were accepted.
pub async fn register(client: &RegistryClient, targets: &Targets) -> Result<bool> {
    let mut all_ok = true;
    for (subject, path) in targets.resolve()? {
        let (text, schema) = read_schema(&path)?;
        match client.register(&subject, &text).await {
            Ok(id) => {
                let found = client.lookup(&subject, &text).await?;
                println!(
                    "{subject}: {} is version {} (id {id})",
                    path.display(),
                    found.version
                );
            }
            Err(e) if is_code(&e, codes::INCOMPATIBLE_SCHEMA) => {
                all_ok = false;
                println!("{subject}: refused, {} is NOT compatible", path.display());
                let level = client.compatibility(Some(&subject)).await?;
                let existing = registered(client, &subject).await?;
                let reasons = explain(level, &schema, &existing);
                if reasons.is_empty() {
                    println!("  - (registry) {e}");
                }
                reasons.iter().for_each(|r| println!("  - {r}"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(all_ok)
}

/// Prints the field changes between two versions of a subject (default: the latest and the one
/// before it) and whether each can read the other's data.
pub async fn diff(
    client: &RegistryClient,
    subject: &str,
    from: Option<u32>,
    to: Option<u32>,
) -> Result<()> {
    let existing = registered(client, subject).await?;
    if existing.is_empty() {
        bail!("subject {subject} has no versions");
    }
    let pick = |v: u32| {
        existing
            .iter()
            .find(|(n, _)| *n == v)
            .map(|(_, s)| s)
            .with_context(|| format!("{subject} has no version {v}"))
    };
    let to = to.unwrap_or(existing[existing.len() - 1].0);
    let from = match from {
        Some(v) => v,
        None => existing
            .iter()
            .rev()
            .map(|(v, _)| *v)
            .find(|v| *v < to)
            .unwrap_or(to),
    };
    let (old, new) = (pick(from)?, pick(to)?);
    println!("{subject}: version {from} -> version {to}");
    let changes = compat::diff(old, new);
    if changes.is_empty() {
        println!("  no field changes");
    }
    changes.iter().for_each(|c| println!("  {c}"));
    let (old_label, new_label) = (format!("version {from}"), format!("version {to}"));
    for (name, problems) in [
        (
            format!("backward (version {to} reads version {from} data)"),
            compat::can_read(old, new, &old_label, &new_label),
        ),
        (
            format!("forward (version {from} reads version {to} data)"),
            compat::can_read(new, old, &new_label, &old_label),
        ),
    ] {
        if problems.is_empty() {
            println!("  {name}: yes");
        } else {
            println!("  {name}: no");
            problems.iter().for_each(|p| println!("    - {p}"));
        }
    }
    Ok(())
}

/// Prints every subject with its latest version, id, version count and level.
pub async fn list(client: &RegistryClient) -> Result<()> {
    let subjects = client.subjects().await?;
    if subjects.is_empty() {
        println!("no subjects in {}", client.url());
        return Ok(());
    }
    println!(
        "{:<40} {:>7} {:>6} {:>8}  compatibility",
        "subject", "latest", "id", "versions"
    );
    for subject in subjects {
        let versions = client.versions(&subject).await?;
        let latest = client.version(&subject, Version::Latest).await?;
        let level = client.compatibility(Some(&subject)).await?;
        println!(
            "{:<40} {:>7} {:>6} {:>8}  {level}",
            subject,
            latest.version,
            latest.id,
            versions.len()
        );
    }
    Ok(())
}

/// Prints the compatibility level in force for a subject (or the global one), after setting
/// it when `level` is given.
pub async fn level(
    client: &RegistryClient,
    subject: Option<&str>,
    level: Option<&str>,
) -> Result<()> {
    if let Some(level) = level {
        let level: CompatibilityLevel = level.parse()?;
        client.set_compatibility(subject, level).await?;
    }
    let level = client.compatibility(subject).await?;
    println!("{}: {level}", subject.unwrap_or("(global)"));
    Ok(())
}
