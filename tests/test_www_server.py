"""The bbprofiler server, run for real (``python -m profiler_service.cli``
on 127.0.0.1, a free port): listing, fetching, traversal attempts, malformed
and huge files, concurrent requests."""

from __future__ import annotations

import concurrent.futures
import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import jsonschema
import pytest

from profiler_service.www import STATIC_DIR
from profiler_service.reading import MAX_DOCUMENT_BYTES

sys.path.insert(0, str(Path(__file__).parent))
import viewer_profiles  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
from profile_helpers import LEGACY_BIG  # noqa: E402
SCHEMA = REPO / "profiler_service" / "schema" / "profile-v3.schema.json"


class Server:
    def __init__(self, *paths: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "profiler_service.cli", *map(str, paths), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r} {self.proc.stderr.read()!r}")
        self.port = int(match.group(1))

    def request(self, path: str, method: str = "GET", host: str | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            # the raw path, no normalizing
            conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
            if host is not None:
                conn.putheader("Host", host)
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, path: str) -> tuple[int, dict]:
        status, headers, body = self.request(path)
        assert headers["content-type"].startswith("application/json"), headers
        return status, json.loads(body)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    profiles = root / "profiles"
    profiles.mkdir()
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"secret": 1}')
    viewer_profiles.write_gz(profiles / "prof_20251125T194640Z.json.gz", viewer_profiles.known_answer_profile())
    busy = viewer_profiles.busy_profile(n_samples=50000, n_stacks=2000, duration_s=900)
    busy["meta"]["end_ms"] += 3600_000  # the newest of all
    viewer_profiles.write_gz(profiles / "prof_busy.json.gz", busy)
    shutil.copy(LEGACY_BIG, profiles / "prof_legacy.json")
    (profiles / "garbage.json.gz").write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(300))
    good = gzip.compress(json.dumps(viewer_profiles.known_answer_profile()).encode())
    (profiles / "truncated.json.gz").write_bytes(good[: len(good) // 2])
    (profiles / "notjson.json").write_text("{this is not json")
    (profiles / "v9.json.gz").write_bytes(gzip.compress(b'{"format": "buildbot-profiler", "version": 9}'))
    (profiles / "other.json").write_text('{"name": "some package.json"}')
    (profiles / "badfields.json.gz").write_bytes(gzip.compress(b'{"format": "buildbot-profiler", "version": 1, "meta": 3}'))
    # A gzip bomb: tiny on disk, larger than the listing will parse.
    bomb = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    with open(profiles / "huge.json.gz", "wb") as f:
        for _ in range((MAX_DOCUMENT_BYTES >> 20) + 2):
            f.write(bomb.compress(chunk))
        f.write(bomb.flush())
    (profiles / "README.txt").write_text("not a profile")
    os.symlink(outside / "secret.json", profiles / "escape.json")
    os.symlink(profiles / "prof_legacy.json", profiles / "alias.json")  # inside: fine
    (profiles / "sub").mkdir()
    (profiles / "sub" / "nested.json").write_text("{}")
    explicit = outside / "explicit.json.gz"
    viewer_profiles.write_gz(explicit, viewer_profiles.known_answer_profile())
    server = Server(profiles, explicit)
    yield server, profiles, outside
    server.stop()


def test_synthetic_profiles_follow_the_schema():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(viewer_profiles.known_answer_profile(), schema)
    jsonschema.validate(viewer_profiles.busy_profile(n_samples=2000, n_stacks=300), schema)


@pytest.mark.timeout(60)
def test_listing(served):
    server, profiles, _ = served
    status, body = server.json("/api/profiles")
    assert status == 200
    entries = {e["name"]: e for e in body["profiles"]}
    assert set(entries) == {
        "prof_20251125T194640Z.json.gz", "prof_busy.json.gz", "prof_legacy.json", "alias.json",
        "garbage.json.gz", "truncated.json.gz", "notjson.json", "v9.json.gz", "other.json",
        "badfields.json.gz", "huge.json.gz", "explicit.json.gz",
    }
    ours = entries["prof_20251125T194640Z.json.gz"]
    assert ours["format"] == "buildbot-profiler" and ours["error"] is None and ours["samples"] == 15000 and ours["hostname"] == "ci-master-1"
    assert ours["end_ms"] - ours["start_ms"] == 600000
    assert ours["size"] == (profiles / "prof_20251125T194640Z.json.gz").stat().st_size
    legacy = entries["prof_legacy.json"]
    legacy_doc = json.loads(LEGACY_BIG.read_text())
    assert legacy["format"] == "buildbot_profiler-1.x"
    assert legacy["samples"] == sum(len(s["threads"]) for s in legacy_doc["samples"])  # one per thread stack
    assert legacy["start_ms"] == 1471876477627
    for name, words in {
        "garbage.json.gz": "corrupt gzip data", "truncated.json.gz": "truncated gzip data",
        "notjson.json": "not gzip and not JSON", "v9.json.gz": "format version 9 is newer",
        "other.json": "not a profile", "badfields.json.gz": "meta is an integer",
        "huge.json.gz": "decompresses to more than",
    }.items():
        assert words in (entries[name]["error"] or ""), (name, entries[name])
        assert str(profiles) not in entries[name]["error"]  # no server paths in answers
    # newest first: the busy profile ends last; the 1.x file (2016) comes after ours
    names = [e["name"] for e in body["profiles"] if not e["error"]]
    assert names[0] == "prof_busy.json.gz"
    assert names.index("prof_20251125T194640Z.json.gz") < names.index("prof_legacy.json")


@pytest.mark.timeout(60)
def test_fetch_ours_is_gzip_encoded_json(served):
    server, profiles, _ = served
    status, headers, body = server.request("/api/profiles/prof_20251125T194640Z.json.gz")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["content-encoding"] == "gzip"
    assert body == (profiles / "prof_20251125T194640Z.json.gz").read_bytes()
    assert json.loads(gzip.decompress(body))["format"] == "buildbot-profiler"


@pytest.mark.timeout(60)
def test_fetch_legacy_as_is_and_download(served):
    server, profiles, _ = served
    status, headers, body = server.request("/api/profiles/prof_legacy.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert "content-encoding" not in headers
    assert body == LEGACY_BIG.read_bytes()
    status, headers, body = server.request("/api/profiles/prof_busy.json.gz?download=1")
    assert status == 200 and headers["content-type"] == "application/gzip"
    assert "content-encoding" not in headers
    assert headers["content-disposition"] == 'attachment; filename="prof_busy.json.gz"'
    assert body == (profiles / "prof_busy.json.gz").read_bytes()


@pytest.mark.timeout(60)
def test_names_with_spaces_and_unicode(tmp_path):
    name = "prof ü 1.json.gz"
    viewer_profiles.write_gz(tmp_path / name, viewer_profiles.known_answer_profile())
    server = Server(tmp_path)
    try:
        _, body = server.json("/api/profiles")
        assert [e["name"] for e in body["profiles"]] == [name]
        status, _, data = server.request("/api/profiles/prof%20%C3%BC%201.json.gz")
        assert status == 200 and data == (tmp_path / name).read_bytes()
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_explicit_file_outside_a_directory_is_served(served):
    server, _, outside = served
    status, _, body = server.request("/api/profiles/explicit.json.gz")
    assert status == 200 and body == (outside / "explicit.json.gz").read_bytes()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", [
    "/api/profiles/..%2foutside%2fsecret.json",
    "/api/profiles/%2e%2e/outside/secret.json",
    "/api/profiles/%2e%2e%2foutside%2fsecret.json",
    "/api/profiles/../outside/secret.json",
    "/api/profiles/..",
    "/api/profiles/%2e%2e",
    "/api/profiles/escape.json",                      # symlink pointing out
    "/api/profiles/%2Ftmp%2Fsecret.json",             # absolute, encoded
    "/api/profiles//etc/passwd",                      # absolute
    "/api/profiles/sub%2fnested.json",                # below a served directory
    "/api/profiles/sub/nested.json",
    "/api/profiles/README.txt",                       # not a profile name
    "/api/profiles/prof_legacy.json/..",
    "/api/profiles/prof_legacy.json/x",
    "/api/profiles/nonexistent.json.gz",
    "/api/../../etc/passwd",
])
def test_traversal_gets_404(served, path):
    server, _, _ = served
    status, headers, body = server.request(path)
    assert status == 404, (path, status, body[:200])
    assert b'"secret": 1' not in body and b"root:" not in body


@pytest.mark.timeout(60)
def test_symlink_out_is_not_listed(served):
    server, _, _ = served
    _, body = server.json("/api/profiles")
    assert "escape.json" not in {e["name"] for e in body["profiles"]}


@pytest.mark.timeout(60)
def test_malformed_files_are_served_and_the_server_survives(served):
    server, profiles, _ = served
    for name in ("garbage.json.gz", "notjson.json", "huge.json.gz"):
        status, _, body = server.request(f"/api/profiles/{name}")
        assert status == 200 and body == (profiles / name).read_bytes()
    status, body = server.json("/api/profiles")
    assert status == 200 and len(body["profiles"]) == 12
    assert server.proc.poll() is None


@pytest.mark.timeout(60)
def test_api_errors_are_json(served):
    server, _, _ = served
    status, body = server.json("/api/nothing")
    assert status == 404 and "no such API endpoint" in body["error"]
    status, body = server.json("/api/profiles/missing.json.gz")
    assert status == 404 and body["error"] == "no such profile: 'missing.json.gz'"


@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.path.isfile(os.path.join(STATIC_DIR, "index.html")), reason="viewer not built (scripts/build-viewer)")
def test_static_page(served):
    server, _, _ = served
    status, headers, body = server.request("/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"viewer.js" in body
    status, headers, body = server.request("/viewer.js")
    assert status == 200 and len(body) > 10000
    assert server.request("/nope.js")[0] == 404
    assert server.request("/%2e%2e/www/resources.py")[0] == 404


@pytest.mark.timeout(120)
def test_concurrent_requests(served):
    server, profiles, _ = served
    expected = {
        "/api/profiles/prof_busy.json.gz": (profiles / "prof_busy.json.gz").read_bytes(),
        "/api/profiles/prof_legacy.json": (profiles / "prof_legacy.json").read_bytes(),
    }

    def one(i: int) -> bool:
        if i % 3 == 0:
            status, body = server.json("/api/profiles")
            return status == 200 and len(body["profiles"]) == 12
        path = list(expected)[i % 2]
        status, _, body = server.request(path)
        return status == 200 and body == expected[path]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(96)))
    assert all(results)


