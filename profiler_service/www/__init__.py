"""The profile viewer: Twisted resources (list and fetch profile files), the
static page built from ``src/`` into ``static/``, and the standalone
``bbprofiler`` server. The resources hold no global state so the Buildbot www
plugin mounts the same code under ``/plugins/profiler/``.

Importing this package is cheap and never loads the C extension.
"""

import os

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
