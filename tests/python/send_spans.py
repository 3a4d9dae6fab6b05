"""Sends SERVER spans of one release to verdict through the OpenTelemetry
Python SDK's OTLP exporter, compressed as asked: the real client of the
`deflate` encoding over OTLP/HTTP and OTLP/gRPC (tests/it/compression.rs).

    send_spans.py http|grpc ENDPOINT gzip|deflate|none VERSION COUNT

ENDPOINT is `http://HOST:PORT/v1/traces` for http, `HOST:PORT` for grpc.
Exits 0 when the export succeeded, 1 when it did not.
"""

import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


def exporter(protocol, endpoint, compression):
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, compression=Compression(compression), timeout=10)
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    kinds = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate, "none": grpc.Compression.NoCompression}
    return OTLPSpanExporter(endpoint=endpoint, insecure=True, compression=kinds[compression], timeout=10)


def main():
    protocol, endpoint, compression, version, count = sys.argv[1:6]
    # The exporter first (its imports take a while): the spans end just
    # before they are sent, within verdict's short test windows.
    otlp = exporter(protocol, endpoint, compression)
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "service.version": version})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("compression")
    for _ in range(int(count)):
        with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
            pass
    # One export of every span, so that the answer is the test's to read.
    result = otlp.export(memory.get_finished_spans())
    print(f"{protocol} {compression}: {result}")
    sys.exit(0 if result == SpanExportResult.SUCCESS else 1)


if __name__ == "__main__":
    main()
