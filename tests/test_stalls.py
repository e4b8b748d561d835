"""Reactor stalls: the detector in the C core, its file records and reader,
the options and ``bbprofiler stalls``.

A "reactor" here is the test's main thread calling a watched poll
(``_core.watch_poll``) around a real sleep, as Twisted's reactors call
their poller: what runs between two polls is what the detector watches.
The real-master tests are in test_stalls_master.py.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time

import jsonschema
import pytest

from profiler_service import Profiler, _core
from profiler_service.reading import SCHEMA_PATH, ProfileError, load, loads
from profiler_service.options import option_problems
from profiler_service.stalls import culprit, describe_stack, frames_as_stack, watch_reactor

THRESHOLD_S = 0.2


def poll(timeout: float) -> list:
    time.sleep(timeout)
    return []


watched_poll = _core.watch_poll(poll)


def run_reactor(iterations: int, between=None) -> None:
    """`iterations` short polls; `between(i)` runs out of the poll."""
    for i in range(iterations):
        watched_poll(0.005)
        if between is not None:
            between(i)
    watched_poll(0.005)


def sleeping_culprit(seconds: float) -> None:
    time.sleep(seconds)


def spinning_culprit(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def range_for(seconds: float) -> int:
    """How many integers sum() adds up in about `seconds` here: timed five
    times, the fastest counts (a run the machine paused in would make the
    call far shorter than asked, too short to be a stall). The same as
    test_stalls_master.py's _sum_size, which runs inside the master (its
    injected config code cannot import this one)."""
    n = 1_000_000
    fastest = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        sum(range(n))
        fastest = min(fastest, time.perf_counter() - began)
    return max(int(n * seconds / max(fastest, 1e-6)), n)


def gil_hog(n: int, started: threading.Event, held: list) -> None:
    # One long C call holds the GIL: Python code would hand it over every
    # sys.getswitchinterval() (5 ms) to a thread that waits for it.
    started.set()
    began = time.perf_counter()
    sum(range(n))
    held.append(time.perf_counter() - began)
    spinning_culprit(0.05)  # then a little Python, as a real caller does


def reactor_wanting_the_gil(n: int, held: list) -> None:
    """Start the hog, then want the GIL until it is done; how long its C
    call held the GIL goes into `held`."""
    started = threading.Event()
    hog = threading.Thread(target=gil_hog, args=(n, started, held), name="db-pool-hog")
    hog.start()
    started.wait()
    while hog.is_alive():
        pass


def record(between, mode: str = "virtual", iterations: int = 3, **options):
    options.setdefault("stall_threshold", THRESHOLD_S)
    profiler = Profiler(100, mode, reactor_native_id=threading.get_native_id(), **options)
    with profiler:
        run_reactor(iterations, between)
    return profiler.period


def written(period, tmp_path):
    path = tmp_path / "prof_stalls.json.gz"
    period.write(str(path))
    return load(path), json.loads(gzip.decompress(path.read_bytes()))


def timed(function, *args):
    began = time.perf_counter()
    function(*args)
    return time.perf_counter() - began


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["virtual", "prof", "real"])
def test_a_sleep_outside_the_poll_is_a_stall_with_its_stack(tmp_path, mode):
    took = []
    period = record(lambda i: i == 1 and took.append(timed(sleeping_culprit, 0.8)), mode)
    profile, doc = written(period, tmp_path)
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    assert doc["version"] == 3
    assert len(profile.stalls) == 1, profile.stalls
    stall = profile.stalls[0]
    # The duration is the reactor's own marks: the sleep plus a few µs.
    assert took[0] <= stall.duration_s < took[0] + 0.05, (took, stall)
    # Sampled at 100 Hz from threshold/2 late at worst: 0.8 - 0.3 s at least.
    assert len(stall) >= 10, stall
    who = culprit(profile, stall)
    assert who.busy_thread is None
    assert who.frames[0].name == "sleeping_culprit", who.frames[:3]
    assert profile.start_ms <= stall.start_ms <= profile.end_ms


@pytest.mark.timeout(60)
def test_a_cpu_stall_shows_the_spinning_function(tmp_path):
    took = []
    period = record(lambda i: i == 0 and took.append(timed(spinning_culprit, 0.7)))
    profile, _ = written(period, tmp_path)
    assert len(profile.stalls) == 1
    stall = profile.stalls[0]
    assert took[0] <= stall.duration_s < took[0] + 0.05
    who = culprit(profile, stall)
    assert who.busy_thread is None
    assert who.frames[0].name == "spinning_culprit"
    assert stall.main_cpu_us > 0


@pytest.mark.timeout(60)
def test_a_thread_keeping_the_gil_is_named_as_the_culprit(tmp_path):
    took, held = [], []
    n = range_for(0.8)
    profile, _ = written(record(lambda i: i == 1 and took.append(timed(reactor_wanting_the_gil, n, held))),
                         tmp_path)
    # The premise: one C call kept the GIL well past the threshold.
    assert held[0] > 2 * THRESHOLD_S, held
    assert len(profile.stalls) == 1, profile.stalls
    stall = profile.stalls[0]
    assert took[0] <= stall.duration_s < took[0] + 0.05, (took, stall)
    who = culprit(profile, stall)
    assert who.busy_thread == "db-pool-hog", (who, list(stall.sample_busy_thread))
    assert who.frames[0].name in ("gil_hog", "spinning_culprit"), who.frames[:3]


@pytest.mark.timeout(60)
def test_short_iterations_are_no_stall(tmp_path):
    period = record(lambda i: spinning_culprit(0.02), iterations=40)
    profile, doc = written(period, tmp_path)
    assert profile.stalls == [] and doc["stalls"] == {"threshold_us": 0, "dropped": 0, "items": []}


@pytest.mark.timeout(60)
def test_off_by_default_records_nothing(tmp_path):
    period = record(lambda i: i == 0 and sleeping_culprit(0.5), stall_threshold=None)
    assert written(period, tmp_path)[0].stalls == []


@pytest.mark.timeout(60)
def test_the_callback_hears_each_long_stall_once():
    heard = []
    record(
        lambda i: sleeping_culprit(0.6 if i == 0 else 0.3),
        iterations=2,
        stall_report_threshold=0.5,
        on_stall=lambda duration, stack, busy: heard.append((duration, stack, busy)),
    )
    assert len(heard) == 1, heard  # the 0.3 s stall is recorded, not reported
    duration, stack, busy = heard[0]
    assert 0.6 <= duration < 0.65
    assert stack[0][1] == "sleeping_culprit" and stack[0][0].endswith("test_stalls.py")
    assert busy == ""
    assert describe_stack(stack).startswith("tests/test_stalls.py:sleeping_culprit > ") or (
        "/tests/test_stalls.py:sleeping_culprit > " in describe_stack(stack))


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failing_callback_does_not_stop_sampling(tmp_path):
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("listener bug")

    period = record(lambda i: sleeping_culprit(0.4), iterations=2, stall_report_threshold=0.3, on_stall=broken)
    assert len(calls) == 2  # the first failure did not stop the second report
    assert len(written(period, tmp_path)[0].stalls) == 2


@pytest.mark.timeout(60)
def test_stalls_survive_rotation_and_concat(tmp_path):
    profiler = Profiler(100, "virtual", stall_threshold=THRESHOLD_S, reactor_native_id=threading.get_native_id())
    profiler.start()
    run_reactor(1, lambda i: sleeping_culprit(0.4))
    first = profiler.rotate()
    run_reactor(1, lambda i: sleeping_culprit(0.5))
    second = profiler.stop()
    joined = _core.concat([first, second])
    profile, _ = written(joined, tmp_path)
    durations = [round(s.duration_s, 1) for s in profile.stalls]
    assert durations == [0.4, 0.5], profile.stalls
    assert all(culprit(profile, s).frames[0].name == "sleeping_culprit" for s in profile.stalls)


@pytest.mark.timeout(120)
def test_a_period_keeps_the_longest_stalls_and_counts_the_rest(tmp_path):
    # 64 are kept; 66 stalls of two lengths: the two shortest are dropped.
    lengths = [0.21] * 2 + [0.23] * 64
    period = record(lambda i: sleeping_culprit(lengths[i]), iterations=len(lengths))
    profile, _ = written(period, tmp_path)
    assert len(profile.stalls) == 64 and profile.stalls_dropped == 2
    assert min(s.duration_s for s in profile.stalls) >= 0.23
    starts = [s.start_ms for s in profile.stalls]
    assert starts == sorted(starts)


def test_watch_reactor_wraps_the_poller_and_undoes_it():
    from twisted.internet.epollreactor import EPollReactor

    reactor = EPollReactor()
    try:
        original = reactor._poller
        undo, why = watch_reactor(reactor)
        assert why == "" and reactor._poller is not original
        assert reactor._poller.poll(0, 1) == [] or True  # the real epoll answers
        assert reactor._poller.fileno() == original.fileno()
        again, _ = watch_reactor(reactor)  # already watched: no second wrapper
        again()
        assert reactor._poller is not original
        undo()
        assert reactor._poller is original
    finally:
        reactor._poller.close()


def test_watch_reactor_says_why_it_cannot_watch():
    from twisted.internet.selectreactor import SelectReactor

    undo, why = watch_reactor(SelectReactor())
    assert undo is None and "SelectReactor" in why


def test_watch_poll_passes_arguments_results_and_errors():
    assert _core.watch_poll(lambda *a, **k: (a, k))(1, x=2) == ((1,), {"x": 2})

    def fails(timeout):
        raise OSError("poll failed")

    with pytest.raises(OSError, match="poll failed"):
        _core.watch_poll(fails)(0)
    with pytest.raises(TypeError, match="callable"):
        _core.watch_poll(42)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"stallThreshold": "0.5"}, "stallThreshold must be None (off) or a number of seconds, not str"),
        ({"stallThreshold": 0}, "stallThreshold must be between 0.01 and 3600 seconds, got 0"),
        ({"stallThreshold": float("nan")}, "stallThreshold must be between"),
        ({"stallLogThreshold": None}, "stallLogThreshold must be a number of seconds, not NoneType"),
        ({"stallLogThreshold": -1}, "stallLogThreshold must be between 0.01 and 3600 seconds, got -1"),
    ],
)
def test_bad_stall_options_are_named(options, message):
    problems = option_problems(**options)
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_good_stall_options_pass():
    assert option_problems(stallThreshold=None) == []
    assert option_problems(stallThreshold=0.1, stallLogThreshold=5) == []


def test_profiler_checks_stall_arguments():
    with pytest.raises(TypeError, match="stall_threshold"):
        Profiler(stall_threshold="1")
    with pytest.raises(ValueError, match="stall_report_threshold"):
        Profiler(stall_report_threshold=0)
    with pytest.raises(TypeError, match="on_stall"):
        Profiler(on_stall=3)


# -- the reader -----------------------------------------------------------------------


def v2_document(stalls):
    return {
        "format": "buildbot-profiler", "version": 2,
        "meta": {"start_ms": 1_000_000, "end_ms": 1_010_000, "mode": "virtual", "frequency": 100},
        "stats": {}, "threads": [{"ident": 1, "native_id": 2, "name": "MainThread", "samples": 0, "weight": 0}],
        "files": ["a.py"], "frames": [["f", 0, 1]], "stacks": {"parent": [-1], "frame": [0]},
        "samples": {"dt": [], "thread": [], "stack": [], "weight": []},
        "load": {"t": [], "cpu_permille": [], "rss_kb": []}, "builds": [],
        "stalls": stalls,
    }


def stall_item(**changes):
    item = {"start": 500, "duration_us": 300_000, "sampled_us": 100_000, "main_cpu_us": 0,
            "samples_dropped": 0,
            "samples": {"t": [250, 260], "thread": [0, 0], "stack": [0, -1], "busy_thread": [-1, -1],
                        "busy_stack": [-1, -1]}}
    item.update(changes)
    return item


def test_reader_takes_a_v2_stall():
    profile = loads(json.dumps(v2_document({"threshold_us": 250_000, "dropped": 3, "items": [stall_item()]})).encode())
    (stall,) = profile.stalls
    assert profile.stalls_dropped == 3
    assert stall.start_ms == 1_000_500 and stall.duration_s == 0.3
    assert list(stall.sample_time_ms) == [1_000_750, 1_000_760]
    assert culprit(profile, stall).frames[0].name == "f"


@pytest.mark.parametrize(
    "stalls, problem",
    [
        (None, "stalls"),
        ({"threshold_us": 0, "dropped": 0}, "items"),
        ({"dropped": 0, "items": []}, "threshold_us"),
        ({"threshold_us": 0, "dropped": 0, "items": [stall_item(duration_us=-1)]}, "stalls.items[0].duration_us"),
        ({"threshold_us": 0, "dropped": 0, "items": [stall_item(samples={"t": [1], "thread": [0], "stack": [5],
                                                      "busy_thread": [-1], "busy_stack": [-1]})]},
         "stalls.items[0].samples.stack[0]"),
        ({"threshold_us": 0, "dropped": 0, "items": [stall_item(samples={"t": [1, 2], "thread": [0], "stack": [0],
                                                      "busy_thread": [-1], "busy_stack": [-1]})]},
         "differ in length"),
    ],
)
def test_reader_names_a_bad_stall_member(stalls, problem):
    doc = v2_document(stalls)
    if stalls is None:
        del doc["stalls"]
    with pytest.raises(ProfileError) as error:
        loads(json.dumps(doc).encode())
    assert problem in str(error.value)


LEGACY = os.path.join(os.path.dirname(__file__), "fixtures", "legacy")


def test_v1_and_legacy_files_still_load_without_stalls():
    legacy = [os.path.join(LEGACY, name) for name in sorted(os.listdir(LEGACY)) if name.endswith(".json")]
    assert legacy, "tests/fixtures/legacy is empty"
    for path in legacy:
        assert load(path).stalls == []
    doc = v2_document(None)
    del doc["stalls"]
    doc["version"] = 1
    assert loads(json.dumps(doc).encode()).stalls == []


@pytest.mark.timeout(60)
def test_bbprofiler_stalls_lists_the_worst_first(tmp_path):
    period = record(lambda i: sleeping_culprit(0.3 if i == 0 else 0.6), iterations=2)
    path = tmp_path / "prof_cli.json.gz"
    period.write(str(path))
    out = subprocess.run([sys.executable, "-m", "profiler_service.cli", "stalls", str(path)],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert "2 stall(s)" in lines[0], out
    assert lines[2].lstrip().startswith("0.6") and lines[3].lstrip().startswith("0.3"), out
    assert "tests/test_stalls.py:sleeping_culprit > " in lines[2], out


def test_bbprofiler_stalls_on_a_v1_file_says_there_are_none():
    path = os.path.join(LEGACY, "prof_1.json")
    out = subprocess.run([sys.executable, "-m", "profiler_service.cli", "stalls", path],
                         capture_output=True, text=True, check=True).stdout
    assert "no stall records" in out


# -- the service keeps recent stalls for the web UI's status --------------------------


class _Reactor:
    def __init__(self):
        self.from_thread = []

    def callFromThread(self, function, *args):
        self.from_thread.append((function, args))


class _Manager:
    def __init__(self, services):
        self.namedServices = {svc.name: svc for svc in services}


class _Master:
    def __init__(self, services=()):
        self.reactor = _Reactor()
        self.service_manager = _Manager(services)
        self.basedir = "."


def test_the_service_keeps_every_stall_and_logs_only_long_ones():
    from profiler_service.options import Options
    from profiler_service.service import ProfilerService

    svc = ProfilerService()
    master = _Master()
    svc.parent = master  # .master is the parent's master
    master.master = master
    svc._options = Options(100.0, 60, "virtual", "/tmp/prof_", 0, None, None, None,
                           stall_threshold=0.25, stall_log_threshold=2.0)
    stack = [("/srv/master/master.cfg", "slow_step"), ("/x/twisted/internet/base.py", "runUntilCurrent")]
    svc._on_stall(0.4, stack, "")
    svc._on_stall(2.5, stack, "db-pool")
    assert [s["duration_s"] for s in svc.recent_stalls] == [0.4, 2.5]
    assert svc.recent_stalls[1]["where"] == "srv/master/master.cfg:slow_step > twisted/internet/base.py:runUntilCurrent"
    assert svc.recent_stalls[1]["busy_thread"] == "db-pool"
    (function, args), = master.reactor.from_thread  # only the 2.5 s one is logged
    assert args[0] == 2.5 and function == svc._log_stall
    for i in range(30):
        svc._on_stall(0.3, stack, "")
    assert len(svc.recent_stalls) == 20


def test_the_www_status_shows_recent_stalls_newest_first():
    from profiler_service.service import ProfilerService
    from profiler_service.www import plugin

    svc = ProfilerService()
    svc.recent_stalls.extend([{"ended": 1.0, "duration_s": 0.5, "where": "a", "busy_thread": None},
                              {"ended": 2.0, "duration_s": 3.0, "where": "b", "busy_thread": "t"}])
    control = plugin.RecordingControl()
    control.master = _Master([svc])
    (entry,) = control.status()["services"]
    assert [s["where"] for s in entry["recent_stalls"]] == ["b", "a"]


def test_a_recording_that_does_not_ask_for_stalls_takes_the_running_detection():
    from profiler_service.recordings import Settings

    service = Settings(100.0, "virtual", None, 0.25, 0.25)
    web = Settings(100.0, "virtual")
    assert web.served_by(service)  # no conflict: the web UI does not care
    assert not service.served_by(web)  # the service asks for detection
    assert not Settings(200.0, "virtual").served_by(service)
    assert not web.served_by(None)
