# syntax=docker/dockerfile:1
# osbackend container image: build on Debian 12, run on Debian 12 slim with
# only the runtime libraries, as an unprivileged user, data in /data.
#   docker build -t osbackend .
#   docker run -p 10000:10000 -v osb-data:/data osbackend
# docs/deploy.md has the Render blueprint (render.yaml) built from this file.

FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
      libuv1-dev libhttp-parser-dev libwslay-dev libpq-dev libsqlite3-dev libjansson-dev \
      libssl-dev libcurl4-openssl-dev libsodium-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY openapi openapi
COPY src src
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DOSB_SANITIZE=OFF \
 && cmake --build build -j"$(nproc)" --target osbackend \
 && strip build/osbackend \
 && build/osbackend version

FROM debian:12-slim
# The runtime counterparts of the -dev packages above (tests/integration/deploy.test.mjs
# checks them against the binary's NEEDED libraries); ca-certificates for the
# HTTPS upstreams (LLM, ElevenLabs).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libhttp-parser2.9 libwslay1 libpq5 \
      libsqlite3-0 libjansson4 libssl3 libcurl4 libsodium23 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 osb \
 && useradd --system --uid 10001 --gid osb --home-dir /data --no-create-home --shell /usr/sbin/nologin osb \
 && mkdir -p /data && chown osb:osb /data && chmod 0700 /data
COPY --from=build /src/build/osbackend /usr/local/bin/osbackend
# Embedded SQLite (when DATABASE_URL is unset) and the generated JWT secret live here.
VOLUME ["/data"]
WORKDIR /data
ENV PORT=10000 HOST=0.0.0.0 SQLITE_PATH=/data/osbackend.db OSB_ENV_FILE=/data/.env
USER osb:osb
EXPOSE 10000
STOPSIGNAL SIGTERM
# Readiness without a client binary in the image: bash's /dev/tcp.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-10000} && printf 'GET /ready HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/osbackend"]
CMD ["serve"]
