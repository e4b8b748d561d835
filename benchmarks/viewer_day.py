"""A day of profile files in the viewer: how long opening them as one
profile and comparing two selections take, measured in headless Debian
Chromium (Playwright) against the real ``bbprofiler DIR --from --to`` server.

    .venv/bin/python benchmarks/viewer_day.py [--files 48] [--samples 10000000]
                                             [--runs 3] [--output BENCHMARKS.md]

The files are generated as docs/FORMAT.md lays them out (gzip JSON, format
v1): a busy 30-minute period each, back to back over a day, 10M samples in
all, one master's stack tree (8000 call paths) with each period's hot paths
drawn at random. Generating the day takes about a minute; the files are kept
in a cache directory for the next run (--cache).

It writes (or replaces) its own section of BENCHMARKS.md, "A day of files in
the viewer", and leaves the rest of the file alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SECTION = "## A day of files in the viewer (merge and compare)"
DAY_START_MS = 1763625600000  # 2025-11-20T08:00:00Z
PERIOD_MS = 30 * 60 * 1000
TARGET_OPEN_S, TARGET_COMPARE_S = 5.0, 2.0


def build_tree(rng: random.Random, n_stacks: int) -> tuple[list[str], list[list], list[int], list[int]]:
    """One master's call paths: files, frames, stack parents and frames."""
    files = [f"/srv/master/lib/mod{m}.py" for m in range(40)]
    frames = [[f"Mod{m}.func_{i}", m, 10 + i] for m in range(40) for i in range(40)]
    frames += [["Main.run", 0, 1], ["Reactor.mainLoop", 1, 1]]
    parent, frame = [-1, 0], [len(frames) - 2, len(frames) - 1]
    depth = [1, 2]
    while len(parent) < n_stacks:
        base = rng.randrange(len(parent))
        if depth[base] > 40:
            continue
        parent.append(base)
        frame.append(rng.randrange(len(frames) - 2))
        depth.append(depth[base] + 1)
    return files, frames, parent, frame


def period_document(index: int, tree, n_samples: int, rng: random.Random) -> dict:
    files, frames, parent, frame = tree
    start_ms = DAY_START_MS + index * PERIOD_MS
    n_stacks = len(parent)
    order = list(range(n_stacks))
    rng.shuffle(order)  # each period has its own hot paths
    weights = [0.0] * n_stacks
    for rank, stack in enumerate(order):
        weights[stack] = 1.0 / (rank + 1) ** 0.8
    stacks = rng.choices(range(n_stacks), weights=weights, k=n_samples)
    step = PERIOD_MS / n_samples
    dt = [0] * n_samples
    previous = 0
    for i in range(n_samples):
        t = int(i * step)
        dt[i] = t - previous
        previous = t
    n_threads = 8
    thread = [rng.randrange(n_threads) for _ in range(n_samples)]
    weight = [9000 + rng.randrange(2000) for _ in range(n_samples)]
    per_thread = [[0, 0] for _ in range(n_threads)]
    for th, w in zip(thread, weight):
        per_thread[th][0] += 1
        per_thread[th][1] += w
    seconds = PERIOD_MS // 1000
    builds = [{"buildid": index * 100 + b, "builderid": b % 5, "builder": f"builder{b % 5}", "number": index * 10 + b,
               "started_ms": start_ms + b * 60_000, "complete_ms": start_ms + b * 60_000 + 300_000,
               "results": b % 3, "state_string": "", "steps": []} for b in range(20)]
    return {
        "format": "buildbot-profiler", "version": 1,
        "meta": {"start_ms": start_ms, "end_ms": start_ms + PERIOD_MS, "mode": "virtual", "frequency": 100,
                 "max_depth": 256, "weight_unit": "us", "pid": 4242, "hostname": "ci-master-1",
                 "cpu_count": 8, "ram_kb": 16000000, "master": "ci"},
        "stats": {"ticks": n_samples, "missed": 0, "samples": n_samples, "idle": 0, "truncated": 0,
                  "dropped": 0, "sampling_ns": 0},
        "threads": [{"ident": 1000 + i, "native_id": 2000 + i, "name": f"Thread-{i}" if i else "MainThread",
                     "samples": per_thread[i][0], "weight": per_thread[i][1]} for i in range(n_threads)],
        "files": files, "frames": frames,
        "stacks": {"parent": parent, "frame": frame},
        "samples": {"dt": dt, "thread": thread, "stack": stacks, "weight": weight},
        "load": {"t": [1000 * (s + 1) for s in range(seconds)],
                 "cpu_permille": [300 + (s * 37) % 700 for s in range(seconds)],
                 "rss_kb": [800000 + 20 * s for s in range(seconds)]},
        "builds": builds,
    }


