"""Finds the profile files under the served paths; the facts the viewer's
picker shows (time range, samples, host, or the error) come from
``profiler_service.profile.summarize`` (ours and 1.x files).

A name is a file's base name; it is the only handle the API accepts, so a
request can reach nothing but a file this module listed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

from profiler_service.profile import PROFILE_SUFFIXES, summarize


@dataclass(frozen=True)
class ProfileFile:
    name: str
    path: str  # real path, symlinks resolved
    size: int
    mtime: float
    version: tuple = field(default=(), compare=False)  # (dev, ino, size, mtime_ns): changes with the file


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
        # The summaries of the files the last listing served, by path and
        # version. Rebuilt by each listing from the files it found, so it
        # holds exactly what can be served: it never evicts a file it will
        # need (an LRU of fixed size re-read every file once the served
        # files outnumbered it) and forgets deleted files.
        self._summaries: dict[tuple, dict[str, Any]] = {}
        self._summaries_lock = threading.Lock()

    def served_paths(self) -> list[str]:
        """The files and directories served, absolute (subclasses compute them)."""
        return self.paths

    def files(self) -> dict[str, ProfileFile]:
        found: dict[str, ProfileFile] = {}
        for path in self.served_paths():
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
            found[name] = ProfileFile(name, real, st.st_size, st.st_mtime,
                                      (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))

    def resolve(self, name: str) -> ProfileFile | None:
        """The listed file called `name`, with the rules of files(), looking
        only at that name: it runs on the reactor thread for every fetch."""
        if not name or name != os.path.basename(name):
            return None
        found: dict[str, ProfileFile] = {}
        for path in self.served_paths():
            if os.path.isdir(path):
                if not name.endswith(PROFILE_SUFFIXES):
                    continue
                candidate = os.path.join(path, name)
                if not os.path.lexists(candidate):
                    continue
                real = os.path.realpath(candidate)
                if not _is_within(real, os.path.realpath(path)):
                    continue
            elif os.path.basename(path) == name:
                real = os.path.realpath(path)
            else:
                continue
            self._add(found, name, real)
            if name in found:
                return found[name]
        return None

    def listing(self) -> list[dict[str, Any]]:
        """One entry per file, newest first; blocking (run it in a thread).
        A file unchanged since the last listing is not read again."""
        with self._summaries_lock:
            known = self._summaries
        current: dict[tuple, dict[str, Any]] = {}
        entries = []
        for profile in self.files().values():
            key = (profile.name, profile.path, profile.version)
            entry = known.get(key)
            if entry is None:
                entry = self.summary(profile)
            current[key] = entry
            entries.append(dict(entry))
        with self._summaries_lock:
            self._summaries = current
        entries.sort(key=lambda e: (e["end_ms"] or e["mtime"] * 1000, e["name"]), reverse=True)
        return entries

    @staticmethod
    def summary(profile: ProfileFile) -> dict[str, Any]:
        facts = summarize(profile.path)  # cached by path, size and mtime
        facts.pop("path", None)  # the client needs no server paths
        if facts.get("error"):
            # summarize() names the file by its real path: keep only the problem.
            facts["error"] = facts["error"].replace(profile.path + ": ", "", 1)
        return dict(facts, name=profile.name, size=profile.size, mtime=profile.mtime)
