"""ProfilerService in a real Buildbot master (from PyPI) with a LocalWorker
running real shell builds, driven with the buildbot command as an admin
would: create-master, start, reconfig (SIGHUP), stop, checkconfig.

One master is shared by the tests of this module, which run in order and
leave it running for the next; the last one stops it.
"""

from __future__ import annotations

import gzip
import json
import os
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

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(sys.platform != "linux", reason="the sampler is Linux-only"),
]

GATHER_S = 3
WANT_BUILDS = 3
SCHEMA = json.loads((Path(profiler_service.__file__).parent / "schema" / "profile-v3.schema.json").read_text())
STALE_TEMP = ".prof_20261201T101500Z.json.gz.tmp-Ab3xYz"
NAME_RE = re.compile(r"prof_\d{8}T\d{6}Z(_\d{2,})?\.json\.gz")


def service_line(**options) -> str:
    settings = {"gatherperiod": GATHER_S, "basepath": "profiles/prof_", "wantBuilds": WANT_BUILDS,
                "keepFiles": 500}
    settings.update(options)
    args = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    return f"util.ProfilerService({args}), PoolGate()"


def read(path: Path) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


class Shared:
    master: RealMaster
    profiles: Path
    checked: set

    @classmethod
    def files(cls) -> list[Path]:
        if not cls.profiles.is_dir():
            return []
        return sorted(cls.profiles.iterdir())

    @classmethod
    def documents(cls) -> list[tuple[Path, dict]]:
        """Every profile so far, each validated once: our name, stdlib gzip +
        json, the v1 schema, never more than wantBuilds builds."""
        docs = []
        for path in cls.files():
            assert NAME_RE.fullmatch(path.name), f"unexpected file in the profiles dir: {path.name}"
            doc = read(path)
            if path not in cls.checked:
                jsonschema.validate(doc, SCHEMA)
                assert len(doc["builds"]) <= WANT_BUILDS
                assert doc["stats"]["samples"] > 0
                cls.checked.add(path)
            docs.append((path, doc))
        return docs


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    basedir = tmp_path_factory.mktemp("e2e") / "master"
    master = RealMaster(basedir)
    master.create()
    master.configure(service_line(frequency=100))
    Shared.master, Shared.profiles, Shared.checked = master, basedir / "profiles", set()
    # What a master killed between link(2) and rename(2) leaves behind.
    Shared.profiles.mkdir()
    stale = Shared.profiles / STALE_TEMP
    stale.write_bytes(b"\x1f\x8b partial")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    master.start()
    yield master
    if master.alive:
        master.stop()
    if master.alive:
        master.kill()


def reconfigure(master: RealMaster, **options) -> None:
    master.configure(service_line(**options))
    result = master.reconfig()
    assert result.returncode == 0, result.stdout


def test_files_appear_valid_with_builds(master):
    master.wait_for(lambda: len(Shared.files()) >= 3, 40, "three profile files")
    master.wait_for(
        lambda: any(doc["builds"] and doc["builds"][-1]["steps"] for _, doc in Shared.documents()),
        40, "a profile carrying finished builds",
    )
    docs = Shared.documents()
    with_builds = [doc for _, doc in docs if doc["builds"]]
    build = with_builds[-1]["builds"][-1]
    assert build["builder"] == "work"
    assert {"compute", "chatty"} <= {step["name"] for step in build["steps"]}
    assert isinstance(build["started_ms"], int) and build["started_ms"] > 1_600_000_000_000
    first_meta = docs[0][1]["meta"]
    assert first_meta["frequency"] == 100 and first_meta["gatherperiod"] == GATHER_S
    assert first_meta["service"] == "ProfilerService" and first_meta["buildbot"].startswith("4.")
    assert re.search(r"ProfilerService: wrote .*prof_\d{8}T\d{6}Z\.json\.gz \(\d+ samples, \d builds in [\d.]+ s, "
                     r"[\d.]+ KiB, [\d.]+ s to write, rotation [\d.]+ ms\)", master.log())


def test_a_stale_temporary_file_is_removed_at_start(master):
    assert not (Shared.profiles / STALE_TEMP).exists()
    assert (f"ProfilerService: removed 1 temporary file(s) left by an interrupted write: "
            f"{Shared.profiles / STALE_TEMP}") in master.log()


def test_sighup_reconfig_changes_the_frequency(master):
    before = len(Shared.files())
    time.sleep(GATHER_S / 2)  # into the period, so it has samples to write
    reconfigure(master, frequency=250)
    master.wait_for(
        lambda: any(doc["meta"]["frequency"] == 250 for _, doc in Shared.documents()[before:]),
        30, "a profile at 250 Hz",
    )
    docs = [doc for _, doc in Shared.documents()]
    reconfig_ends = [doc for doc in docs if doc["meta"]["period_end"] == "reconfig"]
    if "no samples in this period (reconfig)" not in master.log():
        assert [doc["meta"]["frequency"] for doc in reconfig_ends] == [100]
    assert "ProfilerService: now sampling virtual 250 Hz" in master.log()


def test_sighup_reconfig_back_to_the_first_frequency(master):
    # The master started at 100 Hz and the test above moved it to 250 Hz:
    # going back to the constructor's settings must be applied too.
    mark = len(master.log())
    before = len(Shared.files())
    time.sleep(GATHER_S / 2)
    reconfigure(master, frequency=100)
    master.wait_for(lambda: "ProfilerService: now sampling virtual 100 Hz" in master.log()[mark:], 30,
                    "the reconfig back to 100 Hz")
    master.wait_for(
        lambda: any(doc["meta"]["frequency"] == 100 and doc["meta"]["period_end"] == "period"
                    for _, doc in Shared.documents()[before:]),
        30, "a full period at 100 Hz after the reconfig",
    )


