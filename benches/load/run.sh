#!/usr/bin/env bash
# Load benchmark: tokengate against its own pass-through, nginx and HAProxy 2.6,
# and as nginx's auth_request authorizer (forward-auth), on loopback only, each proxy pinned to one core (taskset), wrk and the
# upstream nginx pinned to the other; the `-2c` cases give tokengate (2
# workers) and HAProxy (nbthread 2) both cores, shared with wrk and the
# upstream. tokengate runs as a user runs it: logging at info, its access log
# on (to a file); `tg-pass-nolog` is the same pass-through with
# `--access-log off`. Runs are interleaved (every case once per round, ROUNDS
# rounds) and the report takes medians. The report also carries the heap
# allocations per request of benches/alloc.rs.
#
#   benches/load/run.sh            # writes BENCHMARKS.md and docs/benchmarks.png
#
# Environment (defaults in brackets):
#   DURATION [5]     seconds per measured run (after a 1 s warm-up)
#   ROUNDS [3]       interleaved rounds
#   CONNS ["32 256"] connection counts, each with 1 wrk thread
#   CASES [all]      space-separated subset of the case names below
#   UNIQUE [250000]  unique tokens for the cache-miss case (must exceed its
#                    requests per run; the report flags a run that wrapped)
#   DPOP_PROOFS [150000]  pre-signed proofs for tg-dpop, made afresh each run
#                    (a proof lives an hour and is spent once: a run that
#                    outlasts them shows as non2xx)
#   BASE_PORT [18080] first of 9 loopback ports used
#   PROXY_CPU [0] / LOAD_CPU [1] / PROXY_CPUS_2C [0,1]
# Installs wrk, nginx, haproxy, gnuplot and curl with apt-get when missing.
# Everything it starts is stopped by pid on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/benches/load"
WORK="$ROOT/target/load"
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-32 256}"
UNIQUE="${UNIQUE:-250000}"
DPOP_PROOFS="${DPOP_PROOFS:-150000}"
BASE="${BASE_PORT:-18080}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
PROXY_CPUS_2C="${PROXY_CPUS_2C:-0,1}"
ALL_CASES="direct nginx haproxy-pass haproxy-rs256 tg-pass tg-pass-nolog tg-rs256 tg-es256 tg-opaque tg-dpop tg-rs256-unique tg-rs256-twice nginx-authz nginx-authz-unique tg-out-pass tg-out-inject tg-out-dpop haproxy-pass-2c haproxy-rs256-2c tg-pass-2c tg-rs256-unique-2c"
CASES="${CASES:-$ALL_CASES}"

# shellcheck source=benches/load/lib.sh
. "$HERE/lib.sh"

UP=$BASE NGINX=$((BASE + 1)) HAP_PASS=$((BASE + 2)) HAP_JWT=$((BASE + 3))
TG_IN=$((BASE + 4)) TG_OUT=$((BASE + 5)) TG_ADMIN=$((BASE + 6))
NGINX_AUTHZ=$((BASE + 7)) TG_AUTHZ=$((BASE + 8))

# --- tools -------------------------------------------------------------------
install_missing wrk:wrk nginx:nginx-light haproxy:haproxy gnuplot:gnuplot-nox curl:curl \
  taskset:util-linux python3:python3

mkdir -p "$WORK"
log "building tokengate and the fixtures generator"
(cd "$ROOT" && cargo build --release --locked --bin tokengate --example load-fixtures) >&2
TG="$ROOT/target/release/tokengate"
log "counting allocations per request (benches/alloc.rs)"
(cd "$ROOT" && cargo bench --locked --bench alloc -- --tsv) >"$WORK/alloc.tsv"

fixtures "$UNIQUE"
log "signing $DPOP_PROOFS DPoP proofs"
"$ROOT/target/release/examples/load-fixtures" dpop "$WORK" "$DPOP_PROOFS" >&2

