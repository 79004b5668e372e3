#!/usr/bin/env bash
# HTTP/2 and gRPC load benchmark: unary grpc.health.v1.Health/Check calls
# (gRPC-framed, te: trailers) to a tonic-health app, directly, through nginx's
# grpc_pass, and through tokengate inbound with an h2 upstream. Loopback only;
# each proxy pinned to one core (taskset), the load generator and the app to the
# other; cases interleaved over ROUNDS rounds; the report takes medians.
#
#   benches/load/h2.sh     # writes its section of BENCHMARKS.md
#
# h2load (Debian's nghttp2-client) drives every case whose headers are the same
# on each call; the unique-token case needs a different token per call, which
# h2load cannot send, so benches/load/grpc_load.rs drives it, beside the same
# client's cached-token case for a like-for-like ratio.
#
# Environment (defaults in brackets): DURATION [5] seconds per measured run
# (after a 1 s warm-up that must return grpc-status 0), ROUNDS [3], CONNS [16]
# connections, STREAMS [8] concurrent streams per connection, CASES [all],
# UNIQUE [250000] unique tokens, BASE_PORT [18180] first of 5 ports,
# PROXY_CPU [0], LOAD_CPU [1]. Everything it starts is stopped by pid on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/benches/load"
WORK="$ROOT/target/load"
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-16}"
STREAMS="${STREAMS:-8}"
UNIQUE="${UNIQUE:-250000}"
BASE="${BASE_PORT:-18180}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
ALL_CASES="grpc-direct nginx-grpc tg-h2-pass tg-h2-rs256 tg-h2-rs256-load tg-h2-unique-load"
CASES="${CASES:-$ALL_CASES}"

# shellcheck source=benches/load/lib.sh
. "$HERE/lib.sh"

APP=$BASE JWKS=$((BASE + 1)) NGINX=$((BASE + 2)) TG_IN=$((BASE + 3)) TG_ADMIN=$((BASE + 4))

install_missing h2load:nghttp2-client nginx:nginx-light curl:curl taskset:util-linux

mkdir -p "$WORK"
log "building tokengate, the fixtures generator, the gRPC app and load client"
(cd "$ROOT" && cargo build --release --locked --bin tokengate --example load-fixtures \
  --example grpc-upstream --example grpc-load) >&2
TG="$ROOT/target/release/tokengate"
EXAMPLES="$ROOT/target/release/examples"
fixtures "$UNIQUE"
TOKEN="$(cat "$WORK/token-rs256")"
printf '\0\0\0\0\0' >"$WORK/grpc-empty-message.bin" # HealthCheckRequest {}, gRPC-framed

nginx_conf h2-jwks "$JWKS" "
  server {
    listen 127.0.0.1:$JWKS;
    location = /jwks.json { default_type application/json; alias $WORK/jwks.json; }
  }"
nginx_conf nginx-grpc "$NGINX" "
  upstream grpc_app { server 127.0.0.1:$APP; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX http2;
    http2_max_requests 10000000;
    location / { grpc_pass grpc://grpc_app; }
  }"
tokengate_conf() { # file rule
  cat >"$WORK/$1" <<EOF
admin: { listen: "127.0.0.1:$TG_ADMIN" }
inbound:
  listen: "127.0.0.1:$TG_IN"
  upstream: "http://127.0.0.1:$APP"
  protocol: h2
  issuers:
    - issuer: https://issuer.bench.local
      jwks_uri: "http://127.0.0.1:$JWKS/jwks.json"
      audiences: [bench-api]
  rules:
    - $2
EOF
}
tokengate_conf tokengate-h2-pass.yaml "{ path: /grpc.health.v1.Health, allow: anonymous }"
tokengate_conf tokengate-h2-token.yaml "{ path: /grpc.health.v1.Health, scopes: [\"bench:read\"] }"

# case → "proxy|port|driver|token"
describe() {
  case "$1" in
    grpc-direct) echo "none|$APP|h2load|$TOKEN" ;;
    nginx-grpc) echo "nginx|$NGINX|h2load|$TOKEN" ;;
    tg-h2-pass) echo "tokengate-h2-pass.yaml|$TG_IN|h2load|$TOKEN" ;;
    tg-h2-rs256) echo "tokengate-h2-token.yaml|$TG_IN|h2load|$TOKEN" ;;
    tg-h2-rs256-load) echo "tokengate-h2-token.yaml|$TG_IN|grpc-load|$TOKEN" ;;
    tg-h2-unique-load) echo "tokengate-h2-token.yaml|$TG_IN|grpc-load|@$WORK/tokens-rs256-unique" ;;
    *) log "unknown case $1"; exit 64 ;;
  esac
}

