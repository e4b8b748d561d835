"""Threads that work in bursts shorter than the GIL's switch interval
between waits (a DB pool thread running short queries): how much of their
CPU time the profile records, next to a busy main thread.

    .venv/bin/python benchmarks/short_bursts.py [--seconds 5] [--frequency 100]

Prints one row per mode and burst length: the bursty thread's own CPU time
(time.thread_time), what the profile recorded for it, and the share of that
under "[finished between samples]"; the main thread's CPU and its record.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import workloads  # noqa: E402

from profiler_service import Profiler  # noqa: E402

BETWEEN = "[finished between samples]"


def weights(period) -> tuple[dict, float]:
    per_thread: dict[str, float] = {}
    between_us = 0.0
    for line in period.collapsed(weighted=True).splitlines():
        stack, _, us = line.rpartition(" ")
        frames = stack.split(";")
        per_thread[frames[0]] = per_thread.get(frames[0], 0.0) + int(us)
        if frames[0] == "bursty" and frames[-1] == BETWEEN:
            between_us += int(us)
    return per_thread, between_us


def measure(mode: str, burst_ms: float, seconds: float, frequency: float) -> dict:
    stop, out = threading.Event(), {}
    bursty = threading.Thread(target=workloads.work_in_short_bursts,
                              args=(stop, burst_ms / 1000, out), name="bursty")
    with Profiler(frequency=frequency, mode=mode) as profiler:
        bursty.start()
        began = time.thread_time()
        workloads.busy_for(seconds)
        main_cpu = time.thread_time() - began
        stop.set()
        bursty.join()
    per_thread, between_us = weights(profiler.period)
    return {"bursty_cpu_ms": out["cpu_s"] * 1000, "bursty_ms": per_thread.get("bursty", 0) / 1000,
            "between_ms": between_us / 1000, "main_cpu_ms": main_cpu * 1000,
            "main_ms": per_thread.get("MainThread", 0) / 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--frequency", type=float, default=100.0)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {args.frequency:g} Hz, {args.seconds:g} s, pid {os.getpid()}")
    print("| mode | burst | bursty thread CPU | recorded | of it [finished between samples] "
          "| main thread CPU | recorded |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("prof", "virtual"):
        for burst_ms in (0.3, 1.0, 3.0):
            r = measure(mode, burst_ms, args.seconds, args.frequency)
            print(f"| {mode} | {burst_ms:g} ms | {r['bursty_cpu_ms']:.0f} ms | {r['bursty_ms']:.0f} ms "
                  f"| {r['between_ms']:.0f} ms | {r['main_cpu_ms']:.0f} ms | {r['main_ms']:.0f} ms |")


if __name__ == "__main__":
    main()
