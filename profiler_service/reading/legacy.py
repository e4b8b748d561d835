"""The reader of buildbot_profiler 1.x's JSON files: a checked document to a
Profile (format LEGACY_FORMAT, version None)."""

from __future__ import annotations

import operator
from array import array
from typing import Any, Optional

from .decode import _frequency, _int, _list, _member, _number, _object, _str, _thread_totals
from .model import LEGACY_DEFAULT_FREQUENCY, LEGACY_FORMAT, Frame, Load, Profile, Thread, _Invalid, _short

_LEGACY_TIME_LIMIT_S = 1e11  # year 5138: past it, a "time" is not seconds


def _from_legacy(doc: dict, source: str, mtime_ms: int) -> Profile:
    frequency = _frequency(doc.get("frequency", LEGACY_DEFAULT_FREQUENCY), "frequency")
    weight_us = max(1, round(1_000_000 / frequency))
    gatherperiod = doc.get("gatherperiod")
    if gatherperiod is not None:
        _number(gatherperiod, "gatherperiod")

    frames = _legacy_frames(doc)
    n_frames = len(frames)

    entries = _legacy_entries(doc)

    thread_index: dict[str, int] = {}
    thread_ids: list[int] = []
    nodes: dict[tuple[int, int], int] = {}
    stack_parent, stack_frame = array("q"), array("q")
    sample_time, sample_thread, sample_stack = array("q"), array("q"), array("q")
    load_t, cpu, mem = array("q"), [], []
    for time_s, i, s in entries:
        where = f"samples[{i}]"
        time_ms = round(time_s * 1000)
        threads = _object(_member(s, "threads", where), f"{where}.threads")
        for tid, stack in threads.items():
            index = thread_index.get(tid)
            if index is None:
                if not (tid.isascii() and tid.isdigit() and len(tid) <= 20):
                    raise _Invalid(f"{where}.threads key {_short(tid)} is not a thread id")
                index = thread_index[tid] = len(thread_ids)
                thread_ids.append(int(tid))
            stack = _list(stack, f"{where}.threads[{tid}]")
            if not stack:
                continue
            node = -1
            for depth in range(len(stack) - 1, -1, -1):  # 1.x lists innermost first
                frame = stack[depth]
                if type(frame) is not int or not 0 <= frame < n_frames:
                    raise _Invalid(f"{where}.threads[{tid}][{depth}] is not a frame id "
                                   f"(0 to {n_frames - 1})")
                key = (node, frame)
                child = nodes.get(key)
                if child is None:
                    child = nodes[key] = len(stack_frame)
                    stack_parent.append(node)
                    stack_frame.append(frame)
                node = child
            sample_time.append(time_ms)
            sample_thread.append(index)
            sample_stack.append(node)
        load_t.append(time_ms)
        cpu_percent, mem_percent = _legacy_load_point(s, where)
        cpu.append(cpu_percent)
        mem.append(mem_percent)

    if entries:
        start_ms = round(entries[0][0] * 1000)
        end_ms = round(entries[-1][0] * 1000) + round(1000 / frequency)
    else:
        start_ms = end_ms = mtime_ms

    sample_weight = array("q", [weight_us]) * len(sample_stack)
    sample_count = array("q", [1]) * len(sample_stack)  # a 1.x sample is one tick
    counts, weights = _thread_totals(len(thread_ids), sample_thread, sample_count, sample_weight)
    threads = [Thread(ident, 0, f"thread {ident}", counts[i], weights[i])
               for i, ident in enumerate(thread_ids)]
    meta: dict[str, Any] = {"frequency": frequency}
    if gatherperiod is not None:
        meta["gatherperiod"] = gatherperiod
    stats = {"samples": len(sample_stack), "ticks": len(entries)}
    legacy_builds = doc.get("builds")
    builds = [_legacy_build(b) for b in legacy_builds if type(b) is dict] if type(legacy_builds) is list else []
    return Profile(
        source=source, format=LEGACY_FORMAT, version=None, start_ms=start_ms, end_ms=end_ms,
        mode=None, frequency=frequency, meta=meta, stats=stats, threads=threads, frames=frames,
        stack_parent=stack_parent, stack_frame=stack_frame, sample_time_ms=sample_time,
        sample_thread=sample_thread, sample_stack=sample_stack, sample_weight_us=sample_weight,
        sample_count=sample_count, load=Load(t_ms=load_t, cpu_percent=cpu, rss_kb=None, mem_percent=mem),
        builds=builds,
    )


def _legacy_frames(doc: dict) -> list[Frame]:
    frames = []
    for i, f in enumerate(_list(doc["frames"], "frames")):
        where = f"frames[{i}]"
        if type(f) is not list or len(f) != 3:
            raise _Invalid(f"{where} is not a [file, line, function] array")
        # The 1.3 plugin writes null where CPython 3.11 has no line (f_lineno None).
        line = 0 if f[1] is None else _int(f[1], f"{where}[1]", 0)
        frames.append(Frame(_str(f[2], f"{where}[2]"), _str(f[0], f"{where}[0]"), line))
    return frames


def _legacy_entries(doc: dict) -> list[tuple[float, int, dict]]:
    """(time in s, index in the file, sample) of every sample, checked."""
    entries = []
    for i, s in enumerate(_list(doc["samples"], "samples")):
        where = f"samples[{i}]"
        s = _object(s, where)
        time_s = _number(_member(s, "time", where), f"{where}.time")
        if not 0 <= time_s < _LEGACY_TIME_LIMIT_S:
            raise _Invalid(f"{where}.time is {time_s:g}, not a time in seconds since 1970")
        entries.append((time_s, i, s))
    # Times can go backwards (the 1.x handler re-entered by the next tick): in
    # time order, ties in file order.
    entries.sort(key=operator.itemgetter(0, 1))
    return entries


def _legacy_load_point(s: dict, where: str) -> tuple[float, float]:
    """A sample's mean CPU % over the cores and its memory %, 0 if absent."""
    per_core = s.get("cpu")
    cpu = 0.0
    if per_core is not None:
        per_core = [_number(c, f"{where}.cpu") for c in _list(per_core, f"{where}.cpu")]
        cpu = sum(per_core) / len(per_core) if per_core else 0.0
    memory = s.get("mem")
    percent = 0.0
    if memory is not None:
        percent = _object(memory, f"{where}.mem").get("percent", 0.0)
        percent = _number(percent, f"{where}.mem.percent")
    return cpu, percent


def _legacy_build(build: dict) -> dict:
    """A 1.x build (Buildbot data API, times as epoch seconds) in the v1 shape."""

    def ms(value: Any) -> Optional[int]:
        if type(value) not in (int, float) or not 0 <= value < _LEGACY_TIME_LIMIT_S:
            return None
        return round(value * 1000)

    return {
        "buildid": build.get("buildid"),
        "builderid": build.get("builderid"),
        "builder": build.get("builder", ""),
        "number": build.get("number"),
        "started_ms": ms(build.get("started_at")),
        "complete_ms": ms(build.get("complete_at")),
        "results": build.get("results"),
        "state_string": build.get("state_string"),
        "steps": [],
    }