def test_reconfig_while_a_write_is_in_flight(master):
    hold = master.basedir / "gate.hold"
    before = len(Shared.files())
    hold.touch()
    master.wait_for(lambda: "PoolGate: holding" in master.log(), 10, "the pool gate")
    time.sleep(GATHER_S + 1)  # a period ends: its write waits for a pool thread
    assert len(Shared.files()) == before
    master.configure(service_line(frequency=200))
    reconfig = subprocess.Popen(
        [str(Path(sys.executable).parent / "buildbot"), "reconfig", str(master.basedir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    time.sleep(1)
    hold.unlink()
    output, _ = reconfig.communicate(timeout=60)
    assert reconfig.returncode == 0, output
    master.wait_for(
        lambda: any(doc["meta"]["frequency"] == 200 for _, doc in Shared.documents()[before:]),
        30, "a profile at 200 Hz",
    )
    ends = [doc["meta"]["period_end"] for _, doc in Shared.documents()[before:]]
    assert "period" in ends and "reconfig" in ends
    assert "ProfilerService: could not" not in master.log() and "was dropped" not in master.log()


def test_unwritable_basepath_is_logged_and_the_master_keeps_running(master):
    reconfigure(master, frequency=200, basepath="/proc/bbprofiler-e2e/prof_")
    master.wait_for(lambda: "could not write the period" in master.log(), 20, "a logged write failure")
    assert "profiles cannot be written to /proc/bbprofiler-e2e/prof_*" in master.log()
    time.sleep(3 * GATHER_S)  # more lost periods: counted, not each logged in full
    assert master.alive
    assert master.log().count("The period is lost; the master keeps running") == 1
    reconfigure(master, frequency=200)
    master.wait_for(lambda: "ProfilerService: writing works again" in master.log(), 20, "recovery")


@pytest.fixture
def full_disk(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stdout.strip()}")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_loses_periods_cleanly(master, full_disk):
    mark = len(master.log())
    reconfigure(master, frequency=200, basepath=str(full_disk / "prof_"))
    master.wait_for(lambda: "No space left on device" in master.log()[mark:], 20, "ENOSPC in the log")
    assert master.alive
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no partial or temporary file
    (full_disk / "filler").unlink()
    master.wait_for(lambda: list(full_disk.glob("prof_*.json.gz")), 20, "a profile once space is back")
    for path in full_disk.glob("prof_*.json.gz"):
        jsonschema.validate(read(path), SCHEMA)
    reconfigure(master, frequency=200)


def test_stop_while_a_write_is_in_flight_keeps_the_final_period(master):
    hold = master.basedir / "gate.hold"
    hold.touch()
    master.wait_for(lambda: master.log().count("PoolGate: holding") >= 2, 10, "the pool gate")
    time.sleep(GATHER_S + 1)
    stop = subprocess.Popen(
        [str(Path(sys.executable).parent / "buildbot"), "stop", str(master.basedir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    time.sleep(1)
    assert master.alive  # waiting for the write
    hold.unlink()
    output, _ = stop.communicate(timeout=60)
    assert stop.returncode == 0, output
    assert not master.alive
    docs = Shared.documents()
    assert docs[-1][1]["meta"]["period_end"] == "stop"
    assert docs[-2][1]["meta"]["period_end"] == "period"  # the one that waited behind the gate
    log = master.log()
    assert not unexpected_tracebacks(log), log[-4000:]
    assert log.count(f"ProfilerService: wrote {Shared.profiles}/") == len(list(Shared.profiles.glob("prof_*.json.gz")))
    # Continuity: each file starts where the previous one ended, except where
    # the log says a period was lost (the unwritable and full-disk tests).
    lost_or_elsewhere = 0
    for (_, prev), (_, doc) in zip(docs, docs[1:]):
        gap = doc["meta"]["start_ms"] - prev["meta"]["end_ms"]
        assert gap >= -1, "periods overlap"
        if gap > 20:
            lost_or_elsewhere += 1
    # one gap for the unwritable basepath, one for the full-disk directory,
    # and one for each period that had no samples (no file)
    assert lost_or_elsewhere <= 2 + log.count("ProfilerService: no samples in this period")


@pytest.mark.parametrize(
    "option, message",
    [
        ("frequency=-5", "ProfilerService: frequency must be > 0 and <= 10000 Hz, got -5"),
        ("mode='fast'", "ProfilerService: mode must be one of prof, real, virtual; got 'fast'"),
        ("gatherperiod=0", "ProfilerService: gatherperiod must be a number of seconds between 1 and 604800, got 0"),
        ("wantBuilds=-1", "ProfilerService: wantBuilds must be an int between 0 and 10000, got -1"),
        ("basepath=__file__", "is an existing file"),
        ("basepath=__file__ + '/x/prof_'", "points into the regular file"),
        ("keepFiles=0", "ProfilerService: keepFiles must be None"),
    ],
)
def test_checkconfig_names_each_bad_option(tmp_path, option, message):
    (tmp_path / "master.cfg").write_text(
        "from buildbot.plugins import util\n"
        "BuildmasterConfig = {'workers': [], 'builders': [], 'protocols': {},\n"
        f"    'services': [util.ProfilerService({option})]}}\n"
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "buildbot"), "checkconfig", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stdout, result.stdout
