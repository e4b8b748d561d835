"""Reading profile files: load(), summarize(), the exports, bad files, fuzzing."""

from __future__ import annotations

import collections
import copy
import gzip
import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import profiler_service
from profiler_service import exports
from profiler_service.reading import (
    FORMAT_NAME,
    LEGACY_FORMAT,
    SCHEMA_PATH,
    ProfileError,
    list_profiles,
    load,
    loads,
    summarize,
)
from profile_helpers import (
    BAD_FILES,
    LEGACY_BIG,
    LEGACY_SMALL,
    SPEEDSCOPE_SCHEMA,
    START_MS,
    VALID_GZ,
    gz,
    make_v1,
    write_gz,
)


@pytest.fixture(scope="module")
def v1_schema():
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def speedscope_schema():
    return json.loads(SPEEDSCOPE_SCHEMA.read_text())


@pytest.fixture
def v1_file(tmp_path):
    return write_gz(tmp_path / "prof_20261125T194640Z.json.gz", make_v1())


# --------------------------------------------------------------------------
# buildbot_profiler 1.x files


def test_legacy_small_facts():
    raw = json.loads(LEGACY_SMALL.read_text())
    p = load(LEGACY_SMALL)
    assert p.format == LEGACY_FORMAT and p.version is None and p.mode is None
    assert len(p.frames) == 28
    assert p.frames[0] == ("doSelect", "net/selectreactor.py", 103)
    assert len(p) == 3
    assert p.frequency == 100  # no "frequency" member: 1.x's default
    assert list(p.sample_weight_us) == [10000] * 3
    assert [t.ident for t in p.threads] == [140735263617024]
    assert p.start_ms == 1471718737498
    assert list(p.sample_time_ms) == [round(s["time"] * 1000) for s in raw["samples"]]
    # The first sample is the idle reactor: 11 frames, root <module> of twistd.
    path = [p.frames[f] for f in p.stack_path(p.sample_stack[0])]
    assert [f.name for f in path][0] == "<module>" and path[-1].name == "doSelect"
    assert len(path) == 11
    assert p.load.cpu_percent[0] == pytest.approx((24.4 + 8.1 + 20.9 + 8.3) / 4)
    assert p.load.mem_percent[0] == 82.4
    assert p.load.rss_kb is None


def test_legacy_big_facts():
    raw = json.loads(LEGACY_BIG.read_text())
    p = load(LEGACY_BIG)
    assert len(p.frames) == 1805
    assert len(p.load) == 2491                     # one load point per 1.x tick
    assert len(p) == 3360                          # one sample per thread per tick
    assert p.frequency == 1000 and p.meta["gatherperiod"] == 300
    assert set(p.sample_weight_us) == {1000}       # 1/frequency s
    assert {t.ident: t.samples for t in p.threads} == {
        140584748578560: 2386, 140584956118848: 966, 140584834901760: 8}
    # Independent count of leaf frames from the raw JSON.
    leaves = collections.Counter(
        tuple(raw["frames"][stack[0]]) for s in raw["samples"] for stack in s["threads"].values())
    stats, samples, weight = exports.top_functions(p)
    assert samples == 3360 and weight == 3_360_000
    assert stats[0].frame == ("do_execute", "my/engine/default.py", 462)
    assert stats[0].self_samples == leaves[("my/engine/default.py", 462, "do_execute")] == 713
    assert [s.frame.name for s in stats[:4]] == ["do_execute", "do_commit", "do_close", "connect"]
    # Stacks rebuild exactly: every sample's path is its 1.x list reversed.
    expected = sorted(tuple(reversed(stack)) for s in raw["samples"]
                      for stack in s["threads"].values())
    assert sorted(p.stack_path(s) for s in p.sample_stack) == expected


def test_legacy_stack_tree_is_consistent():
    p = load(LEGACY_BIG)
    assert len(p.stack_parent) == len(p.stack_frame)
    assert all(parent < i for i, parent in enumerate(p.stack_parent))
    assert list(p.sample_time_ms) == sorted(p.sample_time_ms)


