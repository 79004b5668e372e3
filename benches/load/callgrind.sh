#!/usr/bin/env bash
# Instructions per proxied inbound request, counted by callgrind (deterministic
# on a shared, noisy machine, unlike req/s). Each binary given serves wrk under
# valgrind twice, for about N1 and N2 requests on 8 connections (wrk stops at
# its LIMIT but waits out its duration, SECONDS_PER_RUN); the count per request
# is the difference of the two totals over the difference of the requests wrk
# counted, so start-up, JWKS loading and shutdown cancel out. KEEP=1 keeps the
# work directory, with each run's callgrind output, for callgrind_annotate.
# Cases, all the same request with an RS256 bearer token (as benches/load/run.sh
# sends them):
#   pass    an anonymous route: the proxy path without verification
#   hit     a token route, one token: verified (twice: the cache takes a token
#           on its second verification), then served from the cache
#   unique  a token route, a new token per request: each one verified, counted
#           past the first 10 000 (N1U), the default cache's size, so in the
#           cache's steady state
#   opaque  a token route, one opaque token (random, as long as the RS256
#           one): introspected once (nginx answers the introspection), then
#           served from the introspection cache: the goal is hit + 10% at most
#   dpop    a token route, one DPoP-bound RS256 token (a verify-cache hit)
#           with a fresh ES256 proof per request (pre-signed; spent once, so
#           each run is a fresh process): the proof check, the replay cache
#           and the binding on top of `hit` (path /api, the proofs' htu)
#   rsa     of the unique case, the RSA signature check alone (aws-lc-rs
#           parsed_verify_sig, inclusive; what benches/verify.rs calls raw):
#           the floor a unique token cannot go under
#
#   benches/load/callgrind.sh [tokengate binary …]   (default target/release/tokengate)
#
# tokengate logs at info, as a user runs it: every request's access-log line is
# counted (TG_LOG=warn counts without it, as figures before issue 26 were).
# CASES ["pass hit opaque dpop unique"] picks which to count.
#
# Needs valgrind, wrk and nginx (the upstream); loopback only; every process it
# starts is stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/../.."

BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(target/release/tokengate)
N1=${N1:-2000}
N2=${N2:-12000}
N1U=${N1U:-11000}
N2U=${N2U:-16000}
# The DPoP case is slower under valgrind (an ES256 check per request): fewer requests, longer.
N1D=${N1D:-1000}
N2D=${N2D:-4000}
DPOP_SECONDS=${DPOP_SECONDS:-45}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
CASES=${CASES:-pass hit opaque dpop unique}
UNIQUE_SECONDS=${UNIQUE_SECONDS:-90}
for tool in valgrind wrk callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool is required" >&2; exit 1; }
done
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX_BIN" ] || { echo "callgrind.sh: nginx is required" >&2; exit 1; }

WORK=$(mktemp -d /tmp/tokengate-callgrind.XXXXXX)
chmod 755 "$WORK" # nginx's workers serve the JWKS from it
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet --example load-fixtures
target/release/examples/load-fixtures "$WORK" "$((N2U + 100))" >/dev/null
target/release/examples/load-fixtures dpop "$WORK" "$((N2D + 100))" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "callgrind.sh: nothing listens on $1" >&2
  exit 1
}

# What the introspection endpoint says of every opaque token: active, for long.
INTROSPECTED='{"active":true,"iss":"https://opaque.bench.local","aud":"bench-api","scope":"bench:read","sub":"bench","exp":4102444800}'

UP=$(free_port)
mkdir -p "$WORK/upstream"
cat >"$WORK/upstream/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/upstream; proxy_temp_path $WORK/upstream; fastcgi_temp_path $WORK/upstream;
  uwsgi_temp_path $WORK/upstream; scgi_temp_path $WORK/upstream;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$UP;
    location / { default_type text/plain; return 200 "ok\n"; }
    location = /jwks.json { default_type application/json; alias $WORK/jwks.json; }
    location = /jwks-dpop.json { default_type application/json; alias $WORK/jwks-dpop.json; }
    location = /introspect { default_type application/json; return 200 '$INTROSPECTED'; }
  }
}
EOF
"$NGINX_BIN" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -e "$WORK/upstream/error.log" &
PIDS+=($!)
wait_port "$UP"

