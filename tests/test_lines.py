"""The line of every frame (format v3, docs/FORMAT.md "Lines"): the real
sampler on workloads whose split over lines is known, every output by line
(Period.collapsed, bbprofiler top --lines, export --lines in each format,
the real pprof CLI), the function views unchanged, and the reader's folding
on hand-made documents (stalls, bad input, older files)."""

from __future__ import annotations

import gzip
import inspect
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import workloads  # noqa: E402
from profile_helpers import LEGACY_SMALL, write_gz  # noqa: E402
from profiler_service import Profiler, cli  # noqa: E402
from profiler_service.exports import to_collapsed, to_speedscope, top_functions  # noqa: E402
from profiler_service.reading import ProfileError, load, loads  # noqa: E402
from test_pprof import needs_pprof, run_pprof  # noqa: E402

WORKLOADS = workloads.__file__
POINTS = 6  # percentage points of sampling noise allowed on a known split


def line_of(function, marker: str) -> int:
    """The line of `function`'s source that carries the comment `marker`."""
    source, first = inspect.getsourcelines(function)
    return first + next(i for i, text in enumerate(source) if marker in text)


THREE_QUARTERS = line_of(workloads.lines_hot, "LINE_THREE_QUARTERS")
ONE_QUARTER = line_of(workloads.lines_hot, "LINE_ONE_QUARTER")
HOT_FIRST = workloads.lines_hot.__code__.co_firstlineno


@pytest.fixture(scope="module")
def two_lines(tmp_path_factory):
    """A file of the real sampler and writer on two_hot_lines (prof, 400 Hz)."""
    path = tmp_path_factory.mktemp("lines") / "prof_lines.json.gz"
    with Profiler(frequency=400, mode="prof") as profiler:
        workloads.two_hot_lines(2.5)  # 2.5 s of CPU: more samples, less noise than 1.5 s
    profiler.period.write(str(path), builds=[], meta={})
    return path, profiler.period


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def hot_line_shares(rows: dict[int, float]) -> dict[int, float]:
    """Percent of lines_hot's time per line, from {line: time} of its lines."""
    total = sum(rows.values())
    return {line: 100 * value / total for line, value in rows.items()}


def test_the_file_records_each_line_and_the_known_split(two_lines):
    path, _ = two_lines
    doc = json.loads(gzip.decompress(path.read_bytes()))
    assert doc["version"] == 3
    stacks = doc["stacks"]
    assert len(stacks["line"]) == len(stacks["frame"]) == len(stacks["parent"])
    # Weight per line of lines_hot at the leaf, read with json alone.
    names = [f[0] for f in doc["frames"]]
    weight: Counter = Counter()
    for stack, w in zip(doc["samples"]["stack"], doc["samples"]["weight"]):
        if names[stacks["frame"][stack]] == "lines_hot":
            weight[stacks["line"][stack]] += w
    shares = hot_line_shares(weight)
    assert abs(shares[THREE_QUARTERS] - 75) < POINTS and abs(shares[ONE_QUARTER] - 25) < POINTS, shares
    # Nearly all of it on the two loop bodies (the rest: the for lines).
    assert shares[THREE_QUARTERS] + shares[ONE_QUARTER] > 90, shares


def test_the_function_view_is_unchanged(two_lines):
    path, period = two_lines
    profile = load(path)
    hot = [f for f in profile.frames if f.name == "lines_hot"]
    assert len(hot) == 1 and hot[0].line == HOT_FIRST
    # One node per function path, as a v2 file had.
    paths = [profile.stack_path(s) for s in range(len(profile.stack_parent))]
    assert len(paths) == len(set(paths))
    assert len(profile.lines.parent) > len(profile.stack_parent)
    # The reader's fold and the C writer's collapsed text agree.
    assert Counter(to_collapsed(profile).splitlines()) == Counter(period.collapsed().splitlines())


def test_every_output_by_line_agrees(two_lines, capsys, tmp_path):
    path, period = two_lines
    lines = load(path).by_lines()
    assert lines.by_line
    # top --lines --function: the function's hottest lines, with its split.
    code, out, _ = run_cli(capsys, "top", path, "--lines", "--function", "lines_hot", "-n", "50")
    assert code == 0 and ", by line" in out.splitlines()[0]
    rows = {}
    for row in out.splitlines()[3:]:
        self_pct, _, _, _, name, place = row.split()
        assert name == "lines_hot", row
        rows[int(place.rsplit(":", 1)[1])] = float(self_pct)
    shares = hot_line_shares(rows)
    assert abs(shares[THREE_QUARTERS] - 75) < POINTS and abs(shares[ONE_QUARTER] - 25) < POINTS, out
    ranked = out.splitlines()[3].split()
    assert ranked[5] == f"{WORKLOADS}:{THREE_QUARTERS}", out  # hottest first

    # The same self time per line in top_functions, collapsed (C and Python), speedscope.
    stats, _, weight = top_functions(lines)
    by_top = {s.frame.line: s.self_weight_us for s in stats if s.frame.name == "lines_hot"}
    from_c = Counter()
    for row in period.collapsed(weighted=True, lines=True).splitlines():
        stack, _, value = row.rpartition(" ")
        leaf = stack.rsplit(";", 1)[1]
        if leaf.startswith("lines_hot ("):
            from_c[int(leaf.rsplit(":", 1)[1].rstrip(")"))] += int(value)
    assert from_c == by_top
    code, out, _ = run_cli(capsys, "export", path, "-f", "collapsed", "--lines", "--weights")
    assert code == 0 and out == to_collapsed(lines, weights=True)
    assert Counter(out.splitlines()) == Counter(period.collapsed(weighted=True, lines=True).splitlines())
    # speedscope keeps a frame's name, file and line apart: one frame per line.
    frames = to_speedscope(lines)["shared"]["frames"]
    hot_lines = [f["line"] for f in frames if f["name"] == "lines_hot"]
    assert len(hot_lines) == len(set(hot_lines)) and {THREE_QUARTERS, ONE_QUARTER} <= set(hot_lines), frames
    assert [f["line"] for f in to_speedscope(load(path))["shared"]["frames"] if f["name"] == "lines_hot"] == [HOT_FIRST]


