"""Export of a Profile as pprof: google/pprof's ``profile.proto``, gzipped.

Read by ``pprof``/``go tool pprof``, Grafana Pyroscope, Datadog and Google
Cloud Profiler. What a profile holds:

- sample types ``samples/count`` and ``cpu/nanoseconds`` (``wall/nanoseconds``
  in real mode), the second the default; period type the same time, period
  one sampling interval;
- one location and one function per frame of the file: the function's name,
  file and line (files of format v1 record a function's first line, so it is
  the function's ``start_line`` too; 1.x files record the sampled line); a
  by-line profile (``Profile.by_lines()``, ``export --lines``) has one
  location per (function, line) and one function per function, so pprof's
  ``-lines`` and ``-functions`` both work;
- one pprof sample per distinct (thread, stack, builds running), with string
  labels ``thread_name`` and ``thread_id`` (the native id, or the ident
  where the file has none) and, for every build of the file running at that
  sample's time, ``builder`` and ``buildnumber`` (values in the same order).

The messages are encoded by the ``protobuf`` package (an optional
dependency: ``pip install 'buildbot-profiler[pprof]'``) from descriptors that
this module spells out from the public schema (the subset of fields written
here): no generated code and no copy of the ``.proto`` in the tree, and no
``protoc`` at build time. Field numbers are the schema's; names only matter
to us.
"""

from __future__ import annotations

import gzip
from bisect import bisect_right
from typing import Any, Iterable, Optional, Union

from .exports import _check_size, _selected_counts
from .reading import LEGACY_FORMAT, Frame, Profile

__all__ = ["ALL_LABELS", "PprofUnavailable", "to_pprof", "pprof_messages"]

ALL_LABELS = ("thread_name", "thread_id", "builder", "buildnumber")
"""The per-sample labels an export carries by default."""

INSTALL_HINT = "pip install 'buildbot-profiler[pprof]'"


class PprofUnavailable(ImportError):
    """The protobuf package is missing; ``str()`` says how to install it."""


# (message, [(field name, number, type, repeated, message type)]) from
# github.com/google/pprof proto/profile.proto, package perftools.profiles.
_INT64, _UINT64, _BOOL, _STRING, _MESSAGE = "int64", "uint64", "bool", "string", "message"
_SCHEMA: list[tuple[str, list[tuple[str, int, str, bool, Optional[str]]]]] = [
    ("Profile", [
        ("sample_type", 1, _MESSAGE, True, "ValueType"),
        ("sample", 2, _MESSAGE, True, "Sample"),
        ("mapping", 3, _MESSAGE, True, "Mapping"),
        ("location", 4, _MESSAGE, True, "Location"),
        ("function", 5, _MESSAGE, True, "Function"),
        ("string_table", 6, _STRING, True, None),
        ("time_nanos", 9, _INT64, False, None),
        ("duration_nanos", 10, _INT64, False, None),
        ("period_type", 11, _MESSAGE, False, "ValueType"),
        ("period", 12, _INT64, False, None),
        ("comment", 13, _INT64, True, None),
        ("default_sample_type", 14, _INT64, False, None),
    ]),
    ("ValueType", [("type", 1, _INT64, False, None), ("unit", 2, _INT64, False, None)]),
    ("Sample", [
        ("location_id", 1, _UINT64, True, None),
        ("value", 2, _INT64, True, None),
        ("label", 3, _MESSAGE, True, "Label"),
    ]),
    ("Label", [
        ("key", 1, _INT64, False, None),
        ("str", 2, _INT64, False, None),
        ("num", 3, _INT64, False, None),
        ("num_unit", 4, _INT64, False, None),
    ]),
    ("Mapping", [
        ("id", 1, _UINT64, False, None),
        ("filename", 5, _INT64, False, None),
        ("has_functions", 7, _BOOL, False, None),
        ("has_filenames", 8, _BOOL, False, None),
        ("has_line_numbers", 9, _BOOL, False, None),
    ]),
    ("Location", [
        ("id", 1, _UINT64, False, None),
        ("mapping_id", 2, _UINT64, False, None),
        ("line", 4, _MESSAGE, True, "Line"),
    ]),
    ("Line", [("function_id", 1, _UINT64, False, None), ("line", 2, _INT64, False, None)]),
    ("Function", [
        ("id", 1, _UINT64, False, None),
        ("name", 2, _INT64, False, None),
        ("system_name", 3, _INT64, False, None),
        ("filename", 4, _INT64, False, None),
        ("start_line", 5, _INT64, False, None),
    ]),
]
_PACKAGE = "perftools.profiles"
_messages: Optional[dict[str, Any]] = None


def pprof_messages() -> dict[str, Any]:
    """{message name: class} for the pprof schema, built once in a private
    descriptor pool (so another library's copy of profile.proto in the
    default pool cannot clash). Raises PprofUnavailable without protobuf."""
    global _messages
    if _messages is not None:
        return _messages
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as exc:
        raise PprofUnavailable(f"pprof needs the protobuf package ({INSTALL_HINT}): {exc}") from None
    field = descriptor_pb2.FieldDescriptorProto
    types = {_INT64: field.TYPE_INT64, _UINT64: field.TYPE_UINT64, _BOOL: field.TYPE_BOOL,
             _STRING: field.TYPE_STRING, _MESSAGE: field.TYPE_MESSAGE}
    file = descriptor_pb2.FileDescriptorProto(
        name="buildbot_profiler/pprof_profile.proto", package=_PACKAGE, syntax="proto3")
    for message_name, fields in _SCHEMA:
        message = file.message_type.add(name=message_name)
        for name, number, kind, repeated, message_type in fields:
            entry = message.field.add(
                name=name, number=number, type=types[kind],
                label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL)
            if message_type:
                entry.type_name = f".{_PACKAGE}.{message_type}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    _messages = {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name, _ in _SCHEMA
    }
    return _messages


