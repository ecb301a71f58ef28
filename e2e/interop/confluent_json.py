"""pedidos's topics through Confluent's own Python client and Schema Registry serializers
(confluent-kafka's JSONDeserializer and JSONSerializer with its SchemaRegistryClient), with no
parsing of our own: what a team consuming pedidos from Python would write. Run by
e2e/tests/registry.rs in the virtualenv of scripts/confluent-python.sh.

  confluent_json.py consume --bootstrap B --registry URL --topic T --count N
      prints each record's value, as the deserializer returns it, one JSON line each
  confluent_json.py produce --bootstrap B --registry URL --topic T --schema FILE --value JSON
      produces one record keyed by its "usuario", serialized against the subject's latest
      schema (auto-registration off: the mesh registered it)
"""

import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def registry_client(url):
    # A request timeout, so a request the registry never answers is retried (the client
    # retries timeouts). Without one, httpx waits until the server drops the connection: a
    # schema lookup in CI once waited out Apicurio's 30-minute idle timeout.
    return SchemaRegistryClient({"url": url, "timeout": 10})


def consume(args):
    client = registry_client(args.registry)
    # No schema of our own: each record's is fetched by the id in its frame, and the value
    # validated against it.
    deserializer = JSONDeserializer(None, schema_registry_client=client)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"python-interop-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    read = 0
    deadline = time.monotonic() + args.timeout
    try:
        while read < args.count and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                sys.exit(f"consumer error: {msg.error()}")
            context = SerializationContext(msg.topic(), MessageField.VALUE)
            print(json.dumps(deserializer(msg.value(), context)), flush=True)
            read += 1
    finally:
        consumer.close()
    if read < args.count:
        sys.exit(f"read {read} of {args.count} records of {args.topic} in {args.timeout} s")


def produce(args):
    client = registry_client(args.registry)
    with open(args.schema, encoding="utf-8") as f:
        schema = f.read()
    serializer = JSONSerializer(
        schema,
        client,
        conf={"auto.register.schemas": False, "use.latest.version": True},
    )
    value = json.loads(args.value)
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
    failures = []
    producer.produce(
        args.topic,
        key=value["usuario"].encode(),
        value=serializer(value, SerializationContext(args.topic, MessageField.VALUE)),
        on_delivery=lambda err, _msg: err and failures.append(err),
    )
    if producer.flush(30) or failures:
        sys.exit(f"not delivered: {failures or 'timed out'}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["consume", "produce"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--schema")
    parser.add_argument("--value")
    args = parser.parse_args()
    if args.command == "consume":
        consume(args)
    else:
        produce(args)


if __name__ == "__main__":
    main()
