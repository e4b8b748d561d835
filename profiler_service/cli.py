"""The ``bbprofiler`` command. Without a subcommand it serves the viewer
(``profiler_service.www.server``)."""

from __future__ import annotations

import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from profiler_service.www import server

    return server.main(args)


if __name__ == "__main__":
    sys.exit(main())