@pytest.mark.timeout(60)
def test_only_loopback_host_names_are_answered(served):
    """DNS rebinding: a page served as evil.example must not read profiles."""
    server, _, _ = served
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.evil.example"):
        status, _, body = server.request("/api/profiles", host=host)
        assert status == 421 and b"profiles" not in body, host
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"LOCALHOST:{server.port}"):
        assert server.request("/api/profiles", host=host)[0] == 200, host


@pytest.mark.timeout(30)
def test_cli_rejects_missing_path(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "profiler_service.cli", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    assert "no such file or directory" in proc.stderr


@pytest.mark.timeout(60)
def test_client_leaving_during_listing(served):
    import socket

    server, _, _ = served
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /api/profiles HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body = server.json("/api/profiles")
    assert status == 200 and len(body["profiles"]) == 12
    assert server.proc.poll() is None


MOUNT_SCRIPT = """
import sys
from twisted.internet import reactor
from twisted.web import resource, server
from profiler_service.www.resources import viewer_root
root = resource.Resource()
plugins = resource.Resource()
root.putChild(b"plugins", plugins)
plugins.putChild(b"profiler", viewer_root(sys.argv[1:]))
port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
print(f"bbprofiler: serving at http://127.0.0.1:{port.getHost().port}/", flush=True)
reactor.run()
"""


class MountedServer(Server):
    """The same resources mounted under /plugins/profiler/, as the www plugin does."""

    def __init__(self, *paths: Path):
        import subprocess as sp

        self.proc = sp.Popen([sys.executable, "-c", MOUNT_SCRIPT, *map(str, paths)],
                             stdout=sp.PIPE, stderr=sp.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, self.proc.stderr.read())
        self.port = int(match.group(1))


@pytest.mark.timeout(60)
def test_resources_mounted_under_a_prefix(served):
    _, profiles, _ = served
    mounted = MountedServer(profiles)
    try:
        status, body = mounted.json("/plugins/profiler/api/profiles")
        assert status == 200 and len(body["profiles"]) == 11
        status, _, data = mounted.request("/plugins/profiler/api/profiles/prof_legacy.json")
        assert status == 200 and data == (profiles / "prof_legacy.json").read_bytes()
        assert mounted.request("/plugins/profiler/api/profiles/..%2fprof_legacy.json")[0] == 404
        assert mounted.request("/api/profiles")[0] == 404
    finally:
        mounted.stop()


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


@pytest.mark.timeout(60)
def test_hostile_urls_get_a_status_line_and_no_traceback(tmp_path):
    viewer_profiles.write_gz(tmp_path / "prof_20251125T194640Z.json.gz", viewer_profiles.known_answer_profile())
    server = Server(tmp_path)
    try:
        for path in ("/%00", "/a%00b", "/%00/x", "/api/profiles/%00", "/api/profiles/a%00.json.gz"):
            assert server.request(path)[0] == 404, path
        host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
        reply = raw_exchange(server.port, b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\n" + host + b"\r\n")
        assert reply.startswith(b"HTTP/1.1 414 URI Too Long\r\n"), reply[:200]
        reply = raw_exchange(server.port, b"GET /api/profiles HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 17000 + b"\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
        assert server.json("/api/profiles")[0] == 200  # still serving
    finally:
        server.stop()
    log = server.proc.stderr.read() + server.proc.stdout.read()
    assert "Traceback" not in log and "embedded null byte" not in log, log[-2000:]


def bytes_read(pid: int) -> int:
    """rchar of /proc/<pid>/io: bytes the process got from read(2) and kin."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/<pid>/io")


@pytest.mark.timeout(300)
def test_a_second_listing_of_1100_files_reads_none_of_them(tmp_path):
    # The defaults of the service (keepFiles=1000) and the page (keepFiles=50)
    # serve 1,050 files: more than a fixed 1,024-entry cache holds.
    data = gzip.compress(json.dumps(viewer_profiles.known_answer_profile()).encode())
    for i in range(1100):
        (tmp_path / f"prof_20261201T{i // 60:02d}{i % 60:02d}00Z.json.gz").write_bytes(data)
    server = Server(tmp_path)
    try:
        before = bytes_read(server.proc.pid)
        status, body = server.json("/api/profiles")
        first = bytes_read(server.proc.pid) - before
        assert status == 200 and len(body["profiles"]) == 1100
        assert all(entry["error"] is None and entry["samples"] for entry in body["profiles"])
        assert first >= 1100 * len(data)  # every file read once
        before = bytes_read(server.proc.pid)
        status, again = server.json("/api/profiles")
        second = bytes_read(server.proc.pid) - before
        assert status == 200 and again == body
        assert second < len(data), f"the second listing read {second} bytes"
        # A changed file is read again, and only that one.
        (tmp_path / "prof_20261201T000000Z.json.gz").write_bytes(data + b"")
        os.utime(tmp_path / "prof_20261201T000000Z.json.gz", ns=(1, 10**18))
        (tmp_path / "prof_20261201T000100Z.json.gz").unlink()
        before = bytes_read(server.proc.pid)
        status, third = server.json("/api/profiles")
        third_read = bytes_read(server.proc.pid) - before
        assert len(third["profiles"]) == 1099
        assert len(data) <= third_read < 2 * len(data) + 4096
    finally:
        server.stop()
