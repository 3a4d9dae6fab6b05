"""Send SERVER spans of one release to verdict with the OpenTelemetry SDK.

    pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
    python3 examples/otlp/send_spans.py

OTLP_ENDPOINT (default http://127.0.0.1:4318), SERVICE_VERSION (2.1.0),
SPANS (500) and LATENCY_MS (120) change what is sent.
"""
import os
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

endpoint = os.environ.get("OTLP_ENDPOINT", "http://127.0.0.1:4318")
provider = TracerProvider(
    resource=Resource.create(
        {
            "service.name": "checkout",
            "service.version": os.environ.get("SERVICE_VERSION", "2.1.0"),
        }
    )
)
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
tracer = provider.get_tracer("checkout")

latency_ns = int(float(os.environ.get("LATENCY_MS", "120")) * 1_000_000)
for i in range(int(os.environ.get("SPANS", "500"))):
    end = time.time_ns()
    span = tracer.start_span(
        "POST /api/checkout",
        kind=trace.SpanKind.SERVER,
        start_time=end - latency_ns,
        attributes={"http.response.status_code": 200, "validation.converted": i % 4 == 0},
    )
    span.end(end_time=end)

provider.shutdown()  # flushes what is still queued
