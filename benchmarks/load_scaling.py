"""Peak memory and time of load() (and of ``bbprofiler top``'s table) against
the input's size, for the BENCHMARKS.md section of the same name.

    python benchmarks/load_scaling.py [--smoke] [--update BENCHMARKS.md]

Without --update it prints the section. Each file is generated here, then
read in a fresh child process (``child_load.py``): the peak RSS growth is
the child's high-water mark (reset through /proc/self/clear_refs after its
imports) minus its RSS before the read, so the interpreter does not count.
``benchmarks/run.py`` calls ``section()`` for the full report.

Inputs, each at sizes doubling:

- a chain of stacks (stack i the child of stack i - 1, one sample each):
  small files whose stacks' paths add up to a quadratic size, the shape that
  took 34 s and 1.6 GB for 20,000 stacks before the reader kept no paths;
- valid period files of a busy master's shape (a tree of 20,000 stacks,
  samples drawn from it) growing by their number of samples;
- 1.x files (plain JSON, every thread's stack on every tick) growing by
  their number of ticks;
- gzip bombs: one made by gzip (its trailer gives its size) and one whose
  trailer lies, both inflating past the 256 MiB limit.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
import zlib
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import run_child, update_section  # noqa: E402

TITLE = "## Peak memory and time of load() against input size"

START_MS = 1764100000000
MB = 1 << 20


def _document(parent: list[int], frame: list[int], n_frames: int, samples: int,
              rng: random.Random, leaves: list[int]) -> dict[str, Any]:
    stack = [rng.choice(leaves) for _ in range(samples)] if leaves else list(range(samples))
    return {
        "format": "buildbot-profiler", "version": 1,
        "meta": {"start_ms": START_MS, "end_ms": START_MS + 10 * samples + 1000, "mode": "virtual",
                 "frequency": 100, "max_depth": 256, "weight_unit": "us", "pid": 1,
                 "hostname": "bench", "cpu_count": 2, "ram_kb": 1000000},
        "stats": {"ticks": samples, "samples": samples},
        "threads": [{"ident": 1000 + i, "native_id": 2000 + i, "name": f"thread-{i}",
                     "samples": 0, "weight": 0} for i in range(4)],
        "files": [f"/usr/lib/python3/dist-packages/app/module{i}.py" for i in range(100)],
        "frames": [[f"Class{i % 50}.method_{i}", i % 100, 10 + i] for i in range(n_frames)],
        "stacks": {"parent": parent, "frame": frame},
        "samples": {"dt": [rng.randrange(0, 20) for _ in range(samples)],
                    "thread": [rng.randrange(4) for _ in range(samples)],
                    "stack": stack,
                    "weight": [rng.randrange(5000, 15000) for _ in range(samples)]},
        "load": {"t": [], "cpu_permille": [], "rss_kb": []},
        "builds": [],
    }


def chain(n_stacks: int) -> dict[str, Any]:
    rng = random.Random(n_stacks)
    return _document(list(range(-1, n_stacks - 1)), list(range(n_stacks)), n_stacks,
                     n_stacks, rng, [])


def busy(samples: int) -> dict[str, Any]:
    """A tree of 20,000 stacks 10-40 deep over 1,500 functions; samples on
    its leaves, as a busy master's period looks."""
    rng = random.Random(7)
    parent: list[int] = []
    frame: list[int] = []
    leaves = []
    while len(parent) < 20000:
        # A new path starts under a random node already there (shared
        # prefixes), or at the root.
        node = rng.randrange(-1, len(parent)) if parent else -1
        for _ in range(rng.randrange(3, 15)):
            parent.append(node)
            frame.append(rng.randrange(1500))
            node = len(parent) - 1
        leaves.append(node)
    return _document(parent, frame, 1500, samples, rng, leaves)


def legacy(ticks: int) -> dict[str, Any]:
    """A buildbot_profiler 1.x file (plain JSON): every tick records every
    thread's stack, innermost frame first, and the machine's load."""
    rng = random.Random(11)
    paths = [[rng.randrange(2000) for _ in range(rng.randrange(10, 30))] for _ in range(300)]
    samples = []
    for i in range(ticks):
        samples.append({"time": 1471876477.0 + i / 100,
                        "threads": {str(140000000000000 + t): rng.choice(paths) for t in range(3)},
                        "cpu": [rng.uniform(0, 100), rng.uniform(0, 100)],
                        "mem": {"percent": rng.uniform(10, 20)}})
    return {"frames": [[f"module{i % 100}.py", 10 + i, f"function_{i}"] for i in range(2000)],
            "samples": samples, "frequency": 100}


def _write(directory: str, name: str, doc: dict[str, Any], compress: bool = True) -> tuple[str, int]:
    text = json.dumps(doc, separators=(",", ":")).encode()
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(gzip.compress(text, compresslevel=6) if compress else text)
    return path, len(text)


