"""Helpers for the reader tests: hand-made v1 documents (docs/FORMAT.md).

``make_v1`` builds a document the way the C writer lays it out (frames and
stacks interned in first-seen order), so the reader can be tested on exact,
known content independently of the writer.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Optional, Sequence

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LEGACY_SMALL = FIXTURES / "legacy" / "small.json"
LEGACY_BIG = FIXTURES / "legacy" / "big.json"
SPEEDSCOPE_SCHEMA = FIXTURES / "specs" / "speedscope-file-format-schema.json"

START_MS = 1764100000000  # 2026-11-25T19:46:40Z

# (thread name, stack root first as (name, file, line), dt ms, weight µs)
Sample = tuple[str, Sequence[tuple[str, str, int]], int, int]

DEFAULT_SAMPLES: list[Sample] = [
    ("MainThread", [("main", "/app/run.py", 1), ("work", "/app/work.py", 10)], 5, 10000),
    ("MainThread", [("main", "/app/run.py", 1), ("work", "/app/work.py", 10),
                    ("hot", "/app/work.py", 30)], 10, 10000),
    ("Worker;1", [("loop", "/app/pool.py", 5), ("hot", "/app/work.py", 30)], 0, 9000),
    ("MainThread", [("main", "/app/run.py", 1), ("work", "/app/work.py", 10),
                    ("hot", "/app/work.py", 30)], 10, 11000),
    ("MainThread", [("[truncated]", "", 0), ("hot", "/app/work.py", 30)], 1000, 10000),
]


def make_v1(samples: Sequence[Sample] = DEFAULT_SAMPLES, *, duration_ms: int = 2000,
            builds: Optional[list] = None) -> dict[str, Any]:
    threads: dict[str, int] = {}
    files: dict[str, int] = {}
    frames: dict[tuple[str, str, int], int] = {}
    nodes: dict[tuple[int, int], int] = {}
    parent: list[int] = []
    frame_of: list[int] = []
    columns: dict[str, list[int]] = {"dt": [], "thread": [], "stack": [], "weight": []}
    for thread, stack, dt, weight in samples:
        node = -1
        for name, file, line in stack:
            file_id = files.setdefault(file, len(files))
            frame_id = frames.setdefault((name, file, line), len(frames))
            key = (node, frame_id)
            if key not in nodes:
                nodes[key] = len(parent)
                parent.append(node)
                frame_of.append(frame_id)
            node = nodes[key]
        columns["dt"].append(dt)
        columns["thread"].append(threads.setdefault(thread, len(threads)))
        columns["stack"].append(node)
        columns["weight"].append(weight)
    file_list = sorted(files, key=files.get)
    thread_docs = []
    for name, index in sorted(threads.items(), key=lambda item: item[1]):
        mine = [i for i, t in enumerate(columns["thread"]) if t == index]
        thread_docs.append({"ident": 1000 + index, "native_id": 2000 + index, "name": name,
                            "samples": len(mine),
                            "weight": sum(columns["weight"][i] for i in mine)})
    return {
        "format": "buildbot-profiler",
        "version": 1,
        "meta": {
            "start_ms": START_MS, "end_ms": START_MS + duration_ms,
            "start_utc": "2026-11-25T19:46:40Z", "end_utc": "2026-11-25T19:46:42Z",
            "mode": "virtual", "frequency": 100, "max_depth": 256, "weight_unit": "us",
            "pid": 4242, "hostname": "test-host", "cpu_count": 2, "ram_kb": 1000000,
        },
        "stats": {"ticks": len(samples), "missed": 0, "samples": len(samples), "idle": 3,
                  "truncated": 1, "dropped": 0, "sampling_ns": 12345},
        "threads": thread_docs,
        "files": file_list,
        "frames": [[name, files[file], line] for (name, file, line) in frames],
        "stacks": {"parent": parent, "frame": frame_of},
        "samples": columns,
        "load": {"t": [1000, 2000], "cpu_permille": [500, 1250], "rss_kb": [50000, 60000]},
        "builds": builds if builds is not None else [],
    }


def write_gz(path: Path, document: Any) -> Path:
    path.write_bytes(gzip.compress(json.dumps(document).encode()))
    return path
