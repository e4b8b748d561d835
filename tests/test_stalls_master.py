"""Reactor stalls in a real Buildbot master (from PyPI) with a LocalWorker
running real shell builds: four stalls injected from master.cfg, each found
in the period's file, in twistd.log and in ``bbprofiler stalls`` with its
duration (within 10 % or 50 ms of what the injected function measured of
itself) and its culprit on top; an idle master records none.

The injections, each a ``reactor.callLater`` of a blocking function:
(a) 0.8 s of pure-Python CPU, (b) time.sleep(1.5), (c) a blocking read of a
FIFO whose writer end a thread opens after 1 s, (d) a reactor pool thread
(as Buildbot's DB pool is) that keeps the GIL for ~1 s while the reactor
wants it, then works 0.1 s in Python on the result. A pure-Python thread cannot keep the GIL from a thread that waits
for it (CPython hands it over every 5 ms), so (d) keeps it in one long C
call, as a DB driver or json does.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from e2e_master import RealMaster, unexpected_tracebacks  # noqa: E402

import profiler_service  # noqa: E402
from profiler_service.reading import load  # noqa: E402
from profiler_service.stalls import culprit  # noqa: E402

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(sys.platform != "linux", reason="the sampler is Linux-only"),
]

SCHEMA = json.loads((Path(profiler_service.__file__).parent / "schema" / "profile-v3.schema.json").read_text())
BBPROFILER = str(Path(sys.executable).parent / "bbprofiler")
THRESHOLD_S = 0.25
LOG_THRESHOLD_S = 0.5

INJECTOR = '''

# ---- written by tests/test_stalls_master.py: stalls injected on the reactor
import json as _json
import threading as _threading


def _note(name, began_epoch, seconds, **more):
    with open("injected.jsonl", "a") as f:
        f.write(_json.dumps({"name": name, "start": began_epoch, "seconds": seconds, **more}) + "\\n")


def _timed(name, function):
    def run():
        began_epoch, began = time.time(), time.perf_counter()
        more = function() or {}
        _note(name, began_epoch, time.perf_counter() - began, **more)
    return run


def burn_cpu_on_the_reactor():
    end = time.perf_counter() + 0.8
    total = 0
    while time.perf_counter() < end:
        total += 1


def sleep_on_the_reactor():
    time.sleep(1.5)


def read_a_silent_fifo():
    path = os.path.abspath("silent.fifo")
    if not os.path.exists(path):
        os.mkfifo(path)

    def write_later():
        time.sleep(1.0)
        with open(path, "wb") as writer:
            writer.write(b"x")

    _threading.Thread(target=write_later, name="fifo-writer").start()
    with open(path, "rb") as reader:  # blocks until the writer opens
        reader.read(1)


def _sum_size(seconds):
    # The fastest of five timings: a master starting up shares the CPU, and
    # a slow timing would make the later hold too short (never too long).
    n = 2000000
    fastest = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        sum(range(n))
        fastest = min(fastest, time.perf_counter() - began)
    return max(int(n * seconds / max(fastest, 1e-6)), n)


def hold_the_gil_in_the_pool(n, started, done):
    started.set()
    began = time.perf_counter()
    sum(range(n))  # one C call: the GIL stays here
    done["held"] = time.perf_counter() - began
    # Then Python work on its result, as a DB driver's caller does with the
    # rows: the sampler gets the GIL a few switch intervals after the call
    # returns, and finds this thread still here (a thread that went straight
    # back to waiting would be found waiting: see stalldetect.c).
    end = time.perf_counter() + 0.1
    while time.perf_counter() < end:
        pass
    done["finished"] = True


def want_the_gil_on_the_reactor(n):
    def run():
        started, done = _threading.Event(), {"finished": False}
        reactor.callInThread(hold_the_gil_in_the_pool, n, started, done)
        started.wait()
        while not done["finished"]:
            pass
        return {"held": done["held"]}
    return run


class StallInjector(service.BuildbotService):
    name = "StallInjector"

    def startService(self):
        n = _sum_size(1.0)
        r = self.master.reactor
        first = {first_s!r}
        r.callLater(first, _timed("cpu", burn_cpu_on_the_reactor))
        r.callLater(first + 4, _timed("sleep", sleep_on_the_reactor))
        r.callLater(first + 8, _timed("fifo", read_a_silent_fifo))
        r.callLater(first + 12, _timed("gil", want_the_gil_on_the_reactor(n)))
        r.callLater(first + 15, lambda: _note("done", time.time(), 0))
        return super().startService()


c["services"].append(StallInjector())
'''

CULPRITS = {
    "cpu": ("burn_cpu_on_the_reactor", False),
    "sleep": ("sleep_on_the_reactor", False),
    "fifo": ("read_a_silent_fifo", False),
    "gil": ("hold_the_gil_in_the_pool", True),
}


def service_line(**options) -> str:
    settings = {"gatherperiod": 3600, "basepath": "profiles/prof_", "wantBuilds": 10,
                "stallThreshold": THRESHOLD_S, "stallLogThreshold": LOG_THRESHOLD_S}
    settings.update(options)
    return f"util.ProfilerService({', '.join(f'{k}={v!r}' for k, v in settings.items())})"


def injected(basedir: Path) -> dict:
    path = basedir / "injected.jsonl"
    if not path.exists():
        return {}
    return {item["name"]: item for item in map(json.loads, path.read_text().splitlines())}


def run_master(basedir: Path, services: str, extra: str = "", build_every: float = 2,
               until=None, timeout: float = 150) -> tuple[RealMaster, Path]:
    master = RealMaster(basedir)
    master.create()
    master.configure(services, build_every=build_every)
    with open(basedir / "master.cfg", "a") as f:
        f.write(extra)
    master.start()
    try:
        master.wait_for(until, timeout, "the injections")
    finally:
        master.stop()
        if master.alive:
            master.kill()
    files = sorted((basedir / "profiles").glob("prof_*.json.gz"))
    assert files, master.log()[-3000:]
    return master, files[-1]


def within(reported: float, true: float) -> bool:
    return abs(reported - true) <= max(0.1 * true, 0.05)


@pytest.fixture(scope="module")
def stalled(tmp_path_factory):
    basedir = tmp_path_factory.mktemp("stalls") / "master"
    master, path = run_master(basedir, service_line(), INJECTOR.replace("{first_s!r}", "6"),
                              until=lambda: "done" in injected(basedir))
    return master, path, injected(basedir)


def matching_stall(profile, item):
    start_ms = item["start"] * 1000
    near = [s for s in profile.stalls if abs(s.start_ms - start_ms) < 300]
    assert len(near) == 1, (item, [(s.start_ms - start_ms, s.duration_s) for s in profile.stalls])
    return near[0]


@pytest.mark.parametrize("name", sorted(CULPRITS))
def test_the_file_has_each_injected_stall_with_its_culprit(stalled, name):
    master, path, truth = stalled
    with gzip.open(path, "rt") as f:
        jsonschema.validate(json.load(f), SCHEMA)
    profile = load(path)
    item = truth[name]
    stall = matching_stall(profile, item)
    assert within(stall.duration_s, item["seconds"]), (stall.duration_s, item)
    who = culprit(profile, stall)
    function, busy = CULPRITS[name]
    assert who.frames and who.frames[0].name == function, (who, name)
    assert (who.busy_thread is not None) == busy, who
    if busy:
        assert who.busy_thread.startswith("PoolThread"), who


def test_each_stall_is_logged_once_with_its_culprit(stalled):
    master, path, truth = stalled
    log = master.log()
    assert not unexpected_tracebacks(log), unexpected_tracebacks(log)
    lines = re.findall(r"ProfilerService: reactor blocked ([0-9.]+) s (.*)", log)
    for name, (function, busy) in CULPRITS.items():
        mine = [(float(seconds), rest) for seconds, rest in lines if f"master.cfg:{function}" in rest]
        assert len(mine) == 1, (name, lines)
        seconds, rest = mine[0]
        assert within(seconds, truth[name]["seconds"]), (seconds, truth[name])
        # the culprit is on top: first after "in"
        assert re.search(rf"\bin \S*master\.cfg:{function}( >|$)", rest), rest
        assert ("held the CPU (and so the GIL)" in rest) == busy, rest


def test_bbprofiler_stalls_lists_them(stalled):
    master, path, truth = stalled
    out = subprocess.run([BBPROFILER, "stalls", str(path)], capture_output=True, text=True, check=True).stdout
    rows = out.splitlines()[2:]
    for name, (function, busy) in CULPRITS.items():
        row = [r for r in rows if f"master.cfg:{function}" in r.split("  ")[-1]]
        assert len(row) == 1, (name, out)
        seconds = float(row[0].split()[0])
        assert within(seconds, truth[name]["seconds"]), (row, truth[name])
        assert (" on the CPU: " in row[0]) == busy, row


def test_a_busy_master_records_no_stall_under_the_threshold(stalled):
    master, path, truth = stalled
    profile = load(path)
    assert profile.stalls, "no stall at all"
    assert all(stall.duration_s >= THRESHOLD_S for stall in profile.stalls)


def test_an_idle_master_records_no_stall(tmp_path):
    basedir = tmp_path / "master"
    idle_s = 40
    quiet = f'''
class Mark(service.BuildbotService):
    name = "Mark"
    def startService(self):
        self.master.reactor.callLater({idle_s}, lambda: open("idle.done", "w").write(str(time.time())))
        return super().startService()
c["services"].append(Mark())
'''
    done = basedir / "idle.done"
    master, path = run_master(basedir, service_line(), quiet, build_every=24 * 3600,
                              until=lambda: done.exists() and done.read_text(), timeout=idle_s + 90)
    profile = load(path)
    # The master's own start (config, database, the other services) runs on
    # the reactor just after ours, and its stop after the idle time: stalls
    # there are real, and not the idle master's.
    settled_ms = profile.start_ms + 5000
    done_ms = float(done.read_text()) * 1000
    idle = [(s.start_ms - profile.start_ms, s.duration_s) for s in profile.stalls
            if settled_ms < s.start_ms < done_ms]
    assert idle == [], idle
    assert done_ms - settled_ms > (idle_s - 10) * 1000


# -- the viewer: stall marks on the timeline, in a real browser ------------------------


def test_the_viewer_draws_the_stalls_and_shows_what_blocked_the_reactor(stalled):
    pytest.importorskip("playwright.sync_api")
    from chromium import CHROMIUM, launched_chromium
    import os

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("no /usr/bin/chromium")
    from profiler_service.www import STATIC_DIR

    if not os.path.isfile(os.path.join(STATIC_DIR, "index.html")):
        pytest.skip("viewer not built: run scripts/build-viewer")
    from test_www_server import Server

    master, path, truth = stalled
    profile = load(path)
    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    server = Server(path.parent)
    try:
        with launched_chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{server.port}/?profile={path.name}")
            page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=30000)
            assert page.evaluate("document.body.dataset.state") == "ready", page.inner_text("#error")
            marks = page.locator("#timeline rect.stall")
            assert marks.count() == len(profile.stalls)
            # Widths are durations: compare each mark with the longest.
            widths = [float(marks.nth(i).get_attribute("width")) for i in range(marks.count())]
            starts = [int(marks.nth(i).get_attribute("data-start")) for i in range(marks.count())]
            by_start = {s.start_ms - profile.start_ms: s for s in profile.stalls}
            longest = max(by_start.values(), key=lambda s: s.duration_us)
            px_per_s = max(widths) / longest.duration_s
            for width, start in zip(widths, starts):
                expected = by_start[start].duration_s * px_per_s
                assert abs(width - expected) <= max(0.02 * expected, 3), (width, expected)
            page.screenshot(path=str(artifacts / "viewer-stalls-timeline.png"), full_page=True)

            for name in ("sleep", "gil"):
                stall = matching_stall(profile, truth[name])
                start = stall.start_ms - profile.start_ms
                before = page.evaluate("window.bbprofiler.renders")
                page.locator(f'#timeline rect.stall[data-start="{start}"]').click()
                page.wait_for_function(f"window.bbprofiler.renders > {before}", timeout=10000)
                selection = page.inner_text("#selection")
                assert selection.startswith("Reactor stall at "), selection
                assert f"{stall.duration_s:.2f} s" in selection, selection
                t0, t1 = stall.start_ms, stall.start_ms + stall.duration_us / 1000
                running = [f"{b['builder']} #{b['number']}" for b in profile.builds
                           if b["started_ms"] < t1 and (b["complete_ms"] or profile.end_ms) > t0]
                assert f"builds running: {', '.join(running) if running else 'none'}" in selection, (selection, running)
                names = page.eval_on_selector_all("#flame g.frame", "gs => gs.map(g => g.getAttribute('name'))")
                assert CULPRITS[name][0] in names, names
                if name == "sleep":
                    assert page.locator("#timeline rect.build.during-stall").count() == len(running)
                    page.screenshot(path=str(artifacts / "viewer-stalls-selected.png"), full_page=True)
            assert not errors, errors
    finally:
        server.stop()
