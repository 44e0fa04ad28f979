//! Avro schema compatibility: the specification's schema-resolution rules, and the seven
//! compatibility levels of the Confluent Schema Registry built on them.
//!
//! apache-avro has a resolution check of its own, but it stops at the first problem, ignores
//! enum defaults and aliases of named types, and reports problems as debug dumps. Users need
//! every problem, with the field and the rule, so the rules are checked here; the suite in
//! `tests/compatibility.rs` records where the two disagree.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use apache_avro::schema::{Name, RecordSchema};
use apache_avro::Schema;

/// How a new version of a subject's schema must relate to the versions registered before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompatibilityLevel {
    /// Any change is allowed.
    None,
    /// The new schema reads data written with the latest version.
    Backward,
    /// The new schema reads data written with every earlier version.
    BackwardTransitive,
    /// The latest version reads data written with the new schema.
    Forward,
    /// Every earlier version reads data written with the new schema.
    ForwardTransitive,
    /// Backward and forward, against the latest version.
    Full,
    /// Backward and forward, against every earlier version.
    FullTransitive,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::None,
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
    ];

    /// The name the registry API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level name was not one of the seven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a compatibility level (expected NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL or FULL_TRANSITIVE)")]
pub struct UnknownLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = UnknownLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CompatibilityLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownLevel(s.to_string()))
    }
}

/// The rule a pair of schemas breaks (the names Avro's and Confluent's checkers use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncompatibilityKind {
    NameMismatch,
    FixedSizeMismatch,
    MissingEnumSymbols,
    ReaderFieldMissingDefaultValue,
    TypeMismatch,
    MissingUnionBranch,
}

impl IncompatibilityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IncompatibilityKind::NameMismatch => "NAME_MISMATCH",
            IncompatibilityKind::FixedSizeMismatch => "FIXED_SIZE_MISMATCH",
            IncompatibilityKind::MissingEnumSymbols => "MISSING_ENUM_SYMBOLS",
            IncompatibilityKind::ReaderFieldMissingDefaultValue => {
                "READER_FIELD_MISSING_DEFAULT_VALUE"
            }
            IncompatibilityKind::TypeMismatch => "TYPE_MISMATCH",
            IncompatibilityKind::MissingUnionBranch => "MISSING_UNION_BRANCH",
        }
    }
}

/// One reason a reader cannot read what a writer wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    pub kind: IncompatibilityKind,
    /// JSON pointer into the reader's schema, e.g. `/fields/2/type`.
    pub location: String,
    /// What is wrong and which rule says so, naming the field and both schemas.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} at {})",
            self.message,
            self.kind.as_str(),
            self.location
        )
    }
}

/// A problem found by [`check`]: which registered version it concerns, and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionIncompatibility {
    /// The registered version the new schema was checked against.
    pub version: u32,
    pub problem: Incompatibility,
}

/// Checks `new` against the registered versions of a subject (`existing`, oldest first, as
/// `(version, schema)`) under `level`. Returns every problem; empty means compatible.
pub fn check(
    level: CompatibilityLevel,
    new: &Schema,
    existing: &[(u32, &Schema)],
) -> Vec<VersionIncompatibility> {
    let against: &[(u32, &Schema)] = match existing.split_last() {
        None => &[],
        Some((last, _)) if !level.transitive() => std::slice::from_ref(last),
        Some(_) => existing,
    };
    let mut out = Vec::new();
    for &(version, old) in against.iter().rev() {
        let old_label = format!("version {version}");
        if level.backward() {
            out.extend(
                can_read(old, new, &old_label, "the new schema")
                    .into_iter()
                    .map(|problem| VersionIncompatibility { version, problem }),
            );
        }
        if level.forward() {
            out.extend(
                can_read(new, old, "the new schema", &old_label)
                    .into_iter()
                    .map(|problem| VersionIncompatibility { version, problem }),
            );
        }
    }
    out
}

/// Every reason data written with `writer` cannot be read with `reader`, by the Avro
/// specification's schema-resolution rules. The labels name the two schemas in messages.
pub fn can_read(
    writer: &Schema,
    reader: &Schema,
    writer_label: &str,
    reader_label: &str,
) -> Vec<Incompatibility> {
    let mut checker = Checker {
        writer_names: names_of(writer),
        reader_names: names_of(reader),
        writer_label,
        reader_label,
        in_progress: HashSet::new(),
        found: Vec::new(),
    };
    checker.check(writer, reader, &mut Location::default());
    checker.found
}

