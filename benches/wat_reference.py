#!/usr/bin/env python3
"""Time the Python references for WAT pairs extraction on one file, and sum up a run of
benches/wat_reference.sh.

Usage: wat_reference.py (cc2dataset | fastwarc) FILE
       wat_reference.py summary RESULTS BYTES

- cc2dataset: cc2dataset 1.5.0's `process_wat(FILE, "image")`, every pair into a list (what
  cc2dataset hands to Spark; the parquet write that Spark adds is not timed).
- fastwarc: bare FastWARC record iteration over every record (decompression and WARC header
  parsing, no body read, no JSON).

Prints one line: `MODE SECONDS COUNT` (pairs for cc2dataset, records for fastwarc). The time
covers the work only, not the interpreter start or the imports.

`summary` reads `NAME SECONDS` lines and prints, per name, the MB/s (BYTES of compressed
input) range and median, then the ratio of each Cascade run's median to each reference's.
"""
import statistics
import sys
import time


def run_cc2dataset(path):
    from cc2dataset.main import process_wat

    start = time.perf_counter()
    pairs = list(process_wat(path, "image"))
    return time.perf_counter() - start, len(pairs)


def run_fastwarc(path):
    from fastwarc.warc import ArchiveIterator

    start = time.perf_counter()
    records = 0
    for _ in ArchiveIterator(path, parse_http=False, fsspec_args=False):
        records += 1
    return time.perf_counter() - start, records


def summary(path, size):
    runs = {}
    with open(path) as results:
        for line in results:
            name, seconds = line.split()
            runs.setdefault(name, []).append(size / float(seconds) / 1e6)
    medians = {}
    print("name              runs  MB/s min  median     max")
    for name, speeds in runs.items():
        medians[name] = statistics.median(speeds)
        print(f"{name:16} {len(speeds):5} {min(speeds):9.1f} {medians[name]:7.1f} {max(speeds):7.1f}")
    for name in (n for n in runs if n.startswith(("cascade", "baseline"))):
        for ref in ("cc2dataset", "fastwarc"):
            if ref in medians:
                print(f"{name} / {ref}: {medians[name] / medians[ref]:.2f}x (medians)")


def main():
    if sys.argv[1] == "summary":
        summary(sys.argv[2], int(sys.argv[3]))
        return
    mode, path = sys.argv[1], sys.argv[2]
    runner = {"cc2dataset": run_cc2dataset, "fastwarc": run_fastwarc}[mode]
    seconds, count = runner(path)
    print(f"{mode} {seconds:.3f} {count}")


if __name__ == "__main__":
    main()
