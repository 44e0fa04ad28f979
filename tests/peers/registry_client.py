#!/usr/bin/env python3
"""A schema-registry client we did not write (confluent-kafka's SchemaRegistryClient and
AvroSerializer) driven against a registry URL.

Runs a fixed scenario and prints ONE JSON object on stdout with what the client saw, so the
Rust test can compare it with Confluent's documented answers:

  * sets the global level, registers v1 through AvroSerializer (auto-register) while
    producing --events records to --topic on --broker (Confluent wire format), and reports
    the schema ids found in the produced frames;
  * reads back subjects, versions, the latest version, the subject's schema by id and by
    lookup, the schema types and compatibility levels;
  * tests a compatible v2 (adds a field with a default) and an incompatible v3 (adds a
    required field), registers v2, and records the client's errors (error_code, HTTP
    status) for an incompatible registration, an unknown subject, version and id, and an
    invalid schema;
  * soft-deletes and then permanently deletes a scratch subject.

Usage:
  registry_client.py --registry http://127.0.0.1:PORT --broker HOST:PORT --topic T --events N
"""

import argparse
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

V1 = {
    "type": "record",
    "name": "Purchase",
    "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "amount", "type": "double"},
    ],
}
V2 = dict(V1, fields=V1["fields"] + [{"name": "coupon", "type": ["null", "string"], "default": None}])
V3 = dict(V1, fields=V1["fields"] + [{"name": "channel", "type": "string"}])


def error_of(call):
    try:
        call()
    except SchemaRegistryError as e:
        return {"error_code": e.error_code, "http_status": e.http_status_code}
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--registry", required=True)
    p.add_argument("--broker", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--events", type=int, default=100)
    a = p.parse_args()

    client = SchemaRegistryClient({"url": a.registry})
    subject = f"{a.topic}-value"
    out = {}
    out["set_global_level"] = client.set_compatibility(level="BACKWARD")

    serializer = AvroSerializer(client, json.dumps(V1), conf={"auto.register.schemas": True})
    producer = Producer({"bootstrap.servers": a.broker, "enable.idempotence": False, "acks": "all"})
    frames = set()
    for i in range(a.events):
        value = serializer(
            {"order_id": f"o-{i}", "event_time": 1_700_000_000_000 + i * 1000, "amount": i * 1.5},
            SerializationContext(a.topic, MessageField.VALUE),
        )
        frames.add((value[0], int.from_bytes(value[1:5], "big")))
        producer.produce(a.topic, key=f"o-{i}".encode(), value=value)
    undelivered = producer.flush(30)
    out["produced"] = a.events
    out["undelivered"] = undelivered
    out["frames"] = sorted([magic, sid] for magic, sid in frames)

    latest = client.get_latest_version(subject)
    out["subjects"] = client.get_subjects()
    out["versions"] = client.get_versions(subject)
    out["latest"] = {"subject": latest.subject, "version": latest.version, "id": latest.schema_id}
    out["schema_by_id_equals_v1"] = json.loads(client.get_schema(latest.schema_id).schema_str) == V1
    out["schema_types"] = client.get_schema_types()
    looked_up = client.lookup_schema(subject, Schema(json.dumps(V1), "AVRO"))
    out["lookup"] = {"subject": looked_up.subject, "version": looked_up.version, "id": looked_up.schema_id}
    out["subjects_of_id"] = client.get_subjects_by_schema_id(latest.schema_id)
    out["global_level"] = client.get_compatibility()

    out["v2_compatible"] = client.test_compatibility(subject, Schema(json.dumps(V2), "AVRO"))
    out["v3_compatible"] = client.test_compatibility(subject, Schema(json.dumps(V3), "AVRO"))
    out["v3_compatible_all"] = client.test_compatibility_all_versions(subject, Schema(json.dumps(V3), "AVRO"))
    out["v2_id"] = client.register_schema(subject, Schema(json.dumps(V2), "AVRO"))
    out["v2_again_id"] = client.register_schema(subject, Schema(json.dumps(V2), "AVRO"))
    out["versions_after_v2"] = client.get_versions(subject)
    out["v3_register_error"] = error_of(lambda: client.register_schema(subject, Schema(json.dumps(V3), "AVRO")))
    out["subject_level"] = client.set_compatibility(subject_name=subject, level="NONE")
    out["subject_level_read"] = client.get_compatibility(subject)
    out["v3_id_under_none"] = client.register_schema(subject, Schema(json.dumps(V3), "AVRO"))

    out["unknown_subject_error"] = error_of(lambda: client.get_latest_version("no-such-subject"))
    out["unknown_version_error"] = error_of(lambda: client.get_version(subject, 99))
    out["unknown_id_error"] = error_of(lambda: client.get_schema(987654))
    out["invalid_schema_error"] = error_of(
        lambda: client.register_schema("scratch-value", Schema('{"type": "recrod"}', "AVRO"))
    )

    scratch = "scratch-value"
    client.register_schema(scratch, Schema(json.dumps(V1), "AVRO"))
    out["hard_delete_first_error"] = error_of(lambda: client.delete_subject(scratch, permanent=True))
    out["soft_deleted"] = client.delete_subject(scratch)
    out["hard_deleted"] = client.delete_subject(scratch, permanent=True)
    out["subjects_at_end"] = client.get_subjects()
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
