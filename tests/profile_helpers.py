"""Helpers for the reader tests: hand-made v1 and v3 documents (docs/FORMAT.md).

``make_v1`` builds a document the way the C writer lays it out (frames and
stacks interned in first-seen order), so the reader can be tested on exact,
known content independently of the writer; ``make_v3`` the same with the
line of every frame (a line-level tree).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Optional, Sequence

# buildbot_profiler 1.x files; where each came from: tests/fixtures/legacy/README.md.
TESTS = Path(__file__).resolve().parent
LEGACY_DIR = TESTS / "fixtures" / "legacy"
LEGACY_SMALL = LEGACY_DIR / "small.json"
LEGACY_BIG = LEGACY_DIR / "big.json"
LEGACY_MODES = ("prof", "virtual", "real")
# Written by the unmodified 1.3.1 plugin on Buildbot 4.3 and CPython 3.11 (make_fixtures.sh).
LEGACY_REAL = [path for mode in LEGACY_MODES for path in sorted(LEGACY_DIR.glob(f"{mode}_*.json"))]
# The schema the pinned speedscope npm package ships (tests/speedscope; scripts/setup installs it).
SPEEDSCOPE_SCHEMA = TESTS / "speedscope" / "node_modules" / "speedscope" / "dist" / "release" / "file-format-schema.json"

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


# (thread name, stack root first as (name, file, first line, line), dt ms, weight µs)
LineSample = tuple[str, Sequence[tuple[str, str, int, int]], int, int]


def make_v3(samples: Sequence[LineSample], *, duration_ms: int = 2000,
            builds: Optional[list] = None) -> dict[str, Any]:
    """A version 3 document (docs/FORMAT.md, "Lines"): each frame of a
    stack carries the line it was on, and the tree is line-level, as the C
    writer lays it out: nodes are (parent, frame, line), so sibling nodes
    with the same frame and different lines are distinct."""
    doc = make_v1([], duration_ms=duration_ms, builds=builds)
    threads: dict[str, int] = {}
    files: dict[str, int] = {}
    frames: dict[tuple[str, str, int], int] = {}
    nodes: dict[tuple[int, int, int], int] = {}
    stacks: dict[str, list[int]] = {"parent": [], "frame": [], "line": []}
    columns: dict[str, list[int]] = {"dt": [], "thread": [], "stack": [], "weight": []}
    for thread, stack, dt, weight in samples:
        node = -1
        for name, file, first_line, line in stack:
            files.setdefault(file, len(files))
            frame_id = frames.setdefault((name, file, first_line), len(frames))
            key = (node, frame_id, line)
            if key not in nodes:
                nodes[key] = len(stacks["parent"])
                stacks["parent"].append(node)
                stacks["frame"].append(frame_id)
                stacks["line"].append(line)
            node = nodes[key]
        columns["dt"].append(dt)
        columns["thread"].append(threads.setdefault(thread, len(threads)))
        columns["stack"].append(node)
        columns["weight"].append(weight)
    doc["version"] = 3
    doc["threads"] = []
    for name, index in sorted(threads.items(), key=lambda item: item[1]):
        mine = [i for i, t in enumerate(columns["thread"]) if t == index]
        doc["threads"].append({"ident": 1000 + index, "native_id": 2000 + index, "name": name,
                               "samples": len(mine), "weight": sum(columns["weight"][i] for i in mine)})
    doc["files"] = sorted(files, key=files.get)
    doc["frames"] = [[name, files[file], line] for (name, file, line) in frames]
    doc["stacks"] = stacks
    doc["samples"] = columns
    doc["stats"].update(ticks=len(samples), samples=len(samples), truncated=0)
    doc["stalls"] = {"threshold_us": 0, "dropped": 0, "items": []}
    return doc


def write_gz(path: Path, document: Any) -> Path:
    path.write_bytes(gzip.compress(json.dumps(document).encode()))
    return path


def gz(document: Any) -> bytes:
    return gzip.compress(json.dumps(document).encode())


def _mutated(change) -> dict[str, Any]:
    doc = make_v1()
    change(doc)
    return doc


VALID_GZ = gz(make_v1())

# name: (file content, words the error must contain)

BAD_FILES = {
    "garbage": (b"\x00\x01garbage\xff" * 10, "not gzip and not JSON"),
    "empty": (b"", "empty file"),
    "whitespace": (b"  \n", "empty file"),
    "truncated gzip": (VALID_GZ[: len(VALID_GZ) // 2], "truncated gzip"),
    "gzip header only": (VALID_GZ[:10], "truncated gzip"),
    "corrupt gzip": (VALID_GZ[:20] + bytes(40) + VALID_GZ[60:], "corrupt gzip"),
    "bad gzip crc": (VALID_GZ[:-8] + b"\0\0\0\0" + VALID_GZ[-4:], "corrupt gzip"),
    "gzip of non-JSON": (gzip.compress(b"hello, world"), "gzip data is not JSON"),
    "gzip of nothing": (gzip.compress(b""), "empty gzip data"),
    "trailing garbage": (VALID_GZ + b"junk", "unexpected bytes after the gzip data"),
    "not UTF-8": (gzip.compress(b'{"format": "\xff"}'), "not UTF-8"),
    "JSON array": (gz([1, 2, 3]), "is an array, expected an object"),
    "JSON string": (b'"hello"', "is a string, expected an object"),
    "empty object": (gz({}), "no 'format' member"),
    "other format": (gz({"format": "pprof", "version": 1}), "'format' is 'pprof'"),
    "future version": (gz(_mutated(lambda d: d.update(version=4))),
                       "version 4 is newer than this reader"),
    "version zero": (gz(_mutated(lambda d: d.update(version=0))), "unknown format version 0"),
    "version as string": (gz(_mutated(lambda d: d.update(version="1"))),
                          "'version' is a string"),
    "no version": (gz(_mutated(lambda d: d.pop("version"))), "no member 'version'"),
    "no samples": (gz(_mutated(lambda d: d.pop("samples"))), "no member 'samples'"),
    "meta not object": (gz(_mutated(lambda d: d.update(meta=[]))), "meta is an array"),
    "NaN": (gz(_mutated(lambda d: d["meta"].update(frequency=float("nan")))),
            "NaN is not a JSON number"),
    "zero frequency": (gz(_mutated(lambda d: d["meta"].update(frequency=0))),
                       "meta.frequency is 0"),
    "end before start": (gz(_mutated(lambda d: d["meta"].update(end_ms=1))),
                         "is before meta.start_ms"),
    "weight unit": (gz(_mutated(lambda d: d["meta"].update(weight_unit="ms"))),
                    "weight_unit 'ms' is not supported"),
    "stack out of range": (gz(_mutated(lambda d: d["samples"]["stack"].__setitem__(0, 99))),
                           "samples.stack[0] is 99, out of range"),
    "thread out of range": (gz(_mutated(lambda d: d["samples"]["thread"].__setitem__(1, 2))),
                            "samples.thread[1] is 2, out of range (2 threads)"),
    "parent not before": (gz(_mutated(lambda d: d["stacks"]["parent"].__setitem__(1, 1))),
                          "stacks.parent[1] is 1, expected < 1"),
    "parent below -1": (gz(_mutated(lambda d: d["stacks"]["parent"].__setitem__(1, -2))),
                        "stacks.parent[1] is -2, expected >= -1"),
    "frame out of range": (gz(_mutated(lambda d: d["stacks"]["frame"].__setitem__(0, 50))),
                           "stacks.frame[0] is 50, out of range"),
    "file out of range": (gz(_mutated(lambda d: d["frames"][0].__setitem__(1, 9))),
                          "frames[0][1] is 9, out of range"),
    "frame not triple": (gz(_mutated(lambda d: d["frames"].__setitem__(0, ["x", 0]))),
                         "frames[0] is not a [name, file, line] array"),
    "length mismatch": (gz(_mutated(lambda d: d["samples"]["dt"].pop())),
                        "samples arrays differ in length"),
    "negative dt": (gz(_mutated(lambda d: d["samples"]["dt"].__setitem__(2, -1))),
                    "samples.dt[2] is -1"),
    "boolean in array": (gz(_mutated(lambda d: d["samples"]["weight"].__setitem__(0, True))),
                         "samples.weight[0] is a boolean"),
    "float in array": (gz(_mutated(lambda d: d["samples"]["stack"].__setitem__(0, 1.5))),
                       "samples.stack[0] is a number, expected an integer"),
    "huge integer": (gz(_mutated(lambda d: d["samples"]["weight"].__setitem__(0, 1 << 70))),
                     "too large for 64 bits"),
    "thread without name": (gz(_mutated(lambda d: d["threads"][0].pop("name"))),
                            "threads[0] has no member 'name'"),
    "deep nesting": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    "legacy frame id": (json.dumps({"frames": [["a.py", 1, "f"]], "samples": [
        {"time": 1.0, "threads": {"1": [0, 5]}, "cpu": [1], "mem": {"percent": 1}}]}).encode(),
        "samples[0].threads[1][1] is not a frame id"),
    "legacy thread id": (json.dumps({"frames": [], "samples": [
        {"time": 1.0, "threads": {"main": []}}]}).encode(), "threads key 'main' is not a thread id"),
    "legacy huge thread id": (json.dumps({"frames": [], "samples": [
        {"time": 1.0, "threads": {"9" * 5000: []}}]}).encode(), "is not a thread id"),
    "legacy time": (json.dumps({"frames": [], "samples": [{"time": "now", "threads": {}}]}).encode(),
                    "samples[0].time is a string"),
    "legacy frames shape": (json.dumps({"frames": {}, "samples": []}).encode(),
                            "frames is an object, expected an array"),
}


def make_chain(n_stacks: int, *, n_frames: Optional[int] = None, start_ms: int = START_MS) -> dict[str, Any]:
    """A valid v1 document whose stacks form one chain: stack i is the
    child of stack i - 1, and each has one sample. Its size is linear in
    n_stacks, the sum of its stacks' depths quadratic: the worst case for
    anything that copies a stack's path. With n_frames, frames repeat
    (frame i % n_frames), so the chain is deep recursion."""
    n_frames = n_stacks if n_frames is None else n_frames
    doc = make_v1([])
    doc["meta"]["start_ms"] = start_ms
    doc["meta"]["end_ms"] = start_ms + n_stacks + 1000
    doc["meta"]["frequency"] = 1000  # each sample's 1000 µs: one interval, one sample
    doc["threads"] = [{"ident": 1000, "native_id": 2000, "name": "MainThread",
                       "samples": n_stacks, "weight": 1000 * n_stacks}]
    doc["files"] = ["/app/deep.py"]
    doc["frames"] = [[f"f{i}", 0, i + 1] for i in range(n_frames)]
    doc["stacks"] = {"parent": list(range(-1, n_stacks - 1)),
                     "frame": [i % n_frames for i in range(n_stacks)]}
    doc["samples"] = {"dt": [1] * n_stacks, "thread": [0] * n_stacks,
                      "stack": list(range(n_stacks)), "weight": [1000] * n_stacks}
    doc["stats"]["samples"] = doc["stats"]["ticks"] = n_stacks
    return doc


# Two functions with a known split, for merge and compare (tests/test_merge.py).
MAIN = ("main", "/app/run.py", 1)
HOT = ("hot", "/app/work.py", 30)
COLD = ("cold", "/app/work.py", 50)


def shares_document(hot: int, cold: int, *, start_ms: int = START_MS, host: str = "test-host",
                    master: str = "", builds=None) -> dict:
    """A 10 s period: `hot` samples in main;hot, `cold` in main;cold, 10 ms each."""
    samples = [("MainThread", [MAIN, HOT], 1, 10000)] * hot + [("MainThread", [MAIN, COLD], 1, 10000)] * cold
    doc = make_v1(samples, duration_ms=10_000, builds=builds or [])
    doc["meta"].update(start_ms=start_ms, end_ms=start_ms + 10_000, hostname=host)
    if master:
        doc["meta"]["master"] = master
    return doc