# --- configs ---------------------------------------------------------------
TOKEN_ANSWER="$(cat "$WORK/token-answer.json")"
TOKEN_ANSWER_DPOP="$(cat "$WORK/token-answer-dpop.json")"
# What the introspection endpoint says of every opaque token: active, for long.
INTROSPECTED='{"active":true,"iss":"https://opaque.bench.local","aud":"bench-api","scope":"bench:read","sub":"bench","exp":4102444800}'
# An opaque token as long as the RS256 one: the requests differ only in it.
head -c 2000 /dev/urandom | base64 -w0 | tr '+/' '-_' | head -c "$(wc -c <"$WORK/token-rs256")" >"$WORK/token-opaque"
nginx_conf upstream "$UP" "
  server {
    listen 127.0.0.1:$UP;
    location / { default_type text/plain; return 200 \"ok\\n\"; }
    location = /jwks.json { default_type application/json; alias $WORK/jwks.json; }
    location = /token { default_type application/json; return 200 '$TOKEN_ANSWER'; }
    location = /token-dpop { default_type application/json; return 200 '$TOKEN_ANSWER_DPOP'; }
    location = /jwks-dpop.json { default_type application/json; alias $WORK/jwks-dpop.json; }
    location = /introspect { default_type application/json; return 200 '$INTROSPECTED'; }
  }"
nginx_conf nginx-proxy "$NGINX" "
  upstream app { server 127.0.0.1:$UP; keepalive 256; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$NGINX;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"

# nginx asking tokengate's authz listener before each request (docs/forward-auth.md's
# snippet), both on the proxy core: the pair is what stands where one proxy did.
nginx_conf nginx-authz "$NGINX_AUTHZ" "
  upstream app { server 127.0.0.1:$UP; keepalive 256; keepalive_requests 10000000; }
  upstream authz { server 127.0.0.1:$TG_AUTHZ; keepalive 256; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$NGINX_AUTHZ;
    location / {
      auth_request /_tokengate;
      auth_request_set \$auth_subject \$upstream_http_x_auth_subject;
      proxy_set_header X-Auth-Subject \$auth_subject;
      proxy_set_header Connection \"\";
      proxy_http_version 1.1;
      proxy_pass http://app;
    }
    location = /_tokengate {
      internal;
      proxy_pass http://authz/authz;
      proxy_http_version 1.1;
      proxy_pass_request_body off;
      proxy_set_header Connection \"\";
      proxy_set_header Content-Length \"\";
      proxy_set_header X-Forwarded-Method \$request_method;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Forwarded-Uri \$request_uri;
    }
  }"

# HAProxy 2.6's jwt_verify as its documentation and blog configure it: RS256
# signature, then iss, aud and exp from the payload.
cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9000
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend pass
  bind 127.0.0.1:$HAP_PASS
  default_backend app
frontend jwt
  bind 127.0.0.1:$HAP_JWT
  http-request deny status 401 unless { req.hdr(authorization) -m beg "Bearer " }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$WORK/rs256.pub.pem") -m int 1 }
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request deny status 401 unless { var(txn.iss) -m str "https://issuer.bench.local" }
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request deny status 401 unless { var(txn.aud) -m str bench-api }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request set-header x-auth-subject %[var(txn.bearer),jwt_payload_query('\$.sub')]
  default_backend app
backend app
  server up 127.0.0.1:$UP
EOF
# The same on two threads, for the two-core rows.
sed 's/^  nbthread 1$/  nbthread 2/' "$WORK/haproxy.cfg" >"$WORK/haproxy-2c.cfg"

cat >"$WORK/tokengate-in.yaml" <<EOF
admin: { listen: "127.0.0.1:$TG_ADMIN" }
inbound:
  listen: "127.0.0.1:$TG_IN"
  upstream: "http://127.0.0.1:$UP"
  issuers:
    - issuer: https://issuer.bench.local
      jwks_uri: "http://127.0.0.1:$UP/jwks.json"
      audiences: [bench-api]
      algorithms: [RS256, ES256]
    # Opaque tokens (tg-opaque): introspected once, then served from the cache.
    - issuer: https://opaque.bench.local
      audiences: [bench-api]
      introspection:
        endpoint: "http://127.0.0.1:$UP/introspect"
        client_id: bench
        client_secret: bench-secret
    # DPoP-bound tokens (tg-dpop): a cache hit, and a fresh proof checked per request.
    - issuer: https://dpop.bench.local
      jwks_uri: "http://127.0.0.1:$UP/jwks-dpop.json"
      audiences: [bench-api]
  rules:
    - { path: /public, allow: anonymous }
    - { path: /, scopes: ["bench:read"] }
  forward:
    claims_to_headers: { sub: x-auth-subject }
    # The default, spelled out: nginx and HAProxy forward it too, so every proxy
    # sends the upstream the same bytes.
    authorization: keep
  # The pre-signed proofs name this origin and live an hour; each is spent
  # once, and the replay cache holds every one a process sees.
  dpop: { origin: "https://api.bench.local", max_age: 1h, replay_cache_entries: 250000 }
EOF
cat >"$WORK/tokengate-authz.yaml" <<EOF
admin: { listen: "127.0.0.1:$TG_ADMIN" }
authz:
  listen: "127.0.0.1:$TG_AUTHZ"
  issuers:
    - issuer: https://issuer.bench.local
      jwks_uri: "http://127.0.0.1:$UP/jwks.json"
      audiences: [bench-api]
      algorithms: [RS256, ES256]
  rules:
    - { path: /public, allow: anonymous }
    - { path: /, scopes: ["bench:read"] }
  forward:
    claims_to_headers: { sub: x-auth-subject }
EOF
cat >"$WORK/tokengate-out.yaml" <<EOF
admin: { listen: "127.0.0.1:$TG_ADMIN" }
outbound:
  listen: "127.0.0.1:$TG_OUT"
  routes:
    - { host: inject.bench, upstream: "http://127.0.0.1:$UP", token: bench }
    - { host: pass.bench, upstream: "http://127.0.0.1:$UP" }
    - { host: dpop.bench, upstream: "http://127.0.0.1:$UP", token: bench-dpop }
  tokens:
    bench:
      kind: client_credentials
      token_url: "http://127.0.0.1:$UP/token"
      client_id: bench
      client_secret: bench-secret-bench-secret-bench-secret
    # A DPoP-bound token (tg-out-dpop): a proof signed for every request.
    bench-dpop:
      kind: client_credentials
      token_url: "http://127.0.0.1:$UP/token-dpop"
      client_id: bench
      client_secret: bench-secret-bench-secret-bench-secret
      dpop: { generate: ES256 }
EOF

# --- one case ----------------------------------------------------------------
# case → "what to start|URL|extra wrk environment"
describe() {
  # Every inbound case sends the same request, a 598-byte RS256 bearer token
  # included, and every proxy forwards it: the pass-through cases then differ
  # from the verifying ones only in the verification.
  local rs256="TOKEN=$(cat "$WORK/token-rs256")"
  case "$1" in
    direct) echo "none|http://127.0.0.1:$UP/|$rs256" ;;
    nginx) echo "nginx|http://127.0.0.1:$NGINX/|$rs256" ;;
    haproxy-pass) echo "haproxy|http://127.0.0.1:$HAP_PASS/|$rs256" ;;
    haproxy-rs256) echo "haproxy|http://127.0.0.1:$HAP_JWT/|$rs256" ;;
    tg-pass) echo "tg-in|http://127.0.0.1:$TG_IN/public|$rs256" ;;
    tg-pass-nolog) echo "tg-in-nolog|http://127.0.0.1:$TG_IN/public|$rs256" ;;
    haproxy-pass-2c) echo "haproxy-2c|http://127.0.0.1:$HAP_PASS/|$rs256" ;;
    haproxy-rs256-2c) echo "haproxy-2c|http://127.0.0.1:$HAP_JWT/|$rs256" ;;
    tg-pass-2c) echo "tg-in-2c|http://127.0.0.1:$TG_IN/public|$rs256" ;;
    tg-rs256-unique-2c) echo "tg-in-2c|http://127.0.0.1:$TG_IN/api|TOKENS_FILE=$WORK/tokens-rs256-unique" ;;
    tg-rs256) echo "tg-in|http://127.0.0.1:$TG_IN/api|$rs256" ;;
    tg-es256) echo "tg-in|http://127.0.0.1:$TG_IN/api|TOKEN=$(cat "$WORK/token-es256")" ;;
    tg-opaque) echo "tg-in|http://127.0.0.1:$TG_IN/api|TOKEN=$(cat "$WORK/token-opaque")" ;;
    tg-dpop) echo "tg-in|http://127.0.0.1:$TG_IN/api|TOKEN=$(cat "$WORK/dpop-token") DPOP_FILE=$WORK/dpop-proofs" ;;
    tg-rs256-unique) echo "tg-in|http://127.0.0.1:$TG_IN/api|TOKENS_FILE=$WORK/tokens-rs256-unique" ;;
    tg-rs256-twice) echo "tg-in|http://127.0.0.1:$TG_IN/api|TOKENS_FILE=$WORK/tokens-rs256-unique REPEAT=2" ;;
    nginx-authz) echo "nginx-authz|http://127.0.0.1:$NGINX_AUTHZ/api|$rs256" ;;
    nginx-authz-unique) echo "nginx-authz|http://127.0.0.1:$NGINX_AUTHZ/api|TOKENS_FILE=$WORK/tokens-rs256-unique" ;;
    tg-out-pass) echo "tg-out|http://127.0.0.1:$TG_OUT/|HOST_HEADER=pass.bench" ;;
    tg-out-inject) echo "tg-out|http://127.0.0.1:$TG_OUT/|HOST_HEADER=inject.bench" ;;
    tg-out-dpop) echo "tg-out|http://127.0.0.1:$TG_OUT/|HOST_HEADER=dpop.bench" ;;
    *) log "unknown case $1"; exit 64 ;;
  esac
}