/// Where the checker is: the JSON pointer into the reader and the dotted field path.
#[derive(Default, Clone)]
struct Location {
    pointer: String,
    field: String,
}

impl Location {
    fn push(&mut self, segment: &str) -> usize {
        let len = self.pointer.len();
        self.pointer.push('/');
        self.pointer.push_str(segment);
        len
    }

    fn what(&self) -> String {
        if self.field.is_empty() {
            "the top-level schema".to_string()
        } else {
            format!("field `{}`", self.field)
        }
    }

    fn pointer(&self) -> String {
        if self.pointer.is_empty() {
            "/".to_string()
        } else {
            self.pointer.clone()
        }
    }
}

struct Checker<'a> {
    writer_names: HashMap<String, &'a Schema>,
    reader_names: HashMap<String, &'a Schema>,
    writer_label: &'a str,
    reader_label: &'a str,
    /// Named-type pairs being checked, so recursive schemas terminate.
    in_progress: HashSet<(String, String)>,
    found: Vec<Incompatibility>,
}

impl<'a> Checker<'a> {
    fn report(&mut self, kind: IncompatibilityKind, at: &Location, message: String) {
        self.found.push(Incompatibility {
            kind,
            location: at.pointer(),
            message,
        });
    }

    fn check(&mut self, writer: &'a Schema, reader: &'a Schema, at: &mut Location) {
        let writer = resolve(writer, &self.writer_names);
        let reader = resolve(reader, &self.reader_names);
        match (writer, reader) {
            (Schema::Union(w), Schema::Union(_)) => {
                for branch in w.variants() {
                    self.check_against_reader_union(branch, reader, at);
                }
            }
            (Schema::Union(w), _) => {
                for branch in w.variants() {
                    self.check(branch, reader, at);
                }
            }
            (_, Schema::Union(_)) => self.check_against_reader_union(writer, reader, at),
            (Schema::Record(w), Schema::Record(r)) => {
                if self.names_match(&w.name, &r.name, r.aliases.as_deref(), "record", at) {
                    self.check_records(w, r, at);
                }
            }
            (Schema::Enum(w), Schema::Enum(r)) => {
                if self.names_match(&w.name, &r.name, r.aliases.as_deref(), "enum", at) {
                    let missing: Vec<&str> = w
                        .symbols
                        .iter()
                        .filter(|s| !r.symbols.contains(s))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() && r.default.is_none() {
                        let message = format!(
                            "{}: enum `{}` in {} lacks the symbol(s) {} that {} can write, and has no default symbol to read them as",
                            at.what(),
                            r.name.name,
                            self.reader_label,
                            missing.join(", "),
                            self.writer_label,
                        );
                        self.report(IncompatibilityKind::MissingEnumSymbols, at, message);
                    }
                }
            }
            (Schema::Fixed(w), Schema::Fixed(r)) => {
                if self.names_match(&w.name, &r.name, r.aliases.as_deref(), "fixed", at)
                    && w.size != r.size
                {
                    let message = format!(
                        "{}: fixed `{}` is {} bytes in {} but {} bytes in {}",
                        at.what(),
                        r.name.name,
                        r.size,
                        self.reader_label,
                        w.size,
                        self.writer_label,
                    );
                    self.report(IncompatibilityKind::FixedSizeMismatch, at, message);
                }
            }
            (Schema::Array(w), Schema::Array(r)) => {
                let mark = at.push("items");
                self.check(&w.items, &r.items, at);
                at.pointer.truncate(mark);
            }
            (Schema::Map(w), Schema::Map(r)) => {
                let mark = at.push("values");
                self.check(&w.types, &r.types, at);
                at.pointer.truncate(mark);
            }
            (Schema::Decimal(w), Schema::Decimal(r)) => {
                if (w.precision, w.scale) != (r.precision, r.scale) {
                    self.type_mismatch(
                        writer,
                        reader,
                        at,
                        "decimals match only with the same precision and scale",
                    );
                } else {
                    self.check(&w.inner, &r.inner, at);
                }
            }
            _ => {
                if !promotes(underlying(writer), underlying(reader)) {
                    self.type_mismatch(
                        writer,
                        reader,
                        at,
                        "Avro promotes only int to long/float/double, long to float/double, float to double and string to/from bytes",
                    );
                }
            }
        }
    }

