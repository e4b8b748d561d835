"""Finds the profile files under the served sources (directories by the rules
of ``profiler_service.catalog``, or single files); the facts the viewer's
picker shows (time range, samples, host, or the error) come from
``profiler_service.reading.summarize`` (ours and 1.x files).

A name is a file's base name; it is the only handle the API accepts, so a
request can reach nothing but a file this module listed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from profiler_service import catalog
from profiler_service.catalog import ProfileFile
from profiler_service.reading import summarize

__all__ = ["ProfileCatalog", "ProfileFile", "Source"]


@dataclass(frozen=True)
class Source:
    """A served place: a directory (its profiles by ``catalog``'s rules,
    only ``<prefix><stamp>.json.gz`` ones with a prefix) or one file."""

    path: str  # absolute
    prefix: Optional[str] = None


class ProfileCatalog:
    """The profile files under a fixed list of files and directories.

    Directories are scanned (not recursively) on every listing, by the rules
    of ``profiler_service.catalog``, so new files appear without a restart.
    Files named explicitly are served wherever they are. When two files
    share a base name, the first source given wins.
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

    def sources(self) -> list[Source]:
        """What is served (subclasses compute it). Must not block: it runs
        on the reactor thread for every fetch."""
        return [Source(path) for path in self.paths]

    def files(self) -> dict[str, ProfileFile]:
        """Blocking: every served file by name."""
        found: dict[str, ProfileFile] = {}
        for source in self.sources():
            if os.path.isdir(source.path):
                try:
                    listed = catalog.scan(source.path, source.prefix)
                except OSError:
                    continue
                for profile in listed:
                    found.setdefault(profile.name, profile)
            else:
                name = os.path.basename(source.path)
                profile = None if name in found else catalog.file_at(os.path.realpath(source.path), name)
                if profile is not None:
                    found[name] = profile
        return found

    def resolve(self, name: str) -> ProfileFile | None:
        """The listed file called `name`, with the rules of files(), looking
        only at that name: it runs on the reactor thread for every fetch."""
        if not name or name != os.path.basename(name):
            return None
        for source in self.sources():
            if os.path.isdir(source.path):
                if not os.path.lexists(os.path.join(source.path, name)):
                    continue
                profile = catalog.lookup(source.path, name, source.prefix)
            elif os.path.basename(source.path) == name:
                profile = catalog.file_at(os.path.realpath(source.path), name)
            else:
                continue
            if profile is not None:
                return profile
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
