#!/usr/bin/env bash
# Download throughput of `cascade download` beside img2dataset 1.47.0 on one loopback image
# server: real JPEG/PNG images of the bundled 2008 crawl, each answered after a fixed delay
# (web latency), spread over 64 loopback hosts (127.0.0.1–127.0.0.64). Both tools download the
# same pair shard of IMAGES distinct URLs, alternately, RUNS times each, under /usr/bin/time -v;
# a sampler adds up the proportional set size (PSS) of each tool's whole process tree.
# Prints images/s, CPU seconds per image and peak memory per run, the medians and the ratios.
#
# Usage: benches/download_load.sh [IMAGES=20000] [RUNS=3] [DELAY_MS=100]
#   CASCADE_TEST_IMG2DATASET_PYTHON=…/python  an interpreter with img2dataset==1.47.0
#   (default: .venv-img2dataset, created as .ci/run does when missing)
#
# Settings: cascade `--concurrency 1000` and its defaults otherwise (16 requests per host,
# one rayon thread per core); img2dataset `processes_count=2` (one per core) and its defaults
# otherwise (`thread_count=256`, 10,000 samples per shard: 20,000 images give each process a
# shard). Both: border 256, JPEG quality 95, sha256, EXIF, webdataset output.
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-20000}
runs=${2:-3}
delay=${3:-100}
hosts=64

sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo=sudo; fi
if [ ! -x /usr/bin/time ]; then
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq time
fi
python=${CASCADE_TEST_IMG2DATASET_PYTHON:-.venv-img2dataset/bin/python}
if ! "$python" -c "import img2dataset" 2>/dev/null; then
  python3 -m venv .venv-img2dataset
  .venv-img2dataset/bin/python -m pip install --quiet --disable-pip-version-check img2dataset==1.47.0
  python=.venv-img2dataset/bin/python
fi

cargo build --release -q -p cascade-engine --bin cascade -p cascade-benches --bin image_server
bin=$PWD/target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin/image_server" --delay-ms "$delay" --hosts "$hosts" >"$work/server.out" 2>"$work/server.err" &
for _ in $(seq 100); do grep -q http "$work/server.out" 2>/dev/null && break; sleep 0.1; done
port=$(grep -o '[0-9]*$' "$work/server.out")

# The pair shard: stage a's columns, URL i on host 127.0.0.(1 + i mod 64).
"$python" - "$work/pairs.parquet" "$port" "$images" "$hosts" <<'EOF'
import sys
import pyarrow as pa, pyarrow.parquet as pq
path, port, n, hosts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
urls = [f"http://127.0.0.{1 + i % hosts}:{port}/img/{i}.jpg" for i in range(n)]
pq.write_table(pa.table({
    "uid": [f"{i:032x}" for i in range(n)],
    "url": urls,
    "alt": [f"benchmark image {i}" for i in range(n)],
    "cc_filename": ["bench.warc.gz"] * n,
    "page_url": ["http://127.0.0.1/"] * n,
}), path)
EOF

cat >"$work/run_img2dataset.py" <<'EOF'
import sys
from img2dataset import download

if __name__ == "__main__":
    download(
        url_list=sys.argv[1], output_folder=sys.argv[2], input_format="parquet", url_col="url",
        caption_col="alt", save_additional_columns=["uid", "cc_filename", "page_url"],
        output_format="webdataset", processes_count=2, thread_count=256,
        enable_wandb=False, distributor="multiprocessing",
    )
EOF

# Peak PSS (kB) of the process tree under $1, sampled every 0.2 s until it exits.
cat >"$work/pss.py" <<'EOF'
import os, sys, time
root, peak = int(sys.argv[1]), 0
def tree(pid):
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in open(f"/proc/{pid}/task/{task}/children").read().split():
                pids += tree(int(child))
    except OSError:
        pass
    return pids
while os.path.exists(f"/proc/{root}"):
    total = 0
    for pid in tree(root):
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    peak = max(peak, total)
    time.sleep(0.2)
open(sys.argv[2], "w").write(str(peak))
EOF

