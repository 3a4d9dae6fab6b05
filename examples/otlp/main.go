// Send SERVER spans of one release to verdict with the OpenTelemetry SDK.
//
//	go mod init send-spans && go mod tidy && go run .
//
// (Copy this file into a folder of its own first.)
package main

import (
	"context"
	"log"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func main() {
	ctx := context.Background()
	exporter, err := otlptracehttp.New(ctx,
		otlptracehttp.WithEndpoint("127.0.0.1:4318"), // verdict's OTLP/HTTP listener
		otlptracehttp.WithInsecure())                 // http://, not https://
	if err != nil {
		log.Fatal(err)
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "checkout"),
			attribute.String("service.version", "2.1.0"),
		)),
	)
	defer provider.Shutdown(ctx) // flushes what is still queued
	tracer := provider.Tracer("checkout")

	for i := 0; i < 500; i++ {
		end := time.Now()
		_, span := tracer.Start(ctx, "POST /api/checkout",
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithTimestamp(end.Add(-120*time.Millisecond)),
			trace.WithAttributes(
				attribute.Int("http.response.status_code", 200),
				attribute.Bool("validation.converted", i%4 == 0),
			))
		span.End(trace.WithTimestamp(end))
	}
}
