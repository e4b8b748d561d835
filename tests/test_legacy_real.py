"""The reader, `bbprofiler top` and both exports on real files of the
unmodified buildbot_profiler 1.3.1 plugin (Buildbot 4.3, CPython 3.11; see
tests/fixtures/legacy/README.md). Every expected value is worked out here
from the raw JSON, independently of the reader."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import jsonschema
import pytest

from profiler_service import cli, exports
from profiler_service.reading import LEGACY_FORMAT, load, summarize
from profile_helpers import LEGACY_MODES, LEGACY_REAL, SPEEDSCOPE_SCHEMA

each_file = pytest.mark.parametrize("path", LEGACY_REAL, ids=[p.name for p in LEGACY_REAL])


def raw(path: Path) -> dict:
    return json.loads(path.read_text())


def raw_samples(doc: dict) -> list[tuple[float, str, list[int]]]:
    """(time s, thread id, frame ids innermost first) per non-empty stack, in file order."""
    return [(s["time"], tid, stack) for s in doc["samples"]
            for tid, stack in s["threads"].items() if stack]


def backwards_steps(doc: dict) -> list[int]:
    """Indexes i where sample i + 1 is earlier than sample i."""
    times = [s["time"] for s in doc["samples"]]
    return [i for i in range(len(times) - 1) if times[i + 1] < times[i]]


def frame_of(doc: dict, frame_id: int) -> tuple[str, str, int]:
    """(function, file tail, line or 0 if null) of a raw 1.x frame."""
    file, line, function = doc["frames"][frame_id]
    return function, file, 0 if line is None else line


@pytest.fixture(scope="module")
def speedscope_schema():
    return json.loads(SPEEDSCOPE_SCHEMA.read_text())


def run(capsys, *argv) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_every_mode_and_both_quirks_are_in_the_fixtures():
    # Otherwise the tests below would not exercise what real files carry.
    assert {p.name.split("_")[0] for p in LEGACY_REAL} == set(LEGACY_MODES)
    docs = [raw(p) for p in LEGACY_REAL]
    assert any(f[1] is None for d in docs for f in d["frames"])
    assert any(backwards_steps(d) for d in docs)
    assert all("mode" not in d and d["builds"] for d in docs)


@each_file
def test_load(path):
    doc = raw(path)
    p = load(path)
    assert p.format == LEGACY_FORMAT and p.mode is None
    assert p.frequency == doc["frequency"] and p.meta["gatherperiod"] == doc["gatherperiod"]
    assert [tuple(f) for f in p.frames] == [frame_of(doc, i) for i in range(len(doc["frames"]))]
    samples = raw_samples(doc)
    assert len(p) == len(samples)
    assert set(p.sample_weight_us) == {round(1_000_000 / doc["frequency"])}
    # Samples in time order (ties in file order), whatever order the file has.
    in_order = sorted(samples, key=lambda s: s[0])
    assert list(p.sample_time_ms) == [round(t * 1000) for t, _, _ in in_order]
    assert [p.threads[i].ident for i in p.sample_thread] == [int(tid) for _, tid, _ in in_order]
    assert [p.stack_path(s) for s in p.sample_stack] == [tuple(reversed(st)) for _, _, st in in_order]
    times = [s["time"] for s in doc["samples"]]
    assert p.start_ms == round(min(times) * 1000)
    assert [b["buildid"] for b in p.builds] == [b["buildid"] for b in doc["builds"]]
    assert [b["started_ms"] for b in p.builds] == [b["started_at"] * 1000 for b in doc["builds"]]
    summary = summarize(path)  # what the viewer's listing shows
    assert (summary["error"], summary["samples"], summary["start_ms"]) == (None, len(samples), p.start_ms)


@each_file
def test_top(capsys, path):
    doc = raw(path)
    status, out, err = run(capsys, "top", path, "-n", "3", "--width", "120")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{path.name}: ") and lines[0].endswith(f"{doc['frequency']} Hz")
    n = len(raw_samples(doc))
    assert lines[1].startswith(f"{n} samples, ")
    leaves = collections.Counter(frame_of(doc, stack[0]) for _, _, stack in raw_samples(doc))
    (function, file, line), count = leaves.most_common(1)[0]
    best = [f for f, c in leaves.items() if c == count]
    row = lines[3].split()
    assert int(row[2]) == count and row[4] in {f[0] for f in best}
    assert "None" not in out and not any(word.endswith(":0") for word in out.split())


@each_file
def test_export_speedscope(tmp_path, path, speedscope_schema):
    doc = raw(path)
    out = tmp_path / "out.speedscope.json"
    assert cli.main(["export", str(path), "-f", "speedscope", "-o", str(out)]) == 0
    speedscope = json.loads(out.read_text())
    jsonschema.validate(speedscope, speedscope_schema)
    n = len(raw_samples(doc))
    assert sum(speedscope["profiles"][0]["weights"]) == n * round(1_000_000 / doc["frequency"])
    threads = {tid for _, tid, _ in raw_samples(doc)}
    assert len(speedscope["profiles"]) == 1 + len(threads)
    # The file's frames first, in order; a null line is left out, not 0.
    shared = speedscope["shared"]["frames"][:len(doc["frames"])]
    assert shared == [{"name": f, "file": file, **({"line": line} if line is not None else {})}
                      for file, line, f in doc["frames"]]


@each_file
def test_export_collapsed(tmp_path, path):
    doc = raw(path)
    out = tmp_path / "out.folded"
    assert cli.main(["export", str(path), "-f", "collapsed", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    expected = collections.Counter()
    for _, tid, stack in raw_samples(doc):
        labels = []
        for frame_id in reversed(stack):
            function, file, line = frame_of(doc, frame_id)
            labels.append(f"{function} ({file}:{line})" if line else f"{function} ({file})")
        expected[";".join([f"thread {tid}"] + labels)] += 1
    got = collections.Counter()
    for text in lines:
        stack, _, count = text.rpartition(" ")
        got[stack] += int(count)
    assert got == expected
    assert "None" not in out.read_text()


def test_a_null_line_reads_as_line_zero_and_shows_no_number():
    path = next(p for p in LEGACY_REAL if any(f[1] is None for f in raw(p)["frames"]))
    doc = raw(path)
    index = next(i for i, f in enumerate(doc["frames"]) if f[1] is None)
    frame = load(path).frames[index]
    assert (frame.name, frame.file, frame.line) == (doc["frames"][index][2], doc["frames"][index][0], 0)
    assert frame.label == f"{frame.name} ({frame.file})"


def test_a_range_across_backwards_times_selects_by_time(capsys):
    """A boundary between two samples the file has out of order: the range
    holds the samples whose times are in it, not those after it in the file."""
    path = next(p for p in LEGACY_REAL if backwards_steps(raw(p)))
    doc = raw(path)
    i = backwards_steps(doc)[0]
    later, earlier = doc["samples"][i]["time"], doc["samples"][i + 1]["time"]
    start_s = min(s["time"] for s in doc["samples"])
    cut = (later + earlier) / 2 - start_s  # seconds after the period's start
    p = load(path)
    from_cut = sum(1 for t, _, _ in raw_samples(doc) if round(t * 1000) >= p.start_ms + cut * 1000)
    before_cut = len(p) - from_cut
    assert len(p.select(start_ms=p.start_ms + cut * 1000)) == from_cut
    status, out, _ = run(capsys, "export", path, "-f", "collapsed", "--from", f"{cut}")
    assert status == 0 and sum(int(line.rsplit(" ", 1)[1]) for line in out.splitlines()) == from_cut
    status, out, _ = run(capsys, "export", path, "-f", "collapsed", "--to", f"{cut}")
    assert status == 0 and sum(int(line.rsplit(" ", 1)[1]) for line in out.splitlines()) == before_cut
