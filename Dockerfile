# The medallion image docker-compose.yml builds: the release binary, with the pipeline specs,
# schedules and schemas it runs from /opt/medallion.
FROM rust:1.95-bookworm AS build
# cmake builds the bundled librdkafka, whose build also wants the curl headers.
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin medallion

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/medallion /usr/local/bin/medallion
WORKDIR /opt/medallion
COPY pipelines/specs pipelines/specs
COPY orchestration/schedules orchestration/schedules
COPY schemas/avro schemas/avro
ENTRYPOINT ["medallion"]