# --------------------------------------------------------------------------
# Format v1


def test_handmade_document_matches_the_schema(v1_schema):
    jsonschema.validate(make_v1(), v1_schema)


def test_v1_model(v1_file):
    p = load(v1_file)
    assert p.format == FORMAT_NAME and p.version == 1
    assert p.source == str(v1_file)
    assert (p.start_ms, p.end_ms, p.mode, p.frequency) == (START_MS, START_MS + 2000, "virtual", 100)
    assert p.meta["hostname"] == "test-host" and p.stats["idle"] == 3
    assert [t.name for t in p.threads] == ["MainThread", "Worker;1"]
    assert [(t.ident, t.native_id, t.samples, t.weight_us) for t in p.threads] == [
        (1000, 2000, 4, 41000), (1001, 2001, 0, 9000)]  # 9 ms: under a 10 ms interval
    assert list(p.sample_time_ms) == [START_MS + 5, START_MS + 15, START_MS + 15,
                                      START_MS + 25, START_MS + 1025]
    assert list(p.sample_weight_us) == [10000, 10000, 9000, 11000, 10000]
    labels = [[p.frames[f].label for f in p.stack_path(s)] for s in p.sample_stack]
    assert labels[1] == ["main (/app/run.py:1)", "work (/app/work.py:10)", "hot (/app/work.py:30)"]
    assert labels[4] == ["[truncated]", "hot (/app/work.py:30)"]
    assert list(p.load.t_ms) == [START_MS + 1000, START_MS + 2000]
    assert p.load.cpu_percent == [50.0, 125.0]
    assert p.load.mem_percent == [5.0, 6.0]
    assert p.builds == []


def test_plain_json_v1_and_gzipped_legacy_are_read_by_content(tmp_path):
    plain = tmp_path / "p.json"
    plain.write_text(json.dumps(make_v1()))
    assert len(load(plain)) == 5
    gz = tmp_path / "legacy.json.gz"
    gz.write_bytes(gzip.compress(LEGACY_SMALL.read_bytes()))
    assert load(gz).format == LEGACY_FORMAT


def test_unknown_members_are_ignored(tmp_path):
    doc = make_v1()
    doc["future_member"] = {"x": [1, 2]}
    doc["meta"]["buildbot"] = "4.3.0"
    assert len(load(write_gz(tmp_path / "p.json.gz", doc))) == 5


def test_select_and_threads(v1_file):
    p = load(v1_file)
    assert p.select() == [0, 1, 2, 3, 4]
    assert p.select(thread="Worker;1") == [2]
    assert p.select(thread=1000) == [0, 1, 3, 4]          # ident
    assert p.select(thread="2001") == [2]                  # native id, as typed
    assert p.select(START_MS + 15, START_MS + 1025) == [1, 2, 3]  # start <= t < end
    with pytest.raises(ValueError, match="no thread 'nope'.*MainThread"):
        p.select(thread="nope")


def test_loads_names_the_source():
    with pytest.raises(ProfileError, match=r"^upload\.gz: "):
        loads(b"\x1f\x8bxx", "upload.gz")
    assert len(loads(gzip.compress(json.dumps(make_v1()).encode()))) == 5


def test_public_names():
    assert profiler_service.load is load
    assert profiler_service.ProfileError is ProfileError
    assert issubclass(ProfileError, ValueError)
    assert SCHEMA_PATH.is_file()


# --------------------------------------------------------------------------
# Bad files: one ProfileError, one line, naming the file and the problem


