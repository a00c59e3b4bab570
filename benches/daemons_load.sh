#!/usr/bin/env bash
# Several `cascade serve` daemons on one PostgreSQL database, beside one daemon alone: the same
# newJob → updateProgress → completeJob cycles as benches/http_load.sh, with the workers split
# evenly among the daemons (one `loadgen` per daemon, all running at once). Prints, per run, the
# total cycles/s, the worst p99 of the loadgens, the jobs done in the database, the jobs
# claimed more than once at a stage (0: no duplicate claim; no lease can expire in a run), and
# where the machine's CPU time went while the loadgens ran, in microseconds per cycle: all of
# it, the daemons, the loadgens, and the rest (PostgreSQL, on an otherwise idle machine), and
# the database's transactions per cycle (how many cycles each group commit carried).
#
# Usage: benches/daemons_load.sh [SECONDS=10] [JOBS=1000000]
#   PG_URL=postgres://postgres@127.0.0.1:5432/test DAEMONS="1 3" WORKERS=64 ROUNDS=3 benches/daemons_load.sh
#   CONFIG=cascade.toml   (a configuration file for the daemons, e.g. one setting `db-connections`)
#   BASELINE=/path/to/old/bin   (a folder holding another build's `cascade` and `loadgen`: every
#     run is then made with that build and this one in turn, so both see the same machine; the
#     CSV's first column says which build ran)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
jobs=${2:-1000000}
pg=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
daemons_list=${DAEMONS:-1 3}
workers=${WORKERS:-64}
rounds=${ROUNDS:-2}
cargo build --release -q -p cascade-engine --bin cascade -p cascade-benches --bin loadgen
this_build="${CARGO_TARGET_DIR:-target}/release"
builds=("this=$this_build")
if [ -n "${BASELINE:-}" ]; then builds=("baseline=$BASELINE" "this=$this_build"); fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
ticks=$(getconf CLK_TCK)

# CPU time of process PID so far (user + system, all threads), in clock ticks.
cpu_of() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}

# CPU time of the whole machine so far (user, nice, system, irq, softirq), in clock ticks.
machine_cpu() {
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8}' /proc/stat
}

# Transactions committed in database NAME so far (URL DATABASE).
commits() {
  psql "$1" -Atc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$2'"
}

# One run of the build in folder BIN with DAEMONS daemons on a fresh database; prints the CSV
# line.
run_once() {
  local bin=$1 daemons=$2 name="cascade_daemons_$$_$RANDOM"
  psql "$pg" -qc "CREATE DATABASE $name"
  local database="${pg%/*}/$name"
  "$bin/cascade" init --database "$database" --brace "shard-{000000..$(printf '%06d' $((jobs - 1)))}" >/dev/null
  local pids=() urls=()
  for i in $(seq "$daemons"); do
    CASCADE_LOG=warn "$bin/cascade" serve ${CONFIG:+--config "$CONFIG"} --database "$database" --bind 127.0.0.1:0 --stage a=load \
      >"$work/serve-$i.out" 2>&1 &
    pids+=($!)
  done
  for i in $(seq "$daemons"); do
    for _ in $(seq 100); do grep -q listening "$work/serve-$i.out" 2>/dev/null && break; sleep 0.1; done
    urls+=("$(grep -o 'http://[0-9.:]*' "$work/serve-$i.out" | head -n1)")
  done
  local loadgens=() pid machine0 machine1 daemons0=0 daemons1=0 commits0 commits1
  commits0=$(commits "$database" "$name")
  machine0=$(machine_cpu)
  for pid in "${pids[@]}"; do daemons0=$((daemons0 + $(cpu_of "$pid"))); done
  for i in $(seq "$daemons"); do
    /usr/bin/time -f '%U %S' -o "$work/time-$i" "$bin/loadgen" --url "${urls[$((i - 1))]}" \
      --workers $((workers / daemons)) --seconds "$seconds" --csv >"$work/load-$i.csv" &
    loadgens+=($!)
  done
  wait "${loadgens[@]}"
  machine1=$(machine_cpu)
  for pid in "${pids[@]}"; do daemons1=$((daemons1 + $(cpu_of "$pid"))); done
  commits1=$(commits "$database" "$name")
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
  # Seconds of CPU per cycle, in microseconds: machine, daemons, loadgens, rest.
  local cpu
  cpu=$(cat "$work"/time-* | awk -v m=$((machine1 - machine0)) -v d=$((daemons1 - daemons0)) -v t="$ticks" \
    -v c="$cycles" '{l += $1 + $2} END {u = 1e6 / c; printf "%.0f,%.0f,%.0f,%.0f", m / t * u, d / t * u, l * u, (m / t - d / t - l) * u}')
  rm -f "$work"/load-*.csv "$work"/serve-*.out "$work"/time-*
  echo "$daemons,$workers,$cycles,$((cycles / seconds)),$p99,$done_jobs,$duplicates,$cpu,$(awk -v x=$((commits1 - commits0)) \
    -v c="$cycles" 'BEGIN {printf "%.2f", x / c}')"
}

echo "build,daemons,workers,cycles,cycles_per_s,worst_p99_ms,done_in_database,claimed_twice,cpu_us_per_cycle,daemons_us,loadgens_us,rest_us,commits_per_cycle"
for _ in $(seq "$rounds"); do
  for daemons in $daemons_list; do
    for build in "${builds[@]}"; do
      echo "${build%%=*},$(run_once "${build#*=}" "$daemons")"
    done
  done
done
