"""Reading profile files: ours (formats v1 and v2, gzip JSON) and buildbot_profiler 1.x's.

The reading end of the pipe (``profiler_service.profiler`` is the writing
end). Both formats give the same model (:mod:`.model`): threads, frames, a
prefix tree of stacks and the samples as parallel integer arrays (absolute
time, thread, stack, weight). Anything that is not a readable profile raises
:class:`ProfileError`, never another exception, so callers (the CLI, the web
viewer) can show one line and go on.

``load(path)`` reads a file (:mod:`.read`, through the bounded decoding of
:mod:`.decode` and the reader of :mod:`.ours` or :mod:`.legacy`);
``summarize(path)`` gives the facts a listing shows, and
``list_profiles(directory)`` summarizes every profile-looking file of a
directory (:mod:`.summary`).
"""

from .decode import MAX_DOCUMENT_BYTES
from .model import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LEGACY_FORMAT,
    SCHEMA_PATH,
    Frame,
    Load,
    Profile,
    ProfileError,
    Stall,
    Thread,
)
from .read import load, loads
from .summary import PROFILE_SUFFIXES, list_profiles, summarize

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LEGACY_FORMAT",
    "MAX_DOCUMENT_BYTES",
    "PROFILE_SUFFIXES",
    "SCHEMA_PATH",
    "Frame",
    "Load",
    "Profile",
    "ProfileError",
    "Stall",
    "Thread",
    "list_profiles",
    "load",
    "loads",
    "summarize",
]