DEEP_PROBLEMS = {
    "stack out of range", "thread out of range", "parent not before", "parent below -1",
    "frame out of range", "file out of range", "frame not triple", "length mismatch",
    "negative dt", "boolean in array", "float in array", "huge integer", "thread without name",
    "no samples", "trailing garbage",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_one_clean_error(tmp_path, name):
    data, problem = BAD_FILES[name]
    path = tmp_path / "bad profile.json.gz"
    path.write_bytes(data)
    with pytest.raises(ProfileError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message and len(message.splitlines()) == 1
    assert info.value.source == str(path) and problem in info.value.problem
    # summarize() never raises, and a listing agrees with load(): the same
    # error for every bad file.
    summary = summarize(path)
    assert summary["error"] == message and summary["samples"] is None
    # Without verify it reads v1 files' leading members only (format,
    # version, meta, stats), so it sees every problem but those inside the
    # later members.
    quick = summarize(path, verify=False)
    if name in DEEP_PROBLEMS:
        assert quick["error"] is None and quick["samples"] == 5
    else:
        assert problem in quick["error"] and quick["samples"] is None


def test_unreadable_paths(tmp_path):
    for path, problem in ((tmp_path / "missing.json.gz", "No such file or directory"),
                          (tmp_path, "not a regular file (a directory)")):
        with pytest.raises(ProfileError, match=re.escape(problem)):
            load(path)
        assert problem in summarize(path)["error"]


def test_gzip_bomb_is_refused(tmp_path):
    doc = make_v1()
    doc["padding"] = "x" * 1_000_000
    path = write_gz(tmp_path / "bomb.json.gz", doc)
    assert path.stat().st_size < 10_000
    with pytest.raises(ProfileError, match="decompresses to more than 100000 bytes"):
        load(path, max_bytes=100_000)


def test_devices_are_refused():
    for device in ("/dev/zero", "/dev/null"):
        with pytest.raises(ProfileError, match=f"^{device}: not a regular file \\(a character device\\)$"):
            load(device)
        assert summarize(device)["error"] == f"{device}: not a regular file (a character device)"


def _fifo(tmp_path, name="prof_fifo.json.gz"):
    path = tmp_path / name
    os.mkfifo(path)
    return path


def test_a_fifo_is_refused_without_blocking(tmp_path):
    """A FIFO with no writer: opening it for reading in blocking mode waits
    forever. The reader runs in a child process so a hang fails the test
    (by its timeout) instead of hanging the suite."""
    fifo = _fifo(tmp_path)
    code = ("import sys; from profiler_service.reading import load, summarize, list_profiles, ProfileError\n"
            "path = sys.argv[1]\n"
            "try:\n    load(path)\nexcept ProfileError as e:\n    print(e)\n"
            "print(summarize(path)['error'])\n"
            "print(len(list_profiles(sys.argv[2])))\n")
    result = subprocess.run([sys.executable, "-c", code, str(fifo), str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = f"{fifo}: not a regular file (a FIFO)"
    assert result.stdout.splitlines() == [expected, expected, "0"]


def test_a_symlink_to_a_profile_is_read(tmp_path, v1_file):
    link = tmp_path / "link.json.gz"
    link.symlink_to(v1_file)
    assert len(load(link)) == 5 and summarize(link)["samples"] == 5
    fifo_link = tmp_path / "fifo-link.json.gz"
    fifo_link.symlink_to(_fifo(tmp_path))
    with pytest.raises(ProfileError, match="not a regular file \\(a FIFO\\)"):
        load(fifo_link)


def test_gzip_bomb_is_refused_before_inflating(tmp_path):
    """A bomb made by gzip says its size in its trailer: refused with no
    more memory than a read buffer (before, the reader inflated up to the
    limit first: 512 MiB and an RSS of 598 MB)."""
    import tracemalloc

    path = tmp_path / "bomb.json.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b'{"format": "buildbot-profiler", "pad": "')
        block = b"x" * (1 << 20)
        for _ in range(40):
            f.write(block)
        f.write(b'"}')
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ProfileError, match="decompresses to more than 20000000 bytes"):
            load(path, max_bytes=20_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, peak


def test_gzip_bomb_with_a_lying_trailer_stops_at_the_limit(tmp_path):
    import tracemalloc

    data = bytearray(gzip.compress(b"[" + b"0," * 10_000_000 + b"0]"))
    data[-4:] = (100).to_bytes(4, "little")  # claims 100 bytes
    path = tmp_path / "liar.json.gz"
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(ProfileError, match="decompresses to more than 5000000 bytes"):
            load(path, max_bytes=5_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 5_000_000, peak


def test_several_gzip_members_are_one_document(tmp_path):
    text = json.dumps(make_v1()).encode()
    path = tmp_path / "members.json.gz"
    path.write_bytes(b"".join(gzip.compress(text[i:i + 100]) for i in range(0, len(text), 100)))
    assert len(load(path)) == 5


def test_error_messages_stay_on_one_line(tmp_path):
    path = tmp_path / "line\nbreak.json.gz"
    path.write_bytes(b"")
    message = str(pytest.raises(ProfileError, load, path).value)
    assert len(message.splitlines()) == 1 and "empty file" in message


# --------------------------------------------------------------------------
# summarize() and list_profiles()


def test_summarize_v1_from_the_header(v1_file):
    summary = summarize(v1_file)
    assert summary == {
        "name": v1_file.name, "path": str(v1_file), "size": v1_file.stat().st_size,
        "mtime": v1_file.stat().st_mtime, "format": FORMAT_NAME, "version": 1,
        "start_ms": START_MS, "end_ms": START_MS + 2000, "samples": 5, "mode": "virtual",
        "hostname": "test-host", "error": None,
    }


def test_summarize_checks_the_whole_gzip_stream(tmp_path):
    doc = make_v1()
    doc["padding"] = ["x" * 100] * 20000   # the header fits in the first chunk
    data = gz(doc)
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[:-100])
    assert "truncated gzip" in summarize(path)["error"]
    assert summarize(path, verify=False)["error"] is None  # only the header was read


WRONG_TYPES = {
    "threads": {}, "files": 1, "frames": "x", "stacks": [], "samples": None, "load": True,
    "builds": {},
}


@pytest.mark.parametrize("member", sorted(WRONG_TYPES))
def test_listing_and_load_agree_on_wrong_types(tmp_path, member):
    """A member of the wrong type after the header: the listing used to show
    the file as fine (it read the header only), then it failed to open."""
    doc = make_v1()
    doc[member] = WRONG_TYPES[member]
    path = write_gz(tmp_path / f"prof_{member}.json.gz", doc)
    with pytest.raises(ProfileError) as info:
        load(path)
    [listed] = list_profiles(tmp_path)
    assert listed["error"] == str(info.value) and listed["samples"] is None


def test_summarize_members_in_any_order(tmp_path):
    doc = make_v1()
    reordered = {key: doc[key] for key in reversed(list(doc))}  # meta after the samples
    path = write_gz(tmp_path / "r.json.gz", reordered)
    assert summarize(path)["samples"] == 5 and summarize(path)["start_ms"] == START_MS


def test_summarize_legacy():
    summary = summarize(LEGACY_BIG)
    assert (summary["format"], summary["version"], summary["samples"]) == (LEGACY_FORMAT, None, 3360)
    assert summary["start_ms"] == 1471876477627 and summary["error"] is None


def test_summarize_cache_sees_rewrites(tmp_path):
    path = write_gz(tmp_path / "p.json.gz", make_v1())
    assert summarize(path)["samples"] == 5
    path.write_bytes(b"garbage!")
    os.utime(path, ns=(1, 1))
    assert "not gzip and not JSON" in summarize(path)["error"]


def test_list_profiles(tmp_path):
    older = make_v1()
    older["meta"]["start_ms"] -= 3_600_000
    write_gz(tmp_path / "prof_old.json.gz", older)
    write_gz(tmp_path / "prof_new.json.gz", make_v1())
    (tmp_path / "broken.json.gz").write_bytes(b"\x1f\x8b")
    (tmp_path / "notes.txt").write_text("not listed")
    (tmp_path / "legacy.json").write_bytes(LEGACY_SMALL.read_bytes())
    names = [s["name"] for s in list_profiles(tmp_path)]
    assert names == ["prof_new.json.gz", "prof_old.json.gz", "legacy.json", "broken.json.gz"]


# --------------------------------------------------------------------------
# Exports


def test_speedscope_validates_and_keeps_the_weights(v1_file, speedscope_schema):
    p = load(v1_file)
    doc = exports.to_speedscope(p)
    jsonschema.validate(doc, speedscope_schema)
    everything, *threads = doc["profiles"]
    assert everything["name"] == "All threads" and [t["name"] for t in threads] == ["MainThread", "Worker;1"]
    assert everything["unit"] == "microseconds" and everything["startValue"] == 0
    assert everything["endValue"] == sum(everything["weights"]) == 50000
    assert threads[0]["endValue"] == 41000 and threads[1]["endValue"] == 9000
    frames = doc["shared"]["frames"]
    # Root first; the all-threads profile has the thread as its root frame.
    first = [frames[i]["name"] for i in everything["samples"][0]]
    assert first == ["MainThread", "main", "work"]
    assert frames[everything["samples"][0][1]] == {"name": "main", "file": "/app/run.py", "line": 1}
    # Samples 1 and 3 (MainThread, same stack) are separated by Worker's in
    # the all-threads profile, consecutive in MainThread's: merged there.
    assert everything["weights"] == [10000, 10000, 9000, 11000, 10000]
    assert threads[0]["weights"] == [10000, 21000, 10000]
    assert {"name": "[truncated]"} in frames


def test_speedscope_of_legacy_validates(speedscope_schema):
    p = load(LEGACY_BIG)
    doc = exports.to_speedscope(p)
    jsonschema.validate(doc, speedscope_schema)
    assert doc["profiles"][0]["endValue"] == 3_360_000
    assert len(doc["profiles"]) == 1 + 3


def test_speedscope_range_and_thread(v1_file, speedscope_schema):
    p = load(v1_file)
    doc = exports.to_speedscope(p, start_ms=START_MS + 10, end_ms=START_MS + 20, thread="MainThread")
    jsonschema.validate(doc, speedscope_schema)
    assert [q["name"] for q in doc["profiles"]] == ["All threads", "MainThread"]
    assert doc["profiles"][1]["weights"] == [10000]
    empty = exports.to_speedscope(p, start_ms=START_MS + 5000)
    jsonschema.validate(empty, speedscope_schema)
    assert empty["profiles"][0]["samples"] == []


def test_collapsed(v1_file):
    p = load(v1_file)
    assert exports.to_collapsed(p).splitlines() == [
        "MainThread;main (/app/run.py:1);work (/app/work.py:10) 1",
        "MainThread;main (/app/run.py:1);work (/app/work.py:10);hot (/app/work.py:30) 2",
        "MainThread;[truncated];hot (/app/work.py:30) 1",
    ]  # Worker;1's 9 ms are less than one 10 ms interval: no line
    assert exports.to_collapsed(p, weights=True, thread="Worker;1").splitlines() == [
        "Worker,1;loop (/app/pool.py:5);hot (/app/work.py:30) 9000"]
    weighted = exports.to_collapsed(p, weights=True, thread="MainThread").splitlines()
    assert weighted[1].endswith(" 21000") and len(weighted) == 3
    assert exports.to_collapsed(p, start_ms=START_MS + 1000).splitlines() == [
        "MainThread;[truncated];hot (/app/work.py:30) 1"]


def test_collapsed_of_legacy_counts_every_sample():
    p = load(LEGACY_BIG)
    lines = exports.to_collapsed(p).splitlines()
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == 3360
    assert all(line.startswith("thread 1405") for line in lines)


def test_top_functions_recursion_counts_once(tmp_path):
    rec = [("f", "/r.py", 1)]
    doc = make_v1([("T", rec * 3, 1, 100), ("T", rec + [("g", "/r.py", 9)], 1, 300)])
    doc["meta"]["frequency"] = 10000  # 100 µs intervals: the samples count 1 and 3
    p = load(write_gz(tmp_path / "rec.json.gz", doc))
    stats, samples, weight = exports.top_functions(p, sort="total")
    assert (samples, weight) == (4, 400)
    f = next(s for s in stats if s.frame.name == "f")
    g = next(s for s in stats if s.frame.name == "g")
    assert (f.self_samples, f.total_samples, f.self_weight_us, f.total_weight_us) == (1, 4, 100, 400)
    assert (g.self_samples, g.total_samples) == (3, 3)
    assert stats[0] is f
    assert exports.top_functions(p)[0][0] == g  # by self weight


# --------------------------------------------------------------------------
# Fuzzing: nothing but ProfileError may escape load()

_FUZZ_SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])


def _load_bytes(data: bytes) -> None:
    try:
        profile = loads(data, "fuzz.json.gz")
    except ProfileError as e:
        assert "\n" not in str(e)
        return
    # Whatever loads must be usable without further checks.
    exports.to_collapsed(profile)
    exports.top_functions(profile)
    for stack in set(profile.sample_stack):
        profile.stack_path(stack)


@_FUZZ_SETTINGS
@given(st.data())
def test_fuzz_mutated_bytes(data):
    raw = bytearray(VALID_GZ if data.draw(st.booleans()) else json.dumps(make_v1()).encode())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert", "cut"]))
        if action == "flip":
            raw[position] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del raw[position:position + data.draw(st.integers(1, 16))]
        elif action == "insert":
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[position:]
        if not raw:
            break
    _load_bytes(bytes(raw))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@_FUZZ_SETTINGS
@given(_JSON)
def test_fuzz_random_json(value):
    _load_bytes(json.dumps(value).encode())


def _leaf_paths(value, prefix=()):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaf_paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _leaf_paths(child, prefix + (i,))
    yield prefix


_V1 = make_v1()
_V1_PATHS = [p for p in _leaf_paths(_V1) if p]


@_FUZZ_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(_V1_PATHS), _JSON | st.integers(-2, 12)), min_size=1, max_size=4))
def test_fuzz_v1_members(changes):
    doc = copy.deepcopy(_V1)
    for path, value in changes:
        target = doc
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    _load_bytes(gz(doc))


