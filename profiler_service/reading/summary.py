"""Summaries for listings: summarize() one file (for v1 files without
verify, from the document's leading members alone, read by a JSON-prefix
scanner), cached by path, size and modification time; list_profiles() of a
directory."""

from __future__ import annotations

import codecs
import json
import os
import stat
import threading
import zlib
from collections import OrderedDict
from typing import Any, Optional

from ..catalog import PROFILE_SUFFIXES, scan  # the one set of rules for a directory's profiles
from .decode import _GZIP_MAGIC, _kind_of_file, _object, _open_regular, _reject_constant
from .model import FORMAT_NAME, PathLike, ProfileError, _Invalid
from .ours import _v1_meta, _v1_stats, _v1_version
from .read import load

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


def list_profiles(directory: PathLike, *, verify: bool = True) -> list[dict]:
    """``summarize()`` of every ``*.json.gz`` and ``*.json`` file directly in
    directory, newest period first (unreadable files last, by name).

    Raises OSError if the directory cannot be listed.
    """
    summaries = [summarize(profile.listed, verify=verify) for profile in scan(os.fspath(directory))]

    def order(s: dict) -> tuple:
        return (s["error"] is not None, -(s["start_ms"] or 0), s["name"])

    summaries.sort(key=order)
    return summaries
