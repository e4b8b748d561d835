"""Several profiles as one (profiler_service.merge) and ``bbprofiler diff``.

The known-answer case: spin_10 takes 10 % of the CPU in A and 30 % in B.
Hand-made files give the exact answer (+20 points); files written by the
real sampler on the real workload give it within sampling noise.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

from profiler_service import cli
from profiler_service.exports import to_collapsed, top_functions
from profiler_service.merge import MergedProfile, diff_functions, master_key, merge
from profiler_service.reading import load

sys.path.insert(0, str(Path(__file__).parent))
import workloads  # noqa: E402
from profile_helpers import COLD, HOT, MAIN, START_MS, make_v1, shares_document, write_gz  # noqa: E402

def build(buildid: int, start_ms: int, complete_ms) -> dict:
    return {"buildid": buildid, "builderid": 1, "builder": "runtests", "number": buildid,
            "started_ms": start_ms, "complete_ms": complete_ms, "results": 0 if complete_ms else None,
            "state_string": "", "steps": []}


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ten_to_thirty(tmp_path):
    a = write_gz(tmp_path / "prof_a.json.gz", shares_document(10, 90))
    b = write_gz(tmp_path / "prof_b.json.gz", shares_document(60, 140, start_ms=START_MS + 3_600_000))
    return a, b


def test_diff_ranks_the_grown_function_first_exactly(ten_to_thirty):
    a, b = (load(p) for p in ten_to_thirty)
    result = diff_functions(a, b)
    first = result.grew[0]
    assert first.frame.name == "hot"
    assert first.self_points == pytest.approx(20.0)
    assert (first.self_share_a, first.self_share_b) == (pytest.approx(0.1), pytest.approx(0.3))
    # B is twice as busy: 0.1 s -> 0.6 s of CPU, but the share counts.
    assert (first.self_us_a, first.self_us_b) == (100_000, 600_000)
    assert [r.frame.name for r in result.shrank] == ["cold"]
    assert result.shrank[0].self_points == pytest.approx(-20.0)
    assert "main" not in {r.frame.name for r in result.grew + result.shrank}  # 100 % on both sides


def test_diff_command_prints_the_table(capsys, ten_to_thirty):
    code, out, err = run(capsys, "diff", *ten_to_thirty, "--width", "120")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    grew = lines.index("GREW (most first)")
    first_row = lines[grew + 2].split()
    assert first_row[:5] == ["+20.00", "10.00", "30.00", "+20.00", "+0.50"]
    assert first_row[5] == "hot"
    shrank = lines.index("SHRANK (most first)")
    assert lines[shrank + 2].split()[:3] == ["-20.00", "90.00", "70.00"]
    assert lines[0].startswith("A: prof_a.json.gz") and "100 samples, 1.00 s of CPU" in lines[0]
    assert lines[1].startswith("B: prof_b.json.gz") and "200 samples, 2.00 s of CPU" in lines[1]


def test_diff_of_two_time_ranges_of_one_file(capsys, tmp_path):
    # The first 5 s: 10 % hot; the last 5 s: 30 % hot (samples 1 ms apart).
    samples = ([("MainThread", [MAIN, HOT], 0, 1000)] * 10 + [("MainThread", [MAIN, COLD], 0, 1000)] * 90
               + [("MainThread", [MAIN, HOT], 0, 1000)] * 30 + [("MainThread", [MAIN, COLD], 0, 1000)] * 70)
    samples = [(t, s, 5000 if i == 100 else 10, w) for i, (t, s, _, w) in enumerate(samples)]
    path = write_gz(tmp_path / "prof_one.json.gz", make_v1(samples, duration_ms=10_000))
    code, out, err = run(capsys, "diff", path, path, "--a-to", "5", "--b-from", "5")
    assert (code, err) == (0, "")
    grew = out.splitlines().index("GREW (most first)")
    assert out.splitlines()[grew + 2].split()[:3] == ["+20.00", "10.00", "30.00"]


def test_diff_of_sets_of_files(capsys, tmp_path):
    # A: two periods of 10 % and 10 %; B: two of 20 % and 40 % (30 % in all).
    hour = 3_600_000
    a = [write_gz(tmp_path / f"a{i}.json.gz", shares_document(10, 90, start_ms=START_MS + i * 20_000)) for i in range(2)]
    b = [write_gz(tmp_path / "b0.json.gz", shares_document(20, 80, start_ms=START_MS + hour)),
         write_gz(tmp_path / "b1.json.gz", shares_document(40, 60, start_ms=START_MS + hour + 20_000))]
    code, out, err = run(capsys, "diff", "-a", *a, "-b", *b)
    assert (code, err) == (0, "")
    assert "2 files" in out.splitlines()[0] and "200 samples" in out.splitlines()[0]
    grew = out.splitlines().index("GREW (most first)")
    assert out.splitlines()[grew + 2].split()[:3] == ["+20.00", "10.00", "30.00"]


def test_merged_totals_equal_the_sum_of_the_files(tmp_path):
    paths = [write_gz(tmp_path / f"p{i}.json.gz", shares_document(5 + i, 20 - i, start_ms=START_MS + i * 30_000))
             for i in range(3)]
    files = [load(p) for p in paths]
    merged = merge(files)
    assert isinstance(merged, MergedProfile)
    assert len(merged) == sum(len(f) for f in files)
    assert sum(merged.sample_weight_us) == sum(sum(f.sample_weight_us) for f in files)
    assert merged.stats["samples"] == sum(f.stats["samples"] for f in files)
    assert [t.samples for t in merged.threads] == [sum(len(f) for f in files)]
    # The stack trees are one tree: each path once.
    assert len(merged.stack_parent) == len(files[0].stack_parent)
    stats, samples, weight = top_functions(merged)
    hot = next(s for s in stats if s.frame.name == "hot")
    assert hot.self_samples == 5 + 6 + 7
    assert samples == len(merged) and weight == sum(merged.sample_weight_us)
    # Collapsed lines: the sum of the files' lines, stack by stack.
    summed = collections.Counter()
    for f in files:
        for line in to_collapsed(f).splitlines():
            stack, count = line.rsplit(" ", 1)
            summed[stack] += int(count)
    merged_lines = dict(line.rsplit(" ", 1) for line in to_collapsed(merged).splitlines())
    assert {k: int(v) for k, v in merged_lines.items()} == dict(summed)
    # Times in order, parts and gaps: 10 s files 30 s apart leave two 20 s gaps.
    assert list(merged.sample_time_ms) == sorted(merged.sample_time_ms)
    assert [p.samples for p in merged.parts] == [len(f) for f in files]
    assert merged.gaps() == [(START_MS + 10_000, START_MS + 30_000), (START_MS + 40_000, START_MS + 60_000)]
    assert (merged.start_ms, merged.end_ms) == (START_MS, START_MS + 70_000)


def test_merge_keeps_masters_apart_and_builds_of_every_file(tmp_path):
    one = load(write_gz(tmp_path / "m1.json.gz", shares_document(
        10, 10, host="ci-1", master="prod", builds=[build(1, START_MS + 1000, None)])))
    later = load(write_gz(tmp_path / "m1b.json.gz", shares_document(
        10, 10, host="ci-1", master="prod", start_ms=START_MS + 10_000,
        builds=[build(1, START_MS + 1000, START_MS + 12_000), build(2, START_MS + 11_000, START_MS + 13_000)])))
    other = load(write_gz(tmp_path / "m2.json.gz", shares_document(
        30, 0, host="ci-2", start_ms=START_MS + 5000, builds=[build(1, START_MS + 6000, START_MS + 7000)])))
    assert (master_key(one), master_key(other)) == ("ci-1/prod", "ci-2")
    merged = merge([other, later, one])
    assert merged.masters == ["ci-1/prod", "ci-2"]
    # One MainThread per master: the same ident on two hosts is two threads.
    assert sorted((t.name, t.samples) for t in merged.threads) == [("MainThread", 30), ("MainThread", 40)]
    assert list(merged.sample_time_ms) == sorted(merged.sample_time_ms)  # overlapping files sorted
    # Build 1 of ci-1 is in both files (running, then finished): once, finished;
    # build 1 of ci-2 is another build.
    keys = [(b["master"], b["buildid"], b["complete_ms"]) for b in merged.builds]
    assert sorted(keys) == [("ci-1/prod", 1, START_MS + 12_000), ("ci-1/prod", 2, START_MS + 13_000),
                            ("ci-2", 1, START_MS + 7000)]


def test_top_and_export_take_several_files_and_a_master(capsys, tmp_path):
    write_gz(tmp_path / "prof_1.json.gz", shares_document(10, 90, host="ci-1"))
    write_gz(tmp_path / "prof_2.json.gz", shares_document(90, 10, host="ci-2", start_ms=START_MS + 60_000))
    code, out, err = run(capsys, "top", tmp_path)
    assert (code, err) == (0, "")
    assert "merged 2 files of 2 masters (ci-1, ci-2), 1 gap (50s without a file), 0 builds" in out
    assert "200 samples, 2.00 s of CPU" in out
    code, out, err = run(capsys, "top", tmp_path, "--master", "ci-2")
    assert (code, err) == (0, "") and "100 samples" in out and "merged" not in out
    assert out.splitlines()[3].split()[:2] == ["90.0", "90.0"]
    code, out, err = run(capsys, "top", tmp_path, "--master", "nope")
    assert code == cli.EXIT_ERROR and "no file of master 'nope' (masters: ci-1, ci-2)" in err
    code, out, err = run(capsys, "export", tmp_path / "prof_1.json.gz", tmp_path / "prof_2.json.gz",
                         "-f", "collapsed")
    assert code == 0
    counts = collections.Counter()
    for line in out.splitlines():  # one MainThread per master: two lines, summed by flamegraph.pl
        stack, count = line.rsplit(" ", 1)
        counts[stack] += int(count)
    assert counts["MainThread;main (/app/run.py:1);hot (/app/work.py:30)"] == 100
    # A UTC time works as a bound: only the second file.
    code, out, err = run(capsys, "top", tmp_path, "--from", "2025-11-25T19:47:30Z")
    assert (code, err) == (0, "") and "100 samples" in out


@pytest.mark.parametrize("argv, words", [
    (["diff"], "diff needs A and B"),
    (["diff", "x"], "takes two paths, got 1"),
    (["top", "FILE", "--from", "yesterday"], "--from 'yesterday' is neither seconds nor a time"),
])
def test_diff_and_time_usage_errors(capsys, tmp_path, argv, words):
    path = write_gz(tmp_path / "p.json.gz", shares_document(1, 1))
    code, out, err = run(capsys, *[str(path) if a == "FILE" else a for a in argv])
    assert code == cli.EXIT_ERROR and words in err and len(err.splitlines()) == 1


def sampled_period(path: Path, parts: tuple[int, int, int], master: str) -> None:
    """A period written by the real sampler and writer while the workload
    splits the CPU into `parts` tenths across spin_60, spin_30, spin_10."""
    from profiler_service import Profiler

    with Profiler(frequency=400, mode="prof") as profiler:
        workloads.split_parts(1.5, parts)
    profiler.period.write(str(path), builds=[], meta={"master": master})


def leaf_share(path: Path, function: str, thread: str = "MainThread") -> float:
    """The share of a thread's weight whose leaf frame is `function`, read
    with the standard library only (an independent check of the reader)."""
    import gzip
    import json

    doc = json.loads(gzip.decompress(path.read_bytes()))
    names = [f[0] for f in doc["frames"]]
    wanted = {i for i, t in enumerate(doc["threads"]) if t["name"] == thread}
    samples = doc["samples"]
    total = hot = 0
    for th, stack, weight in zip(samples["thread"], samples["stack"], samples["weight"]):
        if th in wanted:
            total += weight
            hot += weight if names[doc["stacks"]["frame"][stack]] == function else 0
    return hot / total


def test_real_sampler_ten_to_thirty_percent(capsys, tmp_path):
    a, b = tmp_path / "prof_before.json.gz", tmp_path / "prof_after.json.gz"
    sampled_period(a, (6, 3, 1), "before")
    sampled_period(b, (4, 3, 3), "after")
    result = diff_functions(load(a), load(b), thread="MainThread")
    first = result.grew[0]
    table = [(r.frame.name, round(r.self_points, 2)) for r in result.grew[:3] + result.shrank[:3]]
    assert first.frame.name == "spin_10", table
    # The points are exactly the shares in the files, counted here with gzip + json.
    share_a, share_b = leaf_share(a, "spin_10"), leaf_share(b, "spin_10")
    assert first.self_points == pytest.approx(100 * (share_b - share_a), abs=1e-9)
    # The workload's split is set by loop counts, the sampling adds noise: about 20 points.
    assert 12 <= first.self_points <= 28, table
    assert result.shrank[0].frame.name == "spin_60", table
    assert result.shrank[0].self_points == pytest.approx(100 * (leaf_share(b, "spin_60") - leaf_share(a, "spin_60")), abs=1e-9)
    code, out, err = run(capsys, "diff", a, b, "--thread", "MainThread")
    assert code == 0
    grew = out.splitlines().index("GREW (most first)")
    assert out.splitlines()[grew + 2].split()[5] == "spin_10"
    merged = merge([load(a), load(b)])
    assert len(merged) == len(load(a)) + len(load(b))
    assert set(merged.masters) == {master_key(load(a)), master_key(load(b))}


@pytest.mark.parametrize("argv, words", [
    (["--from", "soon"], "--from 'soon' is not a time such as 2026-11-20T10:00"),
    (["--from", "2025-11-25T20:00", "--to", "2025-11-25T19:00"], "--to 2025-11-25T19:00 is not after --from"),
])
def test_viewer_range_errors_are_one_line(tmp_path, argv, words):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "profiler_service.cli", str(tmp_path), *argv],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_viewer_range_lists_the_files_it_overlaps(tmp_path):
    import json as json_module

    from test_www_server import Server

    for i in range(3):
        write_gz(tmp_path / f"prof_{i}.json.gz", shares_document(1, 1, start_ms=START_MS + i * 60_000))
    (tmp_path / "broken.json.gz").write_bytes(b"not a profile")
    server = Server(tmp_path, "--from", "2025-11-25T19:47:45", "--to", "2025-11-25T19:48:41")
    try:
        status, _, body = server.request("/api/profiles")
        listing = json_module.loads(body)
    finally:
        server.stop()
    # prof_1 is 19:47:40-19:47:50, prof_2 19:48:40-19:48:50; prof_0 and the broken file are left out.
    assert status == 200
    assert sorted(e["name"] for e in listing["profiles"]) == ["prof_1.json.gz", "prof_2.json.gz"]
    assert sorted(listing["selected"]) == ["prof_1.json.gz", "prof_2.json.gz"]


def test_merge_of_a_legacy_file_and_ours(capsys, tmp_path):
    from profile_helpers import LEGACY_SMALL

    ours = write_gz(tmp_path / "prof_v1.json.gz", shares_document(10, 10))
    legacy, v1 = load(LEGACY_SMALL), load(ours)
    merged = merge([legacy, v1])
    assert len(merged) == len(legacy) + len(v1)
    assert sum(merged.sample_weight_us) == sum(legacy.sample_weight_us) + sum(v1.sample_weight_us)
    assert merged.version is None and merged.mode is None  # no common version or mode
    assert set(merged.masters) == {"unknown host", "test-host"}
    code, out, err = run(capsys, "top", LEGACY_SMALL, ours)
    assert (code, err) == (0, "") and f"{len(merged)} samples" in out and "mixed modes, up to 100 Hz" in out
