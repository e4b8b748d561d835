"""ProfilerService on Buildbot's fake master: a controllable reactor (a Clock,
with thread-pool work run at once), Buildbot's own data API over an in-memory
sqlite database, and the real sampler and writer."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import tempfile
import time
import warnings
from datetime import datetime, timezone

import pytest
from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest

from buildbot.config.errors import ConfigErrors, capture_config_errors

# buildbot.test turns every warning into an error for the whole process when
# imported; keep that from leaking into the other test modules.
_filters = warnings.filters[:]
from buildbot.test import fakedb  # noqa: E402
from buildbot.test.fake import fakemaster  # noqa: E402
from buildbot.test.reactor import TestReactorMixin  # noqa: E402

warnings.filters[:] = _filters

from profiler_service import _core
from profiler_service.recordings import Settings, get_hub
from profiler_service.options import option_problems
from profiler_service.saving import build_record, epoch_ms, prune
from profiler_service.service import ProfilerService
from profiler_service.options import DEFAULTS as SERVICE_DEFAULTS

# What a service asks the sampler for besides its frequency: stall detection on.
STALLS = {"stall_threshold": SERVICE_DEFAULTS["stallThreshold"],
          "stall_report_threshold": SERVICE_DEFAULTS["stallThreshold"]}

pytestmark = [
    pytest.mark.timeout(120),
    # Buildbot's own dependencies (alembic, twisted.internet.ssl) warn on import.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

MASTER_ID = fakedb.FakeDBConnector.MASTER_ID


def burn(seconds: float, samples: int = 3) -> None:
    """Spend user CPU time until the running sampler has taken ``samples``
    more samples (and at least ``seconds``), so a period is never empty by
    chance. Gives up after 10 s of CPU."""

    def taken() -> int:
        status = get_hub().status()
        return status["samples"] if status else 0

    first = taken()
    start = time.process_time()
    while time.process_time() - start < seconds or (
        get_hub().running and taken() - first < samples and time.process_time() - start < 10
    ):
        sum(range(200))


def read(path: str) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def build_rows(count: int) -> list:
    rows = [
        fakedb.Master(id=MASTER_ID),
        fakedb.Worker(id=47, name="linux"),
        fakedb.Builder(id=77, name="runtests"),
        fakedb.Buildset(id=20),
    ]
    for n in range(1, count + 1):
        rows += [
            fakedb.BuildRequest(id=40 + n, buildsetid=20, builderid=77),
            fakedb.Build(
                id=10 + n, buildrequestid=40 + n, number=n, builderid=77, masterid=MASTER_ID,
                workerid=47, started_at=1_700_000_000 + n * 100, complete_at=1_700_000_060 + n * 100,
                results=0, state_string="build successful",
            ),
            fakedb.Step(
                id=100 + 2 * n, number=0, name="compile", buildid=10 + n,
                started_at=1_700_000_001 + n * 100, complete_at=1_700_000_030 + n * 100, results=0,
            ),
            fakedb.Step(
                id=101 + 2 * n, number=1, name="test", buildid=10 + n,
                started_at=1_700_000_030 + n * 100, complete_at=None, results=None,
            ),
        ]
    return rows


class ServiceTestCase(TestReactorMixin, unittest.TestCase):
    def tmpdir(self) -> str:
        path = tempfile.mkdtemp(prefix="bbprof-test-")
        self.addCleanup(shutil.rmtree, path, True)
        return path

    async def make_service(self, builds: int = 0, before_start=None, **kwargs) -> ProfilerService:
        self.setup_test_reactor()
        basedir = self.tmpdir()
        self.master = await fakemaster.make_master(self, wantData=True, wantDb=True, basedir=basedir)
        if builds:
            await self.master.db.insert_test_data(build_rows(builds))
        self.profiles = os.path.join(self.tmpdir(), "profiles")  # outside basedir, which the fake master deletes
        kwargs.setdefault("basepath", os.path.join(self.profiles, "prof_"))
        kwargs.setdefault("frequency", 500)
        self.service = ProfilerService(**kwargs)
        await self.service.setServiceParent(self.master)
        self.messages: list[str] = []
        observer = lambda event: self.messages.append(" ".join(str(m) for m in event.get("message", ())))
        log.addObserver(observer)
        self.addCleanup(log.removeObserver, observer)
        self.addCleanup(self.stop_everything)
        if before_start is not None:
            before_start(self.profiles)
        await self.master.startService()
        return self.service

    async def stop_everything(self) -> None:
        if self.master.running:
            stopped = defer.ensureDeferred(self.master.stopService())
            pool = getattr(self, "pool", None)
            while pool is not None and not stopped.called:
                pool.run_all()
            await stopped
        for recording in get_hub().recordings:  # a failed test must not leak the sampler
            recording.close()

    def files(self) -> list[str]:
        if not os.path.isdir(self.profiles):
            return []
        return sorted(os.path.join(self.profiles, n) for n in os.listdir(self.profiles))

    def active_timers(self) -> list:
        return [call for call in self.reactor.getDelayedCalls() if call.active()]

    def logged(self, text: str) -> list[str]:
        return [m for m in self.messages if text in m]


class TestRotation(ServiceTestCase):
    async def test_a_file_every_gather_period(self):
        await self.make_service(gatherperiod=60)
        assert _core.is_running()
        burn(0.05)
        self.reactor.advance(59.9)
        assert self.files() == []
        self.reactor.advance(0.1)
        [first] = self.files()
        assert os.path.basename(first).startswith("prof_") and first.endswith(".json.gz")
        burn(0.05)
        self.reactor.advance(60)
        assert len(self.files()) == 2
        assert len(self.active_timers()) == 1
        doc = read(self.files()[-1])
        assert doc["format"] == "buildbot-profiler" and doc["stats"]["samples"] > 0
        assert doc["meta"]["frequency"] == 500
        assert doc["meta"]["gatherperiod"] == 60
        assert doc["meta"]["service"] == "ProfilerService"
        assert doc["meta"]["period_end"] == "period"
        assert doc["meta"]["buildbot"] and doc["meta"]["python"] and doc["meta"]["profiler"]
        assert self.logged("ProfilerService: wrote " + self.files()[-1])

    async def test_a_period_without_samples_writes_no_file(self):
        # 0.01 Hz: the first tick would come after 100 s of CPU time.
        await self.make_service(gatherperiod=60, frequency=0.01)
        burn(0.05, samples=0)
        self.reactor.advance(60)
        assert self.files() == []
        assert self.logged("no samples in this period (period); no file written")
        await self.master.stopService()
        assert self.files() == []
        assert self.logged("no samples in this period (stop); no file written")

    async def test_two_periods_in_one_second_get_distinct_names(self):
        await self.make_service(gatherperiod=1)
        for _ in range(3):
            burn(0.03)
            self.reactor.advance(1)  # wall clock barely moves: same UTC second
        names = [os.path.basename(p) for p in self.files()]
        assert len(names) == 3 and len(set(names)) == 3
        # the names sort in time order
        assert [read(p)["meta"]["start_ms"] for p in self.files()] == sorted(
            read(p)["meta"]["start_ms"] for p in self.files()
        )


class TestBuilds(ServiceTestCase):
    async def test_the_last_builds_are_stored_newest_first(self):
        await self.make_service(builds=5, wantBuilds=3, gatherperiod=10)
        burn(0.05)
        self.reactor.advance(10)
        [path] = self.files()
        builds = read(path)["builds"]
        assert [b["number"] for b in builds] == [5, 4, 3]
        newest = builds[0]
        assert newest == {
            "buildid": 15, "builderid": 77, "builder": "runtests", "number": 5,
            "started_ms": (1_700_000_000 + 500) * 1000, "complete_ms": (1_700_000_060 + 500) * 1000,
            "results": 0, "state_string": "build successful",
            "steps": [
                {"number": 0, "name": "compile", "started_ms": 1_700_000_501_000,
                 "complete_ms": 1_700_000_530_000, "results": 0},
                {"number": 1, "name": "test", "started_ms": 1_700_000_530_000,
                 "complete_ms": None, "results": None},
            ],
        }

    async def test_want_builds_zero_stores_none(self):
        await self.make_service(builds=2, wantBuilds=0, gatherperiod=10)
        burn(0.05)
        self.reactor.advance(10)
        [path] = self.files()
        assert read(path)["builds"] == []


def test_epoch_ms_of_aware_naive_and_missing_times():
    aware = datetime(2026, 11, 23, 10, 15, 0, 250000, tzinfo=timezone.utc)
    assert epoch_ms(aware) == 1795428900250
    assert epoch_ms(aware.replace(tzinfo=None)) == 1795428900250
    assert epoch_ms(None) is None
    assert epoch_ms(1795428900.25) == 1795428900250


def test_build_record_names_unknown_builders_and_sorts_steps():
    build = {"buildid": 1, "builderid": 9, "number": 4, "started_at": None, "complete_at": None,
             "results": None, "state_string": None}
    steps = [{"number": 1, "name": "b"}, {"number": 0, "name": "a"}]
    record = build_record(build, {}, steps)
    assert record["builder"] == "builder 9" and record["state_string"] == ""
    assert [s["name"] for s in record["steps"]] == ["a", "b"]
    json.dumps(record)  # plain JSON


class TestRetention(ServiceTestCase):
    async def test_keep_files_removes_the_oldest_of_ours_only(self):
        await self.make_service(gatherperiod=10, keepFiles=3, keepDays=None)
        os.makedirs(self.profiles, exist_ok=True)
        old = [os.path.join(self.profiles, f"prof_2020010{d}T000000Z.json.gz") for d in range(1, 5)]
        other = [os.path.join(self.profiles, n) for n in ("notes.txt", "prof_keep.json.gz", "x_20200101T000000Z.json.gz")]
        for path in old + other:
            open(path, "w").close()
        burn(0.05)
        self.reactor.advance(10)
        remaining = set(self.files())
        assert set(other) <= remaining
        ours = sorted(remaining - set(other))
        assert len(ours) == 3
        assert ours[:2] == old[2:]  # the two newest old ones and the new file
        assert self.logged("removed 2 old profile(s)")


def test_prune_by_age_uses_the_stamp_in_the_name(tmp_path):
    base = str(tmp_path / "prof_")
    now = datetime(2026, 11, 23, tzinfo=timezone.utc).timestamp()
    names = ["prof_20261101T000000Z.json.gz", "prof_20261120T000000Z.json.gz",
             "prof_20261120T000000Z_02.json.gz", "prof_20261122T120000Z.json.gz"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    deleted = prune(base, None, 2, now, keep="")
    assert sorted(os.path.basename(p) for p in deleted) == sorted(names[:3])
    assert sorted(os.listdir(tmp_path)) == names[3:]
    assert prune(base, None, None, now, keep="") == []


class TestReconfig(ServiceTestCase):
    async def test_reconfig_writes_the_period_and_restarts_with_new_settings(self):
        service = await self.make_service(gatherperiod=60, frequency=200)
        burn(0.05)
        self.reactor.advance(30)
        new = ProfilerService(gatherperiod=20, frequency=400, basepath=os.path.join(self.profiles, "prof_"))
        await service.reconfigServiceWithSibling(new)
        [first] = self.files()
        assert read(first)["meta"]["frequency"] == 200
        assert read(first)["meta"]["period_end"] == "reconfig"
        assert get_hub().settings == Settings(400.0, **STALLS)
        assert len(self.active_timers()) == 1  # the old timer is gone
        burn(0.05)
        self.reactor.advance(20)  # the new gather period counts from the reconfig
        assert len(self.files()) == 2
        assert read(self.files()[-1])["meta"]["frequency"] == 400
        assert read(self.files()[-1])["meta"]["gatherperiod"] == 20
        self.reactor.advance(39)
        assert len(self.active_timers()) == 1

    async def test_reconfig_back_to_the_first_settings_is_applied(self):
        # Buildbot compares a new config with the service's recorded
        # arguments: they must follow each applied reconfig, or going back
        # to the constructor's settings looks like "no change".
        service = await self.make_service(gatherperiod=600, frequency=1000)
        basepath = os.path.join(self.profiles, "prof_")
        for frequency in (250, 1000, 250):
            burn(0.05)
            await service.reconfigServiceWithSibling(
                ProfilerService(gatherperiod=600, frequency=frequency, basepath=basepath))
            assert get_hub().settings == Settings(float(frequency), **STALLS)
            assert self.logged(f"now sampling virtual {frequency:g} Hz")
        assert service._config_kwargs["frequency"] == 250
        assert [read(p)["meta"]["frequency"] for p in self.files()] == [1000, 250, 1000]
        # An unchanged config is still a no-op: no rotation, no file.
        await service.reconfigServiceWithSibling(
            ProfilerService(gatherperiod=600, frequency=250, basepath=basepath))
        assert len(self.files()) == 3

    async def test_reconfig_to_another_basepath(self):
        service = await self.make_service(gatherperiod=60)
        burn(0.05)
        elsewhere = self.tmpdir()
        await service.reconfigServiceWithSibling(
            ProfilerService(gatherperiod=60, frequency=500, basepath=os.path.join(elsewhere, "p_"))
        )
        assert len(self.files()) == 1  # the old period went where it was configured to
        burn(0.05)
        self.reactor.advance(60)
        assert [n for n in os.listdir(elsewhere) if n.startswith("p_")]


class TestStop(ServiceTestCase):
    async def test_stop_writes_the_final_partial_period(self):
        await self.make_service(gatherperiod=600)
        burn(0.05)
        self.reactor.advance(10)
        await self.master.stopService()
        [path] = self.files()
        assert read(path)["meta"]["period_end"] == "stop"
        assert not _core.is_running()
        assert self.active_timers() == []
        assert get_hub().recordings == []

    async def test_shutdown_trigger_stops_the_sampler_and_stop_still_writes(self):
        await self.make_service(gatherperiod=600)
        burn(0.05)
        self.reactor.fireSystemEvent("shutdown")
        assert not _core.is_running()
        await self.master.stopService()
        [path] = self.files()
        assert read(path)["stats"]["samples"] > 0


class TestFaults(ServiceTestCase):
    async def test_unwritable_basepath_is_logged_and_sampling_goes_on(self):
        service = await self.make_service(gatherperiod=10)
        # After configuration, the directory becomes a regular file: no file can be made.
        os.rmdir(self.profiles)
        with open(self.profiles, "w") as f:
            f.write("in the way")
        for _ in range(5):
            burn(0.03)
            self.reactor.advance(10)
        assert _core.is_running() and service.running
        first = self.logged("could not write the period")
        assert len(first) == 3  # losses 1, 2 and 4 are logged, 3 and 5 counted
        assert "the master keeps running" in first[0]
        assert "(4 periods lost in a row)" in first[2]
        os.unlink(self.profiles)
        burn(0.03)
        self.reactor.advance(10)
        assert len(self.files()) == 1
        assert self.logged("writing works again; 5 period(s) were lost before")

    async def test_unwritable_basepath_is_reported_at_start(self):
        await self.make_service(gatherperiod=10, basepath="/proc/no-such-dir/prof_")
        assert self.logged("profiles cannot be written to /proc/no-such-dir/prof_*")

    async def test_stale_temporary_files_of_ours_are_removed_at_start(self):
        # What a master killed between link(2) and rename(2) leaves (see
        # test_writer's strace test for a real one), next to files that must
        # stay: a live writer's (locked), a fresh one, other names.
        old = time.time() - 3600
        held = []

        def plant(profiles: str) -> None:
            os.makedirs(profiles)
            names = {
                "stale": ".prof_20261201T101500Z.json.gz.tmp-Ab3xYz",
                "stale_serial": ".prof_20261201T101500Z_02.json.gz.tmp-000000",
                "locked": ".prof_20261201T103000Z.json.gz.tmp-q1w2e3",
                "fresh": ".prof_20261201T104500Z.json.gz.tmp-zzzzzz",
                "other_prefix": ".web_20261201T101500Z.json.gz.tmp-Ab3xYz",
                "not_a_stamp": ".prof_notes.json.gz.tmp-Ab3xYz",
                "not_temp": ".prof_20261201T101500Z.json.gz.tmp-Ab3",
            }
            for key, name in names.items():
                path = os.path.join(profiles, name)
                with open(path, "wb") as f:
                    f.write(b"\x1f\x8b partial")
                if key != "fresh":
                    os.utime(path, (old, old))
            os.symlink("/etc/hostname", os.path.join(profiles, ".prof_20261201T110000Z.json.gz.tmp-link00"))
            os.utime(os.path.join(profiles, ".prof_20261201T110000Z.json.gz.tmp-link00"), (old, old),
                     follow_symlinks=False)
            fd = os.open(os.path.join(profiles, names["locked"]), os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)  # as the C writer does while it writes
            held.append(fd)
            self.names = names

        try:
            await self.make_service(gatherperiod=600, before_start=plant)
        finally:
            for fd in held:
                os.close(fd)
        left = sorted(os.listdir(self.profiles))
        gone = [self.names["stale"], self.names["stale_serial"]]
        assert not set(gone) & set(left)
        kept = {k: v for k, v in self.names.items() if not k.startswith("stale")}
        assert set(kept.values()) | {".prof_20261201T110000Z.json.gz.tmp-link00"} == set(left)
        [message] = self.logged("temporary file(s) left by an interrupted write")
        assert "removed 2 temporary file(s)" in message
        assert all(name in message for name in gone)

    async def test_a_failed_builds_query_still_writes_the_period(self):
        await self.make_service(builds=2, gatherperiod=10)

        def broken(*args, **kwargs):
            return defer.fail(RuntimeError("database is locked"))

        self.patch(self.master.data, "get", broken)
        burn(0.05)
        self.reactor.advance(10)
        [path] = self.files()
        assert read(path)["builds"] == []
        assert self.logged("could not fetch the last builds")


class TestCheckConfig:
    @pytest.mark.parametrize(
        "kwargs, expected",
        [
            ({"frequency": -5}, "frequency must be > 0"),
            ({"frequency": "100"}, "frequency must be a number"),
            ({"mode": "fast"}, "mode must be one of prof, real, virtual; got 'fast'"),
            ({"gatherperiod": 0}, "gatherperiod must be a number of seconds between 1 and 604800, got 0"),
            ({"wantBuilds": -1}, "wantBuilds must be an int between 0 and 10000, got -1"),
            ({"keepFiles": 0}, "keepFiles must be None (keep every file) or an int >= 1, got 0"),
            ({"keepDays": -1}, "keepDays must be None (keep every file) or a number of days > 0, got -1"),
            ({"idleFrames": "x.py:f"}, "idleFrames must be a list"),
            ({"idleFrames": ["nocolon"]}, "idleFrames entry 'nocolon'"),
            ({"basepath": ""}, "basepath must be a non-empty str"),
        ],
    )
    def test_each_bad_option_is_named(self, kwargs, expected):
        with capture_config_errors() as errors:
            ProfilerService(**kwargs)
        assert len(errors.errors) == 1
        assert errors.errors[0].startswith("ProfilerService: ")
        assert expected in errors.errors[0]

    @pytest.mark.parametrize("name", ["frequency", "gatherperiod", "keepDays"])
    @pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 10**400], ids=["inf", "-inf", "nan", "10**400"])
    def test_a_number_must_be_finite(self, name, value):
        # One number rule for every option: keepDays=inf used to be
        # accepted, and frequency=10**400 raised OverflowError.
        with capture_config_errors() as errors:
            ProfilerService(**{name: value})
        assert len(errors.errors) == 1
        assert errors.errors[0].startswith(f"ProfilerService: {name} must be")

    def test_positional_options_and_an_unknown_one(self):
        with capture_config_errors() as errors:
            ProfilerService(50, 60, "prof")
        assert errors.errors == []
        with pytest.raises(TypeError, match="frequncy"):
            ProfilerService(frequncy=50)

    def test_basepath_at_or_into_a_regular_file(self, tmp_path):
        regular = tmp_path / "afile"
        regular.write_text("")
        assert option_problems(basepath=str(regular)) == [
            f"basepath {str(regular)!r} is an existing file; it must be a path prefix such as '/var/prof/prof_'"
        ]
        assert option_problems(basepath=str(regular / "sub" / "prof_")) == [
            f"basepath {str(regular / 'sub' / 'prof_')!r} points into the regular file {str(regular)!r}"
        ]
        assert option_problems(basepath=str(tmp_path / "new" / "dir" / "prof_")) == []
        assert list(tmp_path.iterdir()) == [regular]  # no side effects

    def test_defaults_are_valid_and_errors_raise_outside_a_config_load(self):
        assert option_problems() == []
        ProfilerService()
        with pytest.raises(ConfigErrors, match="wantBuilds"):
            ProfilerService(wantBuilds=-1)


class ManualPool:
    """A thread pool whose work runs when the test says so: a write stays
    in flight for as long as the test wants (like a Clock for threads)."""

    def __init__(self) -> None:
        self.jobs: list = []

    def callInThreadWithCallback(self, on_result, func, *args, **kwargs):
        self.jobs.append((on_result, func, args, kwargs))

    def run_all(self) -> int:
        done = 0
        while self.jobs:
            on_result, func, args, kwargs = self.jobs.pop(0)
            try:
                result = func(*args, **kwargs)
            except Exception:
                from twisted.python.failure import Failure

                on_result(False, Failure())
            else:
                on_result(True, result)
            done += 1
        return done


class TestWritesInFlight(ServiceTestCase):
    async def make_held_service(self, **kwargs) -> ProfilerService:
        service = await self.make_service(**kwargs)
        self.pool = ManualPool()
        self.patch(self.reactor, "getThreadPool", lambda: self.pool)
        return service

    def period_ends(self) -> list:
        return [read(p)["meta"]["period_end"] for p in self.files()]

    async def test_reconfig_waits_for_the_write_in_flight_and_loses_nothing(self):
        service = await self.make_held_service(gatherperiod=10, frequency=200)
        burn(0.05)
        self.reactor.advance(10)  # the period's write is now in flight
        assert self.pool.jobs and self.files() == []
        burn(0.05)
        new = ProfilerService(gatherperiod=10, frequency=400, basepath=os.path.join(self.profiles, "prof_"))
        reconfigured = defer.ensureDeferred(service.reconfigServiceWithSibling(new))
        assert not reconfigured.called  # waits for its own write, queued behind the first
        assert get_hub().settings == Settings(400.0, **STALLS)  # the sampler restarted at once
        self.pool.run_all()
        await reconfigured
        assert self.period_ends() == ["period", "reconfig"]
        assert [read(p)["meta"]["frequency"] for p in self.files()] == [200, 200]
        assert len(self.active_timers()) == 1
        assert not self.logged("lost") and not self.logged("dropped")

    async def test_stop_waits_for_the_write_in_flight_then_writes_the_last_period(self):
        await self.make_held_service(gatherperiod=10)
        burn(0.05)
        self.reactor.advance(10)
        burn(0.05)
        stopped = defer.ensureDeferred(self.master.stopService())
        assert not stopped.called and not _core.is_running()
        self.pool.run_all()
        await stopped
        assert self.period_ends() == ["period", "stop"], self.messages
        first, last = (read(p)["meta"] for p in self.files())
        assert last["start_ms"] - first["end_ms"] in (0, 1)  # contiguous: nothing lost

    async def test_a_slow_disk_drops_periods_beyond_the_queue_and_says_so(self):
        await self.make_held_service(gatherperiod=10)
        for _ in range(5):  # one write in flight, two queued, two dropped
            burn(0.03)
            self.reactor.advance(10)
        dropped = self.logged("was dropped")
        assert len(dropped) == 2 and "writes are already waiting" in dropped[0]
        self.pool.run_all()
        assert len(self.files()) == 3


class TestForTheWebUI(ServiceTestCase):
    async def test_files_and_recording_are_exposed(self):
        service = await self.make_service(gatherperiod=10)
        assert service.basepath == os.path.join(self.profiles, "prof_")
        assert service.recording is not None and service.recording.status()["open"]
        open(os.path.join(self.profiles, "unrelated.txt"), "w").close()
        for _ in range(2):
            burn(0.03)
            self.reactor.advance(10)
        assert service.profile_files() == [p for p in self.files() if p.endswith(".json.gz")]
        assert len(service.profile_files()) == 2


def test_a_broken_c_extension_warns_but_never_refuses_the_config():
    import subprocess
    import sys

    script = """
