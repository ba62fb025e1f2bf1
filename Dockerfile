# syntax=docker/dockerfile:1
# tollgate gateway image: build stage compiles TypeScript and the native better-sqlite3 addon;
# the final stage holds production dependencies only and runs as a non-root user.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# node-gyp needs these to build better-sqlite3 against this image's Node headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
# openssl: the development TLS certificate on first start; tini: signal forwarding so SIGTERM drains.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/tollgate --shell /usr/sbin/nologin tollgate \
 && mkdir -p /var/lib/tollgate \
 && chown tollgate:tollgate /var/lib/tollgate
WORKDIR /app
# Inside the container every listener binds all interfaces; set TOLLGATE_SIP__ADVERTISED_ADDRESS
# and TOLLGATE_MEDIA__ADVERTISED_ADDRESS to the host's public address for Contact and SDP.
ENV NODE_ENV=production \
    TOLLGATE_DATA_DIR=/var/lib/tollgate \
    TOLLGATE_HTTP__HOST=0.0.0.0 \
    TOLLGATE_SIP__HOST=0.0.0.0 \
    TOLLGATE_MEDIA__HOST=0.0.0.0
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config ./config
USER tollgate
VOLUME ["/var/lib/tollgate"]
# REST; SIP over UDP/TCP, TLS, WS, WSS; RTP/RTCP (publish the range, or run with host networking).
EXPOSE 8080 5060/udp 5060/tcp 5061/tcp 8088/tcp 8089/tcp 10000-20000/udp
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["tini", "--", "node", "dist/tollgate.js"]
CMD ["serve"]
