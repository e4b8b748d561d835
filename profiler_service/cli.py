"""The ``bbprofiler`` command.

    bbprofiler export FILE... --format speedscope|collapsed|pprof [-o OUT] [--thread NAME] [--lines]
    bbprofiler top FILE... [-n 30] [--thread NAME] [--sort self|total] [--lines [--function NAME]]
    bbprofiler diff A B | -a FILE... -b FILE... [--a-from T] [--a-to T] [--b-from T] [--b-to T]
    bbprofiler stalls FILE [-n 20]
    bbprofiler [serve] [PATH ...] [--host HOST] [--port PORT]

``export``, ``top``, ``diff`` and ``stalls`` live here. Several files (or a
directory: its ``*.json.gz`` and ``*.json`` files) are merged into one profile
(``profiler_service.merge``) for ``export``, ``top`` and ``diff``. Anything else (no arguments, paths,
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
from typing import Iterator, NoReturn, Optional, Sequence, TextIO

from . import catalog
from .exports import ExportTooLarge, to_collapsed, to_speedscope, top_functions, write_output
from .merge import DiffResult, MergedProfile, diff_functions, master_key, merge
from .reading import LEGACY_FORMAT, Profile, ProfileError, load, summarize

PROG = "bbprofiler"
COMMANDS = ("export", "top", "diff", "stalls")

EXIT_ERROR = 1   # a file, a thread or an output is wrong
EXIT_USAGE = 2   # the command line is wrong


class CliError(Exception):
    """A user mistake: main() prints it on one line and exits EXIT_ERROR."""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line (no usage block, no traceback)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)


TIME_HELP = ("SECONDS after the start of the (merged) profile, or a UTC time "
             "such as 2026-11-20T10:00")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--thread", metavar="NAME",
                        help="only this thread (a name, or an ident / native id)")
    parser.add_argument("--master", metavar="HOST",
                        help="only the files of this master (its hostname, or hostname/master name)")


def _add_selection(parser: argparse.ArgumentParser) -> None:
    _add_filters(parser)
    parser.add_argument("--from", dest="from_s", metavar="TIME",
                        help=f"only samples at or after TIME: {TIME_HELP}")
    parser.add_argument("--to", dest="to_s", metavar="TIME",
                        help=f"only samples before TIME: {TIME_HELP}")


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
        "export", help="convert a profile for speedscope, flamegraph.pl, inferno, pprof, Pyroscope",
        description="Convert a profile: 'speedscope' writes speedscope's JSON (one profile "
        "for all threads, one per thread); 'collapsed' writes 'thread;root;...;leaf count' "
        "lines for flamegraph.pl, inferno or Pyroscope; 'pprof' writes a gzipped "
        "profile.proto for pprof, Pyroscope and other pprof readers (threads and the builds "
        "running as sample labels; needs the protobuf package).")
    export.add_argument("files", nargs="+", metavar="FILE",
                        help="profile files or directories, merged into one profile")
    export.add_argument("--format", "-f", required=True, choices=("speedscope", "collapsed", "pprof"))
    export.add_argument("-o", "--output", metavar="OUT", default="-",
                        help="output file (default '-': standard output). A file is replaced "
                        "atomically (through a symbolic link, the file it points to); a device "
                        "or a FIFO is written into, never replaced")
    export.add_argument("--weights", action="store_true",
                        help="collapsed: count CPU microseconds instead of samples")
    export.add_argument("--lines", action="store_true",
                        help="a frame per line: 'func (file:line)' with the line each frame was on "
                        "(pprof: one location per line under its function); files of format 3 or 1.x")
    _add_selection(export)

    top = commands.add_parser(
        "top", help="print the hottest functions",
        description="Print the hottest functions of a profile: SELF%% is the share of "
        "the sampled time (CPU time; wall time in real mode) spent in the function "
        "itself, TOTAL%% in it and what it calls; SELF and TOTAL count samples.")
    top.add_argument("files", nargs="+", metavar="FILE",
                        help="profile files or directories, merged into one profile")
    top.add_argument("-n", type=int, default=30, metavar="N", help="rows to print (default 30)")
    top.add_argument("--sort", choices=("self", "total"), default="self",
                     help="order by self (default) or total share")
    top.add_argument("--width", type=int, metavar="COLUMNS",
                     help="table width (default: the terminal's, or $COLUMNS, or 100)")
    top.add_argument("--lines", action="store_true",
                     help="rank lines, not functions (files of format 3 or 1.x): SELF%% is the "
                     "time spent on the line itself, TOTAL%% on it and in what it calls")
    top.add_argument("--function", metavar="NAME",
                     help="with --lines: only the lines of this function (its qualified name, "
                     "or the end of it after a '.')")
    _add_selection(top)

    diff = commands.add_parser(
        "diff", help="compare two profiles: the functions that grew and shrank most",
        description="Compare two selections A and B (a file, several files or a directory "
        "each, or two time ranges of one file): the functions whose share of the total "
        "CPU (wall time in real mode) grew and shrank most, in percentage points, and "
        "their CPU seconds. Shares are of each side's own total, so a busier B does not "
        "look like a regression. 'diff A B' takes one file or directory per side; "
        "'-a FILE... -b FILE...' several.")
    diff.add_argument("sides", nargs="*", metavar="A B", help="one file or directory for A, one for B")
    diff.add_argument("-a", dest="a_files", nargs="+", metavar="FILE", help="the files of A")
    diff.add_argument("-b", dest="b_files", nargs="+", metavar="FILE", help="the files of B")
    for side in ("a", "b"):
        diff.add_argument(f"--{side}-from", dest=f"{side}_from", metavar="TIME",
                          help=f"{side.upper()}: only samples at or after TIME ({TIME_HELP} of {side.upper()})")
        diff.add_argument(f"--{side}-to", dest=f"{side}_to", metavar="TIME",
                          help=f"{side.upper()}: only samples before TIME")
    diff.add_argument("-n", type=int, default=15, metavar="N",
                      help="rows of each table (default 15)")
    diff.add_argument("--width", type=int, metavar="COLUMNS",
                      help="table width (default: the terminal's, or $COLUMNS, or 100)")
    _add_filters(diff)
    stalls = commands.add_parser(
        "stalls", help="list the reactor's worst stalls and what blocked it",
        description="List the longest intervals in which the master's reactor did not get "
        "back to its poll (format v2 files; recorded when ProfilerService's stallThreshold "
        "is set), longest first, each with the top of the stack that blocked it: the "
        "reactor's own, or that of another thread that kept the CPU (and so the GIL).")
    stalls.add_argument("file", metavar="FILE")
    stalls.add_argument("-n", type=int, default=20, metavar="N", help="stalls to print (default 20)")
    stalls.add_argument("--depth", type=int, default=4, metavar="FRAMES",
                        help="frames of each stack to print, innermost first (default 4)")
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
        if options.command == "diff":
            return _diff(options)
        if options.command == "stalls":
            return _stalls(options)
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


def _expand(paths: Sequence[str]) -> list[str]:
    """paths, each directory replaced by its profile files (the catalog's
    rules: ``*.json.gz`` and ``*.json`` regular files inside it)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            try:
                found = catalog.scan(path)
            except OSError as e:
                raise CliError(f"{path}: {e.strerror or e}") from None
            if not found:
                raise CliError(f"{path}: no profile files (*.json.gz, *.json) in this directory")
            files.extend(f.listed or f.path for f in found)
        else:
            files.append(path)
    return files


