#!/usr/bin/env bash
# Several `cascade serve` daemons on one PostgreSQL database, beside one daemon alone: the same
# newJob → updateProgress → completeJob cycles as benches/http_load.sh, with the workers split
# evenly among the daemons (one `loadgen` per daemon, all running at once). Prints, per run, the
# total cycles/s, the worst p99 of the loadgens, the jobs done in the database, and the jobs
# claimed more than once at a stage (0: no duplicate claim; no lease can expire in a run).
#
# Usage: benches/daemons_load.sh [SECONDS=10] [JOBS=1000000]
#   PG_URL=postgres://postgres@127.0.0.1:5432/test DAEMONS="1 3" WORKERS=64 ROUNDS=3 benches/daemons_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
jobs=${2:-1000000}
pg=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
daemons_list=${DAEMONS:-1 3}
workers=${WORKERS:-64}
rounds=${ROUNDS:-2}
cargo build --release -q -p cascade-engine --bin cascade -p cascade-benches --bin loadgen
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# One run with DAEMONS daemons on a fresh database; prints the CSV line.
run_once() {
  local daemons=$1 name="cascade_daemons_$$_$RANDOM"
  psql "$pg" -qc "CREATE DATABASE $name"
  local database="${pg%/*}/$name"
  "$bin/cascade" init --database "$database" --brace "shard-{000000..$(printf '%06d' $((jobs - 1)))}" >/dev/null
  local pids=() urls=()
  for i in $(seq "$daemons"); do
    CASCADE_LOG=warn "$bin/cascade" serve --database "$database" --bind 127.0.0.1:0 --stage a=load \
      >"$work/serve-$i.out" 2>&1 &
    pids+=($!)
  done
  for i in $(seq "$daemons"); do
    for _ in $(seq 100); do grep -q listening "$work/serve-$i.out" 2>/dev/null && break; sleep 0.1; done
    urls+=("$(grep -o 'http://[0-9.:]*' "$work/serve-$i.out" | head -n1)")
  done
  local loadgens=()
  for i in $(seq "$daemons"); do
    "$bin/loadgen" --url "${urls[$((i - 1))]}" --workers $((workers / daemons)) --seconds "$seconds" --csv \
      >"$work/load-$i.csv" &
    loadgens+=($!)
  done
  wait "${loadgens[@]}"
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  local cycles p99
  cycles=$(cat "$work"/load-*.csv | awk -F, '{sum += $2} END {print sum}')
  p99=$(cat "$work"/load-*.csv | awk -F, '$5 > max {max = $5} END {print max}')
  local done_jobs duplicates
  done_jobs=$(psql "$database" -Atc "SELECT count(*) FROM jobs WHERE state = 'done'")
  duplicates=$(psql "$database" -Atc "SELECT count(*) FROM (SELECT 1 FROM job_events WHERE kind = 'claim' \
    GROUP BY job_id, stage HAVING count(*) > 1) AS twice")
  psql "$pg" -qc "DROP DATABASE $name WITH (FORCE)"
  rm -f "$work"/load-*.csv "$work"/serve-*.out
  echo "$daemons,$workers,$cycles,$((cycles / seconds)),$p99,$done_jobs,$duplicates"
}

echo "daemons,workers,cycles,cycles_per_s,worst_p99_ms,done_in_database,claimed_twice"
for _ in $(seq "$rounds"); do
  for daemons in $daemons_list; do
    run_once "$daemons"
  done
done