_LEGACY = json.loads(LEGACY_SMALL.read_text())
_LEGACY["builds"] = [{"buildid": 1, "started_at": 1.5, "complete_at": None}]
_LEGACY_PATHS = [p for p in _leaf_paths(_LEGACY) if p]


@_FUZZ_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(_LEGACY_PATHS), _JSON | st.integers(-2, 30)),
                min_size=1, max_size=4))
def test_fuzz_legacy_members(changes):
    doc = copy.deepcopy(_LEGACY)
    for path, value in changes:
        target = doc
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    _load_bytes(json.dumps(doc).encode())


def test_legacy_builds_are_converted_and_odd_ones_tolerated(tmp_path):
    doc = json.loads(LEGACY_SMALL.read_text())
    doc["builds"] = [
        {"buildid": 7, "builderid": 1, "number": 3, "started_at": 1471718737.5,
         "complete_at": None, "results": None, "state_string": "building"},
        {"buildid": 8, "started_at": 1e308, "complete_at": 10 ** 400},
        "not a build",
    ]
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(doc))
    builds = load(path).builds
    assert builds[0] == {"buildid": 7, "builderid": 1, "builder": "", "number": 3,
                         "started_ms": 1471718737500, "complete_ms": None, "results": None,
                         "state_string": "building", "steps": []}
    assert (builds[1]["started_ms"], builds[1]["complete_ms"]) == (None, None)
    assert len(builds) == 2