def _by_lines(profile: Profile) -> Profile:
    try:
        return profile.by_lines()
    except ValueError as e:
        raise CliError(f"--lines: {e}") from None


def _load_all(paths: Sequence[str], master: Optional[str] = None, lines: bool = False) -> Profile:
    """The files (directories expanded) as one profile: the file itself when
    there is one, else their merge; only master's files with --master; with
    `lines`, each by line (a file without lines is refused).

    Several files are loaded one at a time in order of their start (read
    from each file's header), so memory holds the merge and one file."""
    files = _expand(paths)
    if len(files) == 1 and master is None:
        profile = _load(files[0])
        return _by_lines(profile) if lines else profile

    def start_of(path: str) -> float:
        start = summarize(path, verify=False)["start_ms"]
        return start if start is not None else float("inf")  # load() below says what is wrong

    files.sort(key=start_of)
    masters: list[str] = []

    def loaded() -> Iterator[Profile]:
        for path in files:
            profile = _load(path)
            key = master_key(profile)
            masters.append(key)
            if master is None or master in (key, key.split("/")[0]):
                yield _by_lines(profile) if lines else profile

    try:
        return merge(loaded(), in_time_order=True)
    except ValueError:  # no file left: none of that master
        raise CliError(f"no file of master {master!r} (masters: {', '.join(dict.fromkeys(masters))})") from None


