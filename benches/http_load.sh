#!/usr/bin/env bash
# HTTP load benchmark of `cascade serve`: newJob → updateProgress → completeJob cycles with
# 1, 8 and 64 concurrent workers on loopback, on SQLite (and PostgreSQL when PG_URL is set).
#
# Usage: benches/http_load.sh [SECONDS=10] [JOBS=400000]
#   PG_URL=postgres://postgres@127.0.0.1:5432/test benches/http_load.sh
#   PG_URL=postgres://postgres@%2Fvar%2Frun%2Fpostgresql/test benches/http_load.sh   (the Unix socket)
#   BASELINE=/path/to/old/bin ROUNDS=5 WORKERS="8 64" benches/http_load.sh 6 200000
#   ANALYZE=1 PG_URL=… benches/http_load.sh   (PostgreSQL: VACUUM ANALYZE after loading, as
#                                              autovacuum does during a long run)
#
# With BASELINE (a folder holding another build's `cascade` and `loadgen`), every run is made
# ROUNDS times, alternating that build and this one, so both see the same machine; the CSV's
# first column says which build ran.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
jobs=${2:-400000}
rounds=${ROUNDS:-1}
workers_list=${WORKERS:-1 8 64}
cargo build --release -q -p cascade-engine --bin cascade -p cascade-benches --bin loadgen
this_build="${CARGO_TARGET_DIR:-target}/release"
builds=("this=$this_build")
if [ -n "${BASELINE:-}" ]; then builds=("baseline=$BASELINE" "this=$this_build"); fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# One run: BUILD_DIR DATABASE WORKERS; prints the loadgen CSV line.
run_once() {
  local bin=$1 database=$2 workers=$3
  "$bin/cascade" init --database "$database" --brace "shard-{000000..$(printf '%06d' $((jobs - 1)))}" --reset >/dev/null
  if [ -n "${ANALYZE:-}" ] && [[ $database == postgres* ]]; then psql "$database" -qc "VACUUM ANALYZE"; fi
  CASCADE_LOG=warn "$bin/cascade" serve --database "$database" --bind 127.0.0.1:0 --stage a=load >"$work/serve.out" &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  local url
  url=$(grep -o 'http://[0-9.:]*' "$work/serve.out")
  "$bin/loadgen" --url "$url" --workers "$workers" --seconds "$seconds" --csv
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_backend() {
  local name=$1 database=$2
  echo "## $name"
  echo "build,workers,cycles,cycles_per_s,p50_ms,p99_ms"
  for workers in $workers_list; do
    for _ in $(seq "$rounds"); do
      for build in "${builds[@]}"; do
        echo "${build%%=*},$(run_once "${build#*=}" "$database" "$workers")"
      done
    done
  done
}

run_backend sqlite "$work/load.db"
if [ -n "${PG_URL:-}" ]; then
  db="cascade_load_$$"
  psql "$PG_URL" -qc "CREATE DATABASE $db"
  run_backend postgres "${PG_URL%/*}/$db"
  psql "$PG_URL" -qc "DROP DATABASE $db WITH (FORCE)"
fi
