#!/usr/bin/env python3
"""Time the Python references for WAT pairs extraction on one file, and sum up a run of
benches/wat_reference.sh.

Usage: wat_reference.py (cc2dataset | fastwarc) FILE
       wat_reference.py summary RESULTS BYTES

- cc2dataset: cc2dataset 1.5.0's `process_wat(FILE, "image")`, every pair into a list (what
  cc2dataset hands to Spark; the parquet write that Spark adds is not timed).
- fastwarc: bare FastWARC record iteration over every record (decompression and WARC header
  parsing, no body read, no JSON).

Prints one line: `MODE SECONDS COUNT CPU_SECONDS` (pairs for cc2dataset, records for
fastwarc). The times cover the work only, not the interpreter start or the imports.

`summary` reads `NAME SECONDS CPU_SECONDS` lines and prints, per name, the MB/s (BYTES of
compressed input) range and median and the median CPU-seconds, then the ratio of each Cascade
run's median MB/s to each reference's.
"""
import statistics
import sys
import time


def run_cc2dataset(path):
    from cc2dataset.main import process_wat

    start, cpu = time.perf_counter(), time.process_time()
    pairs = list(process_wat(path, "image"))
    return time.perf_counter() - start, len(pairs), time.process_time() - cpu


def run_fastwarc(path):
    from fastwarc.warc import ArchiveIterator

    start, cpu = time.perf_counter(), time.process_time()
    records = 0
    for _ in ArchiveIterator(path, parse_http=False, fsspec_args=False):
        records += 1
    return time.perf_counter() - start, records, time.process_time() - cpu


def summary(path, size):
    runs, cpus = {}, {}
    with open(path) as results:
        for line in results:
            name, seconds, cpu = line.split()
            runs.setdefault(name, []).append(size / float(seconds) / 1e6)
            cpus.setdefault(name, []).append(float(cpu))
    medians = {}
    print("name              runs  MB/s min  median     max  CPU-s median")
    for name, speeds in runs.items():
        medians[name] = statistics.median(speeds)
        cpu = statistics.median(cpus[name])
        print(f"{name:16} {len(speeds):5} {min(speeds):9.1f} {medians[name]:7.1f} {max(speeds):7.1f} {cpu:13.2f}")
    for name in (n for n in runs if n.startswith(("cascade", "baseline", "command"))):
        for ref in ("cc2dataset", "fastwarc"):
            if ref in medians:
                print(f"{name} / {ref}: {medians[name] / medians[ref]:.2f}x (medians)")


def main():
    if sys.argv[1] == "summary":
        summary(sys.argv[2], int(sys.argv[3]))
        return
    mode, path = sys.argv[1], sys.argv[2]
    runner = {"cc2dataset": run_cc2dataset, "fastwarc": run_fastwarc}[mode]
    seconds, count, cpu = runner(path)
    print(f"{mode} {seconds:.3f} {count} {cpu:.3f}")


if __name__ == "__main__":
    main()
