//! Numbers and values as the Markdown and HTML reports show them.

use serde_json::Value;

use crate::model::{SchemaVersion, TableReport};

/// `1234567` as `1,234,567`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A signed count, grouped like [`count`].
pub(crate) fn signed(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", count(n.unsigned_abs()))
}

pub(crate) fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

pub(crate) fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7_200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3_600.0),
        s => format!("{:.1} d", s / 86_400.0),
    }
}

/// How far a table is behind its source.
pub(crate) fn lag(t: &TableReport) -> String {
    if let Some(k) = &t.kafka_lag {
        return match &k.error {
            Some(_) => "lag unknown (Kafka not reached)".to_string(),
            None => format!("{} records", count(k.records)),
        };
    }
    match &t.upstream_lag {
        Some(u) => format!(
            "{} commits, {} rows of {}",
            count(u.commits_behind),
            count(u.rows_behind),
            u.source
        ),
        None => "-".to_string(),
    }
}

pub(crate) fn value(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `schema 1 (current): first used …; added a, b`.
pub(crate) fn schema_line(v: &SchemaVersion) -> String {
    format!(
        "schema {}{}: first used {}; {}",
        v.schema_id,
        if v.current { " (current)" } else { "" },
        v.first_used.as_deref().unwrap_or("never"),
        changes(v)
    )
}

fn changes(v: &SchemaVersion) -> String {
    let mut parts = Vec::new();
    if !v.added.is_empty() {
        parts.push(format!("added {}", v.added.join(", ")));
    }
    if !v.removed.is_empty() {
        parts.push(format!("removed {}", v.removed.join(", ")));
    }
    if !v.retyped.is_empty() {
        parts.push(format!("retyped {}", v.retyped.join(", ")));
    }
    if parts.is_empty() {
        "no column changes".to_string()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(20_000), "20,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(signed(-1_000), "-1,000");
        assert_eq!(signed(20_000), "20,000");
    }
}
