"""The CPython behaviours the sampler rests on, checked on the running version.

Each test states one fact of CPython (3.11 to 3.14) that sampler.c, signals.c,
walker.c, profiler.py or pycompat.h depends on, and fails if a version changes it.
Where the fact differs between versions the expected value is spelled out
per version, next to the pycompat.h switch that follows it. The scripts run
in a fresh interpreter (``python -c``) when a stray thread of the test
process could change the outcome.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter

import pytest

from profiler_service import Profiler

import workloads

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = sys.version_info[:2]


def run_script(source: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)],
                          capture_output=True, text=True, timeout=timeout)


def run_json(source: str) -> dict:
    result = run_script(source)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


# ---- who trips the eval breaker, from which thread ----------------------------

# The main thread spins alone in pure Python, holding the GIL throughout (the
# ctypes calls go through PyDLL, which keeps it), while PyErr_SetInterruptEx
# is called from the place under test. "during": the Python handler ran in
# the spin, i.e. the main thread's eval breaker was tripped. "after": it ran
# once the main thread let go of the GIL and took it back (time.sleep).
TRIP_SCRIPT = """
    import ctypes, json, signal, time
    libc = ctypes.PyDLL(None)  # calls keep the GIL
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.pthread_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    libc.pthread_join.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
    set_interrupt = ctypes.cast(ctypes.pythonapi.PyErr_SetInterruptEx, ctypes.c_void_p)
    raise_signal = ctypes.cast(getattr(libc, "raise"), ctypes.c_void_p)
    handled = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
    # What the sampler does: CPython keeps the Python-level handler, and the
    # C-level one is replaced by a function that calls PyErr_SetInterruptEx
    # (here PyErr_SetInterruptEx itself: it takes the signal number).
    libc.signal(signal.SIGUSR1, set_interrupt)

    def in_new_native_thread(function):
        # A pthread with no Python thread state, never holding the GIL.
        thread = ctypes.c_ulong()
        assert libc.pthread_create(ctypes.byref(thread), None, function,
                                   ctypes.c_void_p(signal.SIGUSR1)) == 0
        assert libc.pthread_join(thread.value, None) == 0

    {trip}
    i = 0
    while i < 300000 and not handled:
        i += 1
    during = bool(handled)
    time.sleep(0.01)
    print(json.dumps({{"during": during, "after": bool(handled)}}))