# A kind that runs tokengate (its metrics and RSS are read).
runs_tokengate() { [[ $1 == tg-* || $1 == nginx-authz ]]; }

PID=0 FRONT=0
start_proxy() { # kind → PID (0: nothing started; tokengate's when it runs), FRONT (nginx in front of it)
  PID=0 FRONT=0
  if [ "$1" = nginx-authz ]; then
    taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx-authz" -c "$WORK/nginx-authz/nginx.conf" -e "$WORK/nginx-authz/error.log" >/dev/null 2>&1 &
    FRONT=$!
    STARTED+=("$FRONT")
  fi
  case "$1" in
    none) return ;;
    nginx) taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx-proxy" -c "$WORK/nginx-proxy/nginx.conf" -e "$WORK/nginx-proxy/error.log" >/dev/null 2>&1 & ;;
    haproxy) taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" >>"$WORK/haproxy.log" 2>&1 & ;;
    haproxy-2c) taskset -c "$PROXY_CPUS_2C" haproxy -db -f "$WORK/haproxy-2c.cfg" >>"$WORK/haproxy.log" 2>&1 & ;;
    # tokengate as a user runs it (RUST_LOG unset: info, the access log on);
    # its workers default to the CPUs taskset leaves it.
    tg-in) taskset -c "$PROXY_CPU" env -u RUST_LOG "$TG" run --config "$WORK/tokengate-in.yaml" >/dev/null 2>"$WORK/tokengate.stderr" & ;;
    tg-in-nolog) taskset -c "$PROXY_CPU" env -u RUST_LOG "$TG" --access-log off run --config "$WORK/tokengate-in.yaml" >/dev/null 2>"$WORK/tokengate.stderr" & ;;
    tg-in-2c) taskset -c "$PROXY_CPUS_2C" env -u RUST_LOG "$TG" run --config "$WORK/tokengate-in.yaml" >/dev/null 2>"$WORK/tokengate.stderr" & ;;
    tg-out) taskset -c "$PROXY_CPU" env -u RUST_LOG "$TG" run --config "$WORK/tokengate-out.yaml" >/dev/null 2>"$WORK/tokengate.stderr" & ;;
    nginx-authz) taskset -c "$PROXY_CPU" env -u RUST_LOG "$TG" run --config "$WORK/tokengate-authz.yaml" >/dev/null 2>"$WORK/tokengate.stderr" & ;;
  esac
  PID=$!
  STARTED+=("$PID")
}

