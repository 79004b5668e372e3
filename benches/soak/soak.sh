#!/usr/bin/env bash
# Soak: DURATION seconds of mixed traffic through one tokengate (inbound and
# outbound in one process), sampling its memory, descriptors and tasks from its
# own /metrics every 10 s. Loopback only; everything it starts is stopped by
# pid on exit. Not part of `cargo test`.
#
#   benches/soak/soak.sh     # writes docs/soak.csv, docs/soak.png and the
#                            # soak section of docs/SECURITY.md
#
# Traffic, all at once for the whole run:
#   - wrk, 32 connections paced to ≤ 3 200 req/s (mix.lua): cached RS256
#     tokens, unique ones (UNIQUE of them, cycled through a 10 000-entry cache,
#     so each is a verification, an insert and an eviction), no token (401), a
#     tampered token (401), a missing scope (403), anonymous;
#   - h2load, h2c prior knowledge, 4 clients × 4 streams, 800 req/s, cached token;
#   - tunnels.py: 4 WebSocket tunnels a second (each 5 echoed frames over 1 s;
#     every 10th without a token, refused) and 40 outbound req/s whose token
#     lives 10 s, so it is renewed all along;
#   - the JWKS refreshed every 15 s.
# The bound, fixed before the first run: after a 60 s warm-up, the last
# minute's mean RSS within 5% + 1 MiB of the minute after warm-up, and its
# mean descriptors and tasks within 10% + 2.
#
# Environment (defaults in brackets): DURATION [600] seconds, UNIQUE [100000]
# unique tokens, BASE_PORT [18280] first of 6 ports.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/benches/soak"
WORK="$ROOT/target/soak"
DURATION="${DURATION:-600}"
UNIQUE="${UNIQUE:-100000}"
BASE="${BASE_PORT:-18280}"
UP=$BASE WS=$((BASE + 1)) IN=$((BASE + 2)) OUT=$((BASE + 3)) ADMIN=$((BASE + 4))

# shellcheck source=benches/load/lib.sh
. "$ROOT/benches/load/lib.sh"
install_missing wrk:wrk h2load:nghttp2-client nginx:nginx-light gnuplot:gnuplot-nox \
  curl:curl python3:python3

mkdir -p "$WORK"
log "building tokengate and the fixtures generator"
(cd "$ROOT" && cargo build --release --locked --bin tokengate --example load-fixtures) >&2
fixtures "$UNIQUE"
TOKEN="$(cat "$WORK/token-rs256")"

nginx_conf upstream "$UP" "
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:$UP;
    location / { default_type text/plain; return 200 \"ok\\n\"; }
    location /ws { proxy_pass http://127.0.0.1:$WS; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade; }
    location = /jwks.json { default_type application/json; alias $WORK/jwks.json; }
    location = /token { default_type application/json;
      return 200 '{\"access_token\":\"soak-short-lived\",\"token_type\":\"Bearer\",\"expires_in\":10}'; }
  }"
cat >"$WORK/tokengate.yaml" <<YAML
admin: { listen: "127.0.0.1:$ADMIN" }
inbound:
  listen: "127.0.0.1:$IN"
  upstream: "http://127.0.0.1:$UP"
  issuers:
    - issuer: https://issuer.bench.local
      jwks_uri: "http://127.0.0.1:$UP/jwks.json"
      audiences: [bench-api]
      algorithms: [RS256, ES256]
      jwks_cache: { refresh_interval: 15s, min_refresh: 5s }
  rules:
    - { path: /public, allow: anonymous }
    - { path: /admin, scopes: [admin] }
    - { path: /, scopes: ["bench:read"] }
  forward:
    claims_to_headers: { sub: x-auth-subject }
outbound:
  listen: "127.0.0.1:$OUT"
  routes:
    - { host: inject.bench, upstream: "http://127.0.0.1:$UP", token: short }
  tokens:
    short:
      kind: client_credentials
      token_url: "http://127.0.0.1:$UP/token"
      client_id: soak
      client_secret: soak-secret-soak-secret-soak-secret
YAML

log "starting the upstreams and tokengate"
nginx -c "$WORK/upstream/nginx.conf" -e "$WORK/upstream/error.log" & STARTED+=($!)
python3 "$HERE/tunnels.py" upstream "$WS" & STARTED+=($!)
wait_port "$UP"
"$ROOT/target/release/tokengate" --access-log off run --config "$WORK/tokengate.yaml" \
  2>"$WORK/tokengate.log" & TG=$!; STARTED+=($TG)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/readyz" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/readyz"

sample() { # seconds since start → one CSV line from tokengate's own /metrics
  curl -fsS "http://127.0.0.1:$ADMIN/metrics" | awk -v t="$1" '
    /^process_resident_memory_bytes / { rss = $2 }
    /^process_open_fds / { fds = $2 }
    /^tokengate_tasks / { tasks = $2 }
    /^tokengate_requests_total\{/ { requests += $2 }
    /^tokengate_verify_cache_misses_total / { misses = $2 }
    /^tokengate_token_refresh_total\{.*result="ok"/ { renewals += $2 }
    /^tokengate_jwks_refresh_total\{.*result="ok"/ { jwks += $2 }
    END { printf "%d,%.2f,%d,%d,%d,%d,%d,%d\n", t, rss / 1048576, fds, tasks, requests, misses, renewals, jwks }'
}

log "soaking for ${DURATION}s"
echo "seconds,rss_mib,fds,tasks,requests,verify_misses,token_renewals,jwks_refreshes" >"$WORK/soak.csv"
sample 0 >>"$WORK/soak.csv"
PACE_MS=10 TOKEN="$TOKEN" TOKENS_FILE="$WORK/tokens-rs256-unique" \
  wrk -t1 -c32 -d"${DURATION}s" --timeout 5s -s "$HERE/mix.lua" "http://127.0.0.1:$IN" \
  >"$WORK/wrk.out" 2>&1 & WRK=$!; STARTED+=($WRK)
h2load -c4 -m4 --rps 200 -D "$DURATION" -H "authorization: Bearer $TOKEN" \
  "http://127.0.0.1:$IN/api/h2" >"$WORK/h2load.out" 2>&1 & H2=$!; STARTED+=($H2)
python3 "$HERE/tunnels.py" drive "$IN" "$OUT" "$TOKEN" "$DURATION" >"$WORK/tunnels.out" 2>&1 & PY=$!
STARTED+=($PY)
START=$(date +%s)
for i in $(seq 1 $((DURATION / 10))); do
  wait_s=$((START + i * 10 - $(date +%s)))
  [ "$wait_s" -gt 0 ] && sleep "$wait_s"
  sample $((i * 10)) >>"$WORK/soak.csv"
done
wait "$WRK" "$H2" "$PY" || true
kill -0 "$TG" || { log "tokengate exited during the soak"; exit 1; }

log "writing docs/soak.csv, docs/soak.png and the soak section of docs/SECURITY.md"
python3 "$HERE/report.py" "$WORK" "$DURATION" "$ROOT"
