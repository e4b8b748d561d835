"""Reading profile files: ours (format v1, gzip JSON) and buildbot_profiler 1.x's.

``load(path)`` returns a :class:`Profile`, one in-memory model for both
formats: threads, frames, a prefix tree of stacks and the samples as parallel
integer arrays (absolute time, thread, stack, weight). Anything that is not a
readable profile raises :class:`ProfileError`, never another exception, so
callers (the CLI, the web viewer) can show one line and go on.

``summarize(path)`` gives the few facts a directory listing needs without
building the model when the file allows it; ``list_profiles(directory)``
summarizes every profile-looking file of a directory.

Nothing from a file is trusted: every index is range-checked before the model
is built, so code using a Profile can index its arrays without checks.
"""

from __future__ import annotations

import codecs
import io
import json
import math
import operator
import os
import re
import stat
import threading
import zlib
from array import array
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional, Union

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LEGACY_FORMAT",
    "SCHEMA_PATH",
    "Frame",
    "Load",
    "Profile",
    "ProfileError",
    "Thread",
    "list_profiles",
    "load",
    "loads",
    "summarize",
]

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "profile-v1.schema.json"
"""The JSON Schema of format v1 (docs/FORMAT.md)."""

FORMAT_NAME = "buildbot-profiler"
FORMAT_VERSION = 1
LEGACY_FORMAT = "buildbot_profiler-1.x"
"""``Profile.format`` of files written by buildbot_profiler 1.x (version None)."""

LEGACY_DEFAULT_FREQUENCY = 100
"""1.x's default frequency, used when a 1.x file does not record its own."""

MAX_FREQUENCY = 10000
"""The highest sampling frequency a file may declare (Hz), as the schema says."""

MAX_DOCUMENT_BYTES = 256 << 20
"""A file, or the JSON document a gzip file decompresses to, larger than this
is refused (gzip bombs). Reading peaks at about 8 to 12 times the JSON's size
in memory (docs/FORMAT.md, "What readers accept")."""

MAX_TIME_MS = 253402300799999
"""The latest time a file may name: 9999-12-31T23:59:59.999Z."""

PathLike = Union[str, "os.PathLike[str]"]


class ProfileError(ValueError):
    """The file is not a profile this reader can use.

    ``str(error)`` is one line, ``"<file>: <problem>"``. ``error.source`` is
    the file name as given and ``error.problem`` the problem alone.
    """

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = _one_line(problem)
        super().__init__(_one_line(f"{source}: {problem}"))


class _Invalid(Exception):
    """Internal: a problem found while reading; load() adds the file name."""


def _one_line(text: str) -> str:
    lines = text.splitlines()
    return " ".join(lines) if len(lines) != 1 else lines[0]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Thread(NamedTuple):
    ident: int          # threading.get_ident()
    native_id: int      # kernel thread id, 0 if unknown (1.x files)
    name: str
    samples: int        # samples of this thread, counted from the samples
    weight_us: int      # their summed weight


class Frame(NamedTuple):
    name: str           # qualified function name, or a "[synthetic]" frame
    file: str           # "" for synthetic frames; a 20-character tail in 1.x files
    line: int           # first line of the function (v1) or the sampled line (1.x); 0 if unknown

    @property
    def label(self) -> str:
        """``name (file:line)``, ``name (file)`` if the line is unknown, or
        the bare name of a synthetic frame."""
        if not self.file:
            return self.name
        return f"{self.name} ({self.file}:{self.line})" if self.line else f"{self.name} ({self.file})"


@dataclass(frozen=True, eq=False)
class Load:
    """The load series, one point per second (v1) or per sample (1.x).

    ``cpu_percent``: v1 files record the process's CPU (100 = one core); 1.x
    files the mean over cores of the system's CPU. ``rss_kb`` is None for 1.x
    files, ``mem_percent`` None when the RAM size is unknown.
    """

    t_ms: array
    cpu_percent: list[float]
    rss_kb: Optional[array]
    mem_percent: Optional[list[float]]

    def __len__(self) -> int:
        return len(self.t_ms)


