"""Real periods, sampled by the C core and written by the C writer, read back
by load(): the same samples, the same collapsed lines as Period.collapsed(),
valid exports, the hot function first in `bbprofiler top`, and a fuzz run
over the bytes of a real file."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiler_service import Profiler, cli, exports
from profiler_service.reading import FORMAT_NAME, SCHEMA_PATH, ProfileError, load, loads, summarize
from profile_helpers import SPEEDSCOPE_SCHEMA

BBPROFILER = Path(sys.executable).with_name("bbprofiler")
WORKER_NAME = "files-worker"


def files_hot_spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def files_cpu_bound(cpu_seconds: float) -> None:
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        files_hot_spin(20000)


def files_worker_spin(n: int) -> int:
    total = 0
    for i in range(n):
        total ^= i
    return total


def files_worker(cpu_seconds: float) -> None:
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        files_worker_spin(20000)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """(period, path of its file): ~0.8 s of CPU in MainThread, ~0.3 s in a worker."""
    path = tmp_path_factory.mktemp("real") / "prof_real.json.gz"
    worker = threading.Thread(target=files_worker, args=(0.3,), name=WORKER_NAME)
    with Profiler(frequency=250, mode="prof") as profiler:
        worker.start()
        files_cpu_bound(0.8)
        worker.join()
    period = profiler.period
    builds = [{"buildid": 1, "builderid": 2, "builder": "runtests", "number": 3,
               "started_ms": 1, "complete_ms": 2, "results": 0, "state_string": "ok", "steps": []}]
    period.write(str(path), builds=builds, meta={"gatherperiod": 1800, "service": "test"})
    return period, path


@pytest.mark.timeout(60)
def test_round_trip_standard_library_and_schema(real):
    period, path = real
    with gzip.open(path, "rb") as f:
        doc = json.loads(f.read())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    profile = load(path)
    assert profile.format == FORMAT_NAME and profile.version == 3
    assert len(profile) == period.samples == len(doc["samples"]["stack"]) > 100
    assert profile.mode == "prof" and profile.frequency == 250
    assert profile.meta["gatherperiod"] == 1800 and profile.builds == doc["builds"]
    assert [t.name for t in profile.threads] == [t["name"] for t in period.threads]
    assert [t.samples for t in profile.threads] == [t["samples"] for t in period.threads]
    assert [t.weight_us for t in profile.threads] == [t["weight_us"] for t in period.threads]
    assert profile.stats == period.stats
    assert profile.start_ms == doc["meta"]["start_ms"] <= profile.sample_time_ms[0]
    assert list(profile.sample_time_ms) == sorted(profile.sample_time_ms)
    assert profile.sample_time_ms[-1] <= profile.end_ms + 1000


def test_collapsed_matches_the_period(real):
    period, path = real
    profile = load(path)
    assert exports.to_collapsed(profile) == period.collapsed()
    for name in ("MainThread", WORKER_NAME):
        assert exports.to_collapsed(profile, thread=name) == period.collapsed(thread=name)
        assert exports.to_collapsed(profile, thread=name) != ""
    assert exports.to_collapsed(profile, weights=True) == period.collapsed(weighted=True)


def test_top_functions_of_a_real_period(real):
    _, path = real
    profile = load(path)
    stats, samples, _ = exports.top_functions(profile, thread="MainThread")
    assert stats[0].frame.name == "files_hot_spin"
    assert stats[0].self_samples > samples / 2
    worker_stats, _, _ = exports.top_functions(profile, thread=WORKER_NAME)
    assert worker_stats[0].frame.name == "files_worker_spin"
    main_total = {s.frame.name: s.total_samples for s in stats}
    assert main_total["files_cpu_bound"] >= main_total["files_hot_spin"]


def test_top_command_names_the_hot_function_first(real, capsys):
    _, path = real
    assert cli.main(["top", str(path), "--thread", "MainThread", "--width", "160"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].split()[:4] == ["SELF%", "TOTAL%", "SELF", "TOTAL"]
    first = rows[3].split()
    assert first[4] == "files_hot_spin" and first[5].startswith(str(Path(__file__)))
    assert float(first[0]) > 50
    result = subprocess.run([BBPROFILER, "top", path, "-n", "3"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines()[3].split()[4] == "files_hot_spin"


def test_exports_of_a_real_period(real, tmp_path):
    period, path = real
    out = tmp_path / "real.speedscope.json"
    assert cli.main(["export", str(path), "-f", "speedscope", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, json.loads(SPEEDSCOPE_SCHEMA.read_text()))
    names = [p["name"] for p in doc["profiles"]]
    assert names[0] == "All threads" and {"MainThread", WORKER_NAME} <= set(names)
    total = sum(t["weight_us"] for t in period.threads)
    assert doc["profiles"][0]["endValue"] == total
    assert sum(p["endValue"] for p in doc["profiles"][1:]) == total
    collapsed = tmp_path / "real.folded"
    assert cli.main(["export", str(path), "-f", "collapsed", "-o", str(collapsed)]) == 0
    assert collapsed.read_text() == period.collapsed()


def test_summarize_a_real_file(real):
    period, path = real
    summary = summarize(path)
    assert summary["error"] is None
    assert (summary["format"], summary["version"], summary["samples"]) == (FORMAT_NAME, 3, period.samples)
    assert summary["start_ms"] == load(path).start_ms and summary["mode"] == "prof"
    # The writer puts format, version, meta and stats first: listings read
    # only those (the fast path), not the samples.
    from profiler_service.reading import summary as profile_module
    header = profile_module._prefix_members(profile_module._gzip_prefix(path))
    assert list(header)[:4] == ["format", "version", "meta", "stats"]
    assert profile_module._summary_from_header(header)["samples"] == period.samples


_REAL_BYTES: dict[str, bytes] = {}


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_real_file(real, data):
    if "gz" not in _REAL_BYTES:
        _REAL_BYTES["gz"] = real[1].read_bytes()
        _REAL_BYTES["json"] = gzip.decompress(_REAL_BYTES["gz"])
    raw = bytearray(_REAL_BYTES[data.draw(st.sampled_from(["gz", "json"]))])
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert", "cut"]))
        if action == "flip":
            raw[position] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del raw[position:position + data.draw(st.integers(1, 64))]
        elif action == "insert":
            raw[position:position] = data.draw(st.sampled_from([b"-1", b"99999", b"[", b"}", b",", b"\""]))
        else:
            del raw[position:]
        if not raw:
            break
    try:
        profile = loads(bytes(raw), "fuzz.json.gz")
    except ProfileError as e:
        assert "\n" not in str(e)
        return
    exports.to_collapsed(profile)
    exports.top_functions(profile)
