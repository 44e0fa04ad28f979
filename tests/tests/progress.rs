//! The progress display: on a terminal with text logs, `run --once` and maintenance show each
//! task's count and rate; piped, or with JSON logs, the output is the logs alone.

use anyhow::{ensure, Result};
use e2e::{
    create_topic, medallion_on_terminal, medallion_output, minute_events, produce, unique,
    Workspace, VIEW_LAYERS,
};

/// The line a finished task leaves on the terminal, `✓ NAME COUNT UNIT · RATE UNIT/s · TIME`,
/// without what follows it.
fn finished_line<'a>(screen: &'a str, name: &str, unit: &str) -> Option<&'a str> {
    let head = format!("✓ {name} ");
    screen.split(['\n', '\r']).find_map(|line| {
        let rest = &line[line.find(&head)? + head.len()..];
        let (count, rest) = rest.split_once(&format!(" {unit} · "))?;
        let (rate, _) = rest.split_once(&format!(" {unit}/s · "))?;
        let number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == ',');
        let rate_ok = number(rate) || rate.parse::<f64>().is_ok();
        (number(count) && rate_ok).then_some(line)
    })
}

fn assert_plain(what: &str, text: &str) {
    assert!(!text.contains('\x1b'), "{what}: escape codes in\n{text}");
    assert!(
        !text.contains('✓') && !text.contains("/s · "),
        "{what}: a progress line in\n{text}"
    );
}

/// Every line of `text` is a JSON object; their `fields.message`s.
fn json_messages(what: &str, text: &str) -> Result<Vec<String>> {
    let mut messages = Vec::new();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{what}: not a JSON line ({e}): {line:?}"))?;
        ensure!(value.is_object(), "{what}: not a JSON object: {line}");
        messages.extend(value["fields"]["message"].as_str().map(str::to_string));
    }
    Ok(messages)
}

#[test]
fn progress_shows_on_a_terminal_only_and_never_in_plain_or_json_logs() -> Result<()> {
    let ws = Workspace::new()?;
    let topic = unique("progress");
    create_topic(&topic, 2)?;
    let bronze = ws.web_bronze(
        &topic,
        "bronze.web_events",
        &format!(
            "group_id = \"{}\"\ncommit = {{ interval = \"1s\", max_rows = 1000 }}",
            unique("progress")
        ),
    );
    let spec = ws.write("progress.toml", &(ws.spec_head("") + &bronze + VIEW_LAYERS))?;
    let spec = spec.display().to_string();
    produce(&topic, &minute_events("p", 5_000))?;

    let screen = medallion_on_terminal(&["run", &spec, "--once"], ws.path())?;
    for (name, unit) in [
        ("bronze.web_events", "records"),
        ("silver.views", "rows"),
        ("gold.views_per_minute", "rows"),
    ] {
        let line = finished_line(&screen, name, unit);
        assert!(
            line.is_some_and(|l| l.contains(&format!("✓ {name} 5,000 {unit} · "))),
            "no finished progress line with 5,000 {unit} for {name} in\n{screen}"
        );
    }
    assert!(
        screen.contains("bronze run finished"),
        "the log lines are missing from\n{screen}"
    );

    // Nothing new to read now, but every task still starts: a display would show them.
    let piped = medallion_output(&["run", &spec, "--once"], ws.path())?;
    let stderr = String::from_utf8_lossy(&piped.stderr);
    ensure!(piped.status.success(), "piped --once failed:\n{stderr}");
    assert!(stderr.contains("bronze run finished"), "{stderr}");
    assert_plain("piped text logs", &stderr);

    let json_args = ["--log-format", "json", "run", &spec, "--once"];
    let piped = medallion_output(&json_args, ws.path())?;
    let stderr = String::from_utf8_lossy(&piped.stderr);
    ensure!(
        piped.status.success(),
        "piped JSON --once failed:\n{stderr}"
    );
    assert_plain("piped JSON logs", &stderr);
    let messages = json_messages("piped JSON logs", &stderr)?;
    assert!(
        messages.iter().any(|m| m == "bronze run finished"),
        "{messages:?}"
    );

    let screen = medallion_on_terminal(&json_args, ws.path())?;
    assert_plain("JSON logs on a terminal", &screen);
    let messages = json_messages("JSON logs on a terminal", &screen)?;
    assert!(
        messages.iter().any(|m| m == "bronze run finished"),
        "{messages:?}"
    );

    let tables = ["bronze.web_events", "silver.views"];
    let mut args = vec!["maintain", "compact", "--spec", &spec];
    args.extend(tables);
    let screen = medallion_on_terminal(&args, ws.path())?;
    assert!(
        finished_line(&screen, "maintain compact", "tables")
            .is_some_and(|l| l.contains("✓ maintain compact 2 tables · ")),
        "no finished maintenance progress line in\n{screen}"
    );
    for table in tables {
        assert!(
            screen.contains(&format!("{table}: compacted ")),
            "no compaction result for {table} in\n{screen}"
        );
    }
    Ok(())
}