def parse_utc_ms(value: str) -> float:
    """An ISO 8601 date and time (UTC unless it names an offset; a trailing
    Z allowed) as ms since the epoch; ValueError if it is none."""
    import datetime

    stamp = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp() * 1000


def _time_ms(profile: Profile, value: Optional[str], option: str) -> Optional[float]:
    """--from/--to: seconds after the profile's start, or a UTC date and time."""
    if value is None:
        return None
    try:
        return profile.start_ms + float(value) * 1000
    except ValueError:
        pass
    try:
        return parse_utc_ms(value)
    except ValueError:
        raise CliError(f"{option} {value!r} is neither seconds nor a time such as 2026-11-20T10:00") from None


def _check_thread(profile: Profile, thread: Optional[str]) -> None:
    try:
        profile.thread_indexes(thread)
    except ValueError as e:
        raise CliError(str(e)) from None


def _selection(profile: Profile, options: argparse.Namespace) -> dict:
    start_ms = _time_ms(profile, options.from_s, "--from")
    end_ms = _time_ms(profile, options.to_s, "--to")
    _check_thread(profile, options.thread)
    return {"start_ms": start_ms, "end_ms": end_ms, "thread": options.thread}


def _export(options: argparse.Namespace) -> int:
    if options.weights and options.format != "collapsed":
        raise CliError("--weights only applies to --format collapsed")
    profile = _load_all(options.files, options.master, lines=options.lines)
    selection = _selection(profile, options)
    if options.format == "pprof" and options.output == "-" and sys.stdout.isatty():
        raise CliError("pprof is binary: not written to a terminal (use -o OUT, or a pipe)")
    try:
        if options.format == "speedscope":
            text = json.dumps(to_speedscope(profile, **selection), separators=(",", ":"))
        elif options.format == "pprof":
            from .pprof import PprofUnavailable, to_pprof

            try:
                text = to_pprof(profile, **selection)
            except PprofUnavailable as e:
                raise CliError(str(e)) from None
        else:
            text = to_collapsed(profile, weights=options.weights, **selection)
    except ExportTooLarge as e:
        raise CliError(str(e)) from None
    if options.output == "-":
        if isinstance(text, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(text)
        else:
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
               thread: Optional[str] = None, function: Optional[str] = None) -> str:
    """The ``bbprofiler top`` report as text, ``width`` columns wide at most
    (the function and file:line columns are cut to fit). A by-line profile
    (``Profile.by_lines()``) ranks lines; `function` keeps one function's."""
    stats, samples, weight = top_functions(
        profile, start_ms=start_ms, end_ms=end_ms, thread=thread, sort=sort)
    unit = "lines" if profile.by_line else "functions"
    if function is not None:
        stats = [s for s in stats if _names_function(s.frame.name, function)]
        if not stats:
            raise CliError(f"--function {function!r}: no such function in this selection")
        unit = f"lines of {function}"
    if profile.format == LEGACY_FORMAT:
        how = f"buildbot_profiler 1.x file, {profile.frequency:g} Hz"
        time_kind = "sampled (1/frequency each)"
    elif profile.mode is None:  # merged files of different modes or kinds
        how = f"mixed modes, up to {profile.frequency:g} Hz"
        time_kind = "sampled"
    else:
        how = f"{profile.mode} mode, {profile.frequency:g} Hz"
        time_kind = "of wall time" if profile.mode == "real" else "of CPU"
    if profile.by_line:
        how += ", by line"
    which = f"thread {thread}" if thread is not None else f"all threads ({len(profile.threads)})"
    lines = [
        f"{os.path.basename(profile.source)}: {_utc(profile.start_ms)} to {_utc(profile.end_ms)} "
        f"({_duration(profile.duration_s)}), {how}",
    ]
    if isinstance(profile, MergedProfile) and len(profile.parts) > 1:
        lines.append(_merged_line(profile))
    lines.append(f"{samples} samples, {weight / 1e6:.2f} s {time_kind}, {which}")
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
        lines.append(f"({len(stats) - len(shown)} more {unit}; -n to show more)")
    return "\n".join(lines) + "\n"


