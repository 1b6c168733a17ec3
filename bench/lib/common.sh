# Shared shell functions for bench/run and bench/profile (sourced, not executed).
# Expects BENCH (the bench/ folder) to be set. Everything listens on 127.0.0.1 only;
# every process started here is recorded by pid in STARTED and stopped by stop_all.

ROOT="$(cd "$BENCH/.." && pwd)"
CACHE="${BENCH_CACHE:-$BENCH/.cache}"
PORT_BASE="${PORT_BASE:-18080}"
# State of one run (logs, Keyguard's config/db/keys, nginx prefix and pid file): one folder per
# port range, so two runs with different PORT_BASE never touch each other's files.
RUNDIR="$CACHE/run/p$PORT_BASE"
UP_PORT=$PORT_BASE                  # nginx fake Azure OpenAI
AIOHTTP_PORT=$((PORT_BASE + 1))     # aiohttp_floor
LITELLM_PORT=$((PORT_BASE + 2))     # litellm
PORTKEY_PORT=$((PORT_BASE + 3))     # portkey
STARLETTE_PORT=$((PORT_BASE + 4))   # starlette_httpx_floor
GRANIAN_AIOHTTP_PORT=$((PORT_BASE + 5))     # granian_aiohttp_floor
GRANIAN_PYREQWEST_PORT=$((PORT_BASE + 6))   # granian_pyreqwest_floor
GRANIAN_ASGI_PORT=$((PORT_BASE + 7))        # granian_asgi_pyreqwest_floor
AIOHTTP_PYREQWEST_PORT=$((PORT_BASE + 8))   # aiohttp_pyreqwest_floor
KG_PORT=$((PORT_BASE + 10))         # keyguard proxy
KG_ADMIN_PORT=$((PORT_BASE + 11))   # keyguard admin
UP="http://127.0.0.1:$UP_PORT"
GW_CPU="${GW_CPU:-1}"               # the gateway under test
LOAD_CPU="${LOAD_CPU:-0}"           # nginx + wrk
UPSTREAM_KEY="${UPSTREAM_KEY:-bench-upstream-key-not-secret}"   # the mock accepts any key
KEYGUARD="${KEYGUARD:-$ROOT/.venv/bin/keyguard}"
# A CLI given by a path relative to where the command was started (KEYGUARD=..., a base build's
# BASE_KEYGUARD=../kg-base/...) is made absolute here, before anything changes folder: each
# gateway is set up and started in a folder of its own.
absolute() { if [ "${1#/}" = "$1" ]; then echo "$(cd "$(dirname "$1")" 2>/dev/null && pwd)/$(basename "$1")"; else echo "$1"; fi; }
KEYGUARD="$(absolute "$KEYGUARD")"
if [ -n "${BASE_KEYGUARD:-}" ]; then BASE_KEYGUARD="$(absolute "$BASE_KEYGUARD")"; fi
STARTED=()
NGINX_PID=""

mkdir -p "$RUNDIR"

log() { echo "[bench] $*" >&2; }

port_busy() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