@needs_pprof
def test_pprof_reads_lines_and_functions(two_lines, capsys, tmp_path):
    path, _ = two_lines
    out = tmp_path / "lines.pb.gz"
    code, _, err = run_cli(capsys, "export", path, "-f", "pprof", "--lines", "-o", out)
    assert code == 0, err
    by_line = run_pprof("-top", "-lines", "-unit=ns", "-nodefraction=0", str(out))
    rows = {}
    for row in by_line.splitlines():
        if " lines_hot " in f" {row} ":
            flat = float(row.split()[1].rstrip("%"))
            rows[int(row.rsplit(":", 1)[1])] = flat
    shares = hot_line_shares(rows)
    assert abs(shares[THREE_QUARTERS] - 75) < POINTS and abs(shares[ONE_QUARTER] - 25) < POINTS, by_line
    # By function, pprof sums the lines into one lines_hot row.
    by_function = run_pprof("-top", "-functions", "-unit=ns", "-nodefraction=0", str(out))
    hot_rows = [row for row in by_function.splitlines() if row.split()[-1:] == ["lines_hot"]]
    assert len(hot_rows) == 1, by_function
    assert float(hot_rows[0].split()[1].rstrip("%")) == pytest.approx(sum(rows.values()), abs=0.05)


def test_a_recursive_line_counts_once_in_total(capsys, tmp_path):
    path = tmp_path / "prof_recursion.json.gz"
    with Profiler(frequency=400, mode="prof") as profiler:
        end = time.thread_time() + 0.6
        while time.thread_time() < end:
            workloads.recursive_line(5, 20000)
    profiler.period.write(str(path), builds=[], meta={})
    stats, samples, weight = top_functions(load(path).by_lines())
    line = line_of(workloads.recursive_line, "LINE_RECURSION")
    recursion = [s for s in stats if s.frame.name == "recursive_line" and s.frame.line == line]
    assert len(recursion) == 1
    # On the stack of nearly every sample, five times over: at most 100 %.
    assert 90 <= 100 * recursion[0].total_weight_us / weight <= 100
    assert recursion[0].self_weight_us == 0


# ---- the reader, on hand-made documents ------------------------------------------


def v3_document() -> dict:
    """main (line 40) calls hot, which runs on line 12 seven times for three on line 15."""
    return {
        "format": "buildbot-profiler", "version": 3,
        "meta": {"start_ms": 1_000_000, "end_ms": 1_010_000, "mode": "prof", "frequency": 100},
        "stats": {}, "threads": [{"ident": 1, "native_id": 2, "name": "MainThread", "samples": 10, "weight": 100000}],
        "files": ["app.py"], "frames": [["main", 0, 30], ["hot", 0, 10]],
        "stacks": {"parent": [-1, 0, 0, -1, 3], "frame": [0, 1, 1, 0, 1], "line": [40, 12, 15, 41, 12]},
        "samples": {"dt": [10] * 10, "thread": [0] * 10, "stack": [1] * 6 + [2] * 3 + [4],
                    "weight": [10000] * 10},
        "load": {"t": [], "cpu_permille": [], "rss_kb": []}, "builds": [],
        "stalls": {"threshold_us": 250000, "dropped": 0, "items": [{
            "start": 10, "duration_us": 300000, "sampled_us": 20000, "main_cpu_us": 20000,
            "samples_dropped": 0, "samples": {"t": [260, 270], "thread": [0, 0], "stack": [2, 4],
                                              "busy_thread": [-1, -1], "busy_stack": [-1, -1]}}]},
    }