def _names_function(qualname: str, wanted: str) -> bool:
    """--function: the qualified name itself, or its tail after a '.'."""
    return qualname == wanted or qualname.endswith("." + wanted)


def _merged_line(profile: MergedProfile) -> str:
    gaps = profile.gaps()
    gap_s = sum(end - start for start, end in gaps) / 1000
    masters = profile.masters
    return (f"merged {len(profile.parts)} files of {len(masters)} master{'s' if len(masters) > 1 else ''} "
            f"({', '.join(masters)}), {len(gaps)} gap{'s' if len(gaps) != 1 else ''}"
            f"{f' ({_duration(gap_s)} without a file)' if gaps else ''}, {len(profile.builds)} builds")


def _describe_side(label: str, profile: Profile, samples: int, weight: int) -> str:
    what = "of wall time" if profile.mode == "real" else "of CPU"
    files = f", {len(profile.parts)} files" if isinstance(profile, MergedProfile) and len(profile.parts) > 1 else ""
    return (f"{label}: {os.path.basename(profile.source)}{files}, {_utc(profile.start_ms)} to "
            f"{_utc(profile.end_ms)}, {samples} samples, {weight / 1e6:.2f} s {what}")


DIFF_HEADER = f"{'POINTS':>7}  {'SELF A':>6}  {'SELF B':>6}  {'TOTAL':>7}  {'CPU s':>8}  "


def format_diff(result: DiffResult, a: Profile, b: Profile, rows: int = 15, *, width: int = 100) -> str:
    """The ``bbprofiler diff`` report: the functions that grew most, then
    those that shrank most. POINTS is the change of the self share (its
    CPU over the side's total CPU) in percentage points, SELF A / SELF B
    the shares in %, TOTAL the change of the total share (with callees)
    in points, CPU s the change of the self CPU seconds."""
    lines = [
        _describe_side("A", a, result.samples_a, result.weight_a),
        _describe_side("B", b, result.samples_b, result.weight_b),
        "shares are of each side's own total (normalised by total CPU); POINTS = self share B - A",
    ]
    room = max(width - len(DIFF_HEADER), 20)
    for title, table in (("grew", result.grew), ("shrank", result.shrank)):
        lines.append("")
        if not table:
            lines.append(f"nothing {title}")
            continue
        lines.append(f"{title.upper()} (most first)")
        lines.append(f"{DIFF_HEADER}FUNCTION (FILE:LINE)".rstrip())
        for row in table[:rows]:
            seconds = (row.self_us_b - row.self_us_a) / 1e6
            label = _fit_left(row.frame.label, room)
            lines.append(f"{row.self_points:+7.2f}  {100 * row.self_share_a:6.2f}  {100 * row.self_share_b:6.2f}  "
                         f"{row.total_points:+7.2f}  {seconds:+8.2f}  {label}".rstrip())
        if len(table) > rows:
            lines.append(f"({len(table) - rows} more; -n to show more)")
    return "\n".join(lines) + "\n"


