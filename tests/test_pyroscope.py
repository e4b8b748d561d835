"""ProfilerService(pyroscope=...): the option's checks, and pushes from a real
master (with builds) to a real Grafana Pyroscope server.

The server tests need one: ``BBPROF_PYROSCOPE_URL=http://127.0.0.1:4040``
(.ci/run starts one); without it they skip, saying so. An outage is made
with a TCP forwarder between the master and the server, stopped and started
again mid-run (the master sees connections refused, as when a server is
down). The unreachable-server test needs no server.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from e2e_master import RealMaster, unexpected_tracebacks  # noqa: E402

from profiler_service.exports import top_functions  # noqa: E402
from profiler_service.reading import load  # noqa: E402
from profiler_service.pyroscope import ATTEMPTS, PyroscopeOptions, ingest_url, pyroscope_problems  # noqa: E402

SERVER = os.environ.get("BBPROF_PYROSCOPE_URL")
needs_server = pytest.mark.skipif(
    not SERVER, reason="no Pyroscope server: set BBPROF_PYROSCOPE_URL (.ci/run starts one)")
pytestmark = [pytest.mark.timeout(240)]
TOLERANCE = 0.01  # the 1 %


# --------------------------------------------------------------------------
# The option


@pytest.mark.parametrize("value, words", [
    ("http://x", "pyroscope must be None or a dict"),
    ({}, "pyroscope['url'] must be the server's http:// or https:// address"),
    ({"url": "ftp://x"}, "pyroscope['url']"),
    ({"url": "http://x:4040/?a=1"}, "pyroscope['url']"),
    ({"url": "http://x", "app": "has space"}, "pyroscope['app']"),
    ({"url": "http://x", "app": ""}, "pyroscope['app']"),
    ({"url": "http://x", "tags": ["a"]}, "pyroscope['tags'] must be a dict"),
    ({"url": "http://x", "tags": {"1a": "b"}}, "key '1a' is not a label name"),
    ({"url": "http://x", "tags": {"__name__": "b"}}, "key '__name__' is not a label name"),
    ({"url": "http://x", "tags": {"host": "b"}}, "key 'host' is set by the profiler"),
    ({"url": "http://x", "tags": {"site": "a,b=c"}}, "pyroscope['tags']['site'] must be a non-empty str"),
    ({"url": "http://x", "tags": {"site": 3}}, "pyroscope['tags']['site']"),
    ({"url": "http://x", "interval": 0}, "pyroscope['interval'] must be a number of seconds between 1 and 3600"),
    ({"url": "http://x", "interval": True}, "pyroscope['interval']"),
    ({"url": "http://x", "interval": float("nan")}, "pyroscope['interval']"),
    ({"url": "http://x", "basicAuth": "user:pw"}, "pyroscope['basicAuth'] must be None or a (user, password)"),
    ({"url": "http://x", "basicAuth": ("a:b", "pw")}, "pyroscope['basicAuth']"),
    ({"url": "http://x", "tenant": ""}, "pyroscope['tenant']"),
    ({"url": "http://x", "tennant": "t"}, "unknown key(s) 'tennant'"),
])
def test_bad_options_are_named(value, words):
    problems = pyroscope_problems(value)
    assert any(words in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_good_options_pass_and_parse():
    value = {"url": "https://pyro.example:4040/", "app": "ci.buildbot", "tags": {"site": "ci", "zone": "b"},
             "interval": 30, "basicAuth": ("user", "secret"), "tenant": "team-1"}
    assert pyroscope_problems(value) == []
    assert pyroscope_problems(None) == []
    options = PyroscopeOptions.parse(value)
    assert options.url == "https://pyro.example:4040" and options.interval_s == 30.0
    url = ingest_url(options, {"master": "vm:/srv/m,x", "host": "vm", "site": "ci"}, 10, 25)
    assert url.startswith("https://pyro.example:4040/ingest?name=")
    name = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["name"][0]
    assert name == "ci.buildbot{host=vm,master=vm:/srv/m_x,site=ci}"  # ',' would split the labels
    assert url.endswith("&from=10&until=25&format=pprof")


def test_check_config_names_the_option():
    from buildbot.config.errors import ConfigErrors, capture_config_errors

    from profiler_service.service import ProfilerService

    with pytest.raises(ConfigErrors) as caught, capture_config_errors(raise_on_error=True):
        ProfilerService(pyroscope={"url": "http://x", "interval": -5})
    assert caught.value.errors == [
        "ProfilerService: pyroscope['interval'] must be a number of seconds between 1 and 3600, got -5"]


def test_missing_protobuf_is_a_config_error():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('google.protobuf'):\n"
        "            raise ImportError('No module named ' + repr(name))\n"
        "sys.meta_path.insert(0, Block())\n"
        "from profiler_service.pyroscope import pyroscope_problems\n"
        "print(pyroscope_problems({'url': 'http://x'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pyroscope: pprof needs the protobuf package (pip install 'buildbot-profiler[pprof]')" in result.stdout


# --------------------------------------------------------------------------
# A real master


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_master(basedir: Path, url: str, app: str, seconds: float, interval: float = 2,
               during=None) -> RealMaster:
    """A master with builds every second that pushes to url; stopped after
    ``seconds`` (``during(master)`` runs meanwhile, from the start)."""
    master = RealMaster(basedir)
    master.create()
    option = {"url": url, "app": app, "interval": interval, "tags": {"site": "ci"}}
    master.configure(f"util.ProfilerService(frequency=250, gatherperiod=4, basepath='profiles/prof_', "
                     f"wantBuilds=5, pyroscope={option!r})", build_every=1)
    master.start()
    try:
        began = time.monotonic()
        if during is not None:
            during(master)
        time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    finally:
        stopped = master.stop()
        if master.alive:
            master.kill()
    assert stopped.returncode == 0, stopped.stdout
    assert unexpected_tracebacks(master.log()) == []
    return master


def local_profiles(master: RealMaster) -> list:
    profiles = [load(p) for p in sorted((master.basedir / "profiles").glob("prof_*.json.gz"))]
    assert len(profiles) >= 3
    # Complete: every period begins where the one before ended.
    for before, after in zip(profiles, profiles[1:]):
        assert after.start_ms - before.end_ms in (0, 1), (before.source, after.source)
    return profiles


def summary(master: RealMaster) -> tuple[int, int, int, int]:
    """(profiles pushed, samples pushed, pushes lost, samples lost) from the stop line."""
    match = re.search(r"ProfilerService: stopped pushing to Pyroscope: (\d+) profile\(s\) of (\d+) samples "
                      r"pushed, (\d+) push\(es\) of (\d+) samples lost", master.log())
    assert match, master.log()[-3000:]
    return tuple(map(int, match.groups()))  # type: ignore[return-value]


def query(app: str, sample_type: str, from_s: int, until_s: int) -> tuple[int, list[str]]:
    """Pyroscope's merged profile for the app: (total, function names)."""
    selector = f'process_cpu:{sample_type}:cpu:nanoseconds{{service_name="{app}"}}'
    url = (f"{SERVER.rstrip('/')}/pyroscope/render?query={urllib.parse.quote(selector)}"
           f"&from={from_s}&until={until_s}&format=json")
    with urllib.request.urlopen(url, timeout=30) as response:
        document = json.load(response)
    return document["flamebearer"]["numTicks"], document["flamebearer"]["names"]


