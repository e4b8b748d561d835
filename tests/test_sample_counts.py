"""Sample counts are sampling intervals of CPU time (docs/FORMAT.md, "What a
sample is, in each mode"), and every output agrees: Period.collapsed(), the
collapsed and speedscope exports, top, the profile model, the viewer's
JavaScript reader."""

from __future__ import annotations

import collections
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from profiler_service import Profiler, exports, load
from profiler_service.reading.model import sample_counts

import workloads
from profile_helpers import make_v1, write_gz

VIEWER_SRC = Path(__file__).resolve().parent.parent / "profiler_service" / "www" / "src"

# The viewer's own reader, run by node on a file: its count per sample and
# the thread picker's and timeline's totals per thread.
VIEWER_COUNTS_JS = r"""
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
const { parseProfile } = await import(process.argv[1]);
const p = parseProfile(JSON.parse(gunzipSync(readFileSync(process.argv[2])).toString()));
// A viewer that has no p.count counted each sample record once.
const count = p.count || new Float64Array(p.t.length).fill(1);
const perThread = {}, mainLeaf = {};
p.thread.forEach((th, i) => {
  const name = p.threads[th].name;
  perThread[name] = (perThread[name] || 0) + count[i];
  if (name === 'MainThread') {
    const f = p.funcs.name[p.nodeFunc[p.node[i]]];
    mainLeaf[f] = (mainLeaf[f] || 0) + count[i];
  }
});
console.log(JSON.stringify({ count: Array.from(count), perThread, mainLeaf }));
"""