# --------------------------------------------------------------------------
# Memory and time linear in the file (issue 16: a 91 KB chain of 20,000
# stacks took top 34 s and 1.6 GB)


def _peak_bytes(work) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("n_frames", [None, 3])  # distinct frames; deep recursion of 3
def test_top_of_a_chain_is_linear_in_memory(tmp_path, n_frames):
    """load() + top_functions() on chains of N and 4N stacks: a linear
    reader's peak grows about 4x, a quadratic one (every stack's path kept)
    16x. Memory is counted by tracemalloc, not the clock."""
    from profile_helpers import make_chain

    peaks = {}
    for n in (2000, 8000):
        path = write_gz(tmp_path / f"chain{n}.json.gz", make_chain(n, n_frames=n_frames))

        def work():
            profile = load(path)
            stats, samples, _ = exports.top_functions(profile)
            assert samples == n
            root = min(stats, key=lambda s: s.frame.line)
            assert root.total_samples == n  # the root is on every stack, counted once
        peaks[n] = _peak_bytes(work)
    assert peaks[8000] < 6 * peaks[2000], peaks


def test_stack_path_keeps_nothing(v1_file):
    profile = load(v1_file)
    paths = [profile.stack_path(s) for s in range(len(profile.stack_parent))]
    assert paths == [profile.stack_path(s) for s in range(len(profile.stack_parent))]
    assert not any(isinstance(v, dict) and v for v in vars(profile).values()
                   if v is not profile.meta and v is not profile.stats)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5), st.integers(0, 3)),
                min_size=1, max_size=60))