    fn type_mismatch(&mut self, writer: &Schema, reader: &Schema, at: &Location, rule: &str) {
        let message = format!(
            "{}: {} writes {}, which {} cannot read as {} ({rule})",
            at.what(),
            self.writer_label,
            describe(writer),
            self.reader_label,
            describe(reader),
        );
        self.report(IncompatibilityKind::TypeMismatch, at, message);
    }

    /// A writer value (not itself a union) is read by the first reader branch that can read
    /// it completely; if one branch is of the right kind but differs inside, its problems
    /// are the ones worth showing.
    fn check_against_reader_union(
        &mut self,
        writer: &'a Schema,
        reader: &'a Schema,
        at: &mut Location,
    ) {
        let Schema::Union(r) = reader else {
            return;
        };
        let writer = resolve(writer, &self.writer_names);
        let mut closest: Option<Vec<Incompatibility>> = None;
        for branch in r.variants() {
            let mut trial = Checker {
                writer_names: self.writer_names.clone(),
                reader_names: self.reader_names.clone(),
                writer_label: self.writer_label,
                reader_label: self.reader_label,
                in_progress: self.in_progress.clone(),
                found: Vec::new(),
            };
            trial.check(writer, branch, at);
            if trial.found.is_empty() {
                return;
            }
            if closest.is_none() && same_kind(writer, resolve(branch, &self.reader_names)) {
                closest = Some(trial.found);
            }
        }
        match closest {
            Some(problems) => self.found.extend(problems),
            None => {
                let message = format!(
                    "{}: {} writes {}, and no branch of {} in {} can read it",
                    at.what(),
                    self.writer_label,
                    describe(writer),
                    describe(reader),
                    self.reader_label,
                );
                self.report(IncompatibilityKind::MissingUnionBranch, at, message);
            }
        }
    }

    fn names_match(
        &mut self,
        writer: &Name,
        reader: &Name,
        reader_aliases: Option<&[apache_avro::schema::Alias]>,
        kind: &str,
        at: &Location,
    ) -> bool {
        // The specification matches named types on their unqualified names, so moving a type
        // to another namespace is compatible; the reader's aliases may rename it.
        let matches = writer.name == reader.name
            || reader_aliases
                .unwrap_or_default()
                .iter()
                .any(|alias| alias.name() == writer.name);
        if !matches {
            let message = format!(
                "{}: {kind} `{}` in {} is neither named `{}` as in {} nor has that name as an alias",
                at.what(),
                reader.name,
                self.reader_label,
                writer.name,
                self.writer_label,
            );
            self.report(IncompatibilityKind::NameMismatch, at, message);
        }
        matches
    }

    fn check_records(&mut self, w: &'a RecordSchema, r: &'a RecordSchema, at: &mut Location) {
        let pair = (w.name.fullname(None), r.name.fullname(None));
        if !self.in_progress.insert(pair.clone()) {
            return;
        }
        for (i, field) in r.fields.iter().enumerate() {
            let mark = at.push(&format!("fields/{i}"));
            let field_mark = at.field.len();
            if !at.field.is_empty() {
                at.field.push('.');
            }
            at.field.push_str(&field.name);
            // Only the reader's aliases map names: apache-avro's `lookup` also holds the
            // writer's aliases, which the specification ignores.
            let written = std::iter::once(&field.name)
                .chain(field.aliases.iter().flatten())
                .find_map(|name| w.fields.iter().position(|wf| &wf.name == name));
            match written {
                Some(pos) => {
                    let type_mark = at.push("type");
                    self.check(&w.fields[pos].schema, &field.schema, at);
                    at.pointer.truncate(type_mark);
                }
                None if field.default.is_none() => {
                    let message = format!(
                        "{} is in {} without a default, and {} does not write it",
                        at.what(),
                        self.reader_label,
                        self.writer_label,
                    );
                    self.report(
                        IncompatibilityKind::ReaderFieldMissingDefaultValue,
                        at,
                        message,
                    );
                }
                None => {}
            }
            at.field.truncate(field_mark);
            at.pointer.truncate(mark);
        }
        self.in_progress.remove(&pair);
    }
}

/// How one field differs between two versions of a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldChange {
    Added {
        field: String,
        detail: String,
    },
    Removed {
        field: String,
        detail: String,
    },
    Changed {
        field: String,
        from: String,
        to: String,
    },
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldChange::Added { field, detail } => write!(f, "+ {field}: {detail}"),
            FieldChange::Removed { field, detail } => write!(f, "- {field}: {detail}"),
            FieldChange::Changed { field, from, to } => write!(f, "~ {field}: {from} -> {to}"),
        }
    }
}