PID=0
start_proxy() { # proxy → PID (0: nothing started)
  PID=0
  case "$1" in
    none) return ;;
    nginx)
      taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx-grpc" -c "$WORK/nginx-grpc/nginx.conf" \
        -e "$WORK/nginx-grpc/error.log" >/dev/null 2>&1 &
      PID=$!; STARTED+=("$PID")
      for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NGINX") 2>/dev/null && return 0; sleep 0.1; done
      ;;
    *)
      RUST_LOG=warn taskset -c "$PROXY_CPU" "$TG" run --config "$WORK/$1" >/dev/null 2>>"$WORK/tokengate-h2.log" &
      PID=$!; STARTED+=("$PID")
      wait_port "$TG_ADMIN" /readyz
      ;;
  esac
}

# One measured run with h2load: "rps mean_us requests failed".
h2load_run() { # port token seconds
  local out
  out=$(taskset -c "$LOAD_CPU" h2load -t1 -c"$CONNS" -m"$STREAMS" -D "$3" \
    -d "$WORK/grpc-empty-message.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    -H "authorization: Bearer $2" "http://127.0.0.1:$1/grpc.health.v1.Health/Check" 2>&1)
  local rps mean requests failed
  rps=$(awk '/^finished in/ {gsub(",", ""); print $4}' <<<"$out")
  mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
  requests=$(awk '/^requests:/ {print $8}' <<<"$out")
  failed=$(awk '/^requests:/ {print $10 + $12}' <<<"$out")
  echo "$rps $(to_us "$mean") $requests $failed"
}

to_us() { # h2load's "1.23ms" / "456us" / "1.2s" → microseconds
  awk -v t="$1" 'BEGIN {
    if (t ~ /us$/) { sub(/us$/, "", t); print t + 0 }
    else if (t ~ /ms$/) { sub(/ms$/, "", t); print t * 1000 }
    else if (t ~ /s$/) { sub(/s$/, "", t); print t * 1000000 }
    else print 0 }'
}

# One run with grpc-load: "rps p50_us requests failed".
grpc_load_run() { # port token seconds [conns streams]
  local tokens=() out
  if [[ $2 == @* ]]; then tokens=("${2#@}"); fi
  out=$(TOKEN="$2" taskset -c "$LOAD_CPU" "$EXAMPLES/grpc-load" "http://127.0.0.1:$1/grpc.health.v1.Health/Check" \
    "${4:-$CONNS}" "${5:-$STREAMS}" "$3" "${tokens[@]+"${tokens[@]}"}")
  local rps p50_us requests failed
  eval "$(sed 's/^RESULT //; s/ /; /g' <<<"$out")"
  echo "$rps $p50_us $requests $failed"
}

RESULTS="$WORK/h2-results.tsv"
printf 'case\tround\trps\tlatency_us\trequests\tfailed\trss_peak_kb\n' >"$RESULTS"

run_case() { # case round
  local name=$1 round=$2 proxy port driver token
  IFS='|' read -r proxy port driver token <<<"$(describe "$name")"
  start_proxy "$proxy"
  local pid=$PID
  # Warm-up, and proof the path works: every call must end in grpc-status 0.
  local warm_requests warm_failed
  read -r _ _ warm_requests warm_failed <<<"$(grpc_load_run "$port" "$TOKEN" 1 2 4)"
  if [ "$warm_failed" != 0 ] || [ "$warm_requests" = 0 ]; then
    log "$name: warm-up calls failed ($warm_failed failed, $warm_requests good)"; exit 1
  fi
  local result
  if [ "$driver" = h2load ]; then
    result=$(h2load_run "$port" "$token" "$DURATION")
  else
    result=$(grpc_load_run "$port" "$token" "$DURATION")
  fi
  local peak=0
  if [ "$pid" != 0 ]; then peak=$(rss_kb "$pid" VmHWM); stop_pid "$pid"; fi
  read -r rps lat requests failed <<<"$result"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$rps" "$lat" "$requests" "$failed" "$peak" >>"$RESULTS"
  log "round $round  $(printf '%-18s' "$name") $rps calls/s  latency ${lat}us  failed $failed"
}

taskset -c "$LOAD_CPU" "$EXAMPLES/grpc-upstream" "$APP" &
STARTED+=($!)
taskset -c "$LOAD_CPU" nginx -p "$WORK/h2-jwks" -c "$WORK/h2-jwks/nginx.conf" -e "$WORK/h2-jwks/error.log" &
STARTED+=($!)
wait_port "$JWKS" /jwks.json
: >"$WORK/tokengate-h2.log"

for round in $(seq "$ROUNDS"); do
  for name in $CASES; do
    run_case "$name" "$round"
  done
done

python3 "$HERE/h2report.py" "$RESULTS" "$ROOT/BENCHMARKS.md" \
  --duration "$DURATION" --rounds "$ROUNDS" --conns "$CONNS" --streams "$STREAMS"
log "wrote the h2 section of BENCHMARKS.md"