IN=$(free_port)
ADMIN=$(free_port)
cat >"$WORK/tokengate.yaml" <<EOF
admin: { listen: "127.0.0.1:$ADMIN" }
inbound:
  listen: "127.0.0.1:$IN"
  upstream: "http://127.0.0.1:$UP"
  issuers:
    - issuer: https://issuer.bench.local
      jwks_uri: "http://127.0.0.1:$UP/jwks.json"
      audiences: [bench-api]
      algorithms: [RS256, ES256]
    - issuer: https://opaque.bench.local
      audiences: [bench-api]
      introspection:
        endpoint: "http://127.0.0.1:$UP/introspect"
        client_id: bench
        client_secret: bench-secret
    - issuer: https://dpop.bench.local
      jwks_uri: "http://127.0.0.1:$UP/jwks-dpop.json"
      audiences: [bench-api]
  rules:
    - { path: /public, allow: anonymous }
    - { path: /, scopes: ["bench:read"] }
  forward:
    claims_to_headers: { sub: x-auth-subject }
  # The pre-signed proofs name this origin and live an hour; each is spent
  # once, and the replay cache holds them all.
  dpop: { origin: "https://api.bench.local", max_age: 1h, replay_cache_entries: 200000 }
EOF

# One run of $1 serving about $3 requests to path $2, with the one token
# (TOKEN) or a new one per request (TOKENS_FILE) as the environment says; writes
# "instructions requests rsa-instructions" to $WORK/result. Runs in this shell,
# so cleanup sees its pid.
run() {
  local out="$WORK/callgrind.out.$(basename "$1").${2//\//_}.$3"
  local seconds=$SECONDS_PER_RUN
  [ -z "${TOKENS_FILE:-}" ] || seconds=$UNIQUE_SECONDS
  [ -z "${DPOP_FILE:-}" ] || seconds=$DPOP_SECONDS
  RUST_LOG=${TG_LOG:-info} valgrind --tool=callgrind --callgrind-out-file="$out" "$1" --workers 1 run --config "$WORK/tokengate.yaml" \
    >"$WORK/tokengate.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port "$IN"
  # Until the keys are loaded the guard answers 503 (readiness).
  local ready=no
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz")" = 200 ] && ready=yes && break
    sleep 0.1
  done
  [ "$ready" = yes ] || { cat "$WORK/tokengate.log" >&2; exit 1; }
  LIMIT=$3 wrk -t1 -c8 -d"${seconds}s" -s benches/load/wrk.lua \
    "http://127.0.0.1:$IN$2" >"$WORK/wrk.log"
  grep -q "non2xx=0 errors=0" "$WORK/wrk.log" || { cat "$WORK/wrk.log" "$WORK/tokengate.log" >&2; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || true
  local kept=() p # waited for: its pid may be reused, so forget it
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  PIDS=("${kept[@]}")
  local requests
  requests=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' "$WORK/wrk.log")
  [ "$requests" -ge "$3" ] || { echo "callgrind.sh: only $requests of $3 requests in ${seconds}s" >&2; exit 1; }
  local rsa
  rsa=$(callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null |
    awk '!n && /parsed_verify_sig \[/ { gsub(",", "", $1); print $1; n = 1 }') || true
  echo "$(grep '^totals:' "$out" | awk '{print $2}') $requests ${rsa:-0}" >"$WORK/result"
}

# Instructions per request of one case: $1 binary, $2 path, $3 and $4 the two
# request counts; the environment carries TOKEN or TOKENS_FILE. Sets PER and RSA.
measure() {
  run "$1" "$2" "$3"
  read -r ia ra sa <"$WORK/result"
  run "$1" "$2" "$4"
  read -r ib rb sb <"$WORK/result"
  PER=$(( (ib - ia) / (rb - ra) ))
  RSA=$(( (sb - sa) / (rb - ra) ))
}

has() { [[ " $CASES " == *" $1 "* ]]; }
# An opaque token as long as the RS256 one: the requests differ only in it.
OPAQUE=$(head -c 2000 /dev/urandom | base64 -w0 | tr '+/' '-_' | head -c "$(wc -c <"$WORK/token-rs256")")
printf '%-40s %12s %12s %12s %12s %12s %12s\n' binary pass hit opaque dpop unique rsa
for bin in "${BINS[@]}"; do
  export TOKEN
  TOKEN=$(cat "$WORK/token-rs256")
  pass=- hit=- opaque=- dpop=- unique=- rsa=-
  if has pass; then measure "$bin" /public/x "$N1" "$N2"; pass=$PER; fi
  if has hit; then measure "$bin" /items/x "$N1" "$N2"; hit=$PER; fi
  if has opaque; then TOKEN=$OPAQUE measure "$bin" /items/x "$N1" "$N2"; opaque=$PER; fi
  if has dpop; then
    TOKEN=$(cat "$WORK/dpop-token") DPOP_FILE="$WORK/dpop-proofs" measure "$bin" /api "$N1D" "$N2D"
    dpop=$PER
  fi
  if has unique; then
    TOKEN="" TOKENS_FILE="$WORK/tokens-rs256-unique" measure "$bin" /items/x "$N1U" "$N2U"
    unique=$PER rsa=$RSA
  fi
  printf '%-40s %12s %12s %12s %12s %12s %12s\n' "$bin" "$pass" "$hit" "$opaque" "$dpop" "$unique" "$rsa"
done