def query_until(app: str, sample_type: str, from_s: int, until_s: int, want: int) -> tuple[int, list[str]]:
    """Query until the total stops short of want no more (ingestion is
    asynchronous: a segment is flushed within a second or so)."""
    deadline = time.monotonic() + 20
    while True:
        total, names = query(app, sample_type, from_s, until_s)
        if total >= want * (1 - TOLERANCE) or time.monotonic() > deadline:
            return total, names
        time.sleep(1)


def label_values(name: str, from_s: int, until_s: int) -> list[str]:
    body = json.dumps({"name": name, "start": from_s * 1000, "end": until_s * 1000}).encode()
    request = urllib.request.Request(f"{SERVER.rstrip('/')}/querier.v1.QuerierService/LabelValues", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response).get("names", [])


def app_name(test: str) -> str:
    return f"bbprof-{test}-{os.getpid()}-{int(time.time())}"


@needs_server
def test_round_trip_totals_and_names(tmp_path):
    app = app_name("roundtrip")
    master = run_master(tmp_path / "master", SERVER, app, seconds=16)
    profiles = local_profiles(master)
    pushed_profiles, pushed_samples, lost, lost_samples = summary(master)
    assert (lost, lost_samples) == (0, 0) and pushed_profiles >= 5
    local_samples = sum(len(p) for p in profiles)
    local_cpu_ns = sum(sum(p.sample_weight_us) for p in profiles) * 1000
    from_s, until_s = profiles[0].start_ms // 1000 - 1, profiles[-1].end_ms // 1000 + 2
    samples, names = query_until(app, "samples:count", from_s, until_s, local_samples)
    cpu_ns, _ = query_until(app, "cpu:nanoseconds", from_s, until_s, local_cpu_ns)
    print(f"\nround trip: local files {local_samples} samples / {local_cpu_ns / 1e9:.3f} s CPU; "
          f"pushed {pushed_profiles} profiles of {pushed_samples} samples; "
          f"Pyroscope returned {samples} samples / {cpu_ns / 1e9:.3f} s CPU")
    # pprof's samples/count is sampling intervals (docs/FORMAT.md, "What a
    # sample is"), counted per pushed window as the local files count them per
    # file: each window and each file rounds down by less than one interval
    # per thread, so the two totals differ by less than that.
    local_counts = sum(sum(p.sample_count) for p in profiles)
    slack = max(len(p.threads) for p in profiles) * (pushed_profiles + len(profiles))
    assert local_counts - slack <= samples <= local_counts + slack, (samples, local_counts, slack)
    assert abs(cpu_ns - local_cpu_ns) <= TOLERANCE * local_cpu_ns
    hottest = {}
    for profile in profiles:
        for stats in top_functions(profile, sort="total")[0][:15]:
            hottest[stats.frame.name] = True
    assert set(hottest) <= set(names), set(hottest) - set(names)
    # Where builds ran during pushed samples (the files say whether they did:
    # a quiet master's short callbacks may leave none), Pyroscope has their
    # builder as a label (its label index may lag the data a little), and
    # only then.
    during = any(b.get("started_ms") is not None and b["started_ms"] <= t < (b.get("complete_ms") or float("inf"))
                 for p in profiles for b in p.builds for t in p.sample_time_ms)
    deadline = time.monotonic() + 20
    while during and "work" not in label_values("builder", from_s, until_s) and time.monotonic() < deadline:
        time.sleep(1)
    assert ("work" in label_values("builder", from_s, until_s)) == during
    assert "ci" in label_values("site", from_s, until_s)
    assert any(v.endswith(str(master.basedir)) for v in label_values("master", from_s, until_s))