def viewer_counts(path: Path) -> dict:
    # parse.js imports nothing; as a .mjs copy it loads as a module on every
    # node (Debian 12's node 18 does not detect ES module syntax in a .js).
    module = path.parent / "viewer-parse.mjs"
    shutil.copyfile(VIEWER_SRC / "parse.js", module)
    run = subprocess.run(["node", "--input-type=module", "-e", VIEWER_COUNTS_JS, str(module), str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def shares(values: dict, names: list[str]) -> dict[str, float]:
    total = sum(values.get(n, 0) for n in names)
    assert total > 0, values
    return {n: 100.0 * values.get(n, 0) / total for n in names}


def collapsed_totals(text: str) -> tuple[collections.Counter, collections.Counter]:
    """(count per thread, count per leaf function of MainThread)."""
    per_thread: collections.Counter = collections.Counter()
    main_leaf: collections.Counter = collections.Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        per_thread[frames[0]] += int(count)
        if frames[0] == "MainThread":
            main_leaf[frames[-1].split(" (")[0]] += int(count)
    return per_thread, main_leaf


def pprof_totals(profile) -> "tuple[dict, dict] | None":
    """pprof's samples/count per thread_name label and per MainThread leaf
    function, or None without the protobuf package."""
    from profiler_service import pprof

    try:
        message = pprof.pprof_messages()["Profile"]()
    except pprof.PprofUnavailable:
        return None
    message.ParseFromString(pprof.to_pprof(profile, labels=("thread_name",), compress=False))
    strings = message.string_table
    names = {f.id: strings[f.name] for f in message.function}
    leaf_of = {loc.id: names[loc.line[0].function_id] for loc in message.location}
    per_thread: collections.Counter = collections.Counter()
    main_leaf: collections.Counter = collections.Counter()
    for sample in message.sample:
        thread = next(strings[label.str] for label in sample.label if strings[label.key] == "thread_name")
        per_thread[thread] += sample.value[0]
        if thread == "MainThread":
            main_leaf[leaf_of[sample.location_id[0]]] += sample.value[0]
    return per_thread, main_leaf


def test_counts_are_intervals_of_weight_in_every_reader(tmp_path):
    # 97 Hz: an interval (10309.28 µs) that is not a whole µs; weights from
    # a few µs (a napping thread) to several intervals (missed ticks).
    rng = random.Random(12)
    stack = [("main", "/app/run.py", 1), ("work", "/app/work.py", 10)]
    samples = [(rng.choice(["MainThread", "napper", "busy"]), stack, 1, 0) for _ in range(3000)]
    samples = [(t, s, dt, rng.randint(1, 200) if t == "napper" else rng.randint(3000, 40000))
               for t, s, dt, _ in samples]
    doc = make_v1(samples, duration_ms=5000)
    doc["meta"]["frequency"] = 97
    path = write_gz(tmp_path / "counts.json.gz", doc)
    profile = load(path)

    interval_us = 1e6 / 97
    for thread in profile.threads:
        assert thread.samples == int(thread.weight_us * 97 // 1_000_000), thread
    napper = next(t for t in profile.threads if t.name == "napper")
    assert napper.weight_us < 200 * 1000 and napper.samples < napper.weight_us / interval_us + 1
    # The same count, sample by sample, in the viewer's reader.
    assert viewer_counts(path)["count"] == list(profile.sample_count)
    # Exports and top sum the same counts.
    per_thread, _ = collapsed_totals(exports.to_collapsed(profile))
    assert dict(per_thread) == {t.name: t.samples for t in profile.threads if t.samples}
    _, total, weight = exports.top_functions(profile)
    assert (total, weight) == (sum(t.samples for t in profile.threads), sum(profile.sample_weight_us))
    # An older file's thread records (one per sample) are not what is read.
    assert doc["threads"][0]["samples"] != profile.threads[0].samples


def test_legacy_samples_count_one_each(tmp_path):
    from profile_helpers import LEGACY_SMALL

    profile = load(LEGACY_SMALL)
    assert set(profile.sample_count) == {1}
    assert sum(t.samples for t in profile.threads) == len(profile)


def test_sample_counts_carry_per_thread():
    # 200 Hz = 5000 µs. Thread 0 naps (600 µs a sample), thread 1 is busy.
    threads = [0, 1] * 10 + [1]
    weights = [600, 2500] * 10 + [12500]
    counts = list(sample_counts(2, threads, weights, 200))
    assert sum(c for c, t in zip(counts, threads) if t == 0) == 1  # 6000 µs
    assert sum(c for c, t in zip(counts, threads) if t == 1) == 7  # 37500 µs
    assert counts[16] == 1 and counts[:16:2] == [0] * 8  # the 9th nap crosses 5 ms


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["prof", "virtual"])
def test_napping_thread_gets_its_cpu_share_in_every_output(mode, tmp_path):
    used: dict = {}
    with Profiler(frequency=200, mode=mode) as profiler:
        workloads.napping_threads_workload(6.0, cpu=used)  # issue 12: 6 s; ~1200 samples of main
    period = profiler.period
    path = tmp_path / f"napping-{mode}.json.gz"
    period.write(str(path))
    profile = load(path)
    threads = ["MainThread", "busy", "napper", "waiter"]
    split = ["spin_60", "spin_30", "spin_10"]

    weight = {t["name"]: t["weight_us"] for t in period.threads}
    weight_split = shares(collapsed_totals(period.collapsed(weighted=True))[1], split)
    speedscope = exports.to_speedscope(profile)
    speedscope_weight = {p["name"]: sum(p["weights"]) for p in speedscope["profiles"][1:]}
    outputs = {
        "Period.collapsed()": collapsed_totals(period.collapsed()),
        "export collapsed": collapsed_totals(exports.to_collapsed(profile)),
        "period threads": ({t["name"]: t["samples"] for t in period.threads}, None),
        "profile threads": ({t.name: t.samples for t in profile.threads}, None),
        "top": ({name: exports.top_functions(profile, thread=name)[1]
                 for name in threads if any(t.name == name for t in profile.threads)},
                {s.frame.name: s.self_samples
                 for s in exports.top_functions(profile, thread="MainThread")[0]}),
    }
    js = viewer_counts(path)
    outputs["viewer"] = (js["perThread"], js["mainLeaf"])
    pprof_counts = pprof_totals(profile)
    if pprof_counts is not None:
        outputs["pprof samples/count"] = pprof_counts

    # The napper wakes for a few µs 20 times a second: under 1 % of the CPU,
    # unless this machine made its wake-ups dearer (a loaded VM: up to 1 ms
    # each, seen once in CI's fresh root). Its weight is the CPU it used,
    # and no output gives it more than that share (+ a quarter point).
    napper_share = 100 * used["napper"] * 1e6 / sum(weight.values())
    allowed = max(1.0, napper_share + 0.25)
    assert shares(weight, threads)["napper"] <= allowed, (weight, used)
    assert weight["napper"] <= used["napper"] * 1e6 * 1.1 + 5000, (weight, used)
    assert shares(speedscope_weight, threads)["napper"] <= allowed, speedscope_weight
    # The main thread's split by weight is the workload's (over 3 sigma for ~1200 samples).
    for name, expected in zip(split, (60, 30, 10)):
        assert abs(weight_split[name] - expected) < 6, weight_split
    for output, (per_thread, main_leaf) in outputs.items():
        share = shares(per_thread, threads)
        assert share["napper"] <= allowed, (output, share, period.stats)
        assert abs(share["MainThread"] - shares(weight, threads)["MainThread"]) < 2, (output, share)
        if main_leaf is not None:
            count_split = shares(main_leaf, split)
            for name in split:
                assert abs(count_split[name] - weight_split[name]) < 2, (output, count_split, weight_split)
