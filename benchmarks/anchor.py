"""The 1.x-style collector: the approach buildbot_profiler 1.x and plop took,
written fresh here as the anchor of every comparison.

A Python signal handler (SIGPROF, SIGVTALRM or SIGALRM from setitimer) runs
on the main thread between bytecodes, walks every thread's frames from
``sys._current_frames()``, interns frames as (file tail, line, function) and
appends one record per tick: the time, each thread's stack as frame ids
(innermost first), and psutil's per-CPU usage and virtual memory, as 1.x did
on every tick. Nothing is dropped as idle. ``dump()`` is 1.x's synchronous
JSON dump.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any

import psutil

TIMERS = {
    "prof": (signal.ITIMER_PROF, signal.SIGPROF),
    "virtual": (signal.ITIMER_VIRTUAL, signal.SIGVTALRM),
    "real": (signal.ITIMER_REAL, signal.SIGALRM),
}


class AnchorCollector:
    def __init__(self, frequency: float, mode: str) -> None:
        self.interval = 1.0 / frequency
        self.frequency = frequency
        self.timer, self.signum = TIMERS[mode]
        self.frames: list[tuple[str, int, str]] = []
        self.frame_ids: dict[tuple[str, int, str], int] = {}
        self.samples: list[dict[str, Any]] = []
        self.ticks = 0
        self.samples_taken = 0  # thread stacks recorded, comparable to ours
        self.handler_ns = 0     # whole handler: walk + psutil + append
        self.walk_ns = 0        # the frame walk alone
        self.previous = None
        self.busy = False
        self.missed = 0
        self.errors = 0
        self.own_code = (self.handler.__code__, self.tick.__code__)

    def start(self) -> None:
        psutil.cpu_percent(percpu=True)  # 1.x primed it too
        self.previous = signal.signal(self.signum, self.handler)
        signal.setitimer(self.timer, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(self.timer, 0, 0)
        signal.signal(self.signum, signal.SIG_IGN)

    def handler(self, signum: int, handler_frame: Any) -> None:
        # Python runs a handler again between bytecodes of the running one
        # when the next signal comes in: without this guard a slow tick
        # recurses until RecursionError.
        if self.busy:
            self.missed += 1
            return
        self.busy = True
        try:
            self.tick(handler_frame)
        except Exception:
            # An exception here would surface in whatever the main thread
            # was doing; count it instead.
            self.errors += 1
        finally:
            self.busy = False

    def tick(self, handler_frame: Any) -> None:
        start = time.perf_counter_ns()
        threads: dict[str, list[int]] = {}
        frame_ids = self.frame_ids
        for tid, frame in sys._current_frames().items():
            while frame is not None and frame.f_code in self.own_code:
                frame = frame.f_back  # skip this handler on the main thread
            ids = []
            while frame is not None:
                code = frame.f_code
                key = (code.co_filename[-20:], frame.f_lineno, code.co_name)
                fid = frame_ids.get(key)
                if fid is None:
                    fid = len(self.frames)
                    frame_ids[key] = fid
                    self.frames.append(key)
                ids.append(fid)
                frame = frame.f_back
            if ids:
                threads[str(tid)] = ids
        walked = time.perf_counter_ns()
        self.samples.append(
            {
                "time": time.time(),
                "threads": threads,
                "cpu": psutil.cpu_percent(percpu=True),
                "mem": psutil.virtual_memory()._asdict(),
            }
        )
        self.ticks += 1
        self.samples_taken += len(threads)
        end = time.perf_counter_ns()
        self.walk_ns += walked - start
        self.handler_ns += end - start

    def leaf_counts(self) -> dict[str, int]:
        """Samples per innermost function name, over all threads."""
        counts: dict[str, int] = {}
        for sample in self.samples:
            for ids in sample["threads"].values():
                name = self.frames[ids[0]][2]
                counts[name] = counts.get(name, 0) + 1
        return counts

    def dump(self, path: str) -> None:
        """1.x's synchronous JSON dump of the whole period."""
        with open(path, "w") as f:
            json.dump(
                {
                    "frames": self.frames,
                    "frequency": self.frequency,
                    "samples": self.samples,
                },
                f,
            )
