# Starts and stops the stack the api3 tests and benchmark run against: the simulated site, the syncer
# and the query-server (the real binaries), on free loopback ports, with the embedded SQLite store.
# Sourced by scripts/test-api3 and scripts/bench-api3; not run on its own.
#
#   api3_stack_start PROFILE LATENCY_MS SCALE DIR   # PROFILE: debug | release
#   api3_stack_stop
#
# After a start, these are exported for the Python side:
#   API3_CACHE_URL    http://127.0.0.1:PORT   (the query-server's api3 listener)
#   API3_SITE_URL     http://127.0.0.1:PORT   (the simulated site)
#   API3_SCRIPT, API3_KEY                     (a script both the site and the cache accept)
#   API3_CACHE_METRICS http://127.0.0.1:PORT/metrics (the query-server's admin port)

api3_pids=()

api3_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

api3_stack_stop() {
  local p
  for p in "${api3_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${api3_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  api3_pids=()
}

# Waits up to $2 tenths of a second for URL $1 to answer 2xx; fails naming $3 (a log file) otherwise.
api3_wait_http() {
  local url=$1 tries=$2 log=$3 pid=$4
  for _ in $(seq 1 "$tries"); do
    curl -fs "$url" >/dev/null 2>&1 && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "process $pid exited; last lines of $log:" >&2
      tail -30 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$url did not become ready; last lines of $log:" >&2
  tail -30 "$log" >&2
  return 1
}

api3_stack_start() {
  local profile=$1 latency=$2 scale=$3 dir=$4
  local bin=target/$profile
  mkdir -p "$dir"
  rm -f "$dir"/cache.db "$dir"/cache.db-wal "$dir"/cache.db-shm "$dir"/sim.out

  local sim_port grpc_port qs_admin http_port sync_admin sync_grpc
  sim_port=$(api3_free_port); grpc_port=$(api3_free_port); qs_admin=$(api3_free_port)
  http_port=$(api3_free_port); sync_admin=$(api3_free_port); sync_grpc=$(api3_free_port)
  export API3_SCRIPT=api3-tests API3_KEY=api3-tests-key

  "$bin/shotgun-sim" --listen "127.0.0.1:$sim_port" --scale "$scale" --seed 3 \
    --types Project,Sequence,Shot,Asset,Task,Step,HumanUser,Version,Note \
    --script-name "$API3_SCRIPT" --script-key "$API3_KEY" --latency-ms "$latency" \
    >"$dir/sim.out" 2>"$dir/sim.log" &
  api3_pids+=($!)
  local sim_pid=$!
  for _ in $(seq 1 600); do
    grep -q '"url"' "$dir/sim.out" 2>/dev/null && break
    kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '"url"' "$dir/sim.out" || { echo "the simulator did not start; see $dir/sim.log" >&2; tail -20 "$dir/sim.log" >&2; return 1; }

  cat >"$dir/config.toml" <<EOF
[site]
url = "http://127.0.0.1:$sim_port"
script_name = "$API3_SCRIPT"

[store]
backend = "sqlite"
sqlite_path = "$dir/cache.db"

[syncer]
admin_listen = "127.0.0.1:$sync_admin"
grpc_listen = "127.0.0.1:$sync_grpc"
poll_interval_ms = 200

[query_server]
grpc_listen = "127.0.0.1:$grpc_port"
admin_listen = "127.0.0.1:$qs_admin"
http_listen = "127.0.0.1:$http_port"

[api3]
forward = true
syncer_url = "http://127.0.0.1:$sync_grpc"

[types.Project]
fields = "all"
[types.Sequence]
fields = "all"
[types.Shot]
# Everything the tests read from the cache; "description" is left out on purpose (the tests check
# that a read of an uncached field is forwarded).
fields = ["code", "sg_status_list", "sg_sequence", "project", "assets", "tasks", "sg_cut_in", "sg_cut_out",
          "sg_cut_duration", "sg_shot_type", "created_at", "updated_at", "created_by", "image"]
filterable = ["code", "sg_status_list", "sg_sequence"]
[types.Asset]
fields = "all"
[types.Task]
fields = "all"
[types.Step]
fields = "all"
[types.HumanUser]
fields = "all"
EOF

  export SHOTGUN_CACHE_SITE__SCRIPT_KEY=$API3_KEY
  export SHOTGUN_CACHE_API3__CLIENTS="$API3_SCRIPT:$API3_KEY"
  "$bin/shotgun-cache-syncer" run --config "$dir/config.toml" >"$dir/syncer.log" 2>&1 &
  api3_pids+=($!)
  api3_wait_http "http://127.0.0.1:$sync_admin/readyz" 6000 "$dir/syncer.log" $! || return 1

  "$bin/shotgun-cache-query-server" --config "$dir/config.toml" >"$dir/query-server.log" 2>&1 &
  api3_pids+=($!)
  api3_wait_http "http://127.0.0.1:$qs_admin/readyz" 600 "$dir/query-server.log" $! || return 1

  export API3_CACHE_URL="http://127.0.0.1:$http_port"
  export API3_SITE_URL="http://127.0.0.1:$sim_port"
  export API3_CACHE_METRICS="http://127.0.0.1:$qs_admin/metrics"
}