"""

TRIPS = {
    # The CPU modes' route for a tick that lands on the busy main thread:
    # the handler runs on the main thread.
    "signal handler on the main thread": 'getattr(libc, "raise")(signal.SIGUSR1)',
    # A CPU-timer tick that lands on another thread.
    "signal handler on another thread": "in_new_native_thread(raise_signal)",
    # The sampler thread (ps_py_trip_main_from_any_thread, which up to 3.12
    # sets the eval breaker after the call).
    "thread without a thread state, no signal": "in_new_native_thread(set_interrupt)",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("caller", list(TRIPS))
def test_who_trips_the_main_threads_eval_breaker(caller):
    result = run_json(TRIP_SCRIPT.format(trip=TRIPS[caller]))
    # From 3.13 the signal bit lives in the main thread's own eval breaker and
    # PyErr_SetInterruptEx sets it from any thread; before, a caller that is
    # not the main thread leaves the breaker alone and the main thread sees
    # the signal at its next GIL switch, which a thread running alone never
    # makes. So up to 3.12 the sampler thread sets the eval breaker itself
    # after the call (pycompat.h); test_sampler.py's
    # test_real_mode_samples_a_busy_main_thread_where_it_runs fails without.
    trips_at_once = caller == "signal handler on the main thread" or VERSION >= (3, 13)
    assert result == {"during": trips_at_once, "after": True}


def test_set_interrupt_ex_refuses_bad_signal_numbers_and_skips_unhandled_ones():
    # trip_main treats a nonzero return as "could not trip". A signal whose
    # Python handler is SIG_DFL or SIG_IGN is ignored, with 0 returned.
    result = run_json("""
        import ctypes, json, signal
        set_interrupt = ctypes.pythonapi.PyErr_SetInterruptEx
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        print(json.dumps([set_interrupt(-1), set_interrupt(100000),
                          set_interrupt(signal.SIGUSR2)]))
    """)
    assert result == [-1, -1, 0]


# ---- finalization -----------------------------------------------------------------

def test_atexit_runs_before_finalization_and_finalizing_is_seen_from_c():
    # profiler.py stops the sampler from atexit: that works only if atexit
    # runs while the interpreter is whole (not finalizing, daemon threads
    # alive). Later, during module teardown, the C check the sampler thread
    # makes before taking the GIL (pycompat.h: _Py_IsFinalizing up to 3.12,
    # Py_IsFinalizing from 3.13, which removed the old name) must say yes.
    result = run_json("""
        import atexit, ctypes, json, os, sys, threading, time
        api = ctypes.pythonapi
        name = "Py_IsFinalizing" if sys.version_info >= (3, 13) else "_Py_IsFinalizing"
        is_finalizing = getattr(api, name)
        facts = {"old name": hasattr(api, "_Py_IsFinalizing"),
                 "new name": hasattr(api, "Py_IsFinalizing")}
        worker = threading.Thread(target=time.sleep, args=(60,), daemon=True)
        worker.start()
        def at_exit():
            facts["atexit"] = [sys.is_finalizing(), is_finalizing(), worker.is_alive()]
        atexit.register(at_exit)
        class Teardown:
            def __del__(self, write=os.write, dumps=json.dumps, facts=facts,
                        check=is_finalizing, is_finalizing=sys.is_finalizing):
                facts["teardown"] = [is_finalizing(), check()]
                write(1, (dumps(facts) + "\\n").encode())
        keep = Teardown()
    """)
    assert result["atexit"] == [False, 0, True]
    assert result["teardown"] == [True, 1]
    assert result["new name"] == (VERSION >= (3, 13))
    assert result["old name"] == (VERSION < (3, 13))


EXIT_SCRIPT = """
    import sys, threading, time
    sys.path.insert(0, {tests!r})
    import workloads
    from profiler_service import Profiler
    Profiler(frequency=5000, mode={mode!r}).start()
    for i in range(6):
        threading.Thread(target=workloads.busy_for, args=(60,), daemon=True).start()
    # The main thread waits, so the sampler thread does the walks: at exit it
    # is often waiting for the GIL that six busy threads hand around.
    time.sleep(0.3)
    print("exiting", flush=True)
    {exit}
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["prof", "virtual", "real"])
@pytest.mark.parametrize("exit, code, error", [
    ("pass", 0, None),
    ("raise SystemExit(3)", 3, None),
    ("raise RuntimeError('the end')", 1, "RuntimeError: the end"),
])
def test_exit_while_the_sampler_thread_walks(mode, exit, code, error):
    # A native thread must not take the GIL once finalization began: up to
    # 3.13 CPython ends the thread there, 3.14 blocks it forever. The exit
    # must be clean in every mode and however the program ends.
    # (Without profiler.py's atexit stop the prof and virtual runs die of
    # their own timer signal once CPython drops its handlers.)
    result = run_script(EXIT_SCRIPT.format(tests=HERE, mode=mode, exit=exit))
    assert result.returncode == code, result.stderr
    assert result.stdout == "exiting\n"
    if error is None:
        assert result.stderr == ""
    else:
        assert result.stderr.rstrip().endswith(error) and "Fatal" not in result.stderr


# ---- thread states, frames and code objects -----------------------------------------

def nested_generator(stop: list, seen: list):
    yield from Nested.Inner().spin_in_a_closure(stop, seen)


class Nested:
    class Inner:
        def spin_in_a_closure(self, stop, seen):
            def leaf():
                seen.append(sys._getframe())
                n = 0
                while stop == [False]: n += 1  # noqa: E701  (one line, no call: one leaf line)
                return n
            yield leaf()


async def coroutine_frame(stop, seen):
    for _ in nested_generator(stop, seen):
        pass


def run_coroutine(stop, seen):
    try:
        coroutine_frame(stop, seen).send(None)
    except StopIteration:
        pass


def frame_label(frame) -> str:
    code = frame.f_code
    return f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"


