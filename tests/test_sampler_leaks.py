"""Repeated sampling cycles with thread churn reach a steady memory use."""

from __future__ import annotations

import gc
import threading

import pytest

from profiler_service import Profiler

import workloads
from conftest import SANITIZED


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def cycle() -> None:
    with Profiler(frequency=1000, mode="prof", max_stacks=5000) as p:
        threads = [threading.Thread(target=workloads.busy_for, args=(0.02,)) for _ in range(9)]
        for t in threads:
            t.start()
        namespace: dict = {}
        # New code objects every cycle, so the code map grows and is released.
        exec("def fresh(n):\n    return sum(range(n))", namespace)
        for _ in range(3):
            for _ in range(40):
                namespace["fresh"](3000)
            p.rotate()
        for t in threads:
            t.join()
    assert p.period is not None


@pytest.mark.timeout(300)
@pytest.mark.skipif(SANITIZED, reason="ASan's allocator keeps freed memory in quarantine")
def test_cycles_do_not_grow_memory():
    for _ in range(5):  # warm up allocator pools
        cycle()
    gc.collect()
    before = rss_kb()
    for _ in range(40):
        cycle()
    gc.collect()
    growth = rss_kb() - before
    # A leaked period (chunks of 64 KiB and up) or leaked code references per
    # cycle would add megabytes over 40 cycles.
    assert growth < 3000, f"RSS grew by {growth} kB over 40 cycles"
