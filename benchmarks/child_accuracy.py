"""Child: accuracy on a known CPU split.

The main thread calls three functions whose bodies are the same pure-Python
loop, in shuffled order, about 60/30/10 of the calls each, with call sizes
drawn at random so nothing aliases with the sampling interval. The expected
share of each function is its thread CPU time measured around every call;
the measured share is its share of the samples whose leaf is one of the three.

Params: config, seconds. Under py-spy (config pyspy::<hz>) the child only
runs the workload and reports the expected split; the parent reads py-spy's
output.
"""

from __future__ import annotations

import random
import time

from common import Session, child_params, emit


def work_a(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def work_b(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def work_c(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


FUNCTIONS = {"work_a": work_a, "work_b": work_b, "work_c": work_c}
PLAN = ["work_a"] * 6 + ["work_b"] * 3 + ["work_c"]


def run(seconds: float) -> dict[str, int]:
    rng = random.Random(7)
    spent = {name: 0 for name in FUNCTIONS}
    clock = time.thread_time_ns
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        plan = PLAN[:]
        rng.shuffle(plan)
        for name in plan:
            n = rng.randint(300, 3000)
            function = FUNCTIONS[name]
            t0 = clock()
            function(n)
            spent[name] += clock() - t0
    return spent


def shares(counts: dict[str, float]) -> dict[str, float]:
    total = sum(counts.get(name, 0) for name in FUNCTIONS)
    return {name: (100.0 * counts.get(name, 0) / total if total else 0.0) for name in FUNCTIONS}


def leaf_counts_from_collapsed(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1].split(" (", 1)[0].rsplit(".", 1)[-1]
        counts[leaf] = counts.get(leaf, 0) + int(count)
    return counts


def main() -> None:
    params = child_params()
    session = Session(params["config"]).start()
    spent = run(params["seconds"])
    stats = session.stop()
    out = {"config": params["config"], "expected": shares(spent)}
    if session.kind == "ours":
        # Each sample weighs the CPU time it stands for (µs): the profile's
        # own measure, as the viewer shows it.
        counts = leaf_counts_from_collapsed(stats["period"].collapsed(weighted=True))
        out["measured_counts"] = shares(leaf_counts_from_collapsed(stats["period"].collapsed()))
    elif session.kind == "anchor":
        counts = stats["anchor"].leaf_counts()
    else:
        counts = None
    if counts is not None:
        out["measured"] = shares(counts)
        out["samples"] = (
            stats["samples"] if session.kind == "ours" else sum(counts.get(name, 0) for name in FUNCTIONS)
        )
    emit(out)


if __name__ == "__main__":
    main()
