"""Child: run a fixed amount of work under one profiler configuration and
report the process CPU time and wall time it took.

Workloads:
  cpu      pure-Python CPU work at ``depth`` frames (a: CPU-bound)
  twisted  a reactor plus a 10-thread pool doing sqlite and JSON work, with
           30 parked threads (b: shaped like a master)

Params (JSON in argv[1]): workload, config, units, depth.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from typing import Any, Optional

from common import Session, at_depth, child_params, cpu_s, emit, spin, start_parked


def run_cpu(params: dict[str, Any], config: str) -> dict[str, Any]:
    depth = params.get("depth", 30)
    units = params["units"]
    unit = functools.partial(at_depth, depth, functools.partial(spin, 3000))

    def window() -> None:
        for _ in range(units):
            unit()

    window()  # warm up
    rounds = Rounds(params, config)
    for on in rounds.order():
        rounds.begin(on)
        window()
        rounds.end(on)
    return rounds.result()


# ---- (b) a master-shaped Twisted process ---------------------------------------

_local = threading.local()


def _connection() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(":memory:")
        conn.execute("create table builds (id integer primary key, state text)")
        conn.executemany(
            "insert into builds (id, state) values (?, ?)",
            ((i, json.dumps({"id": i, "results": 0, "steps": list(range(10))})) for i in range(500)),
        )
        _local.conn = conn
    return conn


def db_job(job: int) -> list[dict[str, Any]]:
    """What a Buildbot db thread does: insert a row, read a page, decode it."""
    conn = _connection()
    state = {"id": job + 1000, "builder": f"b{job % 7}", "properties": {f"p{k}": [k, "src"] for k in range(20)}}
    conn.execute("insert or replace into builds (id, state) values (?, ?)", (job % 2000 + 1000, json.dumps(state)))
    rows = conn.execute("select state from builds where id >= ? order by id limit 25", (job % 400,)).fetchall()
    return [json.loads(row[0]) for row in rows]


def run_twisted(params: dict[str, Any], config: str) -> dict[str, Any]:
    from twisted.internet import defer, reactor, task, threads

    units = params["units"]
    release = start_parked(30, 20)
    reactor.suggestThreadPoolSize(10)
    out: dict[str, Any] = {}
    ticker = task.LoopingCall(lambda: json.dumps({"now": time.time(), "pending": list(range(30))}))

    @defer.inlineCallbacks
    def batch(count: int) -> Any:
        semaphore = defer.DeferredSemaphore(10)

        def one(job: int) -> Any:
            d = threads.deferToThread(db_job, job)
            d.addCallback(lambda rows: json.dumps(rows))  # the reactor side
            return d

        yield defer.gatherResults([semaphore.run(one, job) for job in range(count)], consumeErrors=True)

    @defer.inlineCallbacks
    def main() -> Any:
        try:
            ticker.start(0.01)
            yield batch(max(20, units // 5))  # warm up: pool threads and their dbs
            rounds = Rounds(params, config)
            for on in rounds.order():
                rounds.begin(on)
                yield batch(units)
                rounds.end(on)
            out.update(rounds.result())
        except Exception as exc:  # reported by the parent
            out["error"] = repr(exc)
        finally:
            ticker.stop()
            reactor.stop()

    reactor.callWhenRunning(main)
    reactor.run(installSignalHandlers=False)
    release()
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


class Rounds:
    """Paired windows in one process: each round runs the same work once
    without and once with the profiler, in alternating order, so drift of
    this machine hits both sides of a pair alike. The figures are medians of
    the per-pair ratios."""

    def __init__(self, params: dict[str, Any], config: str) -> None:
        self.params = params
        self.config = config
        self.count = params["rounds"]
        self.session: Optional[Session] = None
        self.marks: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        self.ticks = self.samples = self.sampling_ns = 0
        self.sampler_ns = 0
        self.sampler_seen = False

    def order(self) -> list[bool]:
        # Round 0 is a warm-up, dropped from the figures: the first start of
        # the sampler in a process pays one-off costs (thread creation,
        # first interning of every frame).
        out = []
        for r in range(self.count + 1):
            out += [False, True] if r % 2 == 0 else [True, False]
        return out

    def begin(self, on: bool) -> None:
        if on:
            self.session = Session(self.config).start()
            self.sampler0 = self.session.sampler_cpu_ns()
        self.cpu0, self.wall0 = cpu_s(), time.perf_counter()

    def end(self, on: bool) -> None:
        cpu, wall = cpu_s() - self.cpu0, time.perf_counter() - self.wall0
        self.marks[on].append((cpu, wall))
        if on:
            sampler1 = self.session.sampler_cpu_ns()
            stats = self.session.stop()
            self.session = None
            if len(self.marks[True]) == 1:
                return  # the warm-up round
            self.ticks += stats.get("ticks", 0)
            self.samples += stats.get("samples", 0)
            self.sampling_ns += stats.get("sampling_ns", 0)
            if sampler1 is not None and self.sampler0 is not None:
                self.sampler_ns += sampler1 - self.sampler0
                self.sampler_seen = True
            self.session = None

    def result(self) -> dict[str, Any]:
        off, on = self.marks[False][1:], self.marks[True][1:]
        cpu_ratios = [b[0] / a[0] for a, b in zip(off, on)]
        throughput_ratios = [a[1] / b[1] for a, b in zip(off, on)]
        on_wall = sum(w for _, w in on)
        return {
            "config": self.config,
            "cpu_ratios": cpu_ratios,
            "throughput_ratios": throughput_ratios,
            "off_cpu_s": [c for c, _ in off],
            "on_cpu_s": [c for c, _ in on],
            "on_wall_s": on_wall,
            "units": self.params["units"],
            "ticks": self.ticks,
            "samples": self.samples,
            "sampling_ns": self.sampling_ns,
            "sampler_thread_ns": self.sampler_ns if self.sampler_seen else None,
        }


def main() -> None:
    params = child_params()
    run = {"cpu": run_cpu, "twisted": run_twisted}[params["workload"]]
    emit(run(params, params["config"]))


if __name__ == "__main__":
    main()
