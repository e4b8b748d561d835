"""Issue 12's napping-thread workload: what share of the samples and of the
weight each thread gets, and the main thread's 60/30/10 split, in every
output (Period.collapsed(), `bbprofiler export --format collapsed` and
`--format speedscope`, `bbprofiler top`, the viewer's counts through its own
JavaScript reader).

    .venv/bin/python benchmarks/napping_counts.py [--mode prof] [--seconds 6] [--frequency 200]

Prints one table per mode. Runs the workload in this process (the main
thread, "busy", "napper" naps 20 times a second, "waiter" waits).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("NAPPING_WORKLOADS_DIR", str(ROOT / "tests")))

import workloads  # noqa: E402

from profiler_service import Profiler  # noqa: E402

THREADS = ["MainThread", "busy", "napper", "waiter"]
SPLIT = ["spin_60", "spin_30", "spin_10"]
BBPROFILER = [sys.executable, "-m", "profiler_service.cli"]

VIEWER_JS = r"""
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
const { parseProfile } = await import(process.argv[1]);
const doc = JSON.parse(gunzipSync(readFileSync(process.argv[2])).toString());
const p = parseProfile(doc);
const counts = p.count || new Float64Array(p.t.length).fill(1);
const perThread = {}, leaf = {};
p.thread.forEach((th, i) => {
  const name = p.threads[th].name;
  perThread[name] = (perThread[name] || 0) + counts[i];
  if (name === 'MainThread') {
    const f = p.funcs.name[p.nodeFunc[p.node[i]]];
    leaf[f] = (leaf[f] || 0) + counts[i];
  }
});
console.log(JSON.stringify({ perThread, leaf }));
"""


def shares(values: dict, names: list[str]) -> dict[str, float]:
    total = sum(values.get(n, 0) for n in names)
    return {n: 100.0 * values.get(n, 0) / total if total else 0.0 for n in names}


def parse_collapsed(text: str) -> tuple[dict, dict]:
    per_thread: dict[str, int] = defaultdict(int)
    main_leaf: dict[str, int] = defaultdict(int)
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        per_thread[frames[0]] += int(count)
        if frames[0] == "MainThread":
            main_leaf[frames[-1].split(" (")[0]] += int(count)
    return per_thread, main_leaf


def measure(mode: str, seconds: float, frequency: float, out_dir: str) -> dict[str, tuple[dict, dict]]:
    with Profiler(frequency=frequency, mode=mode) as profiler:
        workloads.napping_threads_workload(seconds)
    period = profiler.period
    path = os.path.join(out_dir, f"napping-{mode}.json.gz")
    period.write(path)
    results = {}
    weight = {t["name"]: t["weight_us"] for t in period.threads}
    results["weight (CPU µs)"] = (weight, parse_collapsed(period.collapsed(weighted=True))[1])
    results["Period.collapsed()"] = parse_collapsed(period.collapsed())
    text = subprocess.run(BBPROFILER + ["export", "--format", "collapsed", path],
                          check=True, capture_output=True, text=True).stdout
    results["export collapsed"] = parse_collapsed(text)
    doc = json.loads(subprocess.run(BBPROFILER + ["export", "--format", "speedscope", path],
                                    check=True, capture_output=True, text=True).stdout)
    frames = doc["shared"]["frames"]
    per_thread = {}
    main_leaf: dict[str, int] = defaultdict(int)
    for prof in doc["profiles"][1:]:
        per_thread[prof["name"]] = sum(prof["weights"])
        if prof["name"] == "MainThread":
            for stack, w in zip(prof["samples"], prof["weights"]):
                main_leaf[frames[stack[-1]]["name"]] += w
    results["speedscope (weights)"] = (per_thread, main_leaf)
    per_thread = {}
    for name in THREADS:
        top = subprocess.run(BBPROFILER + ["top", "--thread", name, "--width", "200", path],
                             capture_output=True, text=True).stdout
        found = re.search(r"(\d+) samples", top)
        per_thread[name] = int(found.group(1)) if found else 0
        if name == "MainThread":
            main_leaf = {}
            for row in top.splitlines():
                fields = row.split()
                if len(fields) > 4 and fields[-1].split(" ")[0] in SPLIT or any(f in row for f in SPLIT):
                    for f in SPLIT:
                        if re.search(rf"\b{f}\b", row):
                            main_leaf[f] = int(fields[2])  # SELF samples
    results["top (samples)"] = (per_thread, main_leaf)
    # A .mjs copy: Debian 12's node 18 does not load parse.js as an ES module.
    module = os.path.join(os.path.dirname(path), "viewer-parse.mjs")
    shutil.copyfile(ROOT / "profiler_service" / "www" / "src" / "parse.js", module)
    viewer = subprocess.run(["node", "--input-type=module", "-e", VIEWER_JS, module, path],
                            check=True, capture_output=True, text=True).stdout
    js = json.loads(viewer)
    results["viewer (thread picker, timeline)"] = (js["perThread"], js["leaf"])
    pprof_counts = _pprof_totals(path)
    if pprof_counts is not None:
        results["pprof (samples/count)"] = pprof_counts
    results["_stats"] = (period.stats, {"file_bytes": os.path.getsize(path)})
    return results


def _pprof_totals(path: str):
    from profiler_service import load, pprof

    try:
        message = pprof.pprof_messages()["Profile"]()
    except pprof.PprofUnavailable:
        return None
    message.ParseFromString(pprof.to_pprof(load(path), labels=("thread_name",), compress=False))
    strings = message.string_table
    names = {f.id: strings[f.name] for f in message.function}
    leaf_of = {loc.id: names[loc.line[0].function_id] for loc in message.location}
    per_thread: dict[str, int] = defaultdict(int)
    main_leaf: dict[str, int] = defaultdict(int)
    for sample in message.sample:
        thread = next(strings[label.str] for label in sample.label if strings[label.key] == "thread_name")
        per_thread[thread] += sample.value[0]
        if thread == "MainThread":
            main_leaf[leaf_of[sample.location_id[0]]] += sample.value[0]
    return per_thread, main_leaf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", action="append", choices=("prof", "virtual", "real"))
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--frequency", type=float, default=200.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as out_dir:
        for mode in options.mode or ["prof", "virtual"]:
            results = measure(mode, options.seconds, options.frequency, out_dir)
            stats, extra = results.pop("_stats")
            print(f"\nmode {mode}, {options.frequency:g} Hz, {options.seconds:g} s of main-thread CPU; "
                  f"records {stats['samples']}, idle {stats['idle']}, ticks {stats['ticks']}, "
                  f"file {extra['file_bytes']} bytes")
            print(f"{'output':34} " + " ".join(f"{t:>10}" for t in THREADS) + "   main split 60/30/10")
            for output, (per_thread, leaf) in results.items():
                thread_share = shares(per_thread, THREADS)
                split = shares(leaf, SPLIT)
                print(f"{output:34} " + " ".join(f"{thread_share[t]:9.2f}%" for t in THREADS)
                      + "   " + "/".join(f"{split[f]:.1f}" for f in SPLIT))


if __name__ == "__main__":
    main()
