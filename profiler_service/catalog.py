"""Which files in a directory are profiles: one set of rules for everybody.

Retention (``saving.prune``), ``ProfilerService.profile_files``,
``reading.list_profiles`` and the viewer's listing (``www/listing.py``) all
enumerate a directory with ``scan`` and look up one name with ``lookup``:

- a profile is named ``*.json.gz`` or ``*.json``; with a ``prefix``, only the
  files one writer names ``<prefix><UTC stamp>[_NN].json.gz`` count (a
  service's own files among others in the same directory);
- it is a regular file, directly in the directory; a name that is a symlink
  counts only if it resolves to a regular file inside that directory;
- names come out sorted, so the oldest stamped file comes first.

Every function here is blocking (it lists or stats files): call it from a
thread, never on the reactor; ``lookup`` stats one name only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

PROFILE_SUFFIXES = (".json.gz", ".json")
STAMPED_SUFFIX = ".json.gz"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_STAMP_RE = re.compile(r"(\d{8}T\d{6}Z)(?:_\d{2,})?" + re.escape(STAMPED_SUFFIX))


@dataclass(frozen=True)
class ProfileFile:
    name: str
    path: str  # real path, symlinks resolved
    size: int
    mtime: float
    version: tuple = field(default=(), compare=False)  # (dev, ino, size, mtime_ns): changes with the file
    listed: str = field(default="", compare=False)  # the path as found: <directory>/<name>

    def stamp_s(self, prefix: str) -> Optional[float]:
        """The epoch time in a ``<prefix><stamp>`` name, or None."""
        stamp = stamp_of(self.name, prefix)
        if stamp is None:
            return None
        return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=timezone.utc).timestamp()


def stamp_of(name: str, prefix: str) -> Optional[str]:
    """``20261123T101500Z`` if ``name`` is ``<prefix><stamp>[_NN].json.gz``, else None."""
    if not name.startswith(prefix):
        return None
    match = _STAMP_RE.fullmatch(name[len(prefix):])
    return match.group(1) if match else None


def is_profile_name(name: str, prefix: Optional[str] = None) -> bool:
    """The name rule: any profile suffix, or with ``prefix`` a stamped name of that writer."""
    if prefix is not None:
        return stamp_of(name, prefix) is not None
    return name.endswith(PROFILE_SUFFIXES)


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def lookup(directory: str, name: str, prefix: Optional[str] = None, root: Optional[str] = None) -> Optional[ProfileFile]:
    """The profile ``name`` in ``directory`` if the rules admit it, else None.
    ``root`` is ``realpath(directory)`` when the caller has it already."""
    if not name or name != os.path.basename(name) or name in (".", "..") or not is_profile_name(name, prefix):
        return None
    listed = os.path.join(directory, name)
    real = os.path.realpath(listed)
    if not _is_within(real, root or os.path.realpath(directory or ".")):
        return None
    return file_at(real, name, listed)


def file_at(real: str, name: str, listed: str = "") -> Optional[ProfileFile]:
    """A ProfileFile for the regular file at ``real``, or None."""
    try:
        st = os.stat(real)
    except OSError:
        return None
    if not os.path.isfile(real):
        return None
    return ProfileFile(name, real, st.st_size, st.st_mtime,
                       (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), listed or real)


def scan(directory: str, prefix: Optional[str] = None) -> list[ProfileFile]:
    """Every profile in ``directory`` by the rules above, by name. Raises
    OSError if the directory cannot be listed."""
    root = os.path.realpath(directory or ".")
    found = []
    for name in sorted(os.listdir(directory or ".")):
        profile = lookup(directory, name, prefix, root)
        if profile is not None:
            found.append(profile)
    return found


def stamped_files(basepath: str) -> list[ProfileFile]:
    """The files one writer named ``<basepath><stamp>[_NN].json.gz``, oldest
    first; [] if the directory cannot be listed."""
    directory, prefix = os.path.split(basepath)
    try:
        found = scan(directory, prefix)
    except OSError:
        return []
    return sorted(found, key=lambda p: (stamp_of(p.name, prefix), p.name))
