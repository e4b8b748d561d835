"""Child: the cost of one tick against threads x depth.

``threads`` threads sleep in a loop ``depth`` frames deep, waking every
``wake_s`` seconds; the main thread sleeps too. Their leaf frame is not a
waiting frame, so real mode samples every one of them on every tick: a
thread that did not run since its last walk takes that walk's stack (one
CPU-clock read), one that woke since (``wake_s`` shorter than the tick) is
walked again, the worst case of a tick.

Measured in the steady state, after the first half second. Ours:
sampling_ns / ticks from Profiler.status() (the walk with the GIL held) and the
sampler thread's CPU time / ticks (adds wake-up, GIL hand-off, load series).
1.x-style: the frame walk alone and the whole handler (walk + psutil + append),
timed inside the handler.

Params: config, threads, depth, seconds, lines (ours: record each frame's
line; default True), wake_s (default 0.5).
"""

from __future__ import annotations

import time

from common import Session, child_params, emit, start_sleepers


def main() -> None:
    params = child_params()
    wake_s = params.get("wake_s", 0.5)
    stop = start_sleepers(params["threads"], params["depth"], interval=wake_s)
    time.sleep(0.1)
    options = {"lines": params["lines"]} if "lines" in params else {}
    session = Session(params["config"], **options).start()
    # Steady state: leave out the first half second, where the first ticks
    # of a period intern every frame and look up every thread's name.
    time.sleep(min(0.5, params["seconds"] / 2))
    before = counters(session)
    deadline = time.monotonic() + params["seconds"]
    while time.monotonic() < deadline:
        time.sleep(0.05)
    after = counters(session)
    session.stop()
    stop()
    ticks = max(1, after["ticks"] - before["ticks"])
    out = {
        "config": params["config"],
        "threads": params["threads"],
        "depth": params["depth"],
        "lines": params.get("lines", True),
        "wake_s": wake_s,
        "ticks": after["ticks"] - before["ticks"],
        "tick_us": (after["sampling_ns"] - before["sampling_ns"]) / ticks / 1000,
        "first_ticks_us": before["sampling_ns"] / max(1, before["ticks"]) / 1000,
    }
    if after.get("sampler_ns") is not None and before.get("sampler_ns") is not None:
        out["sampler_thread_us"] = (after["sampler_ns"] - before["sampler_ns"]) / ticks / 1000
    if "still" in after:
        # The share of samples taken without a walk (the thread did not run).
        out["still_share"] = (after["still"] - before["still"]) / max(1, after["samples"] - before["samples"])
    if "walk_ns" in after:
        out["walk_us"] = (after["walk_ns"] - before["walk_ns"]) / ticks / 1000
    emit(out)


def counters(session: Session) -> dict:
    if session.kind == "ours":
        status = session.profiler.status()
        return {"ticks": status["ticks"], "sampling_ns": status["sampling_ns"],
                "sampler_ns": session.sampler_cpu_ns(), "still": status["still_samples"],
                "samples": status["samples"]}
    collector = session.profiler
    return {"ticks": collector.ticks, "sampling_ns": collector.handler_ns, "walk_ns": collector.walk_ns}


if __name__ == "__main__":
    main()