# wait_http PORT [PATH] [TRIES of 0.2 s]: until anything answers HTTP on the port
wait_http() {
  local port="$1" path="${2:-/}" tries="${3:-150}" code
  for _ in $(seq 1 "$tries"); do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port$path" 2>/dev/null)"
    [ -n "$code" ] && [ "$code" != "000" ] && return 0
    sleep 0.2
  done
  return 1
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

descendants() {  # pid -> its descendants' pids (depth first)
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}

stop_pid() {  # stop one process we started, and its descendants, by pid (TERM, then KILL)
  local pid="$1" p kids
  alive "$pid" || return 0
  kids="$(descendants "$pid")"
  kill -TERM "$pid" $kids 2>/dev/null
  for _ in $(seq 1 50); do
    alive "$pid" || break
    sleep 0.1
  done
  for p in $pid $kids; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
  return 0
}

start_nginx() {
  local prefix="$RUNDIR/nginx"
  if port_busy "$UP_PORT"; then
    log "port $UP_PORT is already in use (not ours): set PORT_BASE to another free range"
    return 1
  fi
  mkdir -p "$prefix/tmp"
  "$CACHE/floor-venv/bin/python" "$BENCH/upstream/gen_nginx_conf.py" "$UP_PORT" > "$prefix/nginx.conf" 2>/dev/null \
    || python3 "$BENCH/upstream/gen_nginx_conf.py" "$UP_PORT" > "$prefix/nginx.conf" || return 1
  rm -f "$prefix/nginx.pid"
  nginx -t -q -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" || return 1
  taskset -c "$LOAD_CPU" nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" || return 1
  for _ in $(seq 1 50); do [ -s "$prefix/nginx.pid" ] && break; sleep 0.1; done
  NGINX_PID="$(cat "$prefix/nginx.pid" 2>/dev/null)"
  wait_http "$UP_PORT" /healthz 50 || { log "nginx did not answer"; return 1; }
  log "nginx (fake Azure OpenAI) pid $NGINX_PID on 127.0.0.1:$UP_PORT, CPU $LOAD_CPU"
}

stop_nginx() {
  alive "$NGINX_PID" || return 0
  kill -QUIT "$NGINX_PID" 2>/dev/null
  for _ in $(seq 1 50); do alive "$NGINX_PID" || break; sleep 0.1; done
  alive "$NGINX_PID" && kill -TERM "$NGINX_PID" 2>/dev/null
  NGINX_PID=""
}

stop_all() {
  local p
  for p in "${STARTED[@]}"; do stop_pid "$p"; done
  STARTED=()
  stop_nginx
}

# start_bg NAME PORT WAIT_PATH CMD... : start a gateway pinned to GW_CPU, wait until it answers
start_bg() {
  local name="$1" port="$2" path="$3"; shift 3
  if port_busy "$port"; then log "$name: port $port already in use, not starting"; return 1; fi
  taskset -c "$GW_CPU" "$@" > "$RUNDIR/$name.log" 2>&1 &
  local pid=$!
  STARTED+=("$pid")
  if wait_http "$port" "$path" 300 && alive "$pid"; then
    log "$name pid $pid on 127.0.0.1:$port, CPU $GW_CPU"
    return 0
  fi
  log "$name did not come up (see ${RUNDIR#"$ROOT"/}/$name.log)"
  stop_pid "$pid"
  return 1
}

# ---------------------------------------------------------------- Keyguard
# setup_keyguard DIR [core|noguard]: fresh config + master key + vault secret + one app key
# (-> KG_KEY). "noguard": the product with its guardrails off (their cost is measured on top).
# "core": the gateway core only (key auth, routing, access log), the monitor's audit, metrics
# and detection off, to measure what monitoring costs on top of it. KG_HTTP_SERVER=granian: the
# proxy port on Granian (proxy.http_server), KG_UPSTREAM_CLIENT=pyreqwest: the upstream client
# on pyreqwest (proxy.upstream_client), each written only when set.
setup_keyguard() {
  local dir="$1" variant="${2:-full}"
  [ -x "$KEYGUARD" ] || { log "keyguard: $KEYGUARD not found (create the project venv first)"; return 1; }
  rm -rf "$dir"; mkdir -p "$dir"; chmod 700 "$dir"
  cat > "$dir/keyguard.yaml" <<EOF
# Generated by bench/run: the default gateway (key auth + routing + access log on) in front
# of the nginx fake Azure OpenAI upstream. Relative paths resolve against this file's folder.
listen: {proxy: "127.0.0.1:$KG_PORT", admin: "127.0.0.1:$KG_ADMIN_PORT"}
store: "sqlite:///keyguard.db"
master_key_file: "master.key"
upstreams:
  - name: mock
    endpoint: "$UP"
    credential: {vault: upstream/mock}
    deployments: [gpt-4o, gpt-4o-stream]
EOF
  # Worker processes (keyguard serve --workers): the default (1 with in-process counters)
  # unless KG_WORKERS says otherwise; not written otherwise, so a base build from before the
  # setting runs from the same file.
  if [ -n "${KG_WORKERS:-}" ]; then echo "workers: $KG_WORKERS" >> "$dir/keyguard.yaml"; fi
  # The proxy port's HTTP server (proxy.http_server) and upstream client
  # (proxy.upstream_client), likewise only when KG_HTTP_SERVER / KG_UPSTREAM_CLIENT are set.
  local stacks=""
  if [ -n "${KG_HTTP_SERVER:-}" ]; then stacks="http_server: $KG_HTTP_SERVER"; fi
  if [ -n "${KG_UPSTREAM_CLIENT:-}" ]; then
    stacks="${stacks:+$stacks, }upstream_client: $KG_UPSTREAM_CLIENT"
  fi
  if [ -n "$stacks" ]; then echo "proxy: {$stacks}" >> "$dir/keyguard.yaml"; fi
  if [ "$variant" = core ]; then
    cat >> "$dir/keyguard.yaml" <<EOF
# The gateway core: audit, metrics and detection off (everything else is the default).
monitor: {audit: {enabled: false}, metrics: {enabled: false}, detect: {enabled: false}}
EOF
  else
    if [ "$variant" = noguard ]; then
      cat >> "$dir/keyguard.yaml" <<EOF
# The product with its guardrails off (the base their cost is measured against).
guardrails: {enabled: false}
EOF
    fi
    cat >> "$dir/keyguard.yaml" <<EOF
# Everything else is the default (monitoring, detection, audit, metrics on). One key sending
# thousands of requests a second is what the velocity rule exists to catch: the detectors
# keep running (their cost is part of the figures) but answer with alerts only, so the
# benchmark's key is not throttled (429) part-way through the run.
monitor:
  respond:
    policy:
      velocity: {high: [alert]}
      enumeration: {high: [alert]}
      network: {medium: [alert], high: [alert]}
      reseller: {high: [alert]}
      key_probe: {high: [alert]}
EOF
  fi
  (
    cd "$dir" || exit 1
    unset KEYGUARD_MASTER_KEY KEYGUARD_CONFIG
    "$KEYGUARD" vault init-master-key master.key > setup.log 2>&1 \
      && printf '%s' "$UPSTREAM_KEY" | "$KEYGUARD" vault put upstream/mock -c keyguard.yaml >> setup.log 2>&1 \
      && "$KEYGUARD" keys create --app bench --json -c keyguard.yaml > key.json 2>> setup.log
  ) || { log "keyguard setup failed: $(tail -3 "$dir/setup.log" 2>/dev/null | tr '\n' ' ')"; return 1; }
  KG_KEY="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$dir/key.json" 2>/dev/null)"
  [ -n "$KG_KEY" ] || { log "keyguard: no 'key' in keys create --json output"; return 1; }
}

# start_keyguard DIR ACCESS_LOG: `keyguard serve` pinned to GW_CPU; stderr (access log) -> file
start_keyguard() {
  local dir="$1" alog="$2"
  if port_busy "$KG_PORT" || port_busy "$KG_ADMIN_PORT"; then
    log "keyguard: port $KG_PORT or $KG_ADMIN_PORT already in use, not starting"; return 1
  fi
  ( cd "$dir" && unset KEYGUARD_MASTER_KEY KEYGUARD_CONFIG \
    && exec taskset -c "$GW_CPU" "$KEYGUARD" serve --config keyguard.yaml > "$RUNDIR/keyguard.stdout" 2> "$alog" ) &
  KG_PID=$!
  STARTED+=("$KG_PID")
  if wait_http "$KG_PORT" / 150 && alive "$KG_PID"; then
    log "keyguard pid $KG_PID on 127.0.0.1:$KG_PORT, CPU $GW_CPU, access log -> $(basename "$alog")"
    return 0
  fi
  log "keyguard did not come up: $(tail -5 "$alog" 2>/dev/null | tr '\n' ' ')"
  stop_pid "$KG_PID"
  return 1
}
