#!/usr/bin/env bash
# Interleaved A/B of two tokengate binaries on one case of benches/load/run.sh,
# with HAProxy `jwt_verify` beside them for the ratio: every round runs
# HAProxy, A and B in turn at each connection count, each started fresh,
# warmed up for 1 s (one repeated token), measured for DURATION s; the medians
# and each round's B÷A are printed. Two binaries run one after the other in
# separate run.sh runs differ by the host's drift as much as by their code;
# interleaved, every round compares them within seconds.
#
#   benches/load/ab.sh A B         # e.g. a build of main and one of a branch
#
# Environment (defaults in brackets): CASE [unique] (`unique`: a new RS256
# token per request; `hit`: the same one), ROUNDS [6], DURATION [5],
# CONNS ["32 256"]. Uses the configs and fixtures benches/load/run.sh wrote
# under target/load (run it once first) and its ports; loopback only; every
# process it starts is stopped by pid.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/benches/load"
WORK="$ROOT/target/load"
A=${1:?usage: ab.sh A B}
B=${2:?usage: ab.sh A B}
CASE=${CASE:-unique}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32 256}
BASE=${BASE_PORT:-18080}
UP=$BASE HAP_PASS=$((BASE + 2)) HAP_JWT=$((BASE + 3)) TG_IN=$((BASE + 4)) TG_ADMIN=$((BASE + 6))

# shellcheck source=benches/load/lib.sh
. "$HERE/lib.sh"

install_missing wrk:wrk nginx:nginx-light haproxy:haproxy curl:curl taskset:util-linux python3:python3
for f in tokengate-in.yaml haproxy.cfg upstream/nginx.conf token-rs256 tokens-rs256-unique; do
  [ -e "$WORK/$f" ] || { log "no $WORK/$f: run benches/load/run.sh once first"; exit 1; }
done
case "$CASE" in
  unique) TG_ENV="TOKENS_FILE=$WORK/tokens-rs256-unique" ;;
  hit) TG_ENV="TOKEN=$(cat "$WORK/token-rs256")" ;;
  *) log "CASE is unique or hit"; exit 64 ;;
esac
REPEATED="TOKEN=$(cat "$WORK/token-rs256")"

taskset -c 1 nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -e "$WORK/upstream/error.log" >/dev/null 2>&1 &
STARTED+=($!)
wait_port "$UP"

# One measured run of $1 (haproxy, or a tokengate binary) at $2 connections:
# its req/s in RPS.
RPS=0
run() {
  local pid url envs=$TG_ENV
  if [ "$1" = haproxy ]; then
    taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" >/dev/null 2>&1 &
    pid=$!
    url="http://127.0.0.1:$HAP_JWT/"
    envs=$REPEATED # HAProxy verifies every request either way
  else
    RUST_LOG=warn taskset -c 0 "$1" run --config "$WORK/tokengate-in.yaml" >/dev/null 2>&1 &
    pid=$!
    url="http://127.0.0.1:$TG_IN/api"
  fi
  STARTED+=("$pid")
  if [ "$1" = haproxy ]; then wait_port "$HAP_PASS"; else wait_port "$TG_ADMIN" /readyz; fi
  # shellcheck disable=SC2086 # NAME=value words
  env $REPEATED taskset -c 1 wrk -t1 -c"$2" -d1s -s "$HERE/wrk.lua" "$url" >/dev/null
  local out
  # shellcheck disable=SC2086
  out=$(env $envs taskset -c 1 wrk -t1 -c"$2" -d"${DURATION}s" --timeout 5s -s "$HERE/wrk.lua" "$url")
  stop_pid "$pid"
  grep -q "non2xx=0 errors=0" <<<"$out" || { log "$1 c$2: $out"; exit 1; }
  RPS=$(sed -n 's/^RESULT rps=\([0-9.]*\).*/\1/p' <<<"$out")
}

RESULTS=$(mktemp)
for round in $(seq "$ROUNDS"); do
  for conns in $CONNS; do
    run haproxy "$conns"
    h=$RPS
    run "$A" "$conns"
    a=$RPS
    run "$B" "$conns"
    b=$RPS
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$conns" "$h" "$a" "$b" >>"$RESULTS"
    log "round $round c$conns  haproxy $h  A $a  B $b"
  done
done

python3 - "$RESULTS" "$A" "$B" "$CASE" <<'EOF'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().split("\n") if line]
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}\ncase: {sys.argv[4]}; medians of {len(rows) // len({r[1] for r in rows})} rounds\n")
print("| conns | HAProxy jwt_verify | A | B | B ÷ A | B ÷ A per round |")
print("|---|---:|---:|---:|---:|---|")
for conns in sorted({r[1] for r in rows}, key=int):
    h, a, b = ([float(r[i]) for r in rows if r[1] == conns] for i in (2, 3, 4))
    mh, ma, mb = (statistics.median(x) for x in (h, a, b))
    per = ", ".join(f"{y / x:.2f}" for x, y in zip(a, b))
    print(f"| {conns} | {mh:,.0f} | {ma:,.0f} ({ma / mh:.2f}×) | {mb:,.0f} ({mb / mh:.2f}×) | {mb / ma:.2f}× | {per} |")
EOF
rm -f "$RESULTS"
