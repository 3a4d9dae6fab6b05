# Multi-stage release build of verdict on slim Debian (README: "Docker").
#   docker build -t verdict .
#   docker run -p 4317:4317 -p 4318:4318 -p 9464:9464 -p 8686:8686 \
#     -v verdict-data:/var/lib/verdict/data verdict
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY benches ./benches
COPY tests ./tests
COPY examples ./examples
COPY pipelines ./pipelines
RUN cargo build --release --locked --bin verdict

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/verdict --create-home verdict \
 && install -d -o verdict -g verdict /var/lib/verdict/data
COPY --from=build /src/target/release/verdict /usr/local/bin/verdict
COPY pipelines /etc/verdict/pipelines
# The default storage, sqlite://data/verdict.db, lands in /var/lib/verdict/data
# (owned by the verdict user, so a named volume mounted there is writable):
# mount a volume there to keep runs and the outbox across containers.
WORKDIR /var/lib/verdict
USER verdict
# OTLP gRPC, OTLP HTTP, Prometheus, HTTP API. The default pipeline binds the
# API to 127.0.0.1; override it to reach the API from outside the container.
ENV VERDICT__SERVICE__API__ENDPOINT=0.0.0.0:8686
EXPOSE 4317 4318 9464 8686
ENTRYPOINT ["/usr/local/bin/verdict"]
CMD ["run", "-c", "/etc/verdict/pipelines/default.yaml"]
