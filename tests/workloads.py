"""CPU-bound workloads with a known split, for the sampler tests.

Every function spins on the CPU for a given number of loop iterations; the
split between them is set by iteration counts, so the expected shares of CPU
time are known in advance.
"""

from __future__ import annotations

import time


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def sixty(n: int) -> int:
    return spin_60(n * 6)


def thirty(n: int) -> int:
    return spin_30(n * 3)


def ten(n: int) -> int:
    return spin_10(n)


def spin_60(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def spin_30(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def spin_10(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def split_60_30_10(cpu_seconds: float, chunk: int = 2000) -> None:
    """Run 60/30/10 % of the CPU time in spin_60/spin_30/spin_10."""
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        sixty(chunk)
        thirty(chunk)
        ten(chunk)


def busy_for(cpu_seconds: float) -> None:
    """Burn this thread's CPU for cpu_seconds in busy_loop."""
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        busy_loop(5000)


def busy_loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def recurse(depth: int, cpu_seconds: float) -> None:
    if depth > 0:
        return recurse(depth - 1, cpu_seconds)
    busy_for(cpu_seconds)
