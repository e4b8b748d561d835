"""Synthetic v1 profile documents for the viewer's tests, written exactly as
docs/FORMAT.md describes (and validated against the shipped JSON Schema by
test_www_server.py). The sampler's real files are used where a test needs
what the sampler writes; these give known answers (which function is hot
when, on which thread, during which build).
"""

from __future__ import annotations

import gzip
import json
import random
from typing import Any

START_MS = 1764100000000
THREAD_MAIN, THREAD_DB = 0, 1


class _Builder:
    def __init__(self) -> None:
        self.files: list[str] = []
        self.frames: list[list[Any]] = []
        self.parent: list[int] = []
        self.frame: list[int] = []
        self._frame_ids: dict[tuple[str, str], int] = {}
        self._stack_ids: dict[tuple[int, int], int] = {}

    def frame_id(self, name: str, file: str, line: int = 1) -> int:
        key = (name, file)
        if key not in self._frame_ids:
            if file not in self.files:
                self.files.append(file)
            self._frame_ids[key] = len(self.frames)
            self.frames.append([name, self.files.index(file), line])
        return self._frame_ids[key]

    def stack(self, names: list[str]) -> int:
        node = -1
        for name in names:
            module = name.split(".")[0].lower()
            fid = self.frame_id(name, f"/srv/master/lib/{module}.py", 10 + len(name))
            key = (node, fid)
            if key not in self._stack_ids:
                self._stack_ids[key] = len(self.parent)
                self.parent.append(node)
                self.frame.append(fid)
            node = self._stack_ids[key]
        return node


def _document(b: _Builder, samples: list[tuple[int, int, int, int]], duration_ms: int,
              threads: list[str], builds: list[dict[str, Any]], cpu_permille, extra_idle: int = 0) -> dict[str, Any]:
    samples.sort()
    dt, thread, stack, weight = [], [], [], []
    prev = 0
    per_thread = [[0, 0] for _ in threads]
    for t, th, st, w in samples:
        dt.append(t - prev)
        prev = t
        thread.append(th)
        stack.append(st)
        weight.append(w)
        per_thread[th][0] += 1
        per_thread[th][1] += w
    seconds = duration_ms // 1000
    return {
        "format": "buildbot-profiler",
        "version": 1,
        "meta": {
            "start_ms": START_MS, "end_ms": START_MS + duration_ms,
            "start_utc": "2025-11-25T19:46:40Z", "end_utc": "2025-11-25T19:56:40Z",
            "mode": "virtual", "frequency": 100, "max_depth": 256, "weight_unit": "us",
            "pid": 4242, "hostname": "ci-master-1", "cpu_count": 8, "ram_kb": 16000000,
            "python": "3.11.2", "buildbot": "4.3.0", "profiler": "2.0.0a1",
        },
        "stats": {"ticks": len(samples), "missed": 3, "samples": len(samples), "idle": 12345 + extra_idle,
                  "truncated": 0, "dropped": 0, "sampling_ns": 1000000},
        "threads": [{"ident": 1000 + i, "native_id": 2000 + i, "name": name,
                     "samples": per_thread[i][0], "weight": per_thread[i][1]} for i, name in enumerate(threads)],
        "files": b.files,
        "frames": b.frames,
        "stacks": {"parent": b.parent, "frame": b.frame},
        "samples": {"dt": dt, "thread": thread, "stack": stack, "weight": weight},
        "load": {"t": [1000 * (s + 1) for s in range(seconds)],
                 "cpu_permille": [cpu_permille(s) for s in range(seconds)],
                 "rss_kb": [800000 + 200 * s for s in range(seconds)]},
        "builds": builds,
    }


def _build(buildid: int, builder: str, number: int, start_s: int, end_s: int, results: int) -> dict[str, Any]:
    return {"buildid": buildid, "builderid": buildid, "builder": builder, "number": number,
            "started_ms": START_MS + start_s * 1000, "complete_ms": START_MS + end_s * 1000,
            "results": results, "state_string": "build successful" if results == 0 else "failed",
            "steps": [{"number": 0, "name": "shell", "started_ms": START_MS + start_s * 1000,
                       "complete_ms": START_MS + end_s * 1000, "results": results}]}


# What the known-answer profile holds (10 minutes):
#   MainThread, 20 samples/s: first_half_hot during [0, 300 s),
#   build_step_hot during [310, 400 s) (build "runtests #7"), second_half_hot otherwise;
#   DbThread, 5 samples/s: sqlite_step all along.
MAIN_PREFIX = ["Main.run", "Reactor.mainLoop", "Reactor.runUntilCurrent"]
DB_STACK = ["Pool.worker", "Db.execute", "sqlite_step"]


def known_answer_profile() -> dict[str, Any]:
    b = _Builder()
    first = b.stack(MAIN_PREFIX + ["Work.first_half_hot"])
    second = b.stack(MAIN_PREFIX + ["Work.second_half_hot"])
    in_build = b.stack(MAIN_PREFIX + ["Steps.build_step_hot"])
    db = b.stack(DB_STACK)
    samples = []
    for ms in range(0, 600000, 50):
        s = ms // 1000
        stack = first if s < 300 else in_build if 310 <= s < 400 else second
        samples.append((ms + 1, THREAD_MAIN, stack, 10000))
        if ms % 200 == 0:
            samples.append((ms + 2, THREAD_DB, db, 10000))
    builds = [_build(1, "lint", 4, 100, 200, 2), _build(2, "runtests", 7, 310, 400, 0)]
    return _document(b, samples, 600000, ["MainThread", "DbThread"], builds,
                     lambda s: 200 if s < 300 else 900)


def busy_profile(n_samples: int = 200000, n_stacks: int = 5000, duration_s: int = 1800,
                 n_threads: int = 8, seed: int = 1) -> dict[str, Any]:
    """A busy 30-minute period: a random stack tree of about n_stacks nodes,
    samples spread over the period with a skewed choice of stacks."""
    rnd = random.Random(seed)
    b = _Builder()
    names = [f"Mod{m}.func_{i}" for m in range(40) for i in range(40)]
    leaves = [b.stack(["Main.run", "Reactor.mainLoop"])]
    while len(b.parent) < n_stacks:
        base = rnd.choice(leaves)
        path = []
        node = base
        while node >= 0:
            path.append(b.frames[b.frame[node]][0])
            node = b.parent[node]
        path.reverse()
        depth = rnd.randint(1, 6)
        if len(path) + depth > 60:
            path = path[:10]
        leaves.append(b.stack(path + [rnd.choice(names) for _ in range(depth)]))
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(leaves))]
    choices = rnd.choices(leaves, weights=weights, k=n_samples)
    step = duration_s * 1000 / n_samples
    samples = [(int(i * step), rnd.randrange(n_threads), st, 9000 + rnd.randrange(2000))
               for i, st in enumerate(choices)]
    builds = [_build(100 + i, f"builder{i % 5}", i, 30 * i, 30 * i + 90, i % 3) for i in range(50)]
    doc = _document(b, samples, duration_s * 1000, [f"Thread-{i}" if i else "MainThread" for i in range(n_threads)],
                    builds, lambda s: 300 + (s * 37) % 700, extra_idle=1000000)
    return doc


def write_gz(path, doc: dict[str, Any]) -> None:
    with gzip.open(path, "wb") as f:
        f.write(json.dumps(doc, separators=(",", ":")).encode())
