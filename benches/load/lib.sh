# Shared by benches/load/run.sh, h2.sh and benches/soak/soak.sh (sourced): logging, missing
# tools, the processes a script starts and stops by pid, waiting for a port, the load
# fixtures, RSS, nginx configs.
# Expects ROOT and WORK to be set.

log() { echo "load: $*" >&2; }

# --- process bookkeeping ---------------------------------------------------
STARTED=()
stop_pid() { # stops a pid this script started and forgets it
  local pid=$1 kept=() p
  for p in "${STARTED[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  STARTED=("${kept[@]+"${kept[@]}"}")
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() { for pid in "${STARTED[@]+"${STARTED[@]}"}"; do stop_pid "$pid"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port [path]
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1${2:-/}" 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing answered on port $1${2:-/}"; return 1
}

# Installs the Debian packages of the tools missing: each argument is
# `command:package`; a command found in /usr/sbin counts as present.
install_missing() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  fi
  export PATH="$PATH:/usr/sbin"
}

# Keys, JWKS and tokens in $WORK (the load-fixtures example, built by the
# caller), with at least $1 unique tokens; reused while their tokens have more
# than 12 hours left.
fixtures() {
  local unique="$WORK/tokens-rs256-unique"
  if [ ! -f "$unique" ] || [ -n "$(find "$unique" -mmin +720)" ] || [ "$(wc -l <"$unique")" -lt "$1" ]; then
    log "generating keys and $1 unique RS256 tokens"
    "$ROOT/target/release/examples/load-fixtures" "$WORK" "$1" >&2
  fi
}

rss_kb() { awk "/^$2:/ {print \$2}" "/proc/$1/status" 2>/dev/null || echo 0; }

nginx_conf() { # name port body
  mkdir -p "$WORK/$1"
  cat >"$WORK/$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/$1; proxy_temp_path $WORK/$1; fastcgi_temp_path $WORK/$1;
  uwsgi_temp_path $WORK/$1; scgi_temp_path $WORK/$1;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  $3
}
EOF
}

