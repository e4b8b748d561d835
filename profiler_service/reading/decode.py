"""Bounded decoding: a regular file (never a FIFO) or bytes, plain or gzip, to
a JSON document, refusing more than MAX_DOCUMENT_BYTES (gzip bombs); and the
typed checks of a document's members, which raise _Invalid naming the member.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import stat
import zlib
from array import array
from typing import Any, Iterator, Optional

from .model import MAX_FREQUENCY, MAX_TIME_MS, PathLike, _Invalid

MAX_DOCUMENT_BYTES = 256 << 20
"""A file, or the JSON document a gzip file decompresses to, larger than this
is refused (gzip bombs). Reading peaks at about 8 to 12 times the JSON's size
in memory (docs/FORMAT.md, "What readers accept")."""


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


def _thread_totals(n_threads: int, sample_thread: array, sample_count: array,
                   sample_weight: array) -> tuple[list[int], list[int]]:
    counts = [0] * n_threads
    weights = [0] * n_threads
    for t, c, w in zip(sample_thread, sample_count, sample_weight):
        counts[t] += c
        weights[t] += w
    return counts, weights
