"""Period.write: real periods written by the C writer, read back with the
standard library (gzip + json) and validated against the shipped schema; the
GIL is released while writing; failures (missing or unwritable directory, a
full disk, a SIGKILL mid-write, bad builds/meta) raise clear errors and leave
no file behind, and a retry works."""

from __future__ import annotations

import collections
import errno
import fcntl
import gzip
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from profiler_service import Profiler, _core
from profiler_service.reading.model import sample_counts

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "profiler_service" / "schema" / "profile-v3.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


# ---- workloads with known hot functions --------------------------------------


def writer_hot_leaf(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def writer_hot_middle() -> int:
    return writer_hot_leaf(20000)


def writer_cold_leaf() -> int:
    total = 0
    for i in range(2000):
        total += i
    return total


def hot_and_cold(cpu_seconds: float) -> None:
    """About 40 parts of CPU in writer_hot_leaf for one in writer_cold_leaf."""
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        writer_hot_middle()
        writer_cold_leaf()


def recurse_then_spin(depth: int, cpu_seconds: float) -> None:
    if depth > 0:
        return recurse_then_spin(depth - 1, cpu_seconds)
    hot_and_cold(cpu_seconds)


# ---- helpers --------------------------------------------------------------------


def read_profile(path: Path) -> dict:
    with gzip.open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def label(doc: dict, frame_id: int, at_line: int = 0) -> str:
    """The collapsed-stack label of a frame, as Period.collapsed() renders it
    (with `at_line`, the line it was on: collapsed(lines=True))."""
    name, file_index, line = doc["frames"][frame_id]
    line = at_line or line
    clean = lambda s: s.replace(";", ",").replace("\n", " ").replace("\r", " ")  # noqa: E731
    file = doc["files"][file_index]
    if file == "":  # synthetic frames: "[truncated]", "[stack table full]"
        return clean(name)
    return f"{clean(name)} ({clean(file)}:{line})"


def collapsed_from_doc(doc: dict, lines: bool = False) -> collections.Counter:
    """Sample count per 'thread;root;...;leaf', rebuilt from the file alone
    (the count of a sample: ``sample_counts``, docs/FORMAT.md), by function
    or with `lines` by line."""
    parent, frame = doc["stacks"]["parent"], doc["stacks"]["frame"]
    at_line = doc["stacks"]["line"] if lines else [0] * len(frame)
    counts: collections.Counter = collections.Counter()
    samples = doc["samples"]
    sample_count = sample_counts(len(doc["threads"]), samples["thread"], samples["weight"],
                                 doc["meta"]["frequency"])
    for thread, stack, count in zip(samples["thread"], samples["stack"], sample_count):
        path = []
        node = stack
        while node != -1:
            path.append(label(doc, frame[node], at_line[node]))
            node = parent[node]
        if count:
            counts[";".join([doc["threads"][thread]["name"], *reversed(path)])] += count
    return counts


def collapsed_from_period(period, lines: bool = False) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for line in period.collapsed(lines=lines).splitlines():
        stack, _, count = line.rpartition(" ")
        counts[stack] += int(count)
    return counts


def fds_into(directory: Path) -> list[str]:
    """Targets of this process's descriptors that lie in `directory`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target == str(directory) or target.startswith(str(directory) + "/"):
            found.append(target)
    return found


BUILDS = [
    {
        "buildid": 12, "builderid": 1, "builder": "runtests", "number": 7,
        "started_ms": 1764100100000, "complete_ms": 1764100160000, "results": 0,
        "state_string": "build successful",
        "steps": [{"number": 0, "name": "shell \u00e9\u4e2d", "started_ms": 1764100100100,
                   "complete_ms": 1764100159000, "results": 0}],
    },
    {
        "buildid": 13, "builderid": 2, "builder": "lint", "number": 1,
        "started_ms": 1764100200000, "complete_ms": None, "results": None,
        "state_string": None, "steps": [],
    },
]

META = {
    "python": platform.python_version(),
    "platform": platform.platform(),
    "gatherperiod": 1800,
    "service": "test_writer",
    "ratio": 0.25,
}


@pytest.fixture(scope="module")
def hot_period():
    """One second of CPU in the main thread, hot_and_cold."""
    with Profiler(frequency=250, mode="virtual") as profiler:
        hot_and_cold(1.0)
    return profiler.period


@pytest.fixture(scope="module")
def busy_period():
    """Four busy threads at different depths sampled on the wall clock."""
    stop = time.monotonic() + 1.0

    def worker(depth):
        while time.monotonic() < stop:
            recurse_then_spin(depth, 0.05)

    threads = [threading.Thread(target=worker, args=(d,), name=f"busy-{d}") for d in (3, 7, 11)]
    with Profiler(frequency=1000, mode="real") as profiler:
        for t in threads:
            t.start()
        worker(0)
        for t in threads:
            t.join()
    return profiler.period


@pytest.fixture(scope="module")
def rotated_period():
    """Two seconds of the main thread at 5 kHz on the wall clock, rotated
    every 50 ms and joined again: one Period of many distinct chunks."""
    chunks = []
    with Profiler(frequency=5000, mode="real") as profiler:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            recurse_then_spin(5, 0.05)
            chunks.append(profiler.rotate())
    chunks.append(profiler.period)
    joined = _core.concat(chunks)
    assert joined.samples == sum(chunk.samples for chunk in chunks)
    return joined


# ---- round trip -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_round_trip_matches_period(tmp_path, hot_period):
    path = tmp_path / "prof_20261125T200000Z.json.gz"
    hot_period.write(path, builds=BUILDS, meta=META)
    assert os.listdir(tmp_path) == [path.name]

    doc = read_profile(path)
    VALIDATOR.validate(doc)
    assert doc["format"] == "buildbot-profiler" and doc["version"] == 3
    assert doc["builds"] == BUILDS
    meta = doc["meta"]
    assert {k: meta[k] for k in META} == META
    assert meta["mode"] == "virtual" and meta["frequency"] == 250
    assert meta["weight_unit"] == "us"
    assert meta["pid"] == os.getpid()
    assert meta["hostname"] == platform.node()
    assert meta["cpu_count"] == os.cpu_count()
    assert abs(meta["start_ms"] - hot_period.start_time * 1000) <= 1
    assert meta["end_ms"] - meta["start_ms"] == pytest.approx(hot_period.duration * 1000, abs=2)
    assert meta["start_utc"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                              time.gmtime(meta["start_ms"] // 1000))
    assert doc["stats"] == hot_period.stats

    samples = doc["samples"]
    n = len(samples["dt"])
    assert n == hot_period.samples > 100
    assert len(samples["thread"]) == len(samples["stack"]) == len(samples["weight"]) == n
    assert sum(samples["dt"]) <= meta["end_ms"] - meta["start_ms"]
    # threads[].samples are sampling intervals, computed from the weights.
    counts = sample_counts(len(doc["threads"]), samples["thread"], samples["weight"], meta["frequency"])
    assert [t["samples"] for t in doc["threads"]] == [
        sum(c for c, t in zip(counts, samples["thread"]) if t == i) for i in range(len(doc["threads"]))]
    assert sum(t["weight"] for t in doc["threads"]) == sum(samples["weight"])
    assert [t["name"] for t in doc["threads"]] == [t["name"] for t in hot_period.threads]
    parents = doc["stacks"]["parent"]
    assert len(parents) == hot_period.nodes
    assert all(p < i for i, p in enumerate(parents))
    assert len(doc["frames"]) == hot_period.frames
    assert len(doc["load"]["t"]) == len(hot_period.load)

    # The same stacks and counts as the period's own collapsed text.
    from_file = collapsed_from_doc(doc)
    assert from_file == collapsed_from_period(hot_period)

    # The hot function dominates, under its caller; the cold one is there.
    leaf = collections.Counter()
    for stack, count in from_file.items():
        leaf[stack.rsplit(";", 1)[-1].split(" (")[0]] += count
    assert leaf.most_common(1)[0][0] == "writer_hot_leaf"
    assert leaf["writer_hot_leaf"] > 0.7 * n
    assert leaf["writer_hot_leaf"] > 5 * leaf["writer_cold_leaf"]
    hot_stacks = [s for s in from_file if s.endswith(f"writer_hot_leaf ({__file__}:{writer_hot_leaf.__code__.co_firstlineno})")]
    assert hot_stacks and all("writer_hot_middle (" in s for s in hot_stacks)

    # By line: the same counts, split over the lines each frame was on.
    by_line = collapsed_from_doc(doc, lines=True)
    assert by_line == collapsed_from_period(hot_period, lines=True)
    assert sum(by_line.values()) == sum(from_file.values())
    first = writer_hot_leaf.__code__.co_firstlineno
    loop = {f"writer_hot_leaf ({__file__}:{first + 2})", f"writer_hot_leaf ({__file__}:{first + 3})"}
    in_hot = [(stack, count) for stack, count in by_line.items() if "writer_hot_leaf (" in stack]
    # Besides the loop: the return line, and the def line, where a frame that
    # was just entered stands (its RESUME, which checks the eval breaker, so a
    # signal's walk can run there; CPython's own f_lineno says the same).
    edges = {f"writer_hot_leaf ({__file__}:{first})", f"writer_hot_leaf ({__file__}:{first + 4})"}
    assert {stack.rsplit(";", 1)[-1] for stack, _ in in_hot} <= loop | edges
    assert sum(c for s, c in in_hot if s.rsplit(";", 1)[-1] in loop) >= 0.95 * leaf["writer_hot_leaf"]
    # A caller's line is the line of its call.
    call = f"writer_hot_middle ({__file__}:{writer_hot_middle.__code__.co_firstlineno + 1});writer_hot_leaf"
    assert all(call in stack for stack, _ in in_hot), in_hot[:3]


@pytest.mark.timeout(60)
def test_multithreaded_period_and_levels(tmp_path, busy_period):
    fast, small = tmp_path / "fast.json.gz", tmp_path / "small.json.gz"
    busy_period.write(str(fast), level=1)
    busy_period.write(os.fsencode(small), level=9)
    one, nine = read_profile(fast), read_profile(small)
    VALIDATOR.validate(one)
    assert one == nine  # same document, different compression
    assert one["builds"] == [] and one["meta"]["mode"] == "real"
    names = [t["name"] for t in one["threads"]]
    assert names == [t["name"] for t in busy_period.threads] and len(names) >= 2
    assert collapsed_from_doc(one) == collapsed_from_period(busy_period)
    assert sorted(os.listdir(tmp_path)) == ["fast.json.gz", "small.json.gz"]


@pytest.mark.timeout(60)
def test_period_can_be_written_twice_over_itself(tmp_path, hot_period):
    path = tmp_path / "p.json.gz"
    hot_period.write(path, builds=BUILDS[:1])
    first = read_profile(path)
    hot_period.write(path, builds=[])
    second = read_profile(path)
    assert first["builds"] == BUILDS[:1] and second["builds"] == []
    first["builds"] = []
    assert first == second
    assert os.listdir(tmp_path) == ["p.json.gz"]


@pytest.mark.timeout(120)
def test_write_releases_the_gil(tmp_path, rotated_period):
    """Another Python thread runs while write() is inside the C writer.

    The forced GIL switch is pushed out of reach (sys.setswitchinterval), so
    a woken thread gets the GIL only when the main thread gives it up. The
    main thread wakes the watcher and calls write() straight away: if write()
    kept the GIL, the watcher would first run after write() returned, when
    the writer's descriptors of the target directory and of its temporary
    file are closed again. It sees them open, so it ran during the write."""
    large = rotated_period
    target = tmp_path / "big.json.gz"
    observed: list[list[str]] = []
    go = threading.Event()

    def watch():
        go.wait()
        observed.append(fds_into(tmp_path))

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        for _attempt in range(5):
            observed.clear()
            go.clear()
            watcher = threading.Thread(target=watch)
            watcher.start()
            time.sleep(0.05)  # the watcher blocks in go.wait()
            go.set()
            large.write(target, level=9)
            watcher.join()
            if observed[0]:
                break
    finally:
        sys.setswitchinterval(old_interval)
    assert observed[0], "no other thread ran while write() was in C"
    assert fds_into(tmp_path) == []
    doc = read_profile(target)
    VALIDATOR.validate(doc)
    assert len(doc["samples"]["dt"]) == large.samples


# ---- bad arguments ------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"builds": {1, 2}}, TypeError, "list"),
        ({"builds": [{1, 2}]}, TypeError, "set"),
        ({"builds": [{"buildid": float("nan")}]}, ValueError, "builds_json"),
        ({"builds": ({"buildid": 1},)}, TypeError, "list"),
        # What load() would refuse ("builds[0] is an array, expected an object").
        ({"builds": [(1, 2)]}, TypeError, r"builds\[0\] must be a dict \(a JSON object\), got tuple"),
        ({"builds": [{"buildid": 1}, ["x"]]}, TypeError, r"builds\[1\] must be a dict"),
        ({"builds": [None]}, TypeError, r"builds\[0\] must be a dict .* got NoneType"),
        ({"meta": ["python"]}, TypeError, "dict"),
        ({"meta": {"pid": 1}}, ValueError, "meta_json"),
        ({"meta": {"x": float("inf")}}, ValueError, "meta_json"),
        ({"meta": {"x": object()}}, TypeError, "object"),
        ({"level": 10}, ValueError, "level"),
        ({"level": -1}, ValueError, "level"),
    ],
)
def test_bad_builds_or_meta_leave_no_file(tmp_path, hot_period, kwargs, exc, words):
    path = tmp_path / "p.json.gz"
    with pytest.raises(exc, match=words):
        hot_period.write(path, **kwargs)
    assert os.listdir(tmp_path) == []
    hot_period.write(path)
    VALIDATOR.validate(read_profile(path))


# ---- faults ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_missing_and_unwritable_directories(tmp_path, hot_period):
    missing = tmp_path / "missing" / "p.json.gz"
    with pytest.raises(FileNotFoundError) as info:
        hot_period.write(missing)
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == missing

    # A regular file where the directory should be: refused even as root,
    # where a chmod'ed directory would still be writable.
    (tmp_path / "plain").write_text("x")
    under_file = tmp_path / "plain" / "p.json.gz"
    with pytest.raises(NotADirectoryError) as info:
        hot_period.write(str(under_file))
    assert info.value.errno == errno.ENOTDIR
    assert info.value.filename == str(under_file)

    # A directory holds the target's name: the rename fails with EISDIR.
    (tmp_path / "taken.json.gz").mkdir()
    (tmp_path / "taken.json.gz" / "inside").write_text("x")
    with pytest.raises(IsADirectoryError):
        hot_period.write(tmp_path / "taken.json.gz")

    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(PermissionError) as info:
            hot_period.write(locked / "p.json.gz")
        assert info.value.errno == errno.EACCES
        assert os.listdir(locked) == []

    assert sorted(os.listdir(tmp_path)) == ["plain", "taken.json.gz"]
    assert os.listdir(tmp_path / "taken.json.gz") == ["inside"]


CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, sys, time
    sys.path.insert(0, {tests!r})
    from test_writer import hot_and_cold
    from profiler_service import Profiler, _core

    action, path = sys.argv[1], sys.argv[2]
    with Profiler(frequency=500, mode="virtual") as profiler:
        hot_and_cold(0.3)
    period = profiler.period
    # Incompressible metadata: the file cannot shrink below a few kB.
    meta = {{"blob": os.urandom(6000).hex()}}
    if action == "full":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            period.write(path, meta=meta)
        except OSError as e:
            print(json.dumps({{"errno": e.errno, "filename": e.filename,
                               "listing": os.listdir(os.path.dirname(path))}}))
        else:
            print(json.dumps({{"errno": 0}}))
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        period.write(path, meta=meta)
        print("retry ok", flush=True)
    elif action == "loop":
        print("ready", flush=True)
        while True:
            period.write(path, meta=meta, level=9)
    """
)