def generate_day(directory: Path, n_files: int, n_samples: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / f".day-{n_files}-{n_samples}"
    paths = [directory / f"prof_day_{i:02d}.json.gz" for i in range(n_files)]
    if stamp.exists() and all(p.exists() for p in paths):
        return paths
    rng = random.Random(20251120)
    tree = build_tree(rng, 8000)
    per_file = n_samples // n_files
    for i, path in enumerate(paths):
        doc = period_document(i, tree, per_file, rng)
        path.write_bytes(gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), 6))
    stamp.write_text("complete\n")
    return paths


def start_server(directory: Path, first_ms: int, last_ms: int) -> tuple[subprocess.Popen, int]:
    def utc(ms: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000))

    proc = subprocess.Popen(
        [sys.executable, "-m", "profiler_service.cli", str(directory), "--from", utc(first_ms),
         "--to", utc(last_ms), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"viewer_day: the server did not start: {line!r} {proc.stderr.read()!r}")
    return proc, int(match.group(1))


def measure(port: int, n_files: int, runs: int) -> dict:
    from chromium import launched_chromium

    names = [f"prof_day_{i:02d}.json.gz" for i in range(n_files)]
    opens, phases, compares_sets, compares_ranges = [], [], [], []
    rows = None
    samples = 0
    import urllib.request

    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/profiles", timeout=600) as reply:
        listed = len(json.load(reply)["profiles"])
    cold_listing = time.monotonic() - started
    assert listed == n_files, listed
    with launched_chromium() as browser:
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
            page.wait_for_function("document.body.dataset.state !== 'loading' && window.bbprofiler.timings.marks.firstRender",
                                   timeout=120_000, polling=100)
            if page.evaluate("document.body.dataset.state") != "ready":
                raise SystemExit(f"viewer_day: the page did not open the day: {page.inner_text('#error')}")
            marks = page.evaluate("window.bbprofiler.timings.marks")
            samples = page.evaluate("window.bbprofiler.state.profile.t.length")
            assert page.evaluate("window.bbprofiler.state.profile.parts.length") == n_files
            opens.append(marks["firstRender"] / 1000)  # ms since the navigation started
            # Each file is parsed as it arrives, so the first phase holds the parsing too.
            phases.append({"download, inflate and parse the files": (marks["parseStart"] - marks["fetchStart"]) / 1000,
                           "merge and prepare": (marks["parseEnd"] - marks["parseStart"]) / 1000,
                           "first render": (marks["firstRender"] - marks["parseEnd"]) / 1000})
            # Two sets of files: the morning (first quarter) against the afternoon (third quarter).
            quarter = n_files // 4
            a, b = names[:quarter], names[2 * quarter:3 * quarter]
            compares_sets.append(page.evaluate("""async ([a, b]) => {
                const t0 = performance.now();
                await window.bbprofiler.compare({ names: a }, { names: b });
                return (performance.now() - t0) / 1000; }""", [a, b]))
            rows = page.evaluate("window.bbprofiler.state.compare.rows.grew.length")
            # Two time ranges of the open day: the first hour against the last.
            compares_ranges.append(page.evaluate("""async ([names, start, end]) => {
                const t0 = performance.now();
                await window.bbprofiler.compare({ names, t0: start, t1: start + 3600000 },
                                                { names, t0: end - 3600000, t1: end });
                return (performance.now() - t0) / 1000; }""",
                [names, DAY_START_MS, DAY_START_MS + n_files * PERIOD_MS]))
            page.screenshot(path=str(ROOT / "test-artifacts" / "viewer-day-compare.png"), full_page=False)
            context.close()
    return {"cold_listing_s": cold_listing, "open_s": opens, "phases": phases, "compare_sets_s": compares_sets,
            "compare_ranges_s": compares_ranges, "samples": samples, "grew_rows": rows}


def section(result: dict, n_files: int, total_bytes: int) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s [{min(values):.2f}–{max(values):.2f}]"

    def verdict(values: list[float], target: float) -> str:
        return "met" if statistics.median(values) <= target else "**missed**"

    phase = {k: statistics.median(p[k] for p in result["phases"]) for k in result["phases"][0]}
    lines = [
        SECTION,
        "",
        f"Generated by `benchmarks/viewer_day.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{n_files} busy 30-minute periods back to back (a day), {result['samples']:,} samples in all, "
        f"{total_bytes / 1e6:.0f} MB of gzip files, served by `bbprofiler DIR --from ... --to ...` and "
        "opened by headless Debian Chromium (Playwright) as one merged profile. Median of "
        f"{len(result['open_s'])} fresh pages [min–max]. Opening counts from the navigation to the first "
        "complete render (download and inflate every file, parse them into one tree, prepare, timeline, "
        "flame graph, tables); comparing from the call to the rendered differential flame graph and tables, "
        "on the day already open (all aggregation in the browser).",
        "",
        "| figure | target | measured | |",
        "|---|---|---|---|",
        f"| open the day | ≤ {TARGET_OPEN_S:g} s | {cell(result['open_s'])} | {verdict(result['open_s'], TARGET_OPEN_S)} |",
        f"| compare two sets of files ({n_files // 4} morning files vs {n_files // 4} afternoon files) | ≤ {TARGET_COMPARE_S:g} s | "
        f"{cell(result['compare_sets_s'])} | {verdict(result['compare_sets_s'], TARGET_COMPARE_S)} |",
        f"| compare two time ranges (first hour vs last hour) | ≤ {TARGET_COMPARE_S:g} s | "
        f"{cell(result['compare_ranges_s'])} | {verdict(result['compare_ranges_s'], TARGET_COMPARE_S)} |",
        "",
        "Where the opening goes (medians): " + ", ".join(f"{k} {v:.2f} s" for k, v in phase.items()) + ".",
        "",
        f"Not in the figures above: the server's first listing of the directory after it starts, "
        f"{result['cold_listing_s']:.1f} s here (it reads every file once to summarize it, then keeps the "
        "summaries; the pages above were opened after it).",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION in old:
        start = old.index(SECTION)
        following = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + (old[following + 1:] if following >= 0 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=48)
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "bbprof-bench-viewer-day"))
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"),
                        help="the Markdown file whose section is written ('-': print only)")
    args = parser.parse_args()
    directory = Path(args.cache)
    started = time.monotonic()
    paths = generate_day(directory, args.files, args.samples)
    print(f"viewer_day: {len(paths)} files in {directory} ({time.monotonic() - started:.0f} s)", flush=True)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    proc, port = start_server(directory, DAY_START_MS, DAY_START_MS + args.files * PERIOD_MS)
    try:
        result = measure(port, args.files, args.runs)
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps(result, indent=1))
    text = section(result, args.files, sum(p.stat().st_size for p in paths))
    if args.output == "-":
        print(text)
    else:
        write_section(Path(args.output), text)
        print(f"viewer_day: wrote the section to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
