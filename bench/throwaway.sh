# Sourced by bench/fixed-rate and bench/profile: a throwaway flyhook deployment on the local
# RabbitMQ and PostgreSQL for measuring one ingress process by hand, removed on exit whatever
# happens. (The scenarios of `bench/run` use testkit's stack instead.)
#   throwaway NAME BIN_DIR PORT [flyte-sim args]
#       the environment (database NAME_<pid>, queue prefix bench-NAME, the ingress on PORT,
#       flyte-sim on PORT+9, the API key in WEBHOOK_API_KEY, no per-key rate limit), flyte-sim
#       started, the database migrated
#   throwaway_started PID    a process of the deployment, stopped on exit
#   throwaway_ready PID      waits for the ingress (process PID) to answer /readyz; fails if not
# The queue prefix is fixed per NAME: its queues are deleted on exit, and its exchanges (which
# rabbitmqctl cannot delete) are reused by the next run.

throwaway_pids=()

throwaway_cleanup() {
  set +e
  kill "${throwaway_pids[@]}" 2>/dev/null
  wait "${throwaway_pids[@]}" 2>/dev/null
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $throwaway_database" >/dev/null
  for queue in $(rabbitmqctl -q list_queues name | grep "^$FLYHOOK_QUEUE_PREFIX\."); do
    rabbitmqctl -q delete_queue "$queue" >/dev/null
  done
  rm -rf "$throwaway_dir"
}

throwaway() {
  local name=$1 bin=$2 port=$3
  shift 3
  throwaway_dir=$(mktemp -d)
  throwaway_database=${name//-/_}_$$
  throwaway_url=http://127.0.0.1:$port
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$throwaway_database
  export AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
  export FLYHOOK_LISTEN=127.0.0.1:$port FLYHOOK_QUEUE_PREFIX=bench-$name
  export FLYTE_ENDPOINT=http://127.0.0.1:$((port + 9)) FLYHOOK_WORKER_LISTEN=127.0.0.1:0
  export FLYHOOK_CONFIG=$throwaway_dir/flyhook.toml
  export WEBHOOK_API_KEY=bench-throwaway-key-0123456789abcdef
  trap throwaway_cleanup EXIT
  printf '[ingress]\nrate_limit = { per_second = 1000000, burst = 1000000 }\n' > "$FLYHOOK_CONFIG"
  "$bin/flyte-sim" --listen "127.0.0.1:$((port + 9))" "$@" >/dev/null 2>&1 &
  throwaway_started $!
  "$bin/flyhook" migrate >/dev/null
}

throwaway_started() {
  throwaway_pids+=("$1")
}

throwaway_ready() {
  local _
  for _ in $(seq 1 240); do
    kill -0 "$1" 2>/dev/null || break
    curl -sf -o /dev/null "$throwaway_url/readyz" && return 0
    sleep 0.5
  done
  echo "the ingress did not become ready" >&2
  return 1
}
