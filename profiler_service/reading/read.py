"""load() and loads(): a file, or its bytes, to a Profile; the reader (ours
or 1.x) is chosen by the content, not the name."""

from __future__ import annotations

import io
import os
from typing import Any

from .decode import MAX_DOCUMENT_BYTES, _kind, _open_regular, _parse_json, _read_document
from .legacy import _from_legacy
from .model import FORMAT_NAME, MAX_TIME_MS, PathLike, Profile, ProfileError, _Invalid, _short
from .ours import _from_v1

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
