"""``bbprofiler [PATH ...] [--from TIME] [--to TIME] [--host 127.0.0.1] [--port 8080]``:
serves the viewer page and the profile files found in PATHs (default: the
current directory) until interrupted. With ``--from``/``--to`` only the files
whose period overlaps that range are listed, and the page opens them merged
into one profile. ``profiler_service.cli`` dispatches here when no subcommand
is given.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import NoReturn, Sequence

from profiler_service.www import STATIC_DIR
from profiler_service.www.listing import ProfileCatalog


class RangeCatalog(ProfileCatalog):
    """The files of the served paths whose period overlaps [from_ms, to_ms)
    (either bound None); the page opens all of them as one profile."""

    def __init__(self, paths, from_ms, to_ms):
        super().__init__(paths)
        self.from_ms, self.to_ms = from_ms, to_ms

    def listing(self):
        entries = super().listing()
        return [e for e in entries if not e.get("error") and e["start_ms"] is not None
                and (self.to_ms is None or e["start_ms"] < self.to_ms)
                and (self.from_ms is None or e["end_ms"] > self.from_ms)]

    def selected(self, entries):
        """The names the page opens merged: every listed file."""
        return [e["name"] for e in entries]


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
    parser.add_argument("--from", dest="from_time", metavar="TIME",
                        help="only the files whose period ends after TIME (UTC, e.g. 2026-11-20T10:00), "
                        "opened merged into one profile")
    parser.add_argument("--to", dest="to_time", metavar="TIME",
                        help="only the files whose period starts before TIME (UTC), opened merged")
    args = parser.parse_args(list(argv))
    from profiler_service.cli import parse_utc_ms

    for name in ("from_time", "to_time"):
        value = getattr(args, name)
        try:
            setattr(args, name.replace("_time", "_ms"), None if value is None else parse_utc_ms(value))
        except ValueError:
            parser.error(f"--{name[:-5]} {value!r} is not a time such as 2026-11-20T10:00")
    if args.from_ms is not None and args.to_ms is not None and args.to_ms <= args.from_ms:
        parser.error(f"--to {args.to_time} is not after --from {args.from_time}")
    args.paths = args.paths or ["."]
    for path in args.paths:
        if not os.path.exists(path):
            parser.error(f"no such file or directory: {path}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, not {args.port}")
    return args


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def loopback_names(port: int) -> set[bytes]:
    names = {b"127.0.0.1", b"localhost", b"[::1]"}
    with_port = {name + b":%d" % port for name in names}
    return with_port | names if port == 80 else with_port


def make_site(root):
    """A Site for root that, once ``allowed_hosts`` is filled (when bound to
    loopback), answers 421 to a request whose Host header is not a loopback
    name: a web page must not read the profiles through DNS rebinding (its
    own name would be in Host). A request line or header longer than
    Twisted's limit (16 KiB) gets 414 or 431 before the connection closes
    (Twisted would close it without a word)."""
    from twisted.web import http, resource, server

    class BoundedChannel(http.HTTPChannel):
        def lineLengthExceeded(self, line: bytes) -> None:
            if re.match(rb"[A-Z]+ ", line):
                status = b"414 URI Too Long"
                text = b"The request line is longer than %d bytes.\n" % self.MAX_LENGTH
            else:
                status = b"431 Request Header Fields Too Large"
                text = b"A header line is longer than %d bytes.\n" % self.MAX_LENGTH
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(text) + text)
            self.transport.loseConnection()

    class LoopbackSite(server.Site):
        allowed_hosts: set[bytes]

        def protocol(self):
            # Plain HTTP/1.1 (the server speaks no TLS, so no HTTP/2 either).
            return BoundedChannel()

        def getResourceFor(self, request):
            host = (request.getHeader(b"host") or b"").lower()
            if self.allowed_hosts and host not in self.allowed_hosts:
                return resource.ErrorPage(421, "Misdirected Request",
                                          "bbprofiler answers only to a loopback address.")
            return super().getResourceFor(request)

    site = LoopbackSite(root)
    site.allowed_hosts = set()
    site.displayTracebacks = False
    return site


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError
    from profiler_service.www.resources import viewer_root

    ranged = args.from_ms is not None or args.to_ms is not None
    catalog = RangeCatalog(args.paths, args.from_ms, args.to_ms) if ranged else None
    site = make_site(viewer_root(args.paths, catalog=catalog))
    try:
        port = reactor.listenTCP(args.port, site, interface=args.host)
    except CannotListenError as exc:
        print(f"bbprofiler: cannot listen on {args.host}:{args.port}: {exc.socketError}", file=sys.stderr)
        return 1
    if args.host in LOOPBACK_HOSTS:  # the port is known only now (--port 0)
        site.allowed_hosts.update(loopback_names(port.getHost().port))
    host = args.host if ":" not in args.host else f"[{args.host}]"
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else host
    between = f" (files from {args.from_time or 'the first'} to {args.to_time or 'the last'}, merged)" if ranged else ""
    print(f"bbprofiler: serving {', '.join(args.paths)}{between} at http://{shown}:{port.getHost().port}/", flush=True)
    if not os.path.isfile(os.path.join(STATIC_DIR, "index.html")):
        print("bbprofiler: the viewer page is not built (run scripts/build-viewer); serving the API only",
              file=sys.stderr, flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
