# syntax=docker/dockerfile:1
#
# The `zhilego` binary (package `zhilego` in api/) on Debian bookworm.
#
#   docker build -t zhilego .
#   docker run --rm -p 8080:8080 -v zhilego-data:/var/lib/zhilego/data zhilego
#       → embedded mode (SQLite in the volume); set DATABASE_URL=postgres://… and
#         ZHILEGO_JWT_SECRET for production mode (see docs/runbook.md).
#
# The BuildKit cache mounts below keep the cargo registry and target dir between builds, so a
# change to one crate does not recompile every dependency.

ARG RUST_VERSION=1.95

# ---- build ---------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src

# Only what the workspace needs: manifests, lock file, every workspace member (cargo loads
# them all, even to build one package; scripts/check-compose.py checks this list against
# Cargo.toml), and the migrations that `sqlx::migrate!` embeds at compile time. `tests/` is
# there because api/Cargo.toml names a test target in it.
COPY Cargo.toml Cargo.lock ./
COPY domain ./domain
COPY store ./store
COPY commands ./commands
COPY projections ./projections
COPY bus ./bus
COPY kaspi ./kaspi
COPY kaspi-sandbox ./kaspi-sandbox
COPY bots ./bots
COPY api ./api
COPY bench ./bench
COPY testkit ./testkit
COPY audit ./audit
COPY tests ./tests
COPY migrations ./migrations

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p zhilego \
 && install -m 0755 target/release/zhilego /usr/local/bin/zhilego

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates for outbound TLS; curl for the container health check (docker-compose.yml).
# Versions come from bookworm's security-updated archive rather than pins.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 zhilego \
 && useradd --system --uid 10001 --gid zhilego --home-dir /var/lib/zhilego \
        --shell /usr/sbin/nologin zhilego \
 && install -d -o zhilego -g zhilego -m 0750 /var/lib/zhilego /var/lib/zhilego/data

COPY --from=build /usr/local/bin/zhilego /usr/local/bin/zhilego

# Numeric, so that platforms enforcing "run as non-root" can verify it.
USER 10001:10001
WORKDIR /var/lib/zhilego

# Embedded mode keeps its SQLite file and generated JWT secret here; mount a volume on it.
# In production mode (DATABASE_URL=postgres://…) nothing is written to it.
ENV ZHILEGO_LISTEN=0.0.0.0:8080 \
    ZHILEGO_DATA_DIR=/var/lib/zhilego/data

EXPOSE 8080

# `zhilego serve` drains in-flight requests on SIGTERM (docker stop) before exiting.
ENTRYPOINT ["zhilego"]
CMD ["serve"]
