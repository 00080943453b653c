# Shotgun Cache: one image holding both services.
#
#   /usr/local/bin/shotgun-cache-syncer        run --config /etc/shotgun-cache/config.toml
#   /usr/local/bin/shotgun-cache-query-server  --config /etc/shotgun-cache/config.toml
#
# Build from the repository root:  docker build -t shotgun-cache:0.1.0 .
# It runs as uid/gid 10001 and needs no writable root filesystem (the chart mounts /tmp and, for the
# embedded SQLite store, /data).
#
# NOTE: this file is untested on the project machines, which have no container engine; see docs/deploy.md.

ARG RUST_VERSION=1

# ---- build ---------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p shotgun-cache-syncer -p shotgun-cache-query-server \
 && install -D -m 0755 target/release/shotgun-cache-syncer /out/shotgun-cache-syncer \
 && install -D -m 0755 target/release/shotgun-cache-query-server /out/shotgun-cache-query-server

# ---- runtime -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 shotgun-cache \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin shotgun-cache \
 && mkdir -p /etc/shotgun-cache /data \
 && chown 10001:10001 /data
COPY --from=builder /out/ /usr/local/bin/

LABEL org.opencontainers.image.title="shotgun-cache" \
      org.opencontainers.image.description="Shotgun/ShotGrid cache: syncer and gRPC query-server" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV SHOTGUN_CACHE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /data
# query-server: gRPC 50051, HTTP api3 8080, admin 9091; syncer: gRPC 50052, admin 9090
EXPOSE 50051 8080 9091 50052 9090
# The chart always sets the command; the default runs the query-server.
CMD ["/usr/local/bin/shotgun-cache-query-server", "--config", "/etc/shotgun-cache/config.toml"]
