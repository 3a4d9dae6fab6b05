// Send SERVER spans of one release to verdict with the OpenTelemetry SDK.
//
//   npm install @opentelemetry/api @opentelemetry/resources \
//     @opentelemetry/sdk-trace-base @opentelemetry/exporter-trace-otlp-proto
//   node examples/otlp/send_spans.cjs
//
// OTLP_ENDPOINT (default http://127.0.0.1:4318), SERVICE_VERSION (2.1.0),
// SPANS (500) and LATENCY_MS (120) change what is sent.
const { SpanKind } = require('@opentelemetry/api');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');

const env = (name, fallback) => process.env[name] ?? fallback;
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({
    'service.name': 'checkout',
    'service.version': env('SERVICE_VERSION', '2.1.0'),
  }),
  spanProcessors: [
    new BatchSpanProcessor(
      new OTLPTraceExporter({ url: `${env('OTLP_ENDPOINT', 'http://127.0.0.1:4318')}/v1/traces` }),
    ),
  ],
});
const tracer = provider.getTracer('checkout');

const latency = Number(env('LATENCY_MS', '120'));
for (let i = 0; i < Number(env('SPANS', '500')); i++) {
  const end = Date.now();
  const span = tracer.startSpan('POST /api/checkout', {
    kind: SpanKind.SERVER,
    startTime: end - latency,
    attributes: { 'http.response.status_code': 200, 'validation.converted': i % 4 === 0 },
  });
  span.end(end);
}
provider.shutdown(); // flushes what is still queued