def run_child(tmp_path, action, target):
    script = tmp_path.parent / f"{tmp_path.name}-child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    return subprocess.Popen([sys.executable, str(script), action, str(target)],
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.timeout(120)
def test_full_disk_leaves_nothing_and_retry_works(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "p.json.gz"
    child = run_child(tmp_path, "full", target)
    stdout, _ = child.communicate(timeout=100)
    assert child.returncode == 0, stdout
    first, second = stdout.splitlines()
    result = json.loads(first)
    assert result == {"errno": errno.EFBIG, "filename": str(target), "listing": []}
    assert second == "retry ok"
    assert os.listdir(out) == ["p.json.gz"]
    doc = read_profile(target)
    VALIDATOR.validate(doc)
    assert len(doc["meta"]["blob"]) == 12000


@pytest.mark.timeout(120)
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_sigkill_mid_write_leaves_no_partial_file(tmp_path, delay):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "p.json.gz"
    child = run_child(tmp_path, "loop", target)
    try:
        assert child.stdout.readline() == "ready\n"
        time.sleep(delay)
        # Wait until the child is inside a write: it holds a descriptor of
        # the directory or of the file being written.
        deadline = time.monotonic() + 30
        inside = False
        while not inside and time.monotonic() < deadline:
            for fd in os.listdir(f"/proc/{child.pid}/fd"):
                try:
                    target_of = os.readlink(f"/proc/{child.pid}/fd/{fd}")
                except OSError:
                    continue
                if target_of.startswith(str(out)):
                    inside = True
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert inside
    assert child.returncode == -signal.SIGKILL
    # Either nothing, or a complete file from an earlier loop: never a
    # partial one. A kill in the few system calls between giving the
    # finished, fsynced file its temporary name and renaming it over the
    # target (link, close, rename) leaves that complete file under its
    # temporary name, which the service's start-up sweep removes
    # (saving.remove_stale_temp_files); anything else is a defect.
    listing = os.listdir(out)
    leftovers = [n for n in listing if n.startswith(".p.json.gz.tmp-")]
    for name in leftovers:
        VALIDATOR.validate(read_profile(out / name))
        os.unlink(out / name)
    listing = [n for n in listing if n not in leftovers]
    assert listing in ([], ["p.json.gz"])
    if listing:
        VALIDATOR.validate(read_profile(target))

    # A fresh writer succeeds in the same directory.
    retry = run_child(tmp_path, "full", target)
    stdout, _ = retry.communicate(timeout=100)
    assert retry.returncode == 0 and stdout.endswith("retry ok\n")
    assert os.listdir(out) == ["p.json.gz"]
    VALIDATOR.validate(read_profile(target))


# ---- long names and interrupted renames ------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", [
    "p" * 240 + ".json.gz",  # 248 bytes: the temporary name would be 260
    "p" * 247 + ".json.gz",  # 255 bytes, NAME_MAX itself
    "\u00e9" * 123 + "p.json.gz",  # 255 bytes of UTF-8: the cut must not split a character
])
def test_a_name_up_to_name_max_is_written(tmp_path, hot_period, name):
    assert len(os.fsencode(name)) <= os.pathconf(tmp_path, "PC_NAME_MAX")
    target = tmp_path / name
    hot_period.write(target)
    assert os.listdir(tmp_path) == [name]
    VALIDATOR.validate(read_profile(target))