def _bomb(directory: str, lying: bool) -> tuple[str, int]:
    """A gzip file inflating to 300 MiB of JSON (past the 256 MiB limit)."""
    size = 300 * MB
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [deflate.compress(b'{"format":"buildbot-profiler","pad":"')]
    block = b"x" * MB
    for _ in range(300):
        parts.append(deflate.compress(block))
    parts.append(deflate.compress(b'"}'))
    parts.append(deflate.flush())
    data = bytearray(b"".join(parts))
    if lying:
        data[-4:] = (1000).to_bytes(4, "little")
    path = os.path.join(directory, f"bomb-{'lying' if lying else 'honest'}.json.gz")
    with open(path, "wb") as f:
        f.write(data)
    return path, size


def _read(path: str, top: bool, repeats: int) -> dict[str, Any]:
    """The fastest of repeats reads (the machine is shared: the minimum is
    the least disturbed); memory does not vary between them."""
    runs = [run_child("child_load.py", {"path": path, "top": top}, timeout=900) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["load_s"] + (r["top_s"] or 0))
    best["peak_growth_bytes"] = max(r["peak_growth_bytes"] for r in runs)
    best["repeats"] = repeats
    return best


def measure(smoke: bool = False) -> list[dict[str, Any]]:
    chains = [2000, 4000, 8000] if smoke else [20000, 40000, 80000, 160000]
    sizes = [20000, 40000] if smoke else [250_000, 500_000, 1_000_000, 2_000_000, 4_000_000]
    ticks = [1000, 2000] if smoke else [10_000, 20_000, 40_000, 80_000]
    repeats = 1 if smoke else 3
    results = []
    with tempfile.TemporaryDirectory(prefix="bbprof-load-") as directory:
        cases = [("chain of stacks", f"{n:,} stacks", lambda n=n: chain(n), True) for n in chains]
        cases += [("busy period", f"{n:,} samples", lambda n=n: busy(n), True) for n in sizes]
        cases += [("1.x file (plain JSON)", f"{n:,} ticks", lambda n=n: legacy(n), False) for n in ticks]
        for kind, label, make, compress in cases:
            path, json_bytes = _write(directory, "input.json.gz" if compress else "input.json",
                                      make(), compress)
            r = _read(path, True, repeats)
            r.update(kind=kind, label=label, file_bytes=os.path.getsize(path), json_bytes=json_bytes)
            results.append(r)
            os.unlink(path)
        if not smoke:
            for lying in (False, True):
                path, json_bytes = _bomb(directory, lying)
                r = _read(path, False, 1)
                r.update(kind="gzip bomb", label="trailer lies" if lying else "made by gzip",
                         file_bytes=os.path.getsize(path), json_bytes=json_bytes)
                results.append(r)
                os.unlink(path)
    return results


def render(results: list[dict[str, Any]], smoke: bool) -> str:
    out = [TITLE, ""]
    if smoke:
        out += ["**Smoke run: tiny sizes, the numbers mean nothing.**", ""]
    out += [
        "Each file is generated, then read in a fresh process: `load()`, then the `bbprofiler top` "
        "table (`top_functions`); times are CPU seconds, the fastest of "
        f"{results[0].get('repeats', 1) if results else 1} reads (the machine is shared). "
        "Peak RSS growth is the process's high-water mark (reset through "
        "`/proc/self/clear_refs` after its imports) minus its RSS before the read. \"×\" columns: "
        "the figure over the previous row's, for an input twice as large; linear growth shows "
        "as about ×2. Limits (docs/FORMAT.md): 256 MiB of file or of decompressed JSON; an export "
        "holding more than 20 million frames is refused.",
        "",
        "| input | size | file | JSON | load() CPU s | × | top CPU s | × | peak RSS growth | × | RSS / JSON | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    previous: dict[str, dict[str, Any]] = {}
    for r in results:
        before = previous.get(r["kind"])

        def ratio(key: str) -> str:
            if not before or not before.get(key) or r.get(key) is None:
                return "–"
            return f"×{r[key] / before[key]:.2f}"

        top = f"{r['top_s']:.3f}" if r.get("top_s") is not None else "–"
        out.append(
            f"| {r['kind']} | {r['label']} | {r['file_bytes'] / MB:.2f} MB | {r['json_bytes'] / MB:.1f} MB | "
            f"{r['load_s']:.3f} | {ratio('load_s')} | {top} | {ratio('top_s')} | "
            f"{r['peak_growth_bytes'] / MB:.1f} MB | {ratio('peak_growth_bytes')} | "
            f"{r['peak_growth_bytes'] / r['json_bytes']:.1f} | {r['result']} |")
        previous[r["kind"]] = r
    out.append("")
    return "\n".join(out)


def section(smoke: bool = False) -> str:
    return render(measure(smoke), smoke)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--update", metavar="REPORT", help="put the section into this BENCHMARKS.md")
    args = parser.parse_args()
    text = section(args.smoke)
    if args.update:
        update_section(args.update, TITLE, text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