def test_the_reader_folds_lines_into_functions():
    profile = loads(json.dumps(v3_document()).encode(), source="v3.json")
    assert [f.label for f in profile.frames] == ["main (app.py:30)", "hot (app.py:10)"]
    assert list(profile.stack_parent) == [-1, 0] and list(profile.stack_frame) == [0, 1]
    assert list(profile.sample_stack) == [1] * 10
    assert list(profile.stalls[0].sample_stack) == [1, 1]  # stall stacks by function too
    assert to_collapsed(profile) == "MainThread;main (app.py:30);hot (app.py:10) 10\n"
    lines = profile.by_lines()
    assert to_collapsed(lines) == (
        "MainThread;main (app.py:40);hot (app.py:12) 6\n"
        "MainThread;main (app.py:40);hot (app.py:15) 3\n"
        "MainThread;main (app.py:41);hot (app.py:12) 1\n"
    )
    stats, _, weight = top_functions(lines)
    shares = {s.frame.label: (100 * s.self_weight_us / weight, 100 * s.total_weight_us / weight) for s in stats}
    assert shares == {"hot (app.py:12)": (70.0, 70.0), "hot (app.py:15)": (30.0, 30.0),
                      "main (app.py:40)": (0.0, 90.0), "main (app.py:41)": (0.0, 10.0)}


def test_a_bad_line_array_is_refused():
    doc = v3_document()
    doc["stacks"]["line"] = [40, 12]
    with pytest.raises(ProfileError, match="stacks.*line 2"):
        loads(json.dumps(doc).encode(), source="bad.json")
    doc["stacks"]["line"] = [40, 12, 15, -1, 12]
    with pytest.raises(ProfileError, match=r"stacks.line\[3\] is -1"):
        loads(json.dumps(doc).encode(), source="bad.json")
    # Without the member (the schema allows it), a file without lines.
    del doc["stacks"]["line"]
    profile = loads(json.dumps(doc).encode(), source="nolines.json")
    assert not profile.has_lines and list(profile.stack_parent) == [-1, 0, 0, -1, 3]


def test_older_files_say_they_have_no_lines(capsys, tmp_path):
    doc = v3_document()
    doc["version"] = 2
    del doc["stacks"]["line"]
    doc["stacks"] = {"parent": [-1, 0], "frame": [0, 1]}
    doc["samples"]["stack"] = [1] * 10
    for item in doc["stalls"]["items"]:
        item["samples"]["stack"] = [1, 1]
    path = write_gz(tmp_path / "v2.json.gz", doc)
    assert not load(path).has_lines
    code, out, err = run_cli(capsys, "top", path, "--lines")
    assert code == 1 and out == ""
    assert err == (f"bbprofiler: --lines: {path} has no lines (format version 2; lines are recorded "
                   "since format version 3, buildbot-profiler 2.0)\n")
    # Function-level, as before.
    code, out, _ = run_cli(capsys, "top", path)
    assert code == 0 and "hot" in out
    # 1.x files recorded the sampled line of every frame: by line already.
    legacy = load(LEGACY_SMALL)
    assert legacy.has_lines and legacy.by_lines() is legacy
    code, out, _ = run_cli(capsys, "top", LEGACY_SMALL, "--lines", "-n", "3")
    assert code == 0 and len(out.splitlines()) >= 4


def test_function_needs_lines_and_names_a_function(capsys, two_lines):
    path, _ = two_lines
    code, _, err = run_cli(capsys, "top", path, "--function", "lines_hot")
    assert code == 1 and err == "bbprofiler: --function needs --lines (it lists one function's lines)\n"
    code, _, err = run_cli(capsys, "top", path, "--lines", "--function", "no_such")
    assert code == 1 and err == "bbprofiler: --function 'no_such': no such function in this selection\n"


def test_the_console_script_ranks_lines(two_lines):
    path, _ = two_lines
    bbprofiler = Path(sys.executable).with_name("bbprofiler")
    result = subprocess.run([bbprofiler, "top", path, "--lines", "-n", "1", "--width", "400"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[3].split()[4:] == ["lines_hot", f"{WORKLOADS}:{THREE_QUARTERS}"]



def test_lines_can_be_left_out(tmp_path):
    path = tmp_path / "prof_nolines.json.gz"
    with Profiler(frequency=400, mode="prof", lines=False) as profiler:
        workloads.two_hot_lines(0.3)
    profiler.period.write(str(path), builds=[], meta={})
    doc = json.loads(gzip.decompress(path.read_bytes()))
    assert doc["version"] == 3 and set(doc["stacks"]["line"]) == {0}
    # Line views then show each function once, on its first line.
    lines = load(path).by_lines()
    assert [f.line for f in lines.frames if f.name == "lines_hot"] == [HOT_FIRST]
    with pytest.raises(TypeError, match="lines must be True or False"):
        Profiler(lines=1)


def test_merged_files_go_by_line_when_each_file_does():
    from profiler_service.merge import merge

    one = loads(json.dumps(v3_document()).encode(), source="a.json")
    two = loads(json.dumps(v3_document()).encode(), source="b.json")
    merged = merge([one.by_lines(), two.by_lines()])
    assert merged.by_line and merged.by_lines() is merged
    assert to_collapsed(merged) == (
        "MainThread;main (app.py:40);hot (app.py:12) 12\n"
        "MainThread;main (app.py:40);hot (app.py:15) 6\n"
        "MainThread;main (app.py:41);hot (app.py:12) 2\n"
    )
    with pytest.raises(ValueError, match="a merge is by function"):
        merge([one, two]).by_lines()
