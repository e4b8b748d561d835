"""The reader of our own format, v1 to v3 (docs/FORMAT.md): a checked
document to a Profile."""

from __future__ import annotations

import operator
from array import array
from dataclasses import replace
from itertools import accumulate
from typing import Any

from .decode import (
    _frequency, _int, _ints, _kind, _list, _member, _object, _same_length, _str, _thread_totals, _time_ms,
)
from .lines import LineStacks, fold_functions
from .model import FORMAT_NAME, FORMAT_VERSION, Frame, Load, Profile, Stall, Thread, _Invalid, _short, sample_counts
from .stalls import read_stalls


def _v1_version(doc: dict) -> int:
    version = _member(doc, "version", "the document")
    if type(version) is not int:
        raise _Invalid(f"'version' is {_kind(version)}, expected an integer")
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"format version {version} is newer than this reader (it knows {FORMAT_VERSION}); "
            "upgrade buildbot-profiler"
        )
    if version < 1:
        raise _Invalid(f"unknown format version {version} (this reader knows 1 to {FORMAT_VERSION})")
    return version


def _v1_meta(meta: dict) -> tuple[int, int, str, float, int]:
    """start_ms, end_ms, mode, frequency and ram_kb (0 if unknown) of meta."""
    start_ms = _time_ms(_member(meta, "start_ms", "meta"), "meta.start_ms")
    end_ms = _time_ms(_member(meta, "end_ms", "meta"), "meta.end_ms")
    if end_ms < start_ms:
        raise _Invalid(f"meta.end_ms ({end_ms}) is before meta.start_ms ({start_ms})")
    mode = _str(_member(meta, "mode", "meta"), "meta.mode")
    frequency = _frequency(_member(meta, "frequency", "meta"), "meta.frequency")
    unit = meta.get("weight_unit", "us")
    if unit != "us":
        raise _Invalid(f"meta.weight_unit {_short(unit)} is not supported (expected 'us')")
    ram_kb = meta.get("ram_kb")
    ram_kb = _int(ram_kb, "meta.ram_kb", 0) if ram_kb is not None else 0
    return start_ms, end_ms, mode, frequency, ram_kb


def _v1_stats(stats: Any) -> dict[str, int]:
    stats = _object(stats, "stats")
    for key, value in stats.items():
        _int(value, f"stats.{key}", 0)
    return stats


