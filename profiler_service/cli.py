"""The ``bbprofiler`` command.

    bbprofiler export FILE --format speedscope|collapsed [-o OUT] [--thread NAME]
    bbprofiler top FILE [-n 30] [--thread NAME] [--sort self|total]
    bbprofiler [serve] [PATH ...] [--host HOST] [--port PORT]

``export`` and ``top`` live here. Anything else (no arguments, paths,
options, or an explicit ``serve``) belongs to the viewer: ``main()`` hands the
arguments, without a leading ``serve``, to ``profiler_service.www.server.main``
(which returns an exit status), or says in one line that the viewer is not
installed. The viewer's own options are parsed there, not here.

User mistakes (a missing or bad file, a bad option, an unwritable output,
an export too large) print one line on stderr and exit with a non-zero
status, never a traceback. ``-o OUT`` never replaces what is not a regular
file (see ``exports.write_output``); the output is built before it is
opened, so a failure leaves no partial file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import NoReturn, Optional, Sequence, TextIO

from .exports import ExportTooLarge, to_collapsed, to_speedscope, top_functions, write_output
from .profile import LEGACY_FORMAT, Profile, ProfileError, load

PROG = "bbprofiler"
COMMANDS = ("export", "top")

EXIT_ERROR = 1   # a file, a thread or an output is wrong
EXIT_USAGE = 2   # the command line is wrong


class CliError(Exception):
    """A user mistake: main() prints it on one line and exits EXIT_ERROR."""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line (no usage block, no traceback)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--thread", metavar="NAME",
                        help="only this thread (a name, or an ident / native id)")
    parser.add_argument("--from", dest="from_s", type=float, metavar="SECONDS",
                        help="only samples at least SECONDS after the period's start")
    parser.add_argument("--to", dest="to_s", type=float, metavar="SECONDS",
                        help="only samples less than SECONDS after the period's start")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description="Read buildbot-profiler files (and buildbot_profiler 1.x ones).",
        epilog=f"Without a command, '{PROG} [PATH ...] [--host HOST] [--port PORT]' "
        "serves the profile viewer (see 'bbprofiler serve --help').",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    export = commands.add_parser(
        "export", help="convert a profile for speedscope, flamegraph.pl, inferno, Pyroscope",
        description="Convert a profile: 'speedscope' writes speedscope's JSON (one profile "
        "for all threads, one per thread); 'collapsed' writes 'thread;root;...;leaf count' "
        "lines for flamegraph.pl, inferno or Pyroscope.")
    export.add_argument("file", metavar="FILE")
    export.add_argument("--format", "-f", required=True, choices=("speedscope", "collapsed"))
    export.add_argument("-o", "--output", metavar="OUT", default="-",
                        help="output file (default '-': standard output). A file is replaced "
                        "atomically (through a symbolic link, the file it points to); a device "
                        "or a FIFO is written into, never replaced")
    export.add_argument("--weights", action="store_true",
                        help="collapsed: count CPU microseconds instead of samples")
    _add_selection(export)

    top = commands.add_parser(
        "top", help="print the hottest functions",
        description="Print the hottest functions of a profile: SELF%% is the share of "
        "the sampled time (CPU time; wall time in real mode) spent in the function "
        "itself, TOTAL%% in it and what it calls; SELF and TOTAL count samples.")
    top.add_argument("file", metavar="FILE")
    top.add_argument("-n", type=int, default=30, metavar="N", help="rows to print (default 30)")
    top.add_argument("--sort", choices=("self", "total"), default="self",
                     help="order by self (default) or total share")
    top.add_argument("--width", type=int, metavar="COLUMNS",
                     help="table width (default: the terminal's, or $COLUMNS, or 100)")
    _add_selection(top)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run bbprofiler with argv (default sys.argv[1:]); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in COMMANDS and args[0] not in ("-h", "--help", "--version")):
        return _serve(args[1:] if args and args[0] == "serve" else args)
    options = build_parser().parse_args(args)
    try:
        if options.command == "export":
            return _export(options)
        return _top(options)
    except CliError as e:
        _error(str(e))
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (| head): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


def _serve(argv: list[str]) -> int:
    try:
        from .www import server
    except ModuleNotFoundError as e:
        if e.name not in ("profiler_service.www", "profiler_service.www.server"):
            raise
        first = f"unknown command {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        _error(f"{first}commands: {', '.join(COMMANDS)} (the viewer is not installed)")
        return EXIT_USAGE
    return server.main(argv)


def _error(message: str) -> None:
    message = " ".join(message.splitlines())
    sys.stderr.write(f"{PROG}: {message}\n")


def _load(path: str) -> Profile:
    try:
        return load(path)
    except ProfileError as e:
        raise CliError(str(e)) from None


def _selection(profile: Profile, options: argparse.Namespace) -> dict:
    start_ms = None if options.from_s is None else profile.start_ms + options.from_s * 1000
    end_ms = None if options.to_s is None else profile.start_ms + options.to_s * 1000
    try:
        profile.thread_indexes(options.thread)
    except ValueError as e:
        raise CliError(str(e)) from None
    return {"start_ms": start_ms, "end_ms": end_ms, "thread": options.thread}


def _export(options: argparse.Namespace) -> int:
    if options.weights and options.format != "collapsed":
        raise CliError("--weights only applies to --format collapsed")
    profile = _load(options.file)
    selection = _selection(profile, options)
    try:
        if options.format == "speedscope":
            text = json.dumps(to_speedscope(profile, **selection), separators=(",", ":"))
        else:
            text = to_collapsed(profile, weights=options.weights, **selection)
    except ExportTooLarge as e:
        raise CliError(str(e)) from None
    if options.output == "-":
        _write(sys.stdout, text)
        sys.stdout.flush()
        return 0
    try:
        write_output(options.output, text)
    except OSError as e:
        raise CliError(f"cannot write {options.output}: {e.strerror or e}") from None
    return 0


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:  # e.g. LANG=C and a non-ASCII function name
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "replace").decode(encoding))


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _utc(ms: int) -> str:
    import datetime

    # load() keeps times within years 1970 to 9999; a Profile built by
    # other code still gets its number rather than a traceback.
    try:
        stamp = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"
    return stamp.strftime("%Y-%m-%d %H:%M:%SZ")


def _fit_left(text: str, width: int) -> str:
    """text in width columns, cut at the end."""
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def _fit_right(text: str, width: int) -> str:
    """text in width columns, cut at the start (paths: the tail matters)."""
    return text if len(text) <= width else "..." + text[len(text) - max(width - 3, 0):]


NUMBERS_HEADER = f"{'SELF%':>6}  {'TOTAL%':>6}  {'SELF':>7}  {'TOTAL':>7}  "
NUMBERS_WIDTH = len(NUMBERS_HEADER)


def format_top(profile: Profile, rows: int = 30, *, width: int = 100, sort: str = "self",
               start_ms: Optional[float] = None, end_ms: Optional[float] = None,
               thread: Optional[str] = None) -> str:
    """The ``bbprofiler top`` report as text, ``width`` columns wide at most
    (the function and file:line columns are cut to fit)."""
    stats, samples, weight = top_functions(
        profile, start_ms=start_ms, end_ms=end_ms, thread=thread, sort=sort)
    if profile.format == LEGACY_FORMAT:
        how = f"buildbot_profiler 1.x file, {profile.frequency:g} Hz"
        time_kind = "sampled (1/frequency each)"
    else:
        how = f"{profile.mode} mode, {profile.frequency:g} Hz"
        time_kind = "of wall time" if profile.mode == "real" else "of CPU"
    which = f"thread {thread}" if thread is not None else f"all threads ({len(profile.threads)})"
    lines = [
        f"{os.path.basename(profile.source)}: {_utc(profile.start_ms)} to {_utc(profile.end_ms)} "
        f"({_duration(profile.duration_s)}), {how}",
        f"{samples} samples, {weight / 1e6:.2f} s {time_kind}, {which}",
    ]
    if not stats:
        lines.append("no samples in this selection")
        return "\n".join(lines) + "\n"
    shown = stats[:rows] if rows > 0 else []
    names = [s.frame.name for s in shown]
    places = [f"{s.frame.file}:{s.frame.line}" if s.frame.line else s.frame.file for s in shown]
    room = max(width - NUMBERS_WIDTH - 2, 20)
    longest_place = max(len("FILE:LINE"), max(map(len, places), default=0))
    name_width = min(max(len("FUNCTION"), max(map(len, names), default=0)),
                     max(room - longest_place, room // 2))
    place_width = max(room - name_width, 9)
    lines.append(f"{NUMBERS_HEADER}{'FUNCTION':<{name_width}}  FILE:LINE".rstrip())
    for s, name, place in zip(shown, names, places):
        self_share = s.self_weight_us * 100 / weight if weight else 0.0
        total_share = s.total_weight_us * 100 / weight if weight else 0.0
        row = (f"{self_share:6.1f}  {total_share:6.1f}  {s.self_samples:7d}  {s.total_samples:7d}  "
               f"{_fit_left(name, name_width):<{name_width}}  {_fit_right(place, place_width)}")
        lines.append(row.rstrip())
    if len(stats) > len(shown):
        lines.append(f"({len(stats) - len(shown)} more functions; -n to show more)")
    return "\n".join(lines) + "\n"


def _top(options: argparse.Namespace) -> int:
    if options.n < 0:
        raise CliError(f"-n must be >= 0, got {options.n}")
    profile = _load(options.file)
    selection = _selection(profile, options)
    width = options.width or shutil.get_terminal_size((100, 24)).columns
    _write(sys.stdout, format_top(profile, options.n, width=max(width, 40), sort=options.sort,
                                  **selection))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
