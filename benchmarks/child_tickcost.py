"""Child: the cost of one tick against threads x depth.

``threads`` threads sleep in a loop ``depth`` frames deep; the main thread
sleeps too. In real mode every one of them is walked on every tick (their
leaf frame is not a waiting frame), so this is the worst case of a tick.

Ours: Period.stats sampling_ns / ticks (the walk with the GIL held) and the
sampler thread's CPU time / ticks (adds wake-up, GIL hand-off, load series).
1.x-style: the frame walk alone and the whole handler (walk + psutil + append),
timed inside the handler.

Params: config, threads, depth, seconds.
"""

from __future__ import annotations

import time

from common import Session, child_params, emit, start_sleepers


def main() -> None:
    params = child_params()
    stop = start_sleepers(params["threads"], params["depth"], interval=0.5)
    time.sleep(0.1)
    session = Session(params["config"]).start()
    sampler0 = session.sampler_cpu_ns()
    deadline = time.monotonic() + params["seconds"]
    while time.monotonic() < deadline:
        time.sleep(0.05)
    sampler1 = session.sampler_cpu_ns()
    stats = session.stop()
    stop()
    ticks = max(1, stats.get("ticks", 0))
    out = {
        "config": params["config"],
        "threads": params["threads"],
        "depth": params["depth"],
        "ticks": stats.get("ticks", 0),
        "samples": stats.get("samples", 0),
        "tick_us": stats.get("sampling_ns", 0) / ticks / 1000,
    }
    if sampler0 is not None and sampler1 is not None:
        out["sampler_thread_us"] = (sampler1 - sampler0) / ticks / 1000
    if "walk_ns" in stats:
        out["walk_us"] = stats["walk_ns"] / ticks / 1000
    emit(out)


if __name__ == "__main__":
    main()
