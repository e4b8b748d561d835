"""``bbprofiler [PATH ...] [--host 127.0.0.1] [--port 8080]``: serves the
viewer page and the profile files found in PATHs (default: the current
directory) until interrupted. ``profiler_service.cli`` dispatches here when no
subcommand is given.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Sequence

from profiler_service.www import STATIC_DIR


class _Parser(argparse.ArgumentParser):
    """Errors on one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(
        prog="bbprofiler",
        description="Serve buildbot-profiler files (ours and 1.x) to the in-browser viewer.",
        epilog="Subcommands: 'bbprofiler export ...' and 'bbprofiler top ...' (see their --help).",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="profile files or directories holding them (default: .)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8080,
                        help="TCP port (default: 8080; 0 picks a free one)")
    args = parser.parse_args(list(argv))
    args.paths = args.paths or ["."]
    for path in args.paths:
        if not os.path.exists(path):
            parser.error(f"no such file or directory: {path}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, not {args.port}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError
    from twisted.web import server

    from profiler_service.www.resources import viewer_root

    site = server.Site(viewer_root(args.paths))
    site.displayTracebacks = False
    try:
        port = reactor.listenTCP(args.port, site, interface=args.host)
    except CannotListenError as exc:
        print(f"bbprofiler: cannot listen on {args.host}:{args.port}: {exc.socketError}", file=sys.stderr)
        return 1
    host = args.host if ":" not in args.host else f"[{args.host}]"
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else host
    print(f"bbprofiler: serving {', '.join(args.paths)} at http://{shown}:{port.getHost().port}/", flush=True)
    if not os.path.isfile(os.path.join(STATIC_DIR, "index.html")):
        print("bbprofiler: the viewer page is not built (run scripts/build-viewer); serving the API only",
              file=sys.stderr, flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
