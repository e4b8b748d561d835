"""Child: a busy 30-minute period, simulated quickly.

A busy master at 100 Hz takes 180,000 ticks in 30 minutes. Here two worker
threads run random call paths through 1,500 generated functions (5,000
distinct paths, 20-40 frames deep, sharing prefixes like real call trees)
next to 20 parked threads, and the sampler runs fast (real mode, 10 kHz)
until it has taken the ticks of a busy period. Then:

  memory  RSS growth and Period.heap_bytes across the period
  file    Period.write: size and time (GIL released, in a thread)
  stall   a Twisted reactor runs a 5 ms LoopingCall; the longest gap beyond
          its interval is measured for 1 s of baseline, then around a
          rotation: rotate() on the reactor thread, write in a thread, the
          finished period dropped on the reactor thread.

The 1.x-style anchor takes fewer ticks (Python cannot take 10,000 a second)
and its figures per tick are scaled to the busy period; its file is the 1.x
synchronous JSON dump, done on the reactor thread as 1.x did.

Params: config, ticks, samples (stop at either), workers, seconds_max,
outdir, switch_interval.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import threading
import time
from typing import Any, Callable

from common import Session, child_params, emit, rss_bytes, start_parked

FUNCTIONS: list[Callable[..., Any]] = []


def make_functions(count: int) -> None:
    namespace: dict[str, Any] = {"FUNCS": FUNCTIONS}
    for i in range(count):
        source = (
            f"def f_{i}(path, k):\n"
            f"    if k < len(path):\n"
            f"        return FUNCS[path[k]](path, k + 1)\n"
            f"    total = 0\n"
            f"    for j in range(300):\n"
            f"        total += j * {i % 7 + 1}\n"
            f"    return total\n"
        )
        code = compile(source, f"generated/module_{i // 50}.py", "exec")
        exec(code, namespace)
        FUNCTIONS.append(namespace[f"f_{i}"])


def make_paths(count: int, functions: int, rng: random.Random) -> list[list[int]]:
    paths = [[rng.randrange(functions) for _ in range(rng.randint(20, 40))]]
    while len(paths) < count:
        base = rng.choice(paths)
        keep = rng.randint(1, len(base) - 1)
        depth = rng.randint(20, 40)
        tail = [rng.randrange(functions) for _ in range(max(1, depth - keep))]
        paths.append(base[:keep] + tail)
    return paths


def start_workers(count: int, paths: list[list[int]]) -> Callable[[], None]:
    stop = threading.Event()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            path = rng.choice(paths)
            FUNCTIONS[path[0]](path, 1)

    threads = [threading.Thread(target=work, args=(i,), name=f"busy-{i}", daemon=True) for i in range(count)]
    for t in threads:
        t.start()

    def stop_all() -> None:
        stop.set()
        for t in threads:
            t.join()

    return stop_all


def enough(session: Session, params: dict[str, Any]) -> bool:
    if session.kind == "ours":
        status = session.profiler.status() or {}
        return status.get("ticks", 0) >= params["ticks"] or status.get("samples", 0) >= params["samples"]
    return session.profiler.ticks >= params["ticks"]


def stall_test(session: Session, outdir: str, out: dict[str, Any]) -> None:
    """Run the reactor; measure LoopingCall gaps in a baseline second and
    around a rotation whose file is written in a thread."""
    from twisted.internet import reactor, task, threads

    interval = 0.005
    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0] - interval)
        last[0] = now

    loop = task.LoopingCall(beat)
    marks: dict[str, int] = {}

    def rotate_and_write() -> None:
        marks["rotation_start"] = len(gaps)
        path = os.path.join(outdir, "period.json.gz" if session.kind == "ours" else "period.json")
        t0 = time.perf_counter()
        if session.kind == "ours":
            period = session.profiler.rotate()
            out["rotate_ms"] = (time.perf_counter() - t0) * 1000
            holder = [period]

            def write() -> float:
                w0 = time.perf_counter()
                holder[0].write(path)
                return time.perf_counter() - w0

            def written(seconds: float) -> None:
                out["write_s"] = seconds
                out["file_bytes"] = os.path.getsize(path)
                d0 = time.perf_counter()
                holder.clear()  # the finished period is freed on the reactor thread
                out["free_ms"] = (time.perf_counter() - d0) * 1000

            def failed(failure: Any) -> None:
                out["write_error"] = str(failure.value)
                holder.clear()

            d = threads.deferToThread(write)
            d.addCallbacks(written, failed)
            d.addBoth(lambda _: reactor.callLater(0.5, finish))
        else:
            collector = session.profiler
            collector.stop()
            collector.dump(path)  # 1.x: synchronous, on the reactor thread
            out["write_s"] = time.perf_counter() - t0
            out["file_bytes"] = os.path.getsize(path)
            reactor.callLater(0.5, finish)

    def finish() -> None:
        start = marks["rotation_start"]
        baseline = gaps[5:start]
        during = gaps[start:]
        out["baseline_max_gap_ms"] = max(baseline) * 1000 if baseline else None
        out["rotation_max_gap_ms"] = max(during) * 1000 if during else None
        loop.stop()
        reactor.stop()

    def begin() -> None:
        last[0] = time.perf_counter()
        loop.start(interval, now=False)
        reactor.callLater(1.0, rotate_and_write)

    reactor.callWhenRunning(begin)
    reactor.run(installSignalHandlers=False)


def main() -> None:
    params = child_params()
    rng = random.Random(1)
    make_functions(1500)
    paths = make_paths(5000, 1500, rng)
    release = start_parked(20, 15)
    # Simulating half an hour in seconds needs ticks far faster than the
    # GIL would hand them over from two busy threads at the default 5 ms
    # switch interval; a short interval only speeds up the hand-over.
    sys.setswitchinterval(params.get("switch_interval", 0.005))
    stop_workers = start_workers(params["workers"], paths)
    time.sleep(0.3)
    gc.collect()
    rss0 = rss_bytes()
    session = Session(params["config"]).start()
    t0 = time.monotonic()
    while not enough(session, params) and time.monotonic() - t0 < params["seconds_max"]:
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    gc.collect()
    rss1 = rss_bytes()
    stop_workers()
    sys.setswitchinterval(0.005)
    out: dict[str, Any] = {
        "config": params["config"],
        "elapsed_s": elapsed,
        "rss_growth_bytes": rss1 - rss0,
    }
    if session.kind == "ours":
        status = session.profiler.status()
        out.update(ticks=status["ticks"], samples=status["samples"], heap_bytes=status["heap_bytes"])
    else:
        out.update(ticks=session.profiler.ticks, samples=session.profiler.samples_taken)
    out["scale"] = params["scale_to"] / max(1, out["ticks"])
    stall_test(session, params["outdir"], out)
    if session.kind == "ours" and session.profiler.running:
        session.profiler.stop()
    release()
    emit(out)


if __name__ == "__main__":
    main()