import sys, warnings
sys.modules['profiler_service._core'] = None   # what a failed import of the extension looks like
from buildbot.config.errors import capture_config_errors
from profiler_service.service import ProfilerService
with warnings.catch_warnings(record=True) as caught, capture_config_errors() as errors:
    warnings.simplefilter('always')
    ProfilerService(frequency=50)
print('errors', errors.errors)
print('warnings', [str(w.message) for w in caught if 'ProfilerService' in str(w.message)])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "errors []" in result.stdout
    assert "ProfilerService: the profiler cannot run here" in result.stdout


class TestSharedWithTheWebUI(ServiceTestCase):
    async def test_the_web_catalog_serves_the_services_files_without_listing_on_fetch(self):
        from types import SimpleNamespace

        from profiler_service.www.plugin import PluginCatalog, RecordingControl

        await self.make_service(gatherperiod=10)
        burn(0.05)
        self.reactor.advance(10)
        [written] = self.files()
        with open(os.path.join(self.profiles, "notes.json.gz"), "wb"):
            pass  # a profile's suffix, not one of the service's names
        control = RecordingControl()
        # The plugin finds the service where a real master keeps c['services'].
        control.master = SimpleNamespace(service_manager=SimpleNamespace(namedServices={"p": self.service}),
                                         basedir=self.tmpdir())
        catalog = PluginCatalog(control)
        assert list(catalog.files()) == [os.path.basename(written)]
        listed = []
        real_listdir = os.listdir
        self.patch(os, "listdir", lambda *a: listed.append(a) or real_listdir(*a))
        # A fetch runs on the reactor: it looks at the one name, lists no directory.
        assert catalog.resolve(os.path.basename(written)).path == os.path.realpath(written)
        assert catalog.resolve("notes.json.gz") is None
        assert listed == []

    async def test_a_web_recording_inside_a_service_period_loses_neither(self):
        await self.make_service(gatherperiod=60, frequency=500)
        burn(0.05)
        web = get_hub().open("web", Settings(200))  # the page asks for 200 Hz
        assert web.settings == Settings(500.0, **STALLS) and "running settings win" in web.conflict
        burn(0.05)
        self.reactor.advance(60)  # the service's period ends while the page records
        burn(0.05)
        from profiler_service.recordings import join

        web_period = join(web.close())
        burn(0.05)
        await self.master.stopService()
        first, last = (read(p) for p in self.files())
        # The service's file covers its whole period, across the page's start:
        # three chunks (before the page, with it) joined into one.
        assert first["meta"]["period_end"] == "period"
        assert last["meta"]["start_ms"] - first["meta"]["end_ms"] in (0, 1)
        # The page's recording spans the service's boundary and holds samples from both sides.
        assert web_period.samples > 0
        assert web_period.start_time * 1000 < first["meta"]["end_ms"] < web_period.end_time * 1000
        assert first["stats"]["samples"] + last["stats"]["samples"] >= web_period.samples
