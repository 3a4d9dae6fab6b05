// Synthetic users for verdict's unleash tests: the real Unleash client SDK
// decides, per user, whether a request goes to the canary or the stable
// release; each request becomes a SERVER span of that release, sent with
// the OpenTelemetry SDK (OTLP/HTTP protobuf) to verdict.
//
//   UNLEASH_URL, UNLEASH_TOKEN (a backend token), FLAG
//   OTLP_URL          http://127.0.0.1:PORT/v1/traces
//   SERVICE, STABLE_VERSION, CANARY_VERSION
//   CANARY_LATENCY_MS, STABLE_LATENCY_MS, PROBE_LATENCY_MS
//   RATE              requests per second
//   PROBE_RATE        synthetic canary requests per second (not routed by
//                     the flag: they show the canary alive before step 1)
//   REFRESH_MS        the SDK's refresh interval
//   SECONDS           how long to run
//
// Every second prints {"t": unix seconds, "total": N, "canary": M}: the
// requests the flag routed in that second (probes not included).
import { initialize } from 'unleash-client';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SpanKind } from '@opentelemetry/api';

const env = (k, d) => process.env[k] ?? d;
const service = env('SERVICE', 'checkout');
const tracer = (version, synthetic) => {
  const attrs = { 'service.name': service, 'service.version': version };
  if (synthetic) attrs['verdict.synthetic'] = 'true';
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes(attrs),
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: env('OTLP_URL') }), {
        scheduledDelayMillis: 200,
        maxExportBatchSize: 512,
      }),
    ],
  });
  return { provider, tracer: provider.getTracer('traffic') };
};
const stable = tracer(env('STABLE_VERSION'), false);
const canary = tracer(env('CANARY_VERSION'), false);
const probe = tracer(env('CANARY_VERSION'), true);

const unleash = initialize({
  url: `${env('UNLEASH_URL')}/api/`,
  appName: 'verdict-traffic',
  customHeaders: { Authorization: env('UNLEASH_TOKEN') },
  refreshInterval: Number(env('REFRESH_MS', '1000')),
  disableMetrics: true,
});
unleash.on('error', (e) => console.error(`unleash: ${e.message}`));
await new Promise((resolve) => unleash.once('synchronized', resolve));

const flag = env('FLAG');
const rate = Number(env('RATE', '100'));
const probeRate = Number(env('PROBE_RATE', '0'));
const span = (t, latency) => {
  const end = Date.now();
  const s = t.tracer.startSpan('GET /checkout', { kind: SpanKind.SERVER, startTime: end - latency });
  s.end(end);
};
let user = 0;
let second = Math.floor(Date.now() / 1000);
let counts = { total: 0, canary: 0 };
const tick = 100;
const until = Date.now() + Number(env('SECONDS', '60')) * 1000;
let due = 0;
let probesDue = 0;
while (Date.now() < until) {
  due += (rate * tick) / 1000;
  probesDue += (probeRate * tick) / 1000;
  for (; due >= 1; due -= 1) {
    user += 1;
    const toCanary = unleash.isEnabled(flag, { userId: `user-${user}` });
    counts.total += 1;
    if (toCanary) counts.canary += 1;
    span(toCanary ? canary : stable, Number(toCanary ? env('CANARY_LATENCY_MS', '20') : env('STABLE_LATENCY_MS', '20')));
  }
  for (; probesDue >= 1; probesDue -= 1) span(probe, Number(env('PROBE_LATENCY_MS', env('CANARY_LATENCY_MS', '20'))));
  await new Promise((r) => setTimeout(r, tick));
  const now = Math.floor(Date.now() / 1000);
  if (now !== second) {
    console.log(JSON.stringify({ t: second, ...counts }));
    second = now;
    counts = { total: 0, canary: 0 };
  }
}
unleash.destroy();
await Promise.all([stable, canary, probe].map((t) => t.provider.shutdown()));
