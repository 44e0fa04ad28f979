//! The Avro compatibility suite: every case in `data/compatibility.toml` is checked for its
//! verdict and its exact messages, and compared with apache-avro's own resolution check.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use schemas::compat::{check, CompatibilityLevel};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    rule: String,
    level: String,
    versions: Vec<String>,
    new: String,
    compatible: bool,
    #[serde(default)]
    messages: Vec<String>,
    /// Why apache-avro's `SchemaCompatibility` gives another verdict, where it does.
    apache_avro: Option<String>,
}

fn parse(text: &str, case: &str) -> Schema {
    Schema::parse_str(text).unwrap_or_else(|e| panic!("case `{case}`: bad schema {text}: {e}"))
}

/// The verdict apache-avro's checker gives for a level, applied the way the registry does.
fn apache_avro_verdict(level: CompatibilityLevel, new: &Schema, old: &[Schema]) -> bool {
    use CompatibilityLevel::*;
    let against: &[Schema] = match level {
        None => return true,
        Backward | Forward | Full => old.last().map(std::slice::from_ref).unwrap_or(&[]),
        _ => old,
    };
    against.iter().all(|o| {
        let backward = matches!(level, Backward | BackwardTransitive | Full | FullTransitive);
        let forward = matches!(level, Forward | ForwardTransitive | Full | FullTransitive);
        (!backward || SchemaCompatibility::can_read(o, new).is_ok())
            && (!forward || SchemaCompatibility::can_read(new, o).is_ok())
    })
}

#[test]
fn avro_compatibility_suite() {
    let suite: Suite = toml::from_str(include_str!("data/compatibility.toml")).unwrap();
    let mut failures = Vec::new();
    let mut levels = std::collections::HashSet::new();
    for case in &suite.case {
        let level: CompatibilityLevel = case.level.parse().unwrap();
        levels.insert(level);
        let old: Vec<Schema> = case.versions.iter().map(|v| parse(v, &case.name)).collect();
        let new = parse(&case.new, &case.name);
        let registered: Vec<(u32, &Schema)> = (1..).zip(old.iter()).collect();
        let found: Vec<String> = check(level, &new, &registered)
            .iter()
            .map(|p| p.problem.to_string())
            .collect();
        if found.is_empty() != case.compatible {
            failures.push(format!(
                "`{}` ({}): expected compatible = {}, found {found:#?}",
                case.name, case.rule, case.compatible
            ));
        } else if found != case.messages {
            failures.push(format!(
                "`{}`: messages differ\nexpected {:#?}\nfound    messages = {found:#?}",
                case.name, case.messages
            ));
        }
        let theirs = apache_avro_verdict(level, &new, &old);
        match (&case.apache_avro, theirs == case.compatible) {
            (None, false) => failures.push(format!(
                "`{}`: apache-avro says compatible = {theirs}; explain it in `apache_avro`",
                case.name
            )),
            (Some(_), true) => failures.push(format!(
                "`{}`: apache-avro now agrees; drop the `apache_avro` note",
                case.name
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(suite.case.len() >= 60, "{} cases", suite.case.len());
    assert_eq!(levels.len(), 7, "every level has cases");
}
