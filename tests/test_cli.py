"""The bbprofiler command: export, top, errors, and the hand-off to the viewer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import jsonschema
import pytest

from profiler_service import cli, exports
from profiler_service.reading import load
from profile_helpers import BAD_FILES, LEGACY_BIG, SPEEDSCOPE_SCHEMA, make_v1, write_gz

BBPROFILER = Path(sys.executable).with_name("bbprofiler")


@pytest.fixture
def v1_file(tmp_path):
    return write_gz(tmp_path / "prof_20261125T194640Z.json.gz", make_v1())


def run(capsys, *argv):
    """main(argv) -> (status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# --------------------------------------------------------------------------
# top


def test_top_legacy(capsys):
    status, out, err = run(capsys, "top", LEGACY_BIG, "-n", "4", "--width", "100")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("big.json: 2016-08-22 14:34:37Z to 2016-08-22 14:39:35Z (4m57s)")
    assert lines[1] == "3360 samples, 3.36 s sampled (1/frequency each), all threads (3)"
    assert lines[2].split() == ["SELF%", "TOTAL%", "SELF", "TOTAL", "FUNCTION", "FILE:LINE"]
    assert lines[3].split() == ["21.2", "21.2", "713", "713", "do_execute", "my/engine/default.py:462"]
    assert [line.split()[4] for line in lines[3:7]] == ["do_execute", "do_commit", "do_close", "connect"]
    assert lines[7] == "(1801 more functions; -n to show more)"
    assert max(map(len, lines[2:])) <= 100


def test_top_fits_the_width(capsys, v1_file):
    for width in (40, 60, 200):
        status, out, _ = run(capsys, "top", v1_file, "--width", width)
        assert status == 0
        table = out.splitlines()[2:]
        assert max(map(len, table)) <= max(width, cli.NUMBERS_WIDTH + 22), width
    status, out, _ = run(capsys, "top", v1_file, "--width", "50")
    assert "..." in out  # a cut column says so


def test_top_columns_env_sets_the_default_width(v1_file):
    env = dict(os.environ, COLUMNS="60")
    narrow = subprocess.run([BBPROFILER, "top", v1_file], capture_output=True, text=True, env=env)
    env["COLUMNS"] = "200"
    wide = subprocess.run([BBPROFILER, "top", v1_file], capture_output=True, text=True, env=env)
    assert narrow.returncode == wide.returncode == 0
    assert max(map(len, narrow.stdout.splitlines()[2:])) <= 60
    assert "main (/app/run.py:1)" not in wide.stdout  # (sanity: columns are separate)
    assert "/app/work.py:30" in wide.stdout and "/app/work.py:30" not in narrow.stdout


def test_top_hot_function_first_and_selection(capsys, v1_file):
    status, out, _ = run(capsys, "top", v1_file)
    rows = out.splitlines()[3:]
    # Samples are 10 ms intervals of CPU: Worker;1's one 9 ms sample counts none.
    assert rows[0].split()[:5] == ["80.0", "80.0", "3", "3", "hot"]
    assert out.splitlines()[1] == "4 samples, 0.05 s of CPU, all threads (2)"
    status, out, _ = run(capsys, "top", v1_file, "--thread", "Worker;1", "--sort", "total")
    assert out.splitlines()[1] == "0 samples, 0.01 s of CPU, thread Worker;1"
    assert [r.split()[4] for r in out.splitlines()[3:]] == ["hot", "loop"]
    status, out, _ = run(capsys, "top", v1_file, "--from", "1", "--to", "2")
    assert out.splitlines()[1].startswith("1 samples")
    status, out, _ = run(capsys, "top", v1_file, "--from", "5")
    assert (status, out.splitlines()[-1]) == (0, "no samples in this selection")


# --------------------------------------------------------------------------
# export


def test_export_speedscope_to_a_file(capsys, tmp_path):
    out_path = tmp_path / "out.speedscope.json"
    status, out, err = run(capsys, "export", LEGACY_BIG, "--format", "speedscope", "-o", out_path)
    assert (status, out, err) == (0, "", "")
    doc = json.loads(out_path.read_text())
    jsonschema.validate(doc, json.loads(SPEEDSCOPE_SCHEMA.read_text()))
    assert [p["name"] for p in doc["profiles"]][0] == "All threads"
    assert sum(doc["profiles"][0]["weights"]) == 3_360_000
    assert [p.name for p in tmp_path.iterdir()] == ["out.speedscope.json"]  # no temporary left


def test_export_collapsed_to_stdout(capsys, v1_file):
    status, out, err = run(capsys, "export", v1_file, "-f", "collapsed")
    assert (status, err) == (0, "")
    assert out == exports.to_collapsed(load(v1_file))
    status, out, _ = run(capsys, "export", v1_file, "-f", "collapsed", "--weights", "--thread", "MainThread")
    assert out.splitlines()[1] == "MainThread;main (/app/run.py:1);work (/app/work.py:10);hot (/app/work.py:30) 21000"
    status, out, _ = run(capsys, "export", v1_file, "-f", "collapsed", "--to", "0.01")
    assert out == "MainThread;main (/app/run.py:1);work (/app/work.py:10) 1\n"


def test_export_speedscope_stdout_with_thread(capsys, v1_file):
    status, out, _ = run(capsys, "export", v1_file, "-f", "speedscope", "--thread", "1001")
    doc = json.loads(out)
    assert [p["name"] for p in doc["profiles"]] == ["All threads", "Worker;1"]


def test_export_replaces_an_existing_output(capsys, tmp_path, v1_file):
    out_path = tmp_path / "out.txt"
    out_path.write_text("old")
    assert run(capsys, "export", v1_file, "-f", "collapsed", "-o", out_path)[0] == 0
    assert out_path.read_text().startswith("MainThread;")


# --------------------------------------------------------------------------
# Errors: one line on stderr, non-zero status, no traceback

COMMANDS = {
    "top": ["top"],
    "export speedscope": ["export", "--format", "speedscope"],
    "export collapsed": ["export", "--format", "collapsed"],
}
CLI_BAD_FILES = ["garbage", "empty", "truncated gzip", "gzip of non-JSON", "JSON array",
                 "empty object", "future version", "stack out of range", "legacy frame id"]


@pytest.mark.parametrize("bad", CLI_BAD_FILES)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_files_give_one_line(capsys, tmp_path, command, bad):
    data, problem = BAD_FILES[bad]
    path = tmp_path / "bad.json.gz"
    path.write_bytes(data)
    out_path = tmp_path / "out"
    argv = COMMANDS[command] + [path] + (["-o", out_path] if command.startswith("export") else [])
    status, out, err = run(capsys, *argv)
    assert status == cli.EXIT_ERROR
    assert out == ""
    assert err == f"bbprofiler: {path}: {err.split(': ', 2)[2]}"
    assert problem in err and err.count("\n") == 1
    assert not out_path.exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_console_script_errors_without_traceback(tmp_path, command):
    missing = tmp_path / "missing.json.gz"
    result = subprocess.run([BBPROFILER, *COMMANDS[command], missing], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"bbprofiler: {missing}: No such file or directory\n"
    assert result.stdout == ""


def test_future_version_through_the_console_script(tmp_path):
    data, _ = BAD_FILES["future version"]
    path = tmp_path / "future.json.gz"
    path.write_bytes(data)
    result = subprocess.run([BBPROFILER, "top", path], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith(f"bbprofiler: {path}: format version 4 is newer than this reader")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("target", ["missing-dir/out.json", "a-directory", "/proc/version"])
def test_unwritable_output(capsys, tmp_path, v1_file, target):
    (tmp_path / "a-directory").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    out_path = target if target.startswith("/") else tmp_path / target
    status, out, err = run(capsys, "export", v1_file, "-f", "speedscope", "-o", out_path)
    assert status == cli.EXIT_ERROR
    assert err.startswith(f"bbprofiler: cannot write {out_path}: ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


@pytest.mark.parametrize("argv, words", [
    (["export", "F"], "the following arguments are required: --format"),
    (["export", "F", "--format", "svg"], "invalid choice: 'svg'"),
    (["top"], "the following arguments are required: FILE"),
    (["top", "F", "-n", "many"], "invalid int value: 'many'"),
    (["top", "F", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_usage_errors_are_one_line(capsys, argv, words):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    _, err = capsys.readouterr()
    assert info.value.code == cli.EXIT_USAGE
    assert words in err and err.count("\n") == 1 and err.startswith("bbprofiler")


def test_user_errors_after_loading(capsys, v1_file):
    status, _, err = run(capsys, "top", v1_file, "--thread", "nope")
    assert status == 1 and err.startswith("bbprofiler: no thread 'nope' in ") and "MainThread" in err
    status, _, err = run(capsys, "export", v1_file, "-f", "speedscope", "--weights")
    assert (status, err) == (1, "bbprofiler: --weights only applies to --format collapsed\n")
    status, _, err = run(capsys, "top", v1_file, "-n", "-1")
    assert (status, err) == (1, "bbprofiler: -n must be >= 0, got -1\n")


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    out = " ".join(capsys.readouterr()[0].split())
    assert info.value.code == 0
    assert "export" in out and "top" in out and "serves the profile viewer" in out


def test_top_output_to_a_closed_pipe(v1_file):
    # `bbprofiler top FILE | head -1`: no traceback when the reader leaves.
    script = f"{BBPROFILER} top {LEGACY_BIG} -n 2000 | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True)
    assert result.stdout.startswith("big.json: ")
    assert "Traceback" not in result.stderr and "Error" not in result.stderr


# --------------------------------------------------------------------------
# The viewer hand-off (the server itself is tested with the viewer)


def _fake_viewer(monkeypatch, calls):
    package = types.ModuleType("profiler_service.www")
    server = types.ModuleType("profiler_service.www.server")
    server.main = lambda argv: calls.append(list(argv)) or 7
    package.server = server
    monkeypatch.setitem(sys.modules, "profiler_service.www", package)
    monkeypatch.setitem(sys.modules, "profiler_service.www.server", server)


@pytest.mark.parametrize("argv, expected", [
    ([], []),
    (["serve", "--port", "9000"], ["--port", "9000"]),
    (["profiles/", "--host", "127.0.0.1"], ["profiles/", "--host", "127.0.0.1"]),
    (["--port", "1"], ["--port", "1"]),
])
def test_everything_else_goes_to_the_viewer(monkeypatch, argv, expected):
    calls = []
    _fake_viewer(monkeypatch, calls)
    assert cli.main(argv) == 7
    assert calls == [expected]


def test_without_the_viewer(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "profiler_service.www", None)
    assert cli.main(["exprot", "x"]) == cli.EXIT_USAGE
    _, err = capsys.readouterr()
    assert err == "bbprofiler: unknown command 'exprot'; commands: export, top, diff, stalls (the viewer is not installed)\n"
    assert cli.main([]) == cli.EXIT_USAGE


# --------------------------------------------------------------------------
# Where export writes (issue 16: -o replaced device nodes and symlinks)


def bbprofiler(*argv, timeout=120, **kwargs):
    return subprocess.run([BBPROFILER, *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def test_export_through_a_symlink_replaces_the_file_it_points_to(tmp_path, v1_file):
    target = tmp_path / "real.folded"
    target.write_text("old\n")
    link = tmp_path / "link.folded"
    link.symlink_to(target)
    result = bbprofiler("export", v1_file, "-f", "collapsed", "-o", link)
    assert (result.returncode, result.stderr) == (0, "")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == exports.to_collapsed(load(v1_file))
    # A dangling link: the file it names is created, as a shell would.
    dangling = tmp_path / "dangling.folded"
    dangling.symlink_to(tmp_path / "new.folded")
    assert bbprofiler("export", v1_file, "-f", "collapsed", "-o", dangling).returncode == 0
    assert dangling.is_symlink() and (tmp_path / "new.folded").read_text() == target.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bbprofiler-")]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_export_to_a_device_writes_into_it_and_keeps_it(tmp_path, v1_file):
    """A private copy of /dev/null (char 1:3): before, the export replaced it
    with a regular file (as root, -o /dev/null replaced the real one)."""
    import stat as stat_module

    null = tmp_path / "null"
    os.mknod(null, stat_module.S_IFCHR | 0o666, os.makedev(1, 3))
    result = bbprofiler("export", v1_file, "-f", "speedscope", "-o", null)
    assert (result.returncode, result.stderr) == (0, "")
    assert stat_module.S_ISCHR(os.lstat(null).st_mode) and os.lstat(null).st_rdev == os.makedev(1, 3)
    # Through a symlink too.
    link = tmp_path / "null-link"
    link.symlink_to(null)
    assert bbprofiler("export", v1_file, "-f", "collapsed", "-o", link).returncode == 0
    assert link.is_symlink() and stat_module.S_ISCHR(os.stat(link).st_mode)


def test_export_to_a_fifo_streams_into_it(tmp_path, v1_file):
    import stat as stat_module
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = bbprofiler("export", v1_file, "-f", "collapsed", "-o", fifo, timeout=60)
    reader.join(60)
    assert (result.returncode, result.stderr) == (0, "")
    assert received == [exports.to_collapsed(load(v1_file)).encode()]
    assert stat_module.S_ISFIFO(os.lstat(fifo).st_mode)


def test_export_to_dev_stdout_and_dev_fd(tmp_path, v1_file):
    expected = exports.to_collapsed(load(v1_file))
    for name in ("/dev/stdout", "/dev/fd/1"):
        result = bbprofiler("export", v1_file, "-f", "collapsed", "-o", name)
        assert (result.returncode, result.stdout, result.stderr) == (0, expected, "")
    # stdout redirected to a file that already holds a line: appended where
    # the shell left it, not the file replaced.
    out = tmp_path / "out.txt"
    with open(out, "a") as f:
        f.write("first line\n")
        f.flush()
        result = subprocess.run([BBPROFILER, "export", str(v1_file), "-f", "collapsed", "-o", "/dev/stdout"],
                                stdout=f, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 0 and out.read_text() == "first line\n" + expected


def test_export_refuses_to_replace_a_socket(tmp_path, v1_file):
    import socket
    import stat as stat_module

    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        result = bbprofiler("export", v1_file, "-f", "collapsed", "-o", path)
    assert result.returncode == cli.EXIT_ERROR
    assert result.stderr == f"bbprofiler: cannot write {path}: a socket, not replaced by the export\n"
    assert stat_module.S_ISSOCK(os.lstat(path).st_mode)


def test_failed_export_leaves_no_output(tmp_path):
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"\x1f\x8b" + bytes(30))
    out = tmp_path / "out.json"
    result = bbprofiler("export", bad, "-f", "speedscope", "-o", out)
    assert result.returncode == cli.EXIT_ERROR and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json.gz"]


# --------------------------------------------------------------------------
# Inputs that hung or tracebacked (issue 16)


@pytest.mark.parametrize("command", [["top"], ["export", "-f", "collapsed"], ["export", "-f", "speedscope"]])
def test_a_fifo_input_is_refused_without_hanging(tmp_path, command):
    fifo = tmp_path / "prof.json.gz"
    os.mkfifo(fifo)
    result = bbprofiler(command[0], fifo, *command[1:], timeout=60)
    assert result.returncode == cli.EXIT_ERROR
    assert result.stderr == f"bbprofiler: {fifo}: not a regular file (a FIFO)\n"


@pytest.mark.parametrize("member, value, words", [
    ("end_ms", 1 << 62, "meta.end_ms is 4611686018427387904, after the year 9999"),
    ("end_ms", 253402300800000, "meta.end_ms is 253402300800000, after the year 9999"),  # year 10000
    ("start_ms", 10 ** 15, "meta.start_ms is 1000000000000000, after the year 9999"),
])
def test_times_past_year_9999_are_one_line_errors(tmp_path, member, value, words):
    doc = make_v1()
    doc["meta"][member] = value
    if member == "start_ms":
        doc["meta"]["end_ms"] = value
    path = write_gz(tmp_path / "future.json.gz", doc)
    for command in (["top"], ["export", "-f", "collapsed"]):
        result = bbprofiler(command[0], path, *command[1:])
        assert result.returncode == cli.EXIT_ERROR
        assert result.stderr == f"bbprofiler: {path}: {words} (expected <= 253402300799999)\n"


def test_the_last_millisecond_of_9999_is_shown(tmp_path):
    doc = make_v1()
    doc["meta"]["start_ms"] = 253402300799999 - 2000
    doc["meta"]["end_ms"] = 253402300799999
    result = bbprofiler("top", write_gz(tmp_path / "late.json.gz", doc))
    assert result.returncode == 0 and "to 9999-12-31 23:59:59Z" in result.stdout.splitlines()[0]


def test_lone_surrogates_are_replaced_in_every_export(tmp_path):
    doc = make_v1()
    doc["frames"][0][0] = "half\ud800pair"
    doc["threads"][0]["name"] = "Main\udfffThread"
    doc["files"][0] = "/app/\udc80run.py"
    path = write_gz(tmp_path / "surrogates.json.gz", doc)  # json.dumps writes \\ud800 escapes
    assert b"\\ud800" in gzip_text(path)
    collapsed = bbprofiler("export", path, "-f", "collapsed", "-o", tmp_path / "out.folded")
    speedscope = bbprofiler("export", path, "-f", "speedscope", "-o", tmp_path / "out.json")
    top = bbprofiler("top", path, "--width", "200", env={**os.environ, "LANG": "C.UTF-8"})
    for result in (collapsed, speedscope, top):
        assert (result.returncode, result.stderr) == (0, "")
    folded = (tmp_path / "out.folded").read_text(encoding="utf-8")
    assert "Main\ufffdThread;half\ufffdpair (/app/\ufffdrun.py:1)" in folded
    document = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert {"name": "half\ufffdpair", "file": "/app/\ufffdrun.py", "line": 1} in document["shared"]["frames"]
    assert "Main\ufffdThread" in {p["name"] for p in document["profiles"]}
    assert "half\ufffdpair" in top.stdout


def gzip_text(path):
    import gzip

    return gzip.decompress(Path(path).read_bytes())


def test_an_export_too_large_is_refused_in_one_line(tmp_path):
    """A chain of 7,000 stacks (a 50 KB file): its collapsed export would
    list 24.5 million frames. top is linear and answers; export refuses."""
    from profile_helpers import make_chain

    path = write_gz(tmp_path / "chain.json.gz", make_chain(7000))
    assert path.stat().st_size < 100_000
    top = bbprofiler("top", path, "-n", "3")
    assert top.returncode == 0 and "7000 samples" in top.stdout
    for fmt in ("collapsed", "speedscope"):
        out = tmp_path / f"out.{fmt}"
        result = bbprofiler("export", path, "-f", fmt, "-o", out)
        assert result.returncode == cli.EXIT_ERROR
        assert result.stderr.startswith(f"bbprofiler: {path}: the export would hold ")
        assert "more than the limit of 20000000 (select a thread or a time range)" in result.stderr
        assert result.stderr.count("\n") == 1 and not out.exists()
    # A time range under the limit exports.
    ok = bbprofiler("export", path, "-f", "collapsed", "--to", "1")
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 999