/// The field-level differences from `old` to `new`, records nested in fields (directly or in
/// unions, arrays and maps) included, by dotted field path.
pub fn diff(old: &Schema, new: &Schema) -> Vec<FieldChange> {
    let mut old_fields = Vec::new();
    let mut new_fields = Vec::new();
    flatten_fields(
        old,
        &names_of(old),
        "",
        &mut old_fields,
        &mut HashSet::new(),
    );
    flatten_fields(
        new,
        &names_of(new),
        "",
        &mut new_fields,
        &mut HashSet::new(),
    );
    let old_map: HashMap<&str, &str> = old_fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let new_map: HashMap<&str, &str> = new_fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut out = Vec::new();
    for (field, detail) in &old_fields {
        match new_map.get(field.as_str()) {
            None => out.push(FieldChange::Removed {
                field: field.clone(),
                detail: detail.clone(),
            }),
            Some(to) if to != detail => out.push(FieldChange::Changed {
                field: field.clone(),
                from: detail.clone(),
                to: to.to_string(),
            }),
            Some(_) => {}
        }
    }
    for (field, detail) in &new_fields {
        if !old_map.contains_key(field.as_str()) {
            out.push(FieldChange::Added {
                field: field.clone(),
                detail: detail.clone(),
            });
        }
    }
    out
}

/// `(dotted path, "type [default …]")` of every field of every record reachable in `schema`.
fn flatten_fields<'a>(
    schema: &'a Schema,
    names: &HashMap<String, &'a Schema>,
    prefix: &str,
    out: &mut Vec<(String, String)>,
    seen: &mut HashSet<String>,
) {
    match resolve(schema, names) {
        Schema::Record(r) => {
            if !seen.insert(r.name.fullname(None)) {
                return;
            }
            for field in &r.fields {
                let path = if prefix.is_empty() {
                    field.name.clone()
                } else {
                    format!("{prefix}.{}", field.name)
                };
                let mut detail = describe(&field.schema);
                if let Some(default) = &field.default {
                    detail.push_str(&format!(" (default {default})"));
                }
                out.push((path.clone(), detail));
                flatten_fields(&field.schema, names, &path, out, seen);
            }
            seen.remove(&r.name.fullname(None));
        }
        Schema::Union(u) => u
            .variants()
            .iter()
            .for_each(|v| flatten_fields(v, names, prefix, out, seen)),
        Schema::Array(a) => flatten_fields(&a.items, names, prefix, out, seen),
        Schema::Map(m) => flatten_fields(&m.types, names, prefix, out, seen),
        _ => {}
    }
}

/// Follows a reference to a named type to its definition.
fn resolve<'a>(schema: &'a Schema, names: &HashMap<String, &'a Schema>) -> &'a Schema {
    match schema {
        Schema::Ref { name } => names.get(&name.fullname(None)).copied().unwrap_or(schema),
        other => other,
    }
}

/// Every named type defined in a schema, by full name.
fn names_of(schema: &Schema) -> HashMap<String, &Schema> {
    fn walk<'a>(schema: &'a Schema, out: &mut HashMap<String, &'a Schema>) {
        match schema {
            Schema::Record(r) => {
                out.insert(r.name.fullname(None), schema);
                for field in &r.fields {
                    walk(&field.schema, out);
                }
            }
            Schema::Enum(e) => {
                out.insert(e.name.fullname(None), schema);
            }
            Schema::Fixed(f) => {
                out.insert(f.name.fullname(None), schema);
            }
            Schema::Array(a) => walk(&a.items, out),
            Schema::Map(m) => walk(&m.types, out),
            Schema::Union(u) => u.variants().iter().for_each(|v| walk(v, out)),
            Schema::Decimal(d) => walk(&d.inner, out),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    walk(schema, &mut out);
    out
}

/// The Avro type a logical type is encoded as; logical types resolve as their encoding
/// (the specification lets readers ignore the annotation), decimals aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Other,
}

fn underlying(schema: &Schema) -> Encoding {
    match schema {
        Schema::Null => Encoding::Null,
        Schema::Boolean => Encoding::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Encoding::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Encoding::Long,
        Schema::Float => Encoding::Float,
        Schema::Double => Encoding::Double,
        Schema::Bytes | Schema::BigDecimal => Encoding::Bytes,
        Schema::String | Schema::Uuid => Encoding::String,
        Schema::Duration => Encoding::Fixed(12),
        Schema::Decimal(d) => underlying(&d.inner),
        _ => Encoding::Other,
    }
}