class _Strings:
    """The profile's string table: index 0 is ""."""

    def __init__(self) -> None:
        self.table = [""]
        self.index = {"": 0}

    def __call__(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.table)
            self.table.append(text)
        return found


def _build_spans(profile: Profile) -> list[tuple[int, float, str, str]]:
    """(start ms, end ms, builder, number) of the file's builds with a start
    time, by start; a build still running when the file was written ends at
    the end of the period."""
    spans = []
    for build in profile.builds:
        started = build.get("started_ms")
        if not isinstance(started, (int, float)) or isinstance(started, bool):
            continue
        complete = build.get("complete_ms")
        if not isinstance(complete, (int, float)) or isinstance(complete, bool):
            complete = float("inf")
        spans.append((started, complete, str(build.get("builder") or ""), str(build.get("number", ""))))
    spans.sort()
    return spans


def to_pprof(
    profile: Profile,
    *,
    start_ms: Optional[float] = None,
    end_ms: Optional[float] = None,
    thread: Union[None, str, int] = None,
    labels: Iterable[str] = ALL_LABELS,
    compress: bool = True,
) -> bytes:
    """The selection (as for the other exports, see ``exports``) as a pprof
    profile: gzipped bytes (``compress=False``: the bare message). ``labels``
    chooses which of ALL_LABELS the samples carry. Raises PprofUnavailable
    without the protobuf package, ValueError for an unknown label."""
    wanted = tuple(labels)
    unknown = sorted(set(wanted) - set(ALL_LABELS))
    if unknown:
        raise ValueError(f"unknown pprof label(s) {', '.join(unknown)}; known: {', '.join(ALL_LABELS)}")
    messages = pprof_messages()
    strings = _Strings()
    message = messages["Profile"]()
    unit = "nanoseconds"
    time_kind = "wall" if profile.mode == "real" else "cpu"
    message.sample_type.add(type=strings("samples"), unit=strings("count"))
    message.sample_type.add(type=strings(time_kind), unit=strings(unit))
    message.default_sample_type = strings(time_kind)
    message.period_type.type = strings(time_kind)
    message.period_type.unit = strings(unit)
    message.period = round(1e9 / profile.frequency) if profile.frequency > 0 else 0
    first_ms = profile.start_ms if start_ms is None else max(profile.start_ms, start_ms)
    last_ms = profile.end_ms if end_ms is None else min(profile.end_ms, end_ms)
    message.time_nanos = int(first_ms * 1_000_000)
    message.duration_nanos = max(int((last_ms - first_ms) * 1_000_000), 0)
    from . import __version__
    message.comment.append(strings(f"buildbot-profiler {__version__}: {profile.source}"))

    # One mapping for the interpreter, symbolized already: pprof neither
    # looks for a binary nor demangles (it would take "<module>" for C++).
    message.mapping.add(id=1, filename=strings("python"), has_functions=True,
                        has_filenames=True, has_line_numbers=True)
    # One location per frame, id = frame + 1, on the line of the frame. One
    # function per frame too, or in a by-line profile one per function.
    first_line_known = profile.format != LEGACY_FORMAT
    functions = profile.frame_functions or profile.frames
    function_ids: dict[Frame, int] = {}
    for index, frame in enumerate(profile.frames):
        function = functions[index]
        function_id = function_ids.get(function)
        if function_id is None:
            function_id = function_ids[function] = len(function_ids) + 1
            message.function.add(
                id=function_id, name=strings(function.name), filename=strings(function.file),
                start_line=function.line if first_line_known else 0)
        location = message.location.add(id=index + 1, mapping_id=1)
        location.line.add(function_id=function_id, line=frame.line)

    thread_labels: list[list[tuple[int, int]]] = []
    for t in profile.threads:
        pairs = []
        if "thread_name" in wanted:
            pairs.append((strings("thread_name"), strings(t.name)))
        if "thread_id" in wanted:
            pairs.append((strings("thread_id"), strings(str(t.native_id or t.ident))))
        thread_labels.append(pairs)

    spans = _build_spans(profile) if {"builder", "buildnumber"} & set(wanted) else []
    span_starts = [span[0] for span in spans]
    builder_key, number_key = strings("builder"), strings("buildnumber")

    def running_builds(time_ms: int) -> tuple[int, ...]:
        # Spans that began by time_ms and had not ended: few builds per file.
        return tuple(i for i in range(bisect_right(span_starts, time_ms)) if spans[i][1] > time_ms)

    times = profile.sample_time_ms
    totals = _selected_counts(profile, start_ms, end_ms, thread,
                              (lambda i: running_builds(times[i])) if spans else (lambda i: ()))

    _check_size(profile, (stack for _, stack, _ in totals))
    for (thread_index, stack, builds), (count, weight_us) in sorted(totals.items()):
        sample = message.sample.add()
        path = profile.stack_path(stack)
        sample.location_id.extend(frame + 1 for frame in reversed(path))  # leaf first
        sample.value.extend((count, weight_us * 1000))
        for key, value in thread_labels[thread_index]:
            sample.label.add(key=key, str=value)
        for build in builds:
            _, _, builder, number = spans[build]
            if "builder" in wanted:
                sample.label.add(key=builder_key, str=strings(builder))
            if "buildnumber" in wanted:
                sample.label.add(key=number_key, str=strings(number))

    message.string_table.extend(strings.table)
    data = message.SerializeToString()
    return gzip.compress(data, compresslevel=6, mtime=0) if compress else data