class Forwarder:
    """A TCP forwarder on 127.0.0.1 to the server; ``down()`` closes the
    port and every connection through it, ``up()`` listens again."""

    def __init__(self, target: str) -> None:
        parts = urllib.parse.urlsplit(target)
        self.target = (parts.hostname, parts.port or 80)
        self.port = free_port()
        self.listener: Optional[socket.socket] = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            try:  # wakes accept() (Linux); close() alone would leave the port listening until it returns
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self.lock:
            for connection in self.connections:
                try:  # wakes the threads blocked in recv(); close() alone would not
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self.connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@needs_server
def test_an_outage_loses_only_its_pushes(tmp_path):
    app = app_name("outage")
    forwarder = Forwarder(SERVER)
    forwarder.up()

    def outage(master: RealMaster) -> None:
        master.wait_for(lambda: "first push to Pyroscope done" in master.log(), 30, "a first push")
        forwarder.down()
        time.sleep(16)
        forwarder.up()

    # A failing push takes 3 tries (about 3 s): with 4 s between pushes, each
    # push of the outage fails on its own rather than waiting behind another.
    try:
        master = run_master(tmp_path / "master", forwarder.url, app, seconds=32, interval=4, during=outage)
    finally:
        forwarder.down()
    log = master.log()
    outage_lines = [line for line in log.splitlines() if "ProfilerService:" in line and "ush" in line]
    print("\n" + "\n".join(outage_lines))
    # The first loss in full (a push that failed, or one dropped behind it), then counts.
    assert re.search(r"ProfilerService: (could not push|a push of) .*\. The push is lost; the local files are "
                     r"complete", log), outage_lines
    assert re.search(rf"could not push \d+ samples .* to http://127\.0\.0\.1:\d+: .*refused.* \({ATTEMPTS} attempts\)",
                     log), outage_lines
    assert "(2 pushes lost in a row)" in log
    recovered = re.search(r"pushing to Pyroscope works again .*; (\d+) push\(es\) of (\d+) samples were lost before",
                          log)
    assert recovered, outage_lines
    profiles = local_profiles(master)
    pushed_profiles, pushed_samples, lost, lost_samples = summary(master)
    assert lost == int(recovered.group(1)) and lost_samples == int(recovered.group(2)) and lost >= 2
    local_samples = sum(len(p) for p in profiles)
    # Every local sample was pushed or counted lost: the push shares the sampler.
    assert abs(pushed_samples + lost_samples - local_samples) <= TOLERANCE * local_samples
    from_s, until_s = profiles[0].start_ms // 1000 - 1, profiles[-1].end_ms // 1000 + 2
    local_counts = sum(sum(p.sample_count) for p in profiles)
    # Pyroscope holds the pushed windows' counts (sampling intervals): about
    # the pushed records' share of the local counts, never more than all.
    expected = local_counts * pushed_samples / max(local_samples, 1)
    samples, _ = query_until(app, "samples:count", from_s, until_s, int(expected))
    print(f"outage: local files {local_samples} samples ({local_counts} intervals); pushed {pushed_samples}, "
          f"lost {lost_samples} in {lost} pushes; Pyroscope returned {samples} intervals")
    slack = max(len(p.threads) for p in profiles) * (pushed_profiles + len(profiles))
    assert 0 < samples <= local_counts + slack
    assert abs(samples - expected) <= 0.25 * expected + slack, (samples, expected)