ready_proxy() { # kind
  case "$1" in
    nginx) wait_port "$NGINX" ;;
    haproxy | haproxy-2c) wait_port "$HAP_PASS" ;;
    tg-in | tg-in-nolog | tg-in-2c | tg-out) wait_port "$TG_ADMIN" /readyz ;;
    nginx-authz) wait_port "$TG_ADMIN" /readyz && wait_port "$NGINX_AUTHZ" /public ;;
  esac
}

metric() { # name → value summed over label sets
  curl -fsS "http://127.0.0.1:$TG_ADMIN/metrics" | awk -v m="$1" '$1 ~ "^"m"([{]|$)" {s += $2} END {print s + 0}'
}

RESULTS="$WORK/results.tsv"
printf 'case\tconns\tround\trps\tp50_us\tp99_us\trequests\tnon2xx\terrors\ttokens\trss_idle_kb\trss_load_kb\trss_peak_kb\trss_after_kb\tcache_hits\tcache_misses\n' >"$RESULTS"

run_case() { # case conns round
  local name=$1 conns=$2 round=$3 kind url envs pid out
  IFS='|' read -r kind url envs <<<"$(describe "$name")"
  start_proxy "$kind"
  pid=$PID
  local idle=0
  if [ "$pid" != 0 ]; then
    ready_proxy "$kind"
    idle=$(rss_kb "$pid" VmRSS)
  fi
  # Warm-up: connections and pools; the unique-token case warms with one repeated token.
  # The DPoP case warms with proofs of its own: the measured run's must be unspent.
  local warm_envs=${envs/TOKENS_FILE=*/TOKEN=$(cat "$WORK/token-rs256")}
  warm_envs=${warm_envs/dpop-proofs/dpop-proofs-warm}
  # shellcheck disable=SC2086
  env $warm_envs taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d1s -s "$HERE/wrk.lua" "$url" >/dev/null
  local hits0=0 miss0=0
  if runs_tokengate "$kind"; then hits0=$(metric tokengate_verify_cache_hits_total); miss0=$(metric tokengate_verify_cache_misses_total); fi
  # RSS under load: sampled half-way through the measured run.
  local load_rss_file="$WORK/rss.sample" sampler=""
  echo 0 >"$load_rss_file"
  if [ "$pid" != 0 ]; then
    (sleep "$(awk "BEGIN {print $DURATION / 2}")"; rss_kb "$pid" VmRSS >"$load_rss_file") &
    sampler=$!
  fi
  # shellcheck disable=SC2086 # envs is a list of NAME=value words
  out=$(env $envs taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s -s "$HERE/wrk.lua" "$url")
  if [ -n "$sampler" ]; then wait "$sampler"; fi
  local peak=0 after=0 hits=0 miss=0
  if [ "$pid" != 0 ]; then
    peak=$(rss_kb "$pid" VmHWM)
    sleep 0.5
    after=$(rss_kb "$pid" VmRSS)
  fi
  if runs_tokengate "$kind"; then
    hits=$(( $(metric tokengate_verify_cache_hits_total) - hits0 ))
    miss=$(( $(metric tokengate_verify_cache_misses_total) - miss0 ))
  fi
  if [ "$pid" != 0 ]; then stop_pid "$pid"; fi
  if [ "$FRONT" != 0 ]; then stop_pid "$FRONT"; fi
  # Everything but the access log (a line per request) is kept.
  if runs_tokengate "$kind"; then
    grep -v ' tokengate::access: ' "$WORK/tokengate.stderr" >>"$WORK/tokengate.log" || true
    rm -f "$WORK/tokengate.stderr"
  fi
  local line
  line=$(grep '^RESULT' <<<"$out") || { log "$name c$conns: wrk printed no result: $out"; exit 1; }
  local rps p50_us p99_us requests non2xx errors tokens
  eval "$(sed 's/^RESULT //; s/ /; /g' <<<"$line")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" "$round" \
    "$rps" "$p50_us" "$p99_us" "$requests" "$non2xx" "$errors" "$tokens" "$idle" "$(cat "$load_rss_file")" "$peak" "$after" "$hits" "$miss" >>"$RESULTS"
  rm -f "$load_rss_file"
  log "round $round  $(printf '%-16s' "$name") c$conns  $rps req/s  p99 ${p99_us}us  non2xx $non2xx  errors $errors"
}

# --- run ---------------------------------------------------------------------
taskset -c "$LOAD_CPU" nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -e "$WORK/upstream/error.log" &
STARTED+=($!)
wait_port "$UP"
: >"$WORK/tokengate.log"

for round in $(seq "$ROUNDS"); do
  for name in $CASES; do
    for conns in $CONNS; do
      run_case "$name" "$conns" "$round"
    done
  done
done

python3 "$HERE/report.py" "$RESULTS" "$ROOT/BENCHMARKS.md" "$ROOT/docs/benchmarks.png" \
  --duration "$DURATION" --rounds "$ROUNDS" --alloc "$WORK/alloc.tsv"
log "wrote BENCHMARKS.md and docs/benchmarks.png"
