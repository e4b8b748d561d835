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
outdir, switch_interval, lines (ours: record each frame's line; default True).
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


def stall_test(session: Session, holder: list[Any], outdir: str, out: dict[str, Any]) -> None:
    """Run a reactor with a 5 ms LoopingCall and measure how late it gets:
    one baseline second, then (ours) three rotations of a 100 Hz profiler as
    in production, each writing the busy period (``holder[0]``, its only
    reference) in a thread, the busy
    period freed on the reactor thread at the end; (anchor) 1.x's synchronous
    dump on the reactor thread."""
    from twisted.internet import defer, reactor, task, threads

    interval = 0.005
    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0] - interval)
        last[0] = now

    loop = task.LoopingCall(beat)
    windows: list[tuple[int, int]] = []

    def pause(seconds: float) -> defer.Deferred:
        return task.deferLater(reactor, seconds, lambda: None)

    @defer.inlineCallbacks
    def run_ours() -> Any:
        from profiler_service import Profiler

        production = Profiler(100, "virtual")
        production.start()
        yield pause(1.0)
        out["baseline_max_gap_ms"] = max(gaps[5:]) * 1000
        rotate_ms, write_s = [], []
        for i in range(3):
            first = len(gaps)
            t0 = time.perf_counter()
            production.rotate()  # the finished (small) period is dropped here
            rotate_ms.append((time.perf_counter() - t0) * 1000)
            path = os.path.join(outdir, f"period-{i}.json.gz")

            def write(path: str = path) -> float:
                w0 = time.perf_counter()
                holder[0].write(path)
                return time.perf_counter() - w0

            try:
                write_s.append((yield threads.deferToThread(write)))
                out["file_bytes"] = os.path.getsize(path)
            except Exception as exc:
                out["write_error"] = str(exc)
            yield pause(0.2)
            windows.append((first, len(gaps)))
            yield pause(0.5)
        first = len(gaps)
        d0 = time.perf_counter()
        holder.clear()  # the busy period is freed on the reactor thread
        out["free_ms"] = (time.perf_counter() - d0) * 1000
        yield pause(0.2)
        windows.append((first, len(gaps)))
        production.stop()
        out["rotate_ms"] = max(rotate_ms)
        if write_s:
            out["write_s"] = sorted(write_s)[len(write_s) // 2]

    @defer.inlineCallbacks
    def run_anchor() -> Any:
        yield pause(1.0)
        out["baseline_max_gap_ms"] = max(gaps[5:]) * 1000
        first = len(gaps)
        path = os.path.join(outdir, "period.json")
        t0 = time.perf_counter()
        holder[0].dump(path)  # 1.x: synchronous, on the reactor thread
        out["write_s"] = time.perf_counter() - t0
        out["file_bytes"] = os.path.getsize(path)
        yield pause(0.2)
        windows.append((first, len(gaps)))

    @defer.inlineCallbacks
    def begin() -> Any:
        last[0] = time.perf_counter()
        loop.start(interval, now=False)
        try:
            yield (run_ours() if session.kind == "ours" else run_anchor())
            maxima = [max(gaps[a:b]) * 1000 for a, b in windows if b > a]
            out["rotation_gaps_ms"] = maxima
            out["rotation_max_gap_ms"] = max(maxima) if maxima else None
        except Exception as exc:
            out["stall_error"] = repr(exc)
        finally:
            loop.stop()
            reactor.stop()

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
    options = {"lines": params["lines"]} if "lines" in params else {}
    session = Session(params["config"], **options).start()
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
        big = session.profiler.stop()
        out.update(ticks=big.stats["ticks"], samples=big.samples, heap_bytes=big.heap_bytes,
                   nodes=big.nodes, frames=big.frames)
    else:
        big = session.profiler
        big.stop()
        out.update(ticks=big.ticks, samples=big.samples_taken)
    del session
    holder = [big]
    del big
    stall_test(Session(params["config"]), holder, params["outdir"], out)
    release()
    emit(out)


if __name__ == "__main__":
    main()
