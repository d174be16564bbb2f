# Builds the two binaries, flyhook and flyte-sim, into a small runtime image.
# No database is needed at build time: queries are checked at run time, migrations are embedded.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p flyhook -p flyte-sim

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 flyhook
COPY --from=build /src/target/release/flyhook /src/target/release/flyte-sim /usr/local/bin/
USER flyhook
ENTRYPOINT ["flyhook"]
CMD ["--help"]
