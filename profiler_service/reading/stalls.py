"""Reading the ``stalls`` member of a format v2 document (docs/FORMAT.md,
"Stalls"): the reactor's stalls, each with its wall-clock samples."""

from __future__ import annotations

from array import array
from typing import Optional

from .decode import _int, _ints, _list, _member, _object, _same_length
from .model import Stall


def _stall_weights(t: array, threshold_ms: int) -> array:
    weights = array("q")
    previous = threshold_ms
    for at in t:
        weights.append(max(at - previous, 1))
        previous = at
    return weights


def read_stalls(doc: dict, start_ms: int, n_threads: int, n_stacks: int) -> tuple[list[Stall], int, int]:
    """The ``stalls`` member of a v2 document: (stalls in time order,
    dropped, threshold in µs)."""
    member = _object(_member(doc, "stalls", "the document"), "stalls")
    dropped = _int(_member(member, "dropped", "stalls"), "stalls.dropped", 0)
    threshold_us = _int(_member(member, "threshold_us", "stalls"), "stalls.threshold_us", 0)
    stalls = []
    for i, item in enumerate(_list(_member(member, "items", "stalls"), "stalls.items")):
        where = f"stalls.items[{i}]"
        item = _object(item, where)
        start = _int(_member(item, "start", where), f"{where}.start")
        samples = _object(_member(item, "samples", where), f"{where}.samples")

        def column(name: str, high: Optional[int], low: int = -1, what: str = "") -> array:
            return _ints(_member(samples, name, f"{where}.samples"), f"{where}.samples.{name}", low, high, what)

        t = column("t", None, 0)
        thread = column("thread", n_threads, what="threads")
        stack = column("stack", n_stacks, what="stacks")
        busy_thread = column("busy_thread", n_threads, what="threads")
        busy_stack = column("busy_stack", n_stacks, what="stacks")
        _same_length(f"{where}.samples", t=t, thread=thread, stack=stack, busy_thread=busy_thread,
                     busy_stack=busy_stack)
        stall_start = start_ms + start
        stalls.append(Stall(
            start_ms=stall_start,
            duration_us=_int(_member(item, "duration_us", where), f"{where}.duration_us", 0),
            sampled_us=_int(_member(item, "sampled_us", where), f"{where}.sampled_us", 0),
            main_cpu_us=_int(_member(item, "main_cpu_us", where), f"{where}.main_cpu_us", 0),
            samples_dropped=_int(_member(item, "samples_dropped", where), f"{where}.samples_dropped", 0),
            sample_time_ms=array("q", (stall_start + dt for dt in t)),
            sample_thread=thread, sample_stack=stack,
            sample_busy_thread=busy_thread, sample_busy_stack=busy_stack,
            sample_weight_ms=_stall_weights(t, threshold_us // 1000),
        ))
    stalls.sort(key=lambda stall: stall.start_ms)
    return stalls, dropped, threshold_us
