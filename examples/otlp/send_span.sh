#!/usr/bin/env bash
# One SERVER span of checkout 2.1.0, ending now and 120 ms long, as raw
# OTLP/JSON: what every SDK's OTLP/HTTP exporter sends, in its JSON form.
# OTLP_ENDPOINT (default http://127.0.0.1:4318). `date +%s%N` is GNU date.
set -euo pipefail
end=$(date +%s%N)
start=$((end - 120000000))
curl -sS --fail-with-body -X POST "${OTLP_ENDPOINT:-http://127.0.0.1:4318}/v1/traces" \
  -H 'Content-Type: application/json' \
  -d '{"resourceSpans": [{
        "resource": {"attributes": [
          {"key": "service.name", "value": {"stringValue": "checkout"}},
          {"key": "service.version", "value": {"stringValue": "2.1.0"}}]},
        "scopeSpans": [{"spans": [{
          "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
          "name": "POST /api/checkout", "kind": 2,
          "startTimeUnixNano": "'"$start"'", "endTimeUnixNano": "'"$end"'",
          "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}}]}]}]}]}'
echo
