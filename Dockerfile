# flyhook and flyte-sim in a small, non-root runtime image.
#   docker build -t flyhook .
#   docker run --rm flyhook --help
# No database is needed at build time: queries are checked at run time, migrations are embedded.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# aws-lc-rs (rustls's crypto) builds C with cmake and clang.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# The registry and target caches survive between builds (BuildKit), so a code change rebuilds
# only flyhook's own crates.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flyhook -p flyte-sim \
    && install -D -s target/release/flyhook target/release/flyte-sim -t /out/

# glibc, CA certificates and a non-root user (65532), nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/flyhook /out/flyte-sim /usr/local/bin/
USER 65532:65532
# 8080: the ingress's API. 9090: a worker's /metrics and probes. 8090: flyte-sim.
EXPOSE 8080 9090 8090
# Health checks use `flyhook probe <url>` (no curl in the image).
ENTRYPOINT ["flyhook"]
CMD ["--help"]
