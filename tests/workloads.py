"""CPU-bound workloads with a known split, for the sampler tests.

Every function spins on the CPU for a given number of loop iterations; the
split between them is set by iteration counts, so the expected shares of CPU
time are known in advance.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Optional


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
    """Run 60/30/10 % of the CPU time in spin_60/spin_30/spin_10.

    Chunk sizes vary at random around `chunk` (the split stays exact in
    expectation): a loop that repeats exactly every millisecond would phase-
    lock with the kernel's 4 ms CPU-timer grid, which real work does not do.
    """
    rng = random.Random(1234)
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        n = rng.randint(chunk // 2, chunk * 3 // 2)
        sixty(n)
        thirty(n)
        ten(n)


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


def nap_and_check(stop: "threading.Event", nap_s: float = 0.05, cpu: Optional[dict] = None) -> None:
    """Nap ``nap_s`` at a time and check ``stop`` between naps: a thread that
    wakes 1/nap_s times a second and uses a few µs of CPU each time (its CPU
    time goes into ``cpu["napper"]``, in seconds)."""
    began = time.thread_time()
    while not stop.is_set():
        time.sleep(nap_s)
    if cpu is not None:
        cpu["napper"] = time.thread_time() - began


def napping_threads_workload(cpu_seconds: float, cpu: Optional[dict] = None) -> dict[str, str]:
    """The workload of issue 12 for ~cpu_seconds of the main thread's CPU:
    the main thread splits its CPU 60/30/10 (``split_60_30_10``), a second
    thread ("busy") spins, a third ("napper") naps 20 times a second and
    checks an Event, a fourth ("waiter") waits on an Event. Returns the
    threads' roles by name; the napper's CPU time goes into ``cpu``."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=_busy_until, args=(stop,), name="busy"),
        threading.Thread(target=nap_and_check, args=(stop, 0.05, cpu), name="napper"),
        threading.Thread(target=stop.wait, name="waiter"),
    ]
    for t in threads:
        t.start()
    try:
        split_60_30_10(cpu_seconds)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {"MainThread": "split", "busy": "busy", "napper": "napper", "waiter": "waiter"}


def _busy_until(stop: "threading.Event") -> None:
    while not stop.is_set():
        busy_loop(5000)


def split_parts(cpu_seconds: float, parts: tuple[int, int, int], chunk: int = 2000) -> None:
    """Run spin_60, spin_30 and spin_10 in the proportions ``parts`` (tenths
    of the CPU time: (6, 3, 1) is split_60_30_10, (4, 3, 3) gives spin_10 30 %)."""
    rng = random.Random(4321)
    sixty_n, thirty_n, ten_n = parts
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        n = rng.randint(chunk // 2, chunk * 3 // 2)
        spin_60(n * sixty_n)
        spin_30(n * thirty_n)
        spin_10(n * ten_n)


def work_in_short_bursts(stop: "threading.Event", burst_s: float, out: dict) -> None:
    """Work ``burst_s`` of CPU in ``burst``, then wait 5 ms on ``stop``, until
    it is set (a DB pool thread running short queries): shorter bursts than
    the GIL's switch interval end before the sampler thread can take the GIL.
    The thread's CPU time goes into ``out["cpu_s"]``."""
    began = time.thread_time()
    while not stop.is_set():
        burst(burst_s)
        stop.wait(0.005)
    out["cpu_s"] = time.thread_time() - began


def burst(cpu_seconds: float) -> None:
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        spin(200)



def two_hot_lines(cpu_seconds: float) -> None:
    """Spend the CPU of lines_hot on two loops of the same body, three
    iterations on the first for one on the second: 75 % and 25 %."""
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        lines_hot(3000)


def lines_hot(n: int) -> int:
    total = 0
    for i in range(3 * n):
        total += i * i  # LINE_THREE_QUARTERS
    for i in range(n):
        total += i * i  # LINE_ONE_QUARTER
    return total


def recursive_line(depth: int, n: int) -> int:
    """Recurse `depth` times through the same line, then spin: every
    sample has this line on its stack `depth` times."""
    if depth > 0:
        return recursive_line(depth - 1, n)  # LINE_RECURSION
    return spin(n)


def nap_from_two_places(stop: "threading.Event", nap_s: float = 0.003) -> None:
    """Sleep in nap(), called from two lines in turn (NAP_FIRST, NAP_SECOND):
    the same leaf code at the same instruction, under two stacks."""
    while not stop.is_set():
        nap(nap_s)  # NAP_FIRST
        nap(nap_s)  # NAP_SECOND


def nap(seconds: float) -> None:
    time.sleep(seconds)


def sleep_deep(depth: int, seconds: float) -> None:
    """Sleep `seconds` at the bottom of `depth` nested calls."""
    if depth > 0:
        return sleep_deep(depth - 1, seconds)
    time.sleep(seconds)