def test_top_functions_matches_the_path_definition(nodes):
    """The linear top_functions against the definition: a sample counts in
    the total of every distinct frame on its path."""
    doc = make_v1()
    parent, frame = [], []
    for i, (p, f, _) in enumerate(nodes):
        parent.append(p % (i + 1) - 1)  # -1 .. i - 1
        frame.append(f % len(doc["frames"]))
    samples = [(i, t % 2) for i, (_, _, t) in enumerate(nodes) for _ in range(t)]
    doc["stacks"] = {"parent": parent, "frame": frame}
    doc["samples"] = {"dt": [1] * len(samples), "thread": [t for _, t in samples],
                      "stack": [s for s, _ in samples], "weight": [10000 + s for s, _ in samples]}
    profile = loads(gz(doc))
    stats, total, weight = exports.top_functions(profile)
    expected_total = collections.Counter()
    expected_self = collections.Counter()
    for i, (stack, _) in enumerate(samples):
        count = profile.sample_count[i]  # about 1: 10 ms and a little at 100 Hz
        expected_self[profile.stack_frame[stack]] += count
        for f in set(profile.stack_path(stack)):
            expected_total[f] += count
    by_frame = {profile.frames.index(s.frame): s for s in stats}
    assert {f: s.total_samples for f, s in by_frame.items()} == dict(expected_total)
    assert {f: s.self_samples for f, s in by_frame.items() if s.self_samples} == dict(expected_self)
    assert total == sum(profile.sample_count) and weight == sum(10000 + s for s, _ in samples)


def test_lone_surrogates_become_replacement_characters(tmp_path):
    doc = make_v1()
    doc["frames"][0][0] = "a\udfffb"
    doc["threads"][1]["name"] = "\ud800"
    doc["files"][1] = "\udc80.py"
    doc["frames"][1][0] = "pair \ud83d\ude00 kept"
    profile = load(write_gz(tmp_path / "s.json.gz", doc))
    assert profile.frames[0].name == "a\ufffdb" and profile.threads[1].name == "\ufffd"
    assert profile.frames[1].name == "pair \U0001f600 kept"
    assert "\ufffd.py" in {f.file for f in profile.frames}
    exports.to_collapsed(profile).encode("utf-8")  # encodes: no surrogate left