def test_an_unreachable_server_costs_bounded_logs_and_no_file(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    master = run_master(tmp_path / "master", url, app_name("unreachable"), seconds=14, interval=1)
    log = master.log()
    losses = [line for line in log.splitlines() if "lost" in line]
    assert re.search(r"(could not push|a push of) \d+ samples .*\. The push is lost", log), log[-3000:]
    assert re.search(r"refused", "\n".join(losses)), losses  # the cause is named
    assert "(2 pushes lost in a row)" in log and "(4 pushes lost in a row)" in log
    assert "(3 pushes lost in a row)" not in log and "(5 pushes lost in a row)" not in log
    # Pushes beyond the queue are dropped, not kept: a push takes 3 tries
    # (3 s with the back-off) and one comes every second.
    assert re.search(r"a push of \d+ samples was dropped: 2 pushes are already waiting", log), losses
    profiles = local_profiles(master)
    pushed_profiles, pushed_samples, lost, lost_samples = summary(master)
    assert (pushed_profiles, pushed_samples) == (0, 0) and lost >= 8
    local_samples = sum(len(p) for p in profiles)
    assert abs(lost_samples - local_samples) <= TOLERANCE * local_samples


def test_the_service_and_its_push_get_their_settings_when_the_web_recording_ends():
    from profiler_service.recordings import Hub, Settings

    hub = Hub()
    web = hub.open("web", Settings(frequency=250))
    service = hub.open("ProfilerService", Settings(frequency=100))
    push = hub.open("pyroscope", Settings(frequency=100))
    try:
        assert hub.settings.frequency == 250 and service.conflict and push.conflict
        web.close()
        # Two recordings are left, wanting the same: the sampler restarts for them.
        assert hub.settings.frequency == 100
        assert service.conflict is None and push.conflict is None
    finally:
        for recording in (web, service, push):
            recording.close()