def _diff(options: argparse.Namespace) -> int:
    if options.n < 0:
        raise CliError(f"-n must be >= 0, got {options.n}")
    if options.sides and (options.a_files or options.b_files):
        raise CliError("give either 'diff A B' or '-a FILE... -b FILE...', not both")
    if options.sides:
        if len(options.sides) != 2:
            raise CliError(f"'diff A B' takes two paths, got {len(options.sides)} (use -a FILE... -b FILE... for more)")
        a_paths, b_paths = [options.sides[0]], [options.sides[1]]
    else:
        if not options.a_files or not options.b_files:
            raise CliError("diff needs A and B: 'diff A B' or '-a FILE... -b FILE...'")
        a_paths, b_paths = options.a_files, options.b_files
    a = _load_all(a_paths, options.master)
    b = _load_all(b_paths, options.master)
    _check_thread(a, options.thread)
    _check_thread(b, options.thread)
    a_range = (_time_ms(a, options.a_from, "--a-from"), _time_ms(a, options.a_to, "--a-to"))
    b_range = (_time_ms(b, options.b_from, "--b-from"), _time_ms(b, options.b_to, "--b-to"))
    result = diff_functions(a, b, a_range=a_range, b_range=b_range, thread=options.thread)
    width = options.width or shutil.get_terminal_size((100, 24)).columns
    _write(sys.stdout, format_diff(result, a, b, options.n, width=max(width, 60)))
    sys.stdout.flush()
    return 0


def _top(options: argparse.Namespace) -> int:
    if options.n < 0:
        raise CliError(f"-n must be >= 0, got {options.n}")
    if options.function is not None and not options.lines:
        raise CliError("--function needs --lines (it lists one function's lines)")
    profile = _load_all(options.files, options.master, lines=options.lines)
    selection = _selection(profile, options)
    width = options.width or shutil.get_terminal_size((100, 24)).columns
    _write(sys.stdout, format_top(profile, options.n, width=max(width, 40), sort=options.sort,
                                  function=options.function, **selection))
    sys.stdout.flush()
    return 0


def format_stalls(profile: Profile, rows: int = 20, depth: int = 4) -> str:
    """The ``bbprofiler stalls`` report: the longest stalls first."""
    from .stalls import culprit, describe_stack, frames_as_stack

    name = os.path.basename(profile.source)
    if profile.version is None or profile.version < 2:
        return f"{name}: no stall records (format {profile.version or '1.x'}; stalls are in version 2 files)\n"
    kept = len(profile.stalls)
    lines = [f"{name}: {_utc(profile.start_ms)} to {_utc(profile.end_ms)}, {kept} stall(s)"
             + (f", {profile.stalls_dropped} shorter one(s) not kept" if profile.stalls_dropped else "")]
    if not kept:
        return "\n".join(lines) + "\n"
    lines.append(f"{'DURATION':>9}  {'START':<20}  {'SAMPLES':>7}  WHAT BLOCKED THE REACTOR")
    worst = sorted(profile.stalls, key=lambda stall: -stall.duration_us)
    for stall in worst[: max(rows, 0)]:
        who = culprit(profile, stall)
        where = describe_stack(frames_as_stack(who.frames), depth)
        if who.busy_thread is not None:
            where = f"thread {who.busy_thread!r} on the CPU: {where}"
        lines.append(f"{stall.duration_s:>7.2f} s  {_utc(stall.start_ms):<20}  {len(stall):>7d}  {where}")
    if kept > rows:
        lines.append(f"({kept - rows} more; -n to show more)")
    return "\n".join(lines) + "\n"


def _stalls(options: argparse.Namespace) -> int:
    if options.n < 0:
        raise CliError(f"-n must be >= 0, got {options.n}")
    if options.depth < 1:
        raise CliError(f"--depth must be >= 1, got {options.depth}")
    profile = _load(options.file)
    _write(sys.stdout, format_stalls(profile, options.n, options.depth))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
