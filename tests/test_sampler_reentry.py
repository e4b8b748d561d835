"""The walk against Python code run inside it (issue 16, item 1).

A walk allocates frame objects; on CPython 3.11 an allocation can run a
garbage collection right there, on the walking thread, and a finalizer that
releases the GIL then lets other threads rotate, stop, walk, start and end
threads while the walk is half done. Reading a thread's name can run Python
code too (a Thread subclass's attribute). These run in a subprocess (real
signals, real threads): before the fix they died with SIGSEGV (ASan: SEGV in
ps_vec_at <- ps_period_add_sample <- record <- ps_walk_all <- sampler_main).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# The collection threshold is low so that nearly every walk's frame
# allocations run a collection on the walking thread; each collection finds
# cyclic garbage whose finalizer releases the GIL (as a file's close or a log
# write would) long enough for the main thread to rotate meanwhile.
SCRIPT = textwrap.dedent(
    """
    import gc, sys, threading, time
    from profiler_service import Profiler

    duration = float(sys.argv[1])
    stop = threading.Event()
    profiler = Profiler(frequency=10000, mode={mode!r})
    finalized = [0]

    def recurse(n):
        if n == 0:
            time.sleep(0.0001)
            return
        recurse(n - 1)

    def churn():
        while not stop.is_set():
            recurse(60)

    def short_lived():
        recurse(5)

    def spawn():  # thread states come and go while walks are suspended
        while not stop.is_set():
            t = threading.Thread(target=short_lived)
            t.start()
            t.join()

    class SlowName(threading.Thread):
        # The walk reads a thread's _name: here that runs Python code that
        # lets the GIL go, and sometimes rotates, inside the walk.
        @property
        def _name(self):
            time.sleep(0.0005)
            if finalized[0] % 7 == 0 and profiler.running:
                profiler.rotate()
            return self.__dict__["_slow_name"]

        @_name.setter
        def _name(self, value):
            self.__dict__["_slow_name"] = value

    class Cyclic:
        def __init__(self):
            self.me = self

        def __del__(self):
            finalized[0] += 1
            time.sleep(0.001)  # the GIL goes to other threads
            if finalized[0] % 50 == 0 and profiler.running:
                profiler.rotate()  # rotate from inside a walk

    gc.set_threshold(10)
    profiler.start()
    threads = [threading.Thread(target=churn) for _ in range(3)]
    threads.append(threading.Thread(target=spawn))
    threads.append(SlowName(target=churn, name="slow-name"))
    for t in threads:
        t.start()
    totals = dict.fromkeys(("samples", "dropped", "missed"), 0)
    named = False
    deadline = time.monotonic() + duration
    rotations = 0
    while time.monotonic() < deadline:
        Cyclic()
        time.sleep(0.0005)
        period = profiler.rotate()
        rotations += 1
        for key in totals:
            totals[key] += period.stats[key]
        named = named or any(t["name"] == "slow-name" for t in period.threads)
        if rotations % 500 == 0:  # stop and start while walks are out
            profiler.stop()
            profiler.start()
    stop.set()
    for t in threads:
        t.join()
    gc.set_threshold(700)
    period = profiler.stop()
    print("ok", rotations, finalized[0], named, totals, flush=True)
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["real", "prof"])
def test_finalizers_that_release_the_gil_inside_walks_do_not_crash(mode):
    script = SCRIPT.format(mode=mode)
    result = subprocess.run(
        [sys.executable, "-c", script, "3"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=os.path.dirname(__file__),
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    words = result.stdout.split(" ", 4)
    assert words[0] == "ok", result.stdout
    rotations, finalized = int(words[1]), int(words[2])
    assert rotations > 100 and finalized > 100, result.stdout
    assert words[3] == "True", result.stdout  # the slow name was still read
    print(result.stdout.strip())
