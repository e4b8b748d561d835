"""Finds the profile files under the served paths and reads the few facts the
viewer's picker shows (time range, samples, host), for our v1 ``.json.gz``
files and for the plain JSON files of buildbot_profiler 1.x.

A name is a file's base name; it is the only handle the API accepts, so a
request can reach nothing but a file this module listed.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import zlib
from dataclasses import dataclass
from typing import Any, Iterable

# A profile larger than this (decompressed) is listed with an error instead of
# being parsed: the listing must never take the memory of a huge file.
MAX_PARSE_BYTES = 128 * 1024 * 1024
PROFILE_SUFFIXES = (".json.gz", ".json")


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class ProfileFile:
    name: str
    path: str  # real path, symlinks resolved
    size: int
    mtime: float


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class ProfileCatalog:
    """The profile files under a fixed list of files and directories.

    Directories are scanned (not recursively) on every call, so new files
    appear without a restart; a directory entry whose real path leaves the
    directory (a symlink pointing out) is ignored. Files named explicitly are
    served wherever they are. When two files share a base name, the first
    path given wins.
    """

    def __init__(self, paths: Iterable[str]):
        self.paths = [os.path.abspath(p) for p in paths]
        self._summaries: dict[tuple[str, int, float], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def files(self) -> dict[str, ProfileFile]:
        found: dict[str, ProfileFile] = {}
        for path in self.paths:
            if os.path.isdir(path):
                root = os.path.realpath(path)
                try:
                    names = sorted(os.listdir(path))
                except OSError:
                    continue
                for name in names:
                    if not name.endswith(PROFILE_SUFFIXES) or name in found:
                        continue
                    real = os.path.realpath(os.path.join(path, name))
                    if _is_within(real, root):
                        self._add(found, name, real)
            else:
                name = os.path.basename(path)
                if name not in found:
                    self._add(found, name, os.path.realpath(path))
        return found

    @staticmethod
    def _add(found: dict[str, ProfileFile], name: str, real: str) -> None:
        try:
            st = os.stat(real)
        except OSError:
            return
        if os.path.isfile(real):
            found[name] = ProfileFile(name, real, st.st_size, st.st_mtime)

    def resolve(self, name: str) -> ProfileFile | None:
        return self.files().get(name)

    def listing(self) -> list[dict[str, Any]]:
        """One entry per file, newest first; blocking (run it in a thread)."""
        entries = [self.summary(f) for f in self.files().values()]
        entries.sort(key=lambda e: (e.get("end_ms") or e["mtime"] * 1000, e["name"]), reverse=True)
        return entries

    def summary(self, profile: ProfileFile) -> dict[str, Any]:
        key = (profile.path, profile.size, profile.mtime)
        with self._lock:
            cached = self._summaries.get(key)
        if cached is None:
            cached = summarize_file(profile.path)
            with self._lock:
                self._summaries[key] = cached
        return dict(cached, name=profile.name, size=profile.size, mtime=profile.mtime)


def _read_json(path: str) -> Any:
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
        chunks, size = [], 0
        while chunk := stream.read(1 << 20):
            size += len(chunk)
            if size > MAX_PARSE_BYTES:
                raise TooLarge(f"larger than {MAX_PARSE_BYTES >> 20} MB decompressed")
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


def summarize_file(path: str) -> dict[str, Any]:
    """Facts for the picker, or ``{"error": "..."}`` naming the problem."""
    try:
        doc = _read_json(path)
    except (OSError, EOFError, zlib.error) as exc:
        return {"error": f"cannot read: {exc}"}
    except UnicodeDecodeError as exc:
        return {"error": f"not UTF-8 JSON: {exc.reason}"}
    except TooLarge as exc:
        return {"error": f"too large to summarize: {exc}"}
    except ValueError as exc:
        return {"error": f"not valid JSON: {exc}"}
    except RecursionError:
        return {"error": "not valid JSON: nested too deeply"}
    try:
        if isinstance(doc, dict) and doc.get("format") == "buildbot-profiler":
            return _summarize_v1(doc)
        if isinstance(doc, dict) and isinstance(doc.get("frames"), list) and isinstance(doc.get("samples"), list):
            return _summarize_legacy(doc)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return {"error": f"malformed profile: {exc!r}"}
    return {"error": "not a buildbot-profiler file (neither format v1 nor 1.x)"}


def _summarize_v1(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("version") != 1:
        return {"error": f"unsupported format version {doc.get('version')!r} (this viewer reads 1)"}
    meta, stats = doc["meta"], doc.get("stats", {})
    return {
        "format": "v1",
        "start_ms": int(meta["start_ms"]),
        "end_ms": int(meta["end_ms"]),
        "samples": int(stats.get("samples", len(doc["samples"]["dt"]))),
        "hostname": str(meta.get("hostname", "")),
        "mode": str(meta.get("mode", "")),
        "builds": len(doc.get("builds") or []),
    }


def _summarize_legacy(doc: dict[str, Any]) -> dict[str, Any]:
    samples = doc["samples"]
    times = [float(s["time"]) for s in (samples[0], samples[-1])] if samples else [0.0, 0.0]
    return {
        "format": "1.x",
        "start_ms": int(times[0] * 1000),
        "end_ms": int(times[1] * 1000),
        "samples": len(samples),
        "hostname": "",
        "mode": "",
        "builds": 0,
    }