# measure NAME RUN COMMAND…: runs COMMAND under /usr/bin/time -v with the PSS sampler.
measure() {
  local name=$1 run=$2
  shift 2
  /usr/bin/time -v -o "$work/$name-$run.time" "$@" >"$work/$name-$run.log" 2>&1 &
  local pid=$!
  python3 "$work/pss.py" "$pid" "$work/$name-$run.pss" &
  local sampler=$!
  wait "$pid" || { echo "$name run $run failed:"; tail -20 "$work/$name-$run.log"; exit 1; }
  wait "$sampler"
}

# successes DIR: the successes of the shards in DIR.
successes() {
  "$python" -c 'import json, glob, sys; print(sum(json.load(open(f))["successes"] for f in glob.glob(sys.argv[1] + "/*_stats.json")))' "$1"
}

run_cascade() {
  rm -rf "$work/out-cascade"
  measure cascade "$1" env CASCADE_LOG=warn \
    "$bin/cascade" download "$work/pairs.parquet" --out "$work/out-cascade" --concurrency 1000
  successes "$work/out-cascade/pairs" >"$work/cascade-$1.ok"
}

run_img2dataset() {
  rm -rf "$work/out-img2dataset"
  measure img2dataset "$1" env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
    NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled \
    "$python" "$work/run_img2dataset.py" "$work/pairs.parquet" "$work/out-img2dataset"
  successes "$work/out-img2dataset" >"$work/img2dataset-$1.ok"
}

for run in $(seq "$runs"); do
  if [ $((run % 2)) -eq 1 ]; then run_cascade "$run"; run_img2dataset "$run"; else run_img2dataset "$run"; run_cascade "$run"; fi
  echo "run $run done" >&2
done

echo "## $images images, $delay ms per response, $hosts hosts, $(nproc) cores, $(date -u +%F)"
"$python" - "$work" "$runs" "$images" <<'EOF'
import statistics, sys
work, runs, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def parse(name, run):
    fields = {}
    for line in open(f"{work}/{name}-{run}.time"):
        key, _, value = line.strip().rpartition(": ")
        fields[key] = value
    h, m, s = (["0"] + fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"))[-3:]
    wall = int(h) * 3600 + int(m) * 60 + float(s)
    cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
    ok = int(open(f"{work}/{name}-{run}.ok").read())
    return {
        "ok": ok, "wall": wall, "rate": ok / wall, "cpu_ms": 1000 * cpu / ok, "cpu": cpu,
        "maxrss": int(fields["Maximum resident set size (kbytes)"]) / 1024,
        "pss": int(open(f"{work}/{name}-{run}.pss").read()) / 1024,
    }
results = {name: [parse(name, r) for r in range(1, runs + 1)] for name in ("cascade", "img2dataset")}
print("tool,run,successes,wall_s,images_per_s,cpu_s,cpu_ms_per_image,max_rss_mib,peak_tree_pss_mib")
for name, rows in results.items():
    for i, r in enumerate(rows, 1):
        print(f"{name},{i},{r['ok']},{r['wall']:.1f},{r['rate']:.0f},{r['cpu']:.1f},{r['cpu_ms']:.2f},{r['maxrss']:.0f},{r['pss']:.0f}")
med = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in results.items()}
c, i = med["cascade"], med["img2dataset"]
print(f"median images/s: cascade {c['rate']:.0f}, img2dataset {i['rate']:.0f} ({c['rate'] / i['rate']:.1f}x)")
print(f"median CPU ms per image: cascade {c['cpu_ms']:.2f}, img2dataset {i['cpu_ms']:.2f} ({i['cpu_ms'] / c['cpu_ms']:.1f}x less)")
print(f"median peak memory (tree PSS): cascade {c['pss']:.0f} MiB, img2dataset {i['pss']:.0f} MiB ({i['pss'] / c['pss']:.1f}x less)")
print(f"median max RSS (largest process): cascade {c['maxrss']:.0f} MiB, img2dataset {i['maxrss']:.0f} MiB")
EOF
