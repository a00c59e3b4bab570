#!/usr/bin/env bash
# Scale simulation on one PostgreSQL: JOBS jobs through three stages, DAEMONS `cascade serve`
# daemons, ACTIVE workers per stage running newJob → updateProgress → completeJob cycles (stages
# b and c fed by the stage before them while the load runs), and IDLE idle workers that poll
# `jobCount` and `validateWorker` (a heartbeat) every IDLE_EVERY seconds, spread over the daemons.
#
# "An hour of churn" is compressed COMPRESS times: the idle workers poll COMPRESS times as often
# as they would (30 s / COMPRESS) for 3600 / COMPRESS seconds, so the database sees as many
# heartbeats as in an hour. Prints each loadgen's report (claim latency is `/api/newJob`), then
# the database's size and its live and dead rows per table, before and after the churn.
#
# Usage: benches/scale_sim.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432/test JOBS=5000000 IDLE=10000 COMPRESS=6 benches/scale_sim.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pg=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
jobs=${JOBS:-5000000}
daemons=${DAEMONS:-3}
active=${ACTIVE:-8}
idle=${IDLE:-10000}
compress=${COMPRESS:-6}
idle_every=$((30 / compress))
seconds=$((3600 / compress))
cargo build --release -q -p cascade-engine --bin cascade -p cascade-benches --bin loadgen
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
name="cascade_scale_$$"
database="${pg%/*}/$name"
trap 'kill $(jobs -p) 2>/dev/null || true; psql "$pg" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)"; rm -rf "$work"' EXIT

# The database's size and, per table, its live and dead rows (after the statistics are sent).
report_database() {
  sleep 1
  psql "$database" -Atc "SELECT 'database size: ' || pg_size_pretty(pg_database_size(current_database())) \
    || ' (autovacuum ' || current_setting('autovacuum') || ')'"
  psql "$database" -Atc "SELECT relname || ': ' || n_live_tup || ' live, ' || n_dead_tup || ' dead rows, ' \
    || pg_size_pretty(pg_total_relation_size(relid)) || ' with indexes, autovacuumed ' || autovacuum_count \
    || ' times' FROM pg_stat_user_tables WHERE relname IN ('jobs', 'workers', 'job_events') ORDER BY relname"
}

psql "$pg" -qc "CREATE DATABASE $name"
echo "# loading $jobs jobs"
time "$bin/cascade" init --database "$database" --brace "shard-{0000000..$(printf '%07d' $((jobs - 1)))}" >/dev/null
psql "$database" -qc "VACUUM ANALYZE"
report_database

# Every simulated worker comes from 127.0.0.1: the per-address registration limit is lifted.
printf '[limits]\nregistrations-per-minute = 0\n' >"$work/cascade.toml"
urls=()
for i in $(seq "$daemons"); do
  CASCADE_LOG=warn "$bin/cascade" serve --config "$work/cascade.toml" --database "$database" --bind 127.0.0.1:0 \
    --stage a=wat --stage b=download --stage c=clip --idle-timeout 10m >"$work/serve-$i.out" 2>&1 &
  for _ in $(seq 100); do grep -q listening "$work/serve-$i.out" 2>/dev/null && break; sleep 0.1; done
  urls+=(--url "$(grep -o 'http://[0-9.:]*' "$work/serve-$i.out" | head -n1)")
done

echo "# $daemons daemons, $active active workers per stage, $idle idle workers polling every ${idle_every}s, ${seconds}s"
loadgens=()
for stage in a b c; do
  "$bin/loadgen" "${urls[@]}" --workers "$active" --stage "$stage" --keep-polling --seconds "$seconds" \
    --endpoints >"$work/stage-$stage.out" &
  loadgens+=($!)
done
"$bin/loadgen" "${urls[@]}" --workers 0 --idle-workers "$idle" --idle-every "$idle_every" --idle-stages a,b,c \
  --seconds "$seconds" --endpoints >"$work/idle.out" &
loadgens+=($!)
wait "${loadgens[@]}"
for stage in a b c; do
  echo "## stage $stage"
  cat "$work/stage-$stage.out"
done
echo "## idle workers"
cat "$work/idle.out"
echo "## database after the churn"
psql "$database" -Atc "SELECT stage || ' ' || state || ': ' || count(*) FROM jobs GROUP BY stage, state ORDER BY 1"
report_database