@dataclass(eq=False)
class Profile:
    """One period, read from a file.

    Stacks form a prefix tree: stack ``s`` has the leaf frame
    ``stack_frame[s]`` and the parent stack ``stack_parent[s]`` (-1 at the
    root level, always < s). Sample ``i`` happened at ``sample_time_ms[i]``
    (ms since the Unix epoch) in thread ``threads[sample_thread[i]]`` with the
    stack ``sample_stack[i]`` and stands for ``sample_weight_us[i]`` µs of CPU
    (wall time in ``real`` mode; 1/frequency s for 1.x files).
    """

    source: str
    format: str                     # FORMAT_NAME or LEGACY_FORMAT
    version: Optional[int]          # 1, or None for 1.x files
    start_ms: int
    end_ms: int
    mode: Optional[str]             # "prof" | "virtual" | "real"; None if unknown
    frequency: float
    meta: dict[str, Any]
    stats: dict[str, int]
    threads: list[Thread]
    frames: list[Frame]
    stack_parent: array
    stack_frame: array
    sample_time_ms: array
    sample_thread: array
    sample_stack: array
    sample_weight_us: array
    load: Load
    builds: list[dict[str, Any]]
    _outermost: Optional[bytearray] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.sample_stack)

    def __repr__(self) -> str:
        return (
            f"<Profile {self.source!r} {self.format} v{self.version} "
            f"{len(self)} samples, {len(self.threads)} threads>"
        )

    @property
    def duration_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    def stack_path(self, stack: int) -> tuple[int, ...]:
        """Frame ids of a stack, root first.

        Costs the stack's depth and keeps nothing: caching every stack's
        path would cost the sum of all depths, quadratic in the file for a
        deep tree (a chain of stacks).
        """
        frames = []
        node = stack
        parent, frame = self.stack_parent, self.stack_frame
        while node >= 0:
            frames.append(frame[node])
            node = parent[node]
        frames.reverse()
        return tuple(frames)

    def stack_depths(self) -> array:
        """The number of frames of every stack (linear: parents come first)."""
        depths = array("q", bytes(8 * len(self.stack_parent)))
        for node, parent in enumerate(self.stack_parent):
            depths[node] = depths[parent] + 1 if parent >= 0 else 1
        return depths

    def outermost(self) -> bytearray:
        """1 for every stack whose leaf frame appears nowhere above it on its
        own path (the outermost call of a recursive function), else 0.

        One walk over the tree with a count per frame of its calls on the
        current path: linear in the number of stacks. Cached.
        """
        if self._outermost is not None:
            return self._outermost
        n_stacks = len(self.stack_parent)
        parent, frame = self.stack_parent, self.stack_frame
        # Children in CSR form: slot 0 the roots, slot s + 1 the children of s.
        start = [0] * (n_stacks + 2)
        for p in parent:
            start[p + 2] += 1
        for i in range(2, n_stacks + 2):
            start[i] += start[i - 1]
        fill = start[:n_stacks + 1]
        children = [0] * n_stacks
        for node, p in enumerate(parent):
            children[fill[p + 1]] = node
            fill[p + 1] += 1
        outermost = bytearray(n_stacks)
        on_path = [0] * len(self.frames)
        pending = children[start[0]:start[1]]
        while pending:
            node = pending.pop()
            if node < 0:  # leaving ~node's subtree
                on_path[frame[~node]] -= 1
                continue
            f = frame[node]
            if not on_path[f]:
                outermost[node] = 1
            on_path[f] += 1
            pending.append(~node)
            pending.extend(children[start[node + 1]:start[node + 2]])
        self._outermost = outermost
        return outermost

    def thread_indexes(self, thread: Union[None, str, int]) -> Optional[list[int]]:
        """Indexes into ``threads`` selected by ``thread``.

        None selects every thread (returns None). A str selects the threads of
        that name; an int, or a str of digits no thread is named, the thread
        with that ident or native id. Raises ValueError naming the known
        threads if nothing matches.
        """
        if thread is None:
            return None
        if isinstance(thread, str):
            found = [i for i, t in enumerate(self.threads) if t.name == thread]
            if found or not (thread.isascii() and thread.isdigit()):
                if found:
                    return found
                raise ValueError(self._no_thread(thread))
            thread = int(thread)
        if isinstance(thread, bool) or not isinstance(thread, int):
            raise TypeError("thread must be None, a thread name or a thread id")
        found = [i for i, t in enumerate(self.threads) if thread in (t.ident, t.native_id)]
        if not found:
            raise ValueError(self._no_thread(thread))
        return found

    def _no_thread(self, thread: object) -> str:
        names = ", ".join(sorted({t.name for t in self.threads})) or "none"
        return _one_line(f"no thread {_short(thread)} in {self.source} (threads: {names})")

    def select(
        self,
        start_ms: Optional[float] = None,
        end_ms: Optional[float] = None,
        thread: Union[None, str, int] = None,
    ) -> list[int]:
        """Indexes of the samples with ``start_ms <= time < end_ms`` (either
        bound may be None) in the threads ``thread`` selects (see
        ``thread_indexes``), in time order."""
        wanted = self.thread_indexes(thread)
        times, threads = self.sample_time_ms, self.sample_thread
        n = len(times)
        # Times are sorted: dt >= 0 in v1 files, 1.x samples sorted at load.
        lo = 0 if start_ms is None else bisect_left(times, start_ms)
        hi = n if end_ms is None else bisect_left(times, end_ms)
        if wanted is None:
            return list(range(lo, hi))
        keep = set(wanted)
        return [i for i in range(lo, hi) if threads[i] in keep]


