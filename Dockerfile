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

# The data dir, owned by the runtime user (the final image has no shell to make it).
RUN install -d -m 0700 /out/data

# ---- runtime -------------------------------------------------------------------------------
# Distroless: glibc, CA certificates and nothing else (no shell, no package manager, no curl;
# health checks run `zhilego healthcheck`), about a third of debian-slim's size, and its
# `nonroot` user (65532).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="zhilego" \
      org.opencontainers.image.description="ZhilyeGO: short-term apartment rental backend (API, bots, relay, projections)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/zhilego/zhilego"

COPY --from=build /usr/local/bin/zhilego /usr/local/bin/zhilego
COPY --from=build --chown=65532:65532 /out/data /var/lib/zhilego/data

# Numeric, so that platforms enforcing "run as non-root" can verify it.
USER 65532:65532
WORKDIR /var/lib/zhilego

# Embedded mode keeps its SQLite file and generated JWT secret here; mount a volume on it.
# In production mode (DATABASE_URL=postgres://…) nothing is written to it.
ENV ZHILEGO_LISTEN=0.0.0.0:8080 \
    ZHILEGO_DATA_DIR=/var/lib/zhilego/data

EXPOSE 8080 9464

HEALTHCHECK --interval=10s --timeout=3s --retries=5 --start-period=20s \
    CMD ["zhilego", "healthcheck"]

# `zhilego serve` drains in-flight requests on SIGTERM (docker stop) before exiting.
ENTRYPOINT ["zhilego"]
CMD ["serve"]
