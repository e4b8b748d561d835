"""The benchmark suite keeps working: its smoke mode runs every benchmark
tiny and writes the report. Timings are not checked (benchmarks are not
timed tests)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(600)
def test_bench_smoke_writes_the_report(tmp_path):
    if os.environ.get("BBPROF_SANITIZED"):
        pytest.skip("not under ASan: the suite starts py-spy, perf and a Buildbot master as subprocesses")
    output = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--smoke", "--output", str(output)],
        capture_output=True, text=True, timeout=580,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = output.read_text()
    assert "Smoke run" in text
    for heading in (
        "## Summary against the targets",
        "## Overhead (a)",
        "## Overhead (b)",
        "## Overhead (c)",
        "## Sampler cost per tick",
        "## Memory, file and reactor stall",
        "## Accuracy on a known CPU split",
        "## Peak memory and time of load() against input size",
    ):
        assert heading in text, heading
    assert "The master benchmark failed" not in text
    # Every summary row states a figure for ours and a verdict.
    summary = text.split("## Summary against the targets", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    assert len(rows) >= 8
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert re.search(r"\d", cells[2]), row
    # The machine is described.
    for key in ("| CPU |", "| Cores |", "| RAM |", "| Kernel |", "| Python |", "| Date |", "| Git commit |"):
        assert key in text, key


@pytest.mark.timeout(600)
def test_real_mode_ab_writes_its_section(tmp_path):
    # The A/B script with the same install on both sides: it must run every
    # measurement for both, round by round, and put one section into an
    # existing report, with a figure in every cell.
    if os.environ.get("BBPROF_SANITIZED"):
        pytest.skip("not under ASan: the script starts perf and fresh interpreters")
    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\n## Tools\n\n- none\n")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "ab_real.py"), "--smoke", "--rounds", "1",
         "--before", sys.executable, "--after", sys.executable, "--output", str(output)],
        capture_output=True, text=True, timeout=580,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = output.read_text()
    assert text.count("## Real mode, before and after") == 1
    assert text.index("## Real mode, before and after") < text.index("## Tools")
    section = text.split("## Real mode, before and after", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    assert len(rows) == 8, section
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        # Walk and sampler-thread figures are always measured; perf shares
        # are "nan" where perf cannot record (a fresh Debian root has none).
        assert all(re.search(r"\d|nan", c) for c in cells[2:]), row
        if "walk" in cells[0]:
            assert re.fullmatch(r"\d+\.\d / \d+\.\d", cells[2]), row
