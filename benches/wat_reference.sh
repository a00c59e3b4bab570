#!/usr/bin/env bash
# WAT → pairs beside the Python references, on the same corpus in the same run: Cascade's
# file-to-parquet extraction (`wat_throughput FILE THREADS parquet DIR`, what `cascade wat`
# runs), cc2dataset 1.5.0's `process_wat` and bare FastWARC record iteration, interleaved,
# ROUNDS rounds. Prints each run, then MB/s (compressed input) ranges and medians, CPU-seconds
# (user + sys; steadier than wall time on a shared machine) and the ratios of Cascade to both
# references.
#
# The references are installed in a throw-away virtual environment under /tmp (PyPI only);
# this script is for developers' machines and never runs in CI.
#
# Usage: benches/wat_reference.sh [TARGET_MB=100]
#   ROUNDS=3 THREADS="2 1" WAT_REF_VENV=/tmp/cascade-wat-ref-venv
#   BASELINE=path/to/an/older/wat_throughput   (also runs that build, as `baseline_tN`)
#   CASCADE_BIN=target/release/cascade   (also runs `cascade wat FILE --out DIR --threads N`,
#     the command users run, timed from outside: process start and progress bar included,
#     as `command_tN`; BASELINE_CASCADE_BIN another build of it, as `command_baseline_tN`)
set -euo pipefail
if [ -n "${CI:-}" ]; then
  echo "wat_reference.sh installs Python packages from PyPI: not run in CI" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
target_mb=${1:-100}
rounds=${ROUNDS:-3}
threads=${THREADS:-"2 1"}
venv=${WAT_REF_VENV:-/tmp/cascade-wat-ref-venv}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import cc2dataset, fastwarc" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "cc2dataset==1.5.0" fastwarc
fi

# The corpus: the bundled WAT samples concatenated (gzip members concatenate into a valid
# multi-member file) until TARGET_MB megabytes, the same bytes as shared/tools/make_corpus.sh.
data=stages/tests/data/wat
corpus=/tmp/cascade-wat-corpus-${target_mb}.warc.wat.gz
if [ ! -s "$corpus" ]; then
  unit=$(mktemp)
  cat "$data"/cc-CC-MAIN-2020-34-excerpt.derived.warc.wat.gz \
    "$data"/cc-whirlwind-CC-MAIN-2024-22.derived.warc.wat.gz \
    "$data"/clueweb09-ja-quirk.derived.warc.wat.gz \
    "$data"/ia-archive-org-2008.derived.warc.wat.gz \
    "$data"/cc-whirlwind-CC-MAIN-2024-22.warc.wat.gz >"$unit"
  reps=$(( (target_mb * 1000000 + $(stat -c %s "$unit") - 1) / $(stat -c %s "$unit") ))
  : >"$corpus"
  for _ in $(seq "$reps"); do cat "$unit" >>"$corpus"; done
  rm -f "$unit"
fi
bytes=$(stat -c %s "$corpus")

cargo build --release -q -p cascade-stages --features wat --example wat_throughput
bin=target/release/examples/wat_throughput
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "corpus $corpus: $bytes bytes"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "references: cc2dataset $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("cc2dataset"))')," \
  "fastwarc $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("fastwarc"))')," \
  "$("$venv/bin/python" --version)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
results=$work/results
TIMEFORMAT='%U %S'
# Runs a wat_throughput build: NAME BINARY THREADS.
run_cascade() {
  local cpu
  cpu=$( { time "$2" "$corpus" "$3" parquet "$work" >"$work/line"; } 2>&1)
  echo "round $round: $1 threads=$3: $(cat "$work/line"), CPU $cpu"
  echo "$1_t$3 $(awk '{print $3}' "$work/line") $(echo "$cpu" | awk '{print $1 + $2}')" >>"$results"
}
# Runs a `cascade` binary's `wat` command: NAME BINARY THREADS.
run_command() {
  /usr/bin/time -o "$work/times" -f '%e %U %S' "$2" wat "$corpus" --out "$work" --threads "$3" >/dev/null 2>&1
  echo "round $round: $1 (cascade wat --threads $3): $(cat "$work/times") (wall, user, sys seconds)"
  echo "$1_t$3 $(awk '{printf "%s %.3f", $1, $2 + $3}' "$work/times")" >>"$results"
}
for round in $(seq "$rounds"); do
  for t in $threads; do
    run_cascade cascade "$bin" "$t"
    if [ -n "${BASELINE:-}" ]; then
      run_cascade baseline "$BASELINE" "$t"
    fi
    if [ -n "${CASCADE_BIN:-}" ]; then
      run_command command "$CASCADE_BIN" "$t"
    fi
    if [ -n "${BASELINE_CASCADE_BIN:-}" ]; then
      run_command command_baseline "$BASELINE_CASCADE_BIN" "$t"
    fi
  done
  for mode in fastwarc cc2dataset; do
    line=$("$venv/bin/python" benches/wat_reference.py "$mode" "$corpus" 2>/dev/null)
    echo "round $round: $line"
    echo "$line" | awk '{print $1, $2, $4}' >>"$results"
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$venv/bin/python" benches/wat_reference.py summary "$results" "$bytes"
