#!/usr/bin/env bash
# Measures the ASGI servers the Connect app can run on, with this service:
# requests/s of Create (inserts into PostgreSQL) and of a call answered without
# the database, through each server, in one run (compare the ratios: the
# machine is noisy). Needs wrk. Usage: bench/asgi_servers.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
data=$(mktemp -d /tmp/hostauth-bench-XXXXXX)
chmod 755 "$data"
trap 'rm -rf "$data"' EXIT
declare -A result
for server in uvicorn hypercorn granian; do
  HOSTAUTH_HTTP_SERVER=$server HOSTAUTH_DATA_DIR=$data HOSTAUTH_HTTP_ADDR=127.0.0.1:18080 \
    HOSTAUTH_GRPC_ADDR=127.0.0.1:19090 .venv/bin/python -m server serve --dev >"$data/$server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18080/ && break; sleep 0.2; done
  for script in unimplemented create; do
    rps=$(wrk -t2 -c32 -d"${secs}s" -s "bench/$script.lua" http://127.0.0.1:18080 | awk '/Requests\/sec/ {print $2}')
    result[$server.$script]=$rps
    echo "$server $script: $rps req/s"
  done
  kill -TERM $pid; wait $pid || true
done
for script in unimplemented create; do
  awk -v u="${result[uvicorn.$script]}" -v h="${result[hypercorn.$script]}" -v g="${result[granian.$script]}" \
    -v s=$script 'BEGIN {printf "%s: uvicorn/hypercorn = %.2f, granian/hypercorn = %.2f\n", s, u / h, g / h}'
done
