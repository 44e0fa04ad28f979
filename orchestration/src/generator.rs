//! A realistic event stream for the demo and the benchmarks: web events (JSON) and sensor
//! readings (Avro), with a few percent duplicates, malformed records and out-of-order times.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::{Record, Value};
use apache_avro::Schema;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

/// Schema id written in the Confluent frame of generated Avro records when no registry gave one.
pub const SENSOR_SCHEMA_ID: u32 = 1;

/// What a generated stream holds, for the summary.
#[derive(Debug, Default, Clone)]
pub struct Generated {
    pub messages: Vec<(String, Vec<u8>)>,
    pub duplicates: usize,
    pub malformed: usize,
}

const PAGES: [&str; 6] = [
    "/",
    "/search",
    "/product/42",
    "/product/7",
    "/cart",
    "/checkout",
];
const COUNTRIES: [&str; 5] = ["DE", "US", "FR", "GB", "JP"];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];

/// `n` web events as JSON, keyed by user, each up to `max_gap_ms` after the one before.
pub fn web_events(n: usize, seed: u64, start_ms: i64, max_gap_ms: i64) -> Generated {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Generated::default();
    let mut t = start_ms;
    while out.messages.len() < n {
        t += rng.gen_range(0..max_gap_ms);
        let user = format!("u{}", rng.gen_range(0..500));
        let roll = rng.gen_range(0..100);
        if roll < 2 {
            out.malformed += 1;
            let bad = match rng.gen_range(0..3) {
                0 => format!("{{\"event_id\": \"e{}\", \"event_type\": \"click\", ", out.messages.len()),
                1 => json!({"event_id": format!("bad{}", out.messages.len()), "event_type": "click", "event_time": "not a time", "user_id": user}).to_string(),
                _ => json!({"event_type": "page_view", "event_time": t, "user_id": user}).to_string(),
            };
            out.messages.push((user, bad.into_bytes()));
            continue;
        }
        // A little disorder: some events carry a time from up to 30 s earlier.
        let event_time = if roll < 7 {
            t - rng.gen_range(0..30_000)
        } else {
            t
        };
        let kind =
            ["page_view", "page_view", "page_view", "click", "purchase"][rng.gen_range(0..5)];
        let mut event = json!({
            "event_id": format!("e{seed}-{}", out.messages.len()),
            "event_type": kind,
            "event_time": event_time,
            "user_id": user,
            "session_id": format!("s{}", rng.gen_range(0..2000)),
            "page": PAGES[rng.gen_range(0..PAGES.len())],
            "country": COUNTRIES[rng.gen_range(0..COUNTRIES.len())],
            "payload": {"user_agent": "demo/1.0", "referrer": "search"},
        });
        if kind == "purchase" {
            event["amount"] = json!((rng.gen_range(100..20_000) as f64) / 100.0);
            event["currency"] = json!(CURRENCIES[rng.gen_range(0..CURRENCIES.len())]);
        }
        // Purchases and clicks (add-to-cart on /cart) name their product.
        if kind != "page_view" {
            event["payload"]["product"] = json!(format!("p{}", rng.gen_range(0..40)));
        }
        let bytes = event.to_string().into_bytes();
        out.messages.push((user.clone(), bytes.clone()));
        if roll >= 97 && out.messages.len() < n {
            out.duplicates += 1;
            out.messages.push((user, bytes));
        }
    }
    out
}

/// `n` sensor readings as Avro framed with `schema_id`, keyed by device.
pub fn sensor_readings(
    schema: &Arc<Schema>,
    schema_id: u32,
    n: usize,
    seed: u64,
    start_ms: i64,
) -> Generated {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Generated::default();
    let mut t = start_ms;
    while out.messages.len() < n {
        t += rng.gen_range(0..100);
        let device = format!("d{}", rng.gen_range(0..50));
        if rng.gen_range(0..100) < 2 {
            out.malformed += 1;
            out.messages
                .push((device, schemas::wire::frame(schema_id, b"garbage")));
            continue;
        }
        let Some(mut record) = Record::new(schema) else {
            break;
        };
        record.put("reading_id", format!("r{seed}-{}", out.messages.len()));
        record.put("device_id", device.clone());
        record.put("event_time", Value::TimestampMillis(t));
        record.put("temperature_c", 15.0 + rng.gen_range(0.0..15.0));
        record.put(
            "humidity_pct",
            Value::Union(1, Box::new(Value::Double(rng.gen_range(20.0..80.0)))),
        );
        record.put(
            "battery_pct",
            Value::Union(1, Box::new(Value::Int(rng.gen_range(5..100)))),
        );
        let Ok(body) = apache_avro::to_avro_datum(schema, record) else {
            break;
        };
        out.messages
            .push((device, schemas::wire::frame(schema_id, &body)));
    }
    out
}

/// Produces keyed messages with an idempotent producer and waits for every acknowledgement.
pub async fn produce(
    brokers: &str,
    topic: &str,
    messages: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "10")
        .set("enable.idempotence", "true")
        .create()?;
    let mut pending = Vec::with_capacity(10_000);
    for (key, value) in messages {
        let mut record = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(value.as_slice());
        // `send_result` enqueues at once; awaiting `send` one by one would serialise the stream.
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break pending.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        if pending.len() >= 10_000 {
            for p in pending.drain(..) {
                p.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}