# --------------------------------------------------------------------------
# Bytes to JSON


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind_of_file(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def _open_regular(path: PathLike) -> tuple[Any, os.stat_result]:
    """path opened for reading, and its fstat; refuses anything but a regular
    file without blocking: opening a FIFO for reading would wait for a
    writer, so the open is non-blocking and the kind is checked on the
    opened descriptor (no window between a check and the open)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Invalid(f"not a regular file ({_kind_of_file(st.st_mode)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


_READ_STEP = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def _read_document(f: Any, size: int, limit: int) -> tuple[str, bool]:
    """The JSON text of an open file, plain or gzip (every member), and
    whether it was compressed. More than limit bytes of file or of JSON is
    refused. The output is decoded as it comes, so memory stays about twice
    the JSON's size (the decoded parts, then the joined text)."""
    if size > limit:
        raise _Invalid(f"file is larger than {limit} bytes")
    first = f.read(_READ_STEP)
    if not first:
        raise _Invalid("empty file")
    compressed = first[:2] == _GZIP_MAGIC
    if compressed and size >= 18:
        # ISIZE, the last member's length mod 2**32, is at most the real
        # length of an intact stream. When it says more than limit, inflate
        # once keeping nothing: a bomb made by gzip then costs no memory,
        # and a cut or corrupt file still gets its own error.
        f.seek(size - 4)
        claimed = int.from_bytes(f.read(4), "little")
        f.seek(len(first))
        if claimed > limit:
            for _ in _inflate(f, first, limit):
                pass
            f.seek(len(first))
    pieces = _inflate(f, first, limit) if compressed else _plain(f, first, limit)
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts: list[str] = []
    total = 0
    try:
        for piece in pieces:
            parts.append(decoder.decode(piece))
            total += len(piece)
        parts.append(decoder.decode(b"", True))
    except UnicodeDecodeError as e:
        where = "gzip data is not" if compressed else "not gzip and not JSON:"
        raise _Invalid(f"{where} UTF-8 text ({e.reason} at byte {total + e.start})") from None
    text = "".join(parts)
    del parts
    return text, compressed


def _plain(f: Any, first: bytes, limit: int) -> Iterator[bytes]:
    """The bytes of f from first on, refusing more than limit in all."""
    total = 0
    chunk = first
    while chunk:
        total += len(chunk)
        if total > limit:
            raise _Invalid(f"file is larger than {limit} bytes")
        yield chunk
        chunk = f.read(_READ_STEP)


def _inflate(f: Any, first: bytes, limit: int) -> Iterator[bytes]:
    """Every gzip member of f from first on, inflated in pieces of at most
    _READ_STEP bytes, refusing more than limit bytes of output."""
    total = 0
    chunk = first
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        while chunk:
            # max_length bounds each call's output, whatever the ratio.
            out = inflater.decompress(chunk, _READ_STEP)
            chunk = inflater.unconsumed_tail
            if inflater.eof:
                chunk = inflater.unused_data
                while len(chunk) < 2:  # another member, or the end of the file
                    more = f.read(_READ_STEP)
                    if not more:
                        break
                    chunk += more
                if chunk:
                    if chunk[:2] != _GZIP_MAGIC:
                        raise _Invalid("unexpected bytes after the gzip data")
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif not chunk:
                chunk = f.read(_READ_STEP)
                if not chunk:
                    # All input taken: what zlib still holds is a few bytes
                    # (a match under way), not a bomb.
                    out += inflater.flush()
            total += len(out)
            if total > limit:
                raise _Invalid(f"gzip data decompresses to more than {limit} bytes")
            yield out
    except zlib.error as e:
        raise _Invalid(f"corrupt gzip data ({e})") from None
    if not inflater.eof:
        raise _Invalid("truncated gzip data (the file ends mid-stream)")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(text: str, compressed: bool) -> Any:
    if not text.strip():
        raise _Invalid("empty gzip data" if compressed else "empty file")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _Invalid("JSON nested too deeply") from None
    except ValueError as e:
        what = "gzip data is not JSON" if compressed else "not gzip and not JSON"
        raise _Invalid(f"{what}: {e}") from None


# --------------------------------------------------------------------------
# Validation helpers. They raise _Invalid with the member's path.

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _object(value: Any, where: str) -> dict:
    if type(value) is not dict:
        raise _Invalid(f"{where} is {_kind(value)}, expected an object")
    return value


def _list(value: Any, where: str) -> list:
    if type(value) is not list:
        raise _Invalid(f"{where} is {_kind(value)}, expected an array")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _member(obj: dict, key: str, where: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise _Invalid(f"{where} has no member {key!r}") from None


def _int(value: Any, where: str, minimum: Optional[int] = None) -> int:
    if type(value) is not int:
        raise _Invalid(f"{where} is {_kind(value)}, expected an integer")
    if minimum is not None and value < minimum:
        raise _Invalid(f"{where} is {value}, expected >= {minimum}")
    return value


def _time_ms(value: Any, where: str) -> int:
    """A time in ms since the Unix epoch, from 1970 to the end of year 9999
    (what a calendar date can show)."""
    time_ms = _int(value, where, 0)
    if time_ms > MAX_TIME_MS:
        raise _Invalid(f"{where} is {time_ms}, after the year 9999 (expected <= {MAX_TIME_MS})")
    return time_ms


def _str(value: Any, where: str) -> str:
    """A string member; a lone surrogate (a JSON escape such as \\ud800 that
    is not half of a pair, so not a character) becomes U+FFFD, as the writer
    does for bytes that are not UTF-8, so every string of a Profile can be
    encoded and every export writes the same text."""
    if type(value) is not str:
        raise _Invalid(f"{where} is {_kind(value)}, expected a string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = _LONE_SURROGATE.sub("\ufffd", value)
    return value


def _number(value: Any, where: str) -> float:
    if type(value) not in (int, float):
        raise _Invalid(f"{where} is {_kind(value)}, expected a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _Invalid(f"{where} is too large")
    return number


def _frequency(value: Any, where: str) -> float:
    frequency = _number(value, where)
    if not 0 < frequency <= MAX_FREQUENCY:
        raise _Invalid(f"{where} is {frequency:g}, expected > 0 and <= {MAX_FREQUENCY}")
    return frequency


def _ints(value: Any, where: str, low: int, high: Optional[int] = None, what: str = "") -> array:
    """An array of integers in [low, high) as array('q')."""
    items = _list(value, where)
    types = set(map(type, items))
    if types - {int}:
        bad = next(i for i, v in enumerate(items) if type(v) is not int)
        raise _Invalid(f"{where}[{bad}] is {_kind(items[bad])}, expected an integer")
    try:
        result = array("q", items)
    except OverflowError:
        raise _Invalid(f"{where} holds an integer too large for 64 bits") from None
    if result:
        smallest, largest = min(result), max(result)
        if smallest < low:
            bad = result.index(smallest)
            raise _Invalid(f"{where}[{bad}] is {smallest}, expected >= {low}")
        if high is not None and largest >= high:
            bad = result.index(largest)
            raise _Invalid(f"{where}[{bad}] is {largest}, out of range ({high} {what})")
    return result


def _same_length(where: str, **arrays: array) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise _Invalid(f"{where} arrays differ in length ({detail})")


def _thread_totals(n_threads: int, sample_thread: array, sample_weight: array) -> tuple[list[int], list[int]]:
    counts = [0] * n_threads
    weights = [0] * n_threads
    for t, w in zip(sample_thread, sample_weight):
        counts[t] += 1
        weights[t] += w
    return counts, weights


# --------------------------------------------------------------------------
# Format v1


def _v1_version(doc: dict) -> int:
    version = _member(doc, "version", "the document")
    if type(version) is not int:
        raise _Invalid(f"'version' is {_kind(version)}, expected an integer")
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"format version {version} is newer than this reader (it knows {FORMAT_VERSION}); "
            "upgrade buildbot-profiler"
        )
    if version != FORMAT_VERSION:
        raise _Invalid(f"unknown format version {version} (this reader knows {FORMAT_VERSION})")
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

    counts, weights = _thread_totals(len(thread_ids), sample_thread, sample_weight)
    threads = [Thread(ident, native, name, counts[i], weights[i])
               for i, (ident, native, name) in enumerate(thread_ids)]
    return Profile(
        source=source, format=FORMAT_NAME, version=version, start_ms=start_ms, end_ms=end_ms,
        mode=mode, frequency=frequency, meta=meta, stats=stats, threads=threads, frames=frames,
        stack_parent=stack_parent, stack_frame=stack_frame, sample_time_ms=sample_time,
        sample_thread=sample_thread, sample_stack=sample_stack, sample_weight_us=sample_weight,
        load=load_series, builds=builds,
    )


# --------------------------------------------------------------------------
# buildbot_profiler 1.x


_LEGACY_TIME_LIMIT_S = 1e11  # year 5138: past it, a "time" is not seconds


def _from_legacy(doc: dict, source: str, mtime_ms: int) -> Profile:
    frequency = _frequency(doc.get("frequency", LEGACY_DEFAULT_FREQUENCY), "frequency")
    weight_us = max(1, round(1_000_000 / frequency))
    gatherperiod = doc.get("gatherperiod")
    if gatherperiod is not None:
        _number(gatherperiod, "gatherperiod")

    frames = []
    for i, f in enumerate(_list(doc["frames"], "frames")):
        where = f"frames[{i}]"
        if type(f) is not list or len(f) != 3:
            raise _Invalid(f"{where} is not a [file, line, function] array")
        # The 1.3 plugin writes null where CPython 3.11 has no line (f_lineno None).
        line = 0 if f[1] is None else _int(f[1], f"{where}[1]", 0)
        frames.append(Frame(_str(f[2], f"{where}[2]"), _str(f[0], f"{where}[0]"), line))
    n_frames = len(frames)

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
        per_core = s.get("cpu")
        if per_core is None:
            cpu.append(0.0)
        else:
            per_core = [_number(c, f"{where}.cpu") for c in _list(per_core, f"{where}.cpu")]
            cpu.append(sum(per_core) / len(per_core) if per_core else 0.0)
        memory = s.get("mem")
        percent = 0.0
        if memory is not None:
            percent = _object(memory, f"{where}.mem").get("percent", 0.0)
            percent = _number(percent, f"{where}.mem.percent")
        mem.append(percent)

    if entries:
        start_ms = round(entries[0][0] * 1000)
        end_ms = round(entries[-1][0] * 1000) + round(1000 / frequency)
    else:
        start_ms = end_ms = mtime_ms

    sample_weight = array("q", [weight_us]) * len(sample_stack)
    counts, weights = _thread_totals(len(thread_ids), sample_thread, sample_weight)
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
        load=Load(t_ms=load_t, cpu_percent=cpu, rss_kb=None, mem_percent=mem),
        builds=builds,
    )


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


# --------------------------------------------------------------------------
# Public entry points


def _from_document(doc: Any, source: str, mtime_ms: int) -> Profile:
    if type(doc) is not dict:
        raise _Invalid(f"not a profile: the JSON document is {_kind(doc)}, expected an object")
    if "format" in doc:
        if doc["format"] != FORMAT_NAME:
            raise _Invalid(f"not a profile: 'format' is {_short(doc['format'])}, expected {FORMAT_NAME!r}")
        return _from_v1(doc, source)
    if "frames" in doc and "samples" in doc:
        return _from_legacy(doc, source, mtime_ms)
    raise _Invalid("not a profile: no 'format' member (nor the 'frames' and 'samples' of 1.x)")


def load(path: PathLike, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Profile:
    """Read a profile file: ours (gzip JSON, docs/FORMAT.md) or a 1.x JSON file.

    The kind is told by the content, not the name. Raises ProfileError with a
    one-line message naming the file and the problem for anything else,
    including files that cannot be opened.
    """
    source = os.fspath(path)
    try:
        f, st = _open_regular(path)
        with f:
            text, compressed = _read_document(f, st.st_size, max_bytes)
        doc = _parse_json(text, compressed)
        del text
        mtime_ms = min(max(st.st_mtime_ns // 1_000_000, 0), MAX_TIME_MS)
        return _from_document(doc, source, mtime_ms)
    except _Invalid as e:
        raise ProfileError(source, str(e)) from None
    except OSError as e:
        raise ProfileError(source, e.strerror or str(e)) from None
    except MemoryError:
        raise ProfileError(source, "not enough memory to read the file") from None


def loads(data: bytes, source: str = "<bytes>", *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Profile:
    """``load()`` for the bytes of a file already read; ``source`` names it in errors."""
    try:
        text, compressed = _read_document(io.BytesIO(data), len(data), max_bytes)
        doc = _parse_json(text, compressed)
        del text
        return _from_document(doc, source, 0)
    except _Invalid as e:
        raise ProfileError(source, str(e)) from None
    except MemoryError:
        raise ProfileError(source, "not enough memory to read the file") from None


# --------------------------------------------------------------------------
# Summaries for listings

_SUMMARY_PREFIX_BYTES = 256 * 1024
_SUMMARY_KEYS = ("format", "version", "meta", "stats")
_summary_cache: "OrderedDict[tuple, dict]" = OrderedDict()
_summary_cache_lock = threading.Lock()
_SUMMARY_CACHE_SIZE = 1024


def _prefix_members(text: str) -> dict:
    """The leading members of a JSON object that text holds entirely.

    Parses member by member with the standard decoder and stops at the first
    one that does not parse (cut by the end of text) or once the summary's
    members are all found.
    """
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    members: dict = {}
    length = len(text)

    def skip(i: int) -> int:
        while i < length and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if i >= length or text[i] != "{":
        return members
    i += 1
    try:
        while True:
            i = skip(i)
            key, i = decoder.raw_decode(text, i)
            i = skip(i)
            if type(key) is not str or i >= length or text[i] != ":":
                return members
            value, i = decoder.raw_decode(text, skip(i + 1))
            i = skip(i)
            if i >= length:  # a number might go on past the cut
                return members
            members[key] = value
            if all(k in members for k in _SUMMARY_KEYS) or text[i] != ",":
                return members
            i += 1
    except (ValueError, RecursionError):
        return members


def _gzip_prefix(path: PathLike) -> Optional[str]:
    """The first bytes of a gzip file's document as text, or None if the
    file is not gzip or its first member ends before them."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    f, _ = _open_regular(path)
    with f:
        if f.read(2) != _GZIP_MAGIC:
            return None
        f.seek(0)
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        prefix = b""
        while len(prefix) < _SUMMARY_PREFIX_BYTES and not d.eof:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            prefix += d.decompress(chunk, _SUMMARY_PREFIX_BYTES - len(prefix))
    return decoder.decode(prefix[:_SUMMARY_PREFIX_BYTES])


def _summary_from_header(members: dict) -> Optional[dict]:
    """Summary fields from the leading members of a v1 file, or None if they
    are not all there (then the full reader decides). Raises _Invalid for
    what load() would refuse in those members."""
    if not all(k in members for k in _SUMMARY_KEYS) or members["format"] != FORMAT_NAME:
        return None
    version = _v1_version(members)
    meta = _object(members["meta"], "meta")
    start_ms, end_ms, mode, _, _ = _v1_meta(meta)
    stats = _v1_stats(members["stats"])
    samples = stats.get("samples")
    if samples is None:
        return None
    hostname = meta.get("hostname")
    return {
        "format": FORMAT_NAME,
        "version": version,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "samples": samples,
        "mode": mode,
        "hostname": hostname if type(hostname) is str else None,
    }


def summarize(path: PathLike, *, verify: bool = True) -> dict:
    """Facts about a profile file for listings; never raises for a bad file.

    Returns a dict: ``name`` (base name), ``path``, ``size`` (bytes),
    ``mtime`` (epoch s), ``format``, ``version``, ``start_ms``, ``end_ms``,
    ``samples``, ``mode``, ``hostname`` and ``error`` (None, or the
    one-line ProfileError message; then the other facts are None).

    With ``verify`` (the default) the file is read as ``load()`` reads it,
    so a listing shows an error exactly for the files load() refuses.
    Without it, the facts of a v1 file come from the document's leading
    members (format, version, meta, stats) alone, checked as load() checks
    them, without reading the rest; other files are still fully loaded.
    Results are cached by path, size and modification time.
    """
    source = os.fspath(path)
    result: dict[str, Any] = {
        "name": os.path.basename(source), "path": source, "size": None, "mtime": None,
        "format": None, "version": None, "start_ms": None, "end_ms": None,
        "samples": None, "mode": None, "hostname": None, "error": None,
    }
    try:
        st = os.stat(path)
    except OSError as e:
        result["error"] = str(ProfileError(source, e.strerror or str(e)))
        return result
    result["size"] = st.st_size
    result["mtime"] = st.st_mtime
    if not stat.S_ISREG(st.st_mode):  # never opened: a FIFO would block
        result["error"] = str(ProfileError(source, f"not a regular file ({_kind_of_file(st.st_mode)})"))
        return result
    key = (os.path.abspath(source), st.st_size, st.st_mtime_ns, st.st_ino, verify)
    with _summary_cache_lock:
        cached = _summary_cache.get(key)
        if cached is not None:
            _summary_cache.move_to_end(key)
            return dict(cached)
    result.update(_summarize_content(path, source, verify))
    with _summary_cache_lock:
        _summary_cache[key] = dict(result)
        while len(_summary_cache) > _SUMMARY_CACHE_SIZE:
            _summary_cache.popitem(last=False)
    return result


def _summarize_content(path: PathLike, source: str, verify: bool) -> dict:
    if not verify:
        try:
            text = _gzip_prefix(path)
            header = _summary_from_header(_prefix_members(text)) if text is not None else None
            if header is not None:
                return header
        except _Invalid as e:
            return {"error": str(ProfileError(source, str(e)))}
        except (OSError, zlib.error, UnicodeDecodeError):
            pass  # load() below reports it with the right words
    try:
        profile = load(path)
    except ProfileError as e:
        return {"error": str(e)}
    return {
        "format": profile.format,
        "version": profile.version,
        "start_ms": profile.start_ms,
        "end_ms": profile.end_ms,
        "samples": len(profile),
        "mode": profile.mode,
        "hostname": profile.meta.get("hostname") if profile.version else None,
    }


PROFILE_SUFFIXES = (".json.gz", ".json")


def list_profiles(directory: PathLike, *, verify: bool = True) -> list[dict]:
    """``summarize()`` of every ``*.json.gz`` and ``*.json`` file directly in
    directory, newest period first (unreadable files last, by name).

    Raises OSError if the directory cannot be listed.
    """
    summaries = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(PROFILE_SUFFIXES) and entry.is_file():
                summaries.append(summarize(entry.path, verify=verify))

    def order(s: dict) -> tuple:
        return (s["error"] is not None, -(s["start_ms"] or 0), s["name"])

    summaries.sort(key=order)
    return summaries
