"""The walk cache (walker.c, "The walk cache"): a thread found on the same
code objects at the same instructions as at its last walk reuses that
walk's frames and stack node. These tests check that it never reuses a
stack it should not, and that what it reuses counts as a fresh walk would
(real mode walks every sleeping thread on every tick: the case it is for)."""

from __future__ import annotations

import inspect
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import workloads  # noqa: E402
from profiler_service import Profiler  # noqa: E402


def line_of(function, marker: str) -> int:
    source, first = inspect.getsourcelines(function)
    return first + next(i for i, text in enumerate(source) if marker in text)


def weights_by_stack(period, thread: str) -> Counter:
    found: Counter = Counter()
    for row in period.collapsed(thread=thread, weighted=True, lines=True).splitlines():
        stack, _, us = row.rpartition(" ")
        found[stack] += int(us)
    return found


def test_the_same_leaf_under_two_callers_keeps_both_stacks():
    stop = threading.Event()
    napper = threading.Thread(target=workloads.nap_from_two_places, args=(stop,), name="napper")
    with Profiler(frequency=1000, mode="real") as profiler:
        napper.start()
        time.sleep(1.5)
        stop.set()
        napper.join()
    stacks = weights_by_stack(profiler.period, "napper")
    first = line_of(workloads.nap_from_two_places, "# NAP_FIRST")
    second = line_of(workloads.nap_from_two_places, "# NAP_SECOND")
    at = {line: sum(w for s, w in stacks.items() if f"nap_from_two_places ({workloads.__file__}:{line});nap (" in s)
          for line in (first, second)}
    total = sum(at.values())
    assert total > 0.8 * sum(stacks.values()), stacks
    # The two calls sleep as long: about half each (a cache that reused the
    # first stack for the second call would give it all to one).
    assert 0.35 < at[first] / total < 0.65, at


def test_a_reused_truncated_stack_still_counts_as_truncated():
    sleeper = threading.Thread(target=workloads.sleep_deep, args=(40, 1.2), name="deep")
    with Profiler(frequency=500, mode="real", max_depth=16) as profiler:
        sleeper.start()
        sleeper.join()
    period = profiler.period
    rows = period.collapsed(thread="deep").splitlines()
    assert rows and all(row.startswith("deep;[truncated];") for row in rows), rows[:3]
    # Every sample record (the sleeper's: the main thread waits in join) was
    # cut at 16 frames, reused or not.
    assert [t["name"] for t in period.threads] == ["deep"], period.threads
    assert period.stats["truncated"] == period.stats["samples"] > 300, period.stats


def test_a_thread_that_did_not_run_is_not_walked_again_and_weighs_its_wall_time():
    # Real mode: a thread parked 40 frames deep in a C call takes its samples
    # from its last walk while its CPU clock stands still (walker.c, "The walk
    # cache"), with the same stack and the wall time of every interval.
    sleeper = threading.Thread(target=workloads.sleep_deep, args=(40, 1.5), name="deep")
    with Profiler(frequency=500, mode="real") as profiler:
        began = time.monotonic()
        sleeper.start()
        sleeper.join()
        slept = time.monotonic() - began
        status = profiler.status()
    period = profiler.period
    stacks = weights_by_stack(period, "deep")
    deep_samples = sum(int(row.rpartition(" ")[2]) for row in period.collapsed(thread="deep").splitlines())
    assert deep_samples > 500, deep_samples
    # All but the first walk or two of the sleep: no walk.
    assert status["still_samples"] > 0.9 * deep_samples, (status, deep_samples)
    sleeping = [s for s in stacks if s.endswith(f"sleep_deep ({workloads.__file__}:{line_of(workloads.sleep_deep, 'time.sleep(seconds)')})")]
    assert len(sleeping) == 1, list(stacks)
    assert sleeping[0].count(";sleep_deep (") == 41
    # Its weight is the wall time it slept, within a few ticks.
    assert abs(stacks[sleeping[0]] / 1e6 - slept) < 0.05, (stacks[sleeping[0]], slept)