fn promotes(writer: Encoding, reader: Encoding) -> bool {
    use Encoding::*;
    match (writer, reader) {
        (Other, _) | (_, Other) | (Fixed(_), _) | (_, Fixed(_)) => false,
        (w, r) if w == r => true,
        (Int, Long | Float | Double) | (Long, Float | Double) | (Float, Double) => true,
        (String, Bytes) | (Bytes, String) => true,
        _ => false,
    }
}

fn same_kind(writer: &Schema, reader: &Schema) -> bool {
    matches!(
        (writer, reader),
        (Schema::Record(_), Schema::Record(_))
            | (Schema::Enum(_), Schema::Enum(_))
            | (Schema::Fixed(_), Schema::Fixed(_))
            | (Schema::Array(_), Schema::Array(_))
            | (Schema::Map(_), Schema::Map(_))
            | (Schema::Decimal(_), Schema::Decimal(_))
    )
}

/// A short human name for a schema: `int`, `record Order`, `array<string>`, …
fn describe(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Array(a) => format!("array<{}>", describe(&a.items)),
        Schema::Map(m) => format!("map<{}>", describe(&m.types)),
        Schema::Union(u) => format!(
            "[{}]",
            u.variants()
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Schema::Record(r) => format!("record {}", r.name.name),
        Schema::Enum(e) => format!("enum {} {{{}}}", e.name.name, e.symbols.join(", ")),
        Schema::Fixed(f) => format!("fixed {}({})", f.name.name, f.size),
        Schema::Decimal(d) => format!(
            "decimal({}, {}) on {}",
            d.precision,
            d.scale,
            describe(&d.inner)
        ),
        Schema::BigDecimal => "big-decimal (bytes)".into(),
        Schema::Uuid => "uuid (string)".into(),
        Schema::Date => "date (int)".into(),
        Schema::TimeMillis => "time-millis (int)".into(),
        Schema::TimeMicros => "time-micros (long)".into(),
        Schema::TimestampMillis => "timestamp-millis (long)".into(),
        Schema::TimestampMicros => "timestamp-micros (long)".into(),
        Schema::TimestampNanos => "timestamp-nanos (long)".into(),
        Schema::LocalTimestampMillis => "local-timestamp-millis (long)".into(),
        Schema::LocalTimestampMicros => "local-timestamp-micros (long)".into(),
        Schema::LocalTimestampNanos => "local-timestamp-nanos (long)".into(),
        Schema::Duration => "duration (fixed 12)".into(),
        Schema::Ref { name } => name.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Schema {
        Schema::parse_str(s).unwrap()
    }

    #[test]
    fn recursive_schemas_terminate() {
        let list = r#"{"type":"record","name":"Node","fields":[
            {"name":"v","type":"int"},
            {"name":"next","type":["null","Node"],"default":null}]}"#;
        let longer = r#"{"type":"record","name":"Node","fields":[
            {"name":"v","type":"long"},
            {"name":"next","type":["null","Node"],"default":null}]}"#;
        assert!(can_read(&parse(list), &parse(longer), "w", "r").is_empty());
        let problems = can_read(&parse(longer), &parse(list), "w", "r");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].location, "/fields/0/type");
    }

    #[test]
    fn diff_names_added_removed_and_changed_fields() {
        let old = parse(
            r#"{"type":"record","name":"E","fields":[
                {"name":"id","type":"string"},
                {"name":"n","type":"int"},
                {"name":"item","type":{"type":"record","name":"I","fields":[{"name":"sku","type":"string"}]}}]}"#,
        );
        let new = parse(
            r#"{"type":"record","name":"E","fields":[
                {"name":"id","type":"string"},
                {"name":"n","type":"long"},
                {"name":"item","type":{"type":"record","name":"I","fields":[{"name":"qty","type":"int","default":1}]}},
                {"name":"coupon","type":["null","string"],"default":null}]}"#,
        );
        let changes: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            changes,
            [
                "~ n: int -> long",
                "- item.sku: string",
                "+ item.qty: int (default 1)",
                "+ coupon: [null, string] (default null)",
            ]
        );
    }

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!(
            "full_transitive".parse::<CompatibilityLevel>(),
            Ok(CompatibilityLevel::FullTransitive)
        );
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
    }
}