def _from_v1(doc: dict, source: str) -> Profile:
    version = _v1_version(doc)

    meta = _object(_member(doc, "meta", "the document"), "meta")
    start_ms, end_ms, mode, frequency, ram_kb = _v1_meta(meta)
    stats = _v1_stats(_member(doc, "stats", "the document"))

    thread_docs = _list(_member(doc, "threads", "the document"), "threads")
    thread_ids = []
    for i, t in enumerate(thread_docs):
        where = f"threads[{i}]"
        t = _object(t, where)
        thread_ids.append((
            _int(_member(t, "ident", where), f"{where}.ident", 0),
            _int(_member(t, "native_id", where), f"{where}.native_id", 0),
            _str(_member(t, "name", where), f"{where}.name"),
        ))

    files = [_str(f, f"files[{i}]")
             for i, f in enumerate(_list(_member(doc, "files", "the document"), "files"))]
    frames = []
    for i, f in enumerate(_list(_member(doc, "frames", "the document"), "frames")):
        where = f"frames[{i}]"
        if type(f) is not list or len(f) != 3:
            raise _Invalid(f"{where} is not a [name, file, line] array")
        name = _str(f[0], f"{where}[0]")
        file_index = _int(f[1], f"{where}[1]", 0)
        if file_index >= len(files):
            raise _Invalid(f"{where}[1] is {file_index}, out of range ({len(files)} files)")
        frames.append(Frame(name, files[file_index], _int(f[2], f"{where}[2]", 0)))

    stacks = _object(_member(doc, "stacks", "the document"), "stacks")
    stack_frame = _ints(_member(stacks, "frame", "stacks"), "stacks.frame", 0, len(frames), "frames")
    n_stacks = len(stack_frame)
    stack_parent = _ints(_member(stacks, "parent", "stacks"), "stacks.parent", -1, n_stacks, "stacks")
    _same_length("stacks", parent=stack_parent, frame=stack_frame)
    if any(map(operator.ge, stack_parent, range(n_stacks))):
        bad = next(i for i, p in enumerate(stack_parent) if p >= i)
        raise _Invalid(f"stacks.parent[{bad}] is {stack_parent[bad]}, expected < {bad} (parents come first)")
    stack_line = None
    if version >= 3 and "line" in stacks:  # optional, as the schema says: no lines
        stack_line = _ints(stacks["line"], "stacks.line", 0)
        _same_length("stacks", parent=stack_parent, frame=stack_frame, line=stack_line)

    samples = _object(_member(doc, "samples", "the document"), "samples")
    dt = _ints(_member(samples, "dt", "samples"), "samples.dt", 0)
    sample_thread = _ints(_member(samples, "thread", "samples"), "samples.thread", 0, len(thread_ids), "threads")
    sample_stack = _ints(_member(samples, "stack", "samples"), "samples.stack", 0, n_stacks, "stacks")
    sample_weight = _ints(_member(samples, "weight", "samples"), "samples.weight", 0)
    _same_length("samples", dt=dt, thread=sample_thread, stack=sample_stack, weight=sample_weight)
    try:
        sample_time = array("q", accumulate(dt, initial=start_ms))
    except OverflowError:
        raise _Invalid("samples.dt adds up past 64 bits") from None
    del sample_time[0]

    load_doc = _object(_member(doc, "load", "the document"), "load")
    load_t = _ints(_member(load_doc, "t", "load"), "load.t", 0)
    cpu_permille = _ints(_member(load_doc, "cpu_permille", "load"), "load.cpu_permille", 0)
    rss_kb = _ints(_member(load_doc, "rss_kb", "load"), "load.rss_kb", 0)
    _same_length("load", t=load_t, cpu_permille=cpu_permille, rss_kb=rss_kb)
    try:
        load_time = array("q", (start_ms + t for t in load_t))
    except OverflowError:
        raise _Invalid("load.t goes past 64 bits") from None
    load_series = Load(
        t_ms=load_time,
        cpu_percent=[p / 10 for p in cpu_permille],
        rss_kb=rss_kb,
        mem_percent=[kb * 100 / ram_kb for kb in rss_kb] if ram_kb else None,
    )

    builds = _list(_member(doc, "builds", "the document"), "builds")
    for i, b in enumerate(builds):
        _object(b, f"builds[{i}]")

    stalls, stalls_dropped, stall_threshold_us = [], 0, 0
    if version >= 2:
        stalls, stalls_dropped, stall_threshold_us = read_stalls(doc, start_ms, len(thread_ids), n_stacks)

    lines = None
    if stack_line is not None:
        # The file's tree is line-level: the Profile's is by function.
        function_node, function_parent, function_frame = fold_functions(stack_parent, stack_frame)
        lines = LineStacks(stack_parent, stack_frame, stack_line, sample_stack)
        stack_parent, stack_frame = function_parent, function_frame
        sample_stack = array("q", (function_node[s] for s in sample_stack))
        stalls = [_fold_stall(stall, function_node) for stall in stalls]

    sample_count = sample_counts(len(thread_ids), sample_thread, sample_weight, frequency)
    counts, weights = _thread_totals(len(thread_ids), sample_thread, sample_count, sample_weight)
    threads = [Thread(ident, native, name, counts[i], weights[i])
               for i, (ident, native, name) in enumerate(thread_ids)]
    return Profile(
        source=source, format=FORMAT_NAME, version=version, start_ms=start_ms, end_ms=end_ms,
        mode=mode, frequency=frequency, meta=meta, stats=stats, threads=threads, frames=frames,
        stack_parent=stack_parent, stack_frame=stack_frame, sample_time_ms=sample_time,
        sample_thread=sample_thread, sample_stack=sample_stack, sample_weight_us=sample_weight,
        sample_count=sample_count, load=load_series, builds=builds, stalls=stalls,
        stalls_dropped=stalls_dropped, stall_threshold_us=stall_threshold_us, lines=lines,
    )


def _fold_stall(stall: Stall, function_node: array) -> Stall:
    """`stall` with its stacks by function."""
    def fold(stacks: array) -> array:
        return array("q", (function_node[s] if s >= 0 else -1 for s in stacks))

    return replace(stall, sample_stack=fold(stall.sample_stack), sample_busy_stack=fold(stall.sample_busy_stack))