@pytest.mark.timeout(120)
def test_thread_state_ids_and_the_frame_walk_match_what_python_sees():
    # The walker reads PyThreadState.thread_id / native_thread_id (pycompat.h)
    # and walks PyThreadState_GetFrame / PyFrame_GetBack / PyFrame_GetCode
    # with co_qualname, co_filename, co_firstlineno and the frame's line.
    # Compared with what Python itself reports for the same threads: the
    # thread's idents, and its stack through f_back, generator and
    # coroutine frames included.
    stop = [False]  # a list compared in the loop, so the leaf calls nothing
    seen: list = []
    spinners = [threading.Thread(target=run_coroutine, args=(stop, seen), name=f"spinner-{i}")
                for i in range(2)]
    early = spinners[0]
    early.start()  # one started before the sampler, one after
    with Profiler(frequency=500, mode="prof") as p:
        spinners[1].start()
        while len(seen) < 2:
            workloads.busy_for(0.01)
        expected = {}
        for thread in spinners:
            frame = sys._current_frames()[thread.ident]
            labels = []
            while frame is not None:
                labels.append(frame_label(frame))
                frame = frame.f_back
            expected[thread.name] = labels[::-1]  # root first
        workloads.busy_for(0.5)
        stop[0] = True
        for thread in spinners:
            thread.join()
    period = p.period
    by_name = {t["name"]: t for t in period.threads}
    for thread in spinners + [threading.main_thread()]:
        sampled = by_name[thread.name]
        assert (sampled["ident"], sampled["native_id"]) == (thread.ident, thread.native_id)
    for name, labels in expected.items():
        stacks = Counter()
        for line in period.collapsed(name).splitlines():
            stack, _, count = line.rpartition(" ")
            stacks[tuple(stack.split(";")[1:])] += int(count)
        assert stacks, f"no samples of {name}"
        assert list(stacks.most_common(1)[0][0]) == labels
    assert "Nested.Inner.spin_in_a_closure.<locals>.leaf" in expected["spinner-0"][-1]


@pytest.mark.timeout(120)
def test_the_file_names_a_frame_by_its_code_objects_qualname_file_and_first_line(tmp_path):
    # Frames are keyed by code object (the walker does not decode line
    # tables): the file's line is co_firstlineno, read through pycompat.h.
    stop = [False]
    seen: list = []
    spinner = threading.Thread(target=run_coroutine, args=(stop, seen))
    with Profiler(frequency=500, mode="prof") as p:
        spinner.start()
        while not seen:
            workloads.busy_for(0.01)
        workloads.busy_for(0.3)
        code = seen[0].f_code
        stop[0] = True
        spinner.join()
    path = tmp_path / "p.json.gz"
    p.period.write(path)
    doc = json.loads(gzip.decompress(path.read_bytes()))
    leaves = [(doc["files"][file], line) for name, file, line in doc["frames"]
              if name == code.co_qualname]
    assert leaves == [(code.co_filename, code.co_firstlineno)]


# ---- fork -------------------------------------------------------------------------

FORK_SCRIPT = """
    import json, os, sys, warnings
    from profiler_service import Profiler

    def fork_warnings():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        return [f"{{w.category.__name__}}: {{w.message}}" for w in caught]

    before = fork_warnings()
    p = Profiler(frequency=200, mode={mode!r})
    p.start()
    during = fork_warnings()
    p.stop()
    after = fork_warnings()
    print(json.dumps({{"before": before, "during": during, "after": after}}))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["prof", "real"])
def test_fork_while_sampling_warns_from_3_12(mode):
    # 3.12 warns (DeprecationWarning, shown by default only for code in
    # __main__) on fork() in a process with more than one OS thread, and our
    # sampler thread is one: a user sees "This process (pid=...) is
    # multi-threaded, use of fork() may lead to deadlocks in the child." if
    # the master forks while sampling (README, "How it samples"). Once
    # stop() returns the thread is gone and the warning with it.
    result = run_json(FORK_SCRIPT.format(mode=mode))
    assert result["before"] == [] and result["after"] == []
    if VERSION >= (3, 12):
        assert len(result["during"]) == 1
        assert result["during"][0].startswith("DeprecationWarning: This process (pid=")
        assert "is multi-threaded, use of fork() may lead to deadlocks in the child." in result["during"][0]
    else:
        assert result["during"] == []