KILLED_BEFORE_RENAME = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_writer import hot_and_cold
    from profiler_service import Profiler

    with Profiler(frequency=500, mode="virtual") as profiler:
        hot_and_cold(0.2)
    print("writing", flush=True)
    profiler.period.write(sys.argv[1])
    """
)


def child_of(pid: int) -> int:
    """The pid of a child process of ``pid`` (from /proc)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                return int(entry)
    raise AssertionError(f"process {pid} has no child")


def kill_between_link_and_rename(tmp_path: Path, target: Path) -> list[str]:
    """Run a real write in a child whose rename(2) strace holds back, SIGKILL
    the child while its temporary file has a name, and return the names left
    in the target's directory."""
    script = tmp_path / "killed_before_rename.py"
    script.write_text(KILLED_BEFORE_RENAME.format(tests=str(Path(__file__).parent)))
    child = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=rename,renameat,renameat2",
         "-e", "inject=rename,renameat,renameat2:delay_enter=60000000",
         sys.executable, str(script), str(target)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
        deadline = time.monotonic() + 30
        while not os.listdir(target.parent) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # past link(2), inside the held-back rename
        os.kill(child_of(child.pid), signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    return sorted(os.listdir(target.parent))


@pytest.mark.timeout(120)
@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace (to hold the writer between link and rename)")
def test_a_kill_between_link_and_rename_leaves_an_unlocked_temporary_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "prof_20261201T120000Z.json.gz"
    [left] = kill_between_link_and_rename(tmp_path, target)
    assert left.startswith(".prof_20261201T120000Z.json.gz.tmp-") and len(left) == len(target.name) + 12
    # The dead writer's lock went with it: a cleanup may take the file.
    fd = os.open(out / left, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    from profiler_service.saving import remove_stale_temp_files

    assert remove_stale_temp_files(str(out / "prof_"), time.time(), min_age_s=0) == [str(out / left)]
    assert os.listdir(out) == []


# ---- concat -------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_concat_refuses_what_one_file_cannot_hold(hot_period, busy_period):
    # hot_period is virtual 250 Hz, busy_period real 1000 Hz.
    with pytest.raises(ValueError, match=r"one mode, frequency and max_depth: item 1 is real 1000 Hz \(depth 256\), "
                                         r"item 0 is virtual 250 Hz"):
        _core.concat([hot_period, busy_period])
    with pytest.raises(ValueError, match="item 1 is item 0 again"):
        _core.concat([busy_period, busy_period])
    with Profiler(frequency=250, mode="virtual") as profiler:
        hot_and_cold(0.1)
        first = profiler.rotate()
        hot_and_cold(0.1)
    second = profiler.period
    with pytest.raises(ValueError, match="consecutive Periods in time order: item 1 starts before item 0 ends"):
        _core.concat([second, first])
    with pytest.raises(ValueError, match="item 1 starts before item 0 ends"):
        _core.concat([first, hot_period])  # older than first, same settings
    with pytest.raises(ValueError, match="item 2 starts before item 1 ends"):
        _core.concat([first, second, first])
    joined = _core.concat([hot_period, first, second])  # in order, with gaps between runs: fine
    assert joined.samples == hot_period.samples + first.samples + second.samples


@pytest.mark.timeout(60)
def test_a_written_concat_loads(tmp_path, rotated_period):
    from profiler_service import load

    path = tmp_path / "joined.json.gz"
    rotated_period.write(path, builds=BUILDS)
    VALIDATOR.validate(read_profile(path))
    assert len(load(path).sample_stack) == rotated_period.samples
