"""The www plugin on a real Buildbot 4.3 master (buildbot-www from PyPI, a
LocalWorker, ``buildbot create-master`` / ``start`` / ``stop``), with an
admin-only authz and ProfilerService sampling every few seconds: who may
start, stop and download; what status says; that a page recording and the
service's files share every sample."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

from e2e_master import unexpected_tracebacks
from www_master import WwwMaster, free_port, read_profile, sample_keys

GATHER_S = 4


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    m = WwwMaster(tmp_path_factory.mktemp("wwwmaster") / "master")
    m.create()
    m.configure_www(free_port(), plugin={"keepFiles": 10},
                    services=f'util.ProfilerService(gatherperiod={GATHER_S}, basepath="prof/prof_")')
    m.start()
    try:
        m.wait_for(lambda: m.client().get("plugins/profiler/api/status").status == 200, 60, "the plugin's API")
        yield m
    finally:
        if m.alive:  # the last test stops it itself
            result = m.stop()
            assert result.returncode == 0, result.stdout
        if m.alive:
            m.kill()
        assert not unexpected_tracebacks(m.log()), m.log()[-4000:]


@pytest.fixture(scope="module")
def admin(master):
    return master.client("admin")


@pytest.fixture(scope="module")
def dev(master):
    return master.client("dev")


def wait_not_recording(admin, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = admin.get("plugins/profiler/api/status").json()
        if status["recording"] is None and not status["writing"]:
            return status
        time.sleep(0.1)
    raise AssertionError("still recording")


@pytest.mark.timeout(60)
def test_plugin_is_mounted_with_the_viewer_and_ui_scripts(master):
    anon = master.client()
    page = anon.get("plugins/profiler/")
    assert page.status == 200 and b"buildbot-profiler" in page.body
    script = anon.get("plugins/profiler/scripts.js")
    assert script.status == 200 and b"buildbotSetupPlugin" in script.body
    assert anon.get("plugins/profiler/styles.css").status == 200
    config = anon.get("config").body.decode()
    assert '"profiler"' in config  # the React UI loads plugins/<name>/scripts.js for these
    status = anon.get("plugins/profiler/api/status").json()
    assert status["available"] is True and status["problem"] is None
    assert status["recording"] is None
    assert [s["name"] for s in status["services"]] == ["ProfilerService"]
    assert status["services"][0]["sampling"] is True


@pytest.mark.timeout(60)
def test_status_shows_server_paths_to_admins_only(master, dev, admin):
    # The paths are a "paths" action, which AnyControlEndpointMatcher leaves to admins.
    for client in (master.client(), dev):
        status = client.get("plugins/profiler/api/status").json()
        assert status["services"][0]["basepath"] is None and status["directory"] is None
        assert str(master.basedir) not in json.dumps(status)
    status = admin.get("plugins/profiler/api/status").json()
    assert status["services"][0]["basepath"] == str(master.basedir / "prof" / "prof_")
    assert status["directory"] == str(master.basedir / "profiler-www")


@pytest.mark.timeout(60)
def test_hostile_bodies_and_methods_get_4xx_never_500(master, dev, admin):
    anon = master.client()
    nested = b"[" * 32000 + b"]" * 32000  # 64 KB, within the size limit
    for client in (anon, dev):
        for call in ("start", "stop"):
            reply = client.post(f"plugins/profiler/api/{call}", nested)
            assert reply.status == 403, reply  # refused by authz, the body never parsed
    reply = admin.post("plugins/profiler/api/start", nested)
    assert reply.status == 400 and "nested too deeply" in reply.json()["error"], reply
    reply = admin.post("plugins/profiler/api/start", b'{"frequency": 1' + b"0" * 400 + b"}")
    assert reply.status == 400, reply
    assert reply.json()["error"] == "frequency must be a finite number (Hz), got an integer of 1329 bits"
    reply = admin.post("plugins/profiler/api/start", b'{"duration": -1' + b"0" * 400 + b"}")
    assert reply.status == 400 and reply.json()["error"].startswith("duration must be"), reply
    name = master.wait_for(lambda: next(iter(admin.get("plugins/profiler/api/profiles").json()["profiles"]), None),
                           3 * GATHER_S, "a service file")["name"]
    for method in ("PUT", "DELETE", "POST"):
        reply = admin.request(f"plugins/profiler/api/profiles/{name}", body=b"{}", method=method)
        assert reply.status == 405 and reply.headers["Allow"] == "GET, HEAD", (method, reply)
    assert admin.request(f"plugins/profiler/api/profiles/{name}", method="HEAD").status == 200
    for path in ("status", "profiles", "start"):
        reply = admin.request(f"plugins/profiler/api/{path}", body=b"{}", method="PUT")
        assert reply.status == 405 and reply.headers["Allow"], (path, reply)
    log = master.log()
    assert "RecursionError" not in log and "Traceback" not in log
    assert wait_not_recording(admin)["recording"] is None


@pytest.mark.timeout(60)
def test_anonymous_and_non_admin_cannot_start_stop_or_download(master, dev, admin):
    anon = master.client()
    for client in (anon, dev):
        reply = client.post("plugins/profiler/api/start", {"frequency": 100, "duration": 5})
        assert reply.status == 403, reply
        assert "admins" in reply.json()["error"]
        assert client.post("plugins/profiler/api/stop").status == 403
        # reading status and the list is a "get", which the rule leaves open
        assert client.get("plugins/profiler/api/status").status == 200
        assert client.get("plugins/profiler/api/profiles").status == 200
    assert admin.get("plugins/profiler/api/status").json()["recording"] is None
    # a profile's bytes are a "download": admins only
    name = master.wait_for(lambda: next(iter(admin.get("plugins/profiler/api/profiles").json()["profiles"]), None),
                           3 * GATHER_S, "a service file")["name"]
    for client in (anon, dev):
        assert client.get(f"plugins/profiler/api/profiles/{name}?download=1").status == 403
        assert client.get(f"plugins/profiler/api/profiles/{name}").status == 403
    assert admin.get(f"plugins/profiler/api/profiles/{name}?download=1").status == 200


@pytest.mark.timeout(60)
def test_bad_requests_are_refused_with_a_message(admin):
    cases = [
        ({"frequency": -5}, 400, "frequency must be > 0"),
        ({"frequency": "fast"}, 400, "frequency must be a finite number"),
        ({"duration": 0}, 400, "duration must be > 0"),
        ({"duration": True}, 400, "duration must be a finite number"),
        ({"mode": "fast"}, 400, "mode must be one of"),
        ({"frequnecy": 100}, 400, "unknown field"),
        ([1, 2], 400, "must be a JSON object"),
    ]
    for body, code, text in cases:
        reply = admin.post("plugins/profiler/api/start", body)
        assert reply.status == code and text in reply.json()["error"], (body, reply)
    reply = admin.post("plugins/profiler/api/start", b"not json")
    assert reply.status == 400 and "not valid JSON" in reply.json()["error"]
    # CSRF: a form post (no JSON content type) changes nothing
    reply = admin.post("plugins/profiler/api/start", b"frequency=100", content_type="application/x-www-form-urlencoded")
    assert reply.status == 415
    assert admin.get("plugins/profiler/api/start").status == 405
    assert admin.get("plugins/profiler/api/status/x").status == 404
    assert admin.get("plugins/profiler/api/nothing").status == 404
    assert admin.post("plugins/profiler/api/stop").status == 409  # nothing to stop
    assert admin.get("plugins/profiler/api/status").json()["recording"] is None


@pytest.fixture(scope="module")
def recorded(master, admin):
    """An admin records from the page while the service samples and a build runs."""
    reply = admin.post("plugins/profiler/api/start", {"frequency": 100, "duration": 60})
    assert reply.status == 200, reply
    started = reply.json()
    assert admin.post("plugins/profiler/api/start", {}).status == 409  # one at a time
    assert admin.force_build().status == 200
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = admin.get("plugins/profiler/api/status").json()
        seen.append(status["recording"])
        builds = admin.get("api/v2/builds").json()["builds"]
        if status["recording"]["samples"] >= 20 and builds and builds[-1]["complete"]:
            break
        time.sleep(0.2)
    began = time.monotonic()
    stop = admin.post("plugins/profiler/api/stop", timeout=10)
    stop_s = time.monotonic() - began
    assert stop.status == 200, stop
    return {"started": started, "seen": seen, "stop": stop.json(), "stop_s": stop_s}


@pytest.mark.timeout(90)
def test_admin_records_and_status_follows(master, admin, recorded):
    started = recorded["started"]
    assert started["started"] is True and started["clamped"] == []
    rec = started["status"]["recording"]
    assert rec["open"] and rec["frequency"] == 100 and rec["mode"] == "virtual" and rec["conflict"] is None
    assert 55 < rec["time_left"] <= 60
    seen = recorded["seen"]
    assert all(s is not None for s in seen)
    assert seen[-1]["samples"] >= 20 and seen[-1]["samples"] >= seen[0]["samples"]
    assert seen[-1]["time_left"] < rec["time_left"]
    print(f"stop took {recorded['stop_s']:.3f} s")
    last = recorded["stop"]["last"]
    assert last["error"] is None and last["samples"] >= 20
    assert recorded["stop"]["status"]["recording"] is None
    path = master.basedir / "profiler-www" / last["name"]
    doc = read_profile(path)
    assert sum(1 for _ in doc["samples"]["dt"]) == last["samples"]
    assert doc["meta"]["recording"] == "www" and doc["meta"]["period_end"] == "stopped from the web UI"
    assert [b["builder"] for b in doc["builds"]] == ["work"]
    names = [p["name"] for p in admin.get("plugins/profiler/api/profiles").json()["profiles"]]
    assert last["name"] in names and any(n.startswith("prof_") for n in names)
    download = admin.get(f"plugins/profiler/api/profiles/{last['name']}?download=1")
    assert download.status == 200 and download.body == path.read_bytes()


@pytest.mark.timeout(60)
def test_page_recording_and_service_periods_lose_no_sample(master, recorded):
    doc = read_profile(master.basedir / "profiler-www" / recorded["stop"]["last"]["name"])
    start_ms, end_ms = doc["meta"]["start_ms"], doc["meta"]["end_ms"]
    page = sample_keys(doc)
    assert len(page) >= 20
    last_sample_ms = page[-1][0]

    # The service writes no file for a period without samples: wait for the
    # one that holds the page's last sample, not for one covering end_ms.
    def service_files():
        files = sorted((master.basedir / "prof").glob("prof_*.json.gz"))
        docs = [read_profile(f) for f in files]
        return docs if docs and max(d["meta"]["end_ms"] for d in docs) >= last_sample_ms else None

    docs = master.wait_for(service_files, 4 * GATHER_S, "the service file holding the page's last sample")
    service = [s for d in docs for s in sample_keys(d)]

    def keys(samples, lo, hi):
        return collections.Counter(k for t, k in samples if lo <= t <= hi)

    # every page sample is in a service file, and every service sample of
    # that time is in the page recording (2 ms slack: times are whole ms)
    assert not keys(page, 0, 1 << 62) - keys(service, start_ms - 2, end_ms + 2)
    assert not keys(service, start_ms + 2, end_ms - 2) - keys(page, 0, 1 << 62)


@pytest.mark.timeout(60)
def test_values_out_of_bounds_are_clamped(admin):
    reply = admin.post("plugins/profiler/api/start", {"frequency": 50000, "duration": 10 ** 9})
    assert reply.status == 200, reply
    body = reply.json()
    assert body["clamped"] == ["frequency 50000 Hz clamped to 1000 Hz", "duration 1e+09 s clamped to 3600 s"]
    rec = body["status"]["recording"]
    assert rec["requested"] == {"frequency": 1000.0, "duration": 3600.0, "mode": "virtual"}
    # the service samples at 100 Hz: the running settings win, and status says so
    assert rec["frequency"] == 100 and "running settings win" in rec["conflict"]
    began = time.monotonic()
    stop = admin.post("plugins/profiler/api/stop", timeout=10)
    assert stop.status == 200, stop
    print(f"stop took {time.monotonic() - began:.3f} s")
    wait_not_recording(admin)


@pytest.mark.timeout(60)
def test_recording_ends_by_itself_at_its_duration(master, admin):
    reply = admin.post("plugins/profiler/api/start", {"frequency": 100, "duration": 1, "mode": "virtual"})
    assert reply.status == 200, reply
    admin.force_build()
    status = wait_not_recording(admin, timeout=20)
    assert status["last"]["reason"] == "duration reached"
    assert "wrote" in master.log() and "duration reached" in master.log()


@pytest.mark.timeout(90)
def test_reconfig_keeps_the_recording_and_a_sampler_restart_gives_one_file_per_rate(master, admin):
    # The page asks for 250 Hz while the service samples at 100 Hz: it gets 100 Hz.
    reply = admin.post("plugins/profiler/api/start", {"frequency": 250, "duration": 120})
    assert reply.status == 200, reply
    assert reply.json()["status"]["recording"]["frequency"] == 100
    admin.force_build()
    master.wait_for(lambda: admin.get("plugins/profiler/api/status").json()["recording"]["samples"] >= 5,
                    30, "samples at 100 Hz")
    # A reconfig removes the service and changes the plugin's settings: the
    # page records alone, so the sampler restarts at the page's 250 Hz.
    master.configure_www(master.port, plugin={"keepFiles": 10, "maxDuration": 600})
    assert master.reconfig().returncode == 0
    status = master.wait_for(lambda: (lambda s: s if s["limits"]["duration"][1] == 600 else None)(
        admin.get("plugins/profiler/api/status").json()), 30, "the new plugin settings")
    rec = status["recording"]
    assert status["services"] == [] and rec["open"] and rec["frequency"] == 250 and rec["conflict"] is None
    before = rec["samples"]
    admin.force_build()
    master.wait_for(lambda: admin.get("plugins/profiler/api/status").json()["recording"]["samples"] >= before + 5,
                    30, "samples at 250 Hz")
    stop = admin.post("plugins/profiler/api/stop", timeout=10)
    assert stop.status == 200, stop
    last = stop.json()["last"]
    assert last["reason"] == "stopped from the web UI" and last["error"] is None
    docs = [read_profile(master.basedir / "profiler-www" / name) for name in last["files"]]
    assert [d["meta"]["frequency"] for d in docs] == [100, 250]
    assert sum(len(d["samples"]["dt"]) for d in docs) == last["samples"]
    assert last["name"] == last["files"][-1]


@pytest.mark.timeout(90)
def test_stopping_the_master_writes_the_recording(master, admin):
    reply = admin.post("plugins/profiler/api/start", {"frequency": 100, "duration": 120})
    assert reply.status == 200, reply
    admin.force_build()
    master.wait_for(lambda: admin.get("plugins/profiler/api/status").json()["recording"]["samples"] >= 5,
                    30, "samples")
    before = set((master.basedir / "profiler-www").glob("web_*.json.gz"))
    result = master.stop()
    assert result.returncode == 0, result.stdout
    written = set((master.basedir / "profiler-www").glob("web_*.json.gz")) - before
    assert len(written) == 1, master.log()[-3000:]
    doc = read_profile(written.pop())
    assert doc["meta"]["period_end"] == "the master is stopping" and len(doc["samples"]["dt"]) >= 5


@pytest.mark.timeout(90)
def test_a_bad_plugin_setting_stops_the_start_with_its_name(tmp_path):
    m = WwwMaster(tmp_path / "master")
    m.create()
    m.configure_www(free_port(), plugin={"keepFiles": 0})
    try:
        result = m.run("start", check=False)
        assert result.returncode != 0
        assert "keepFiles must be an int >= 1, got 0" in m.log()
    finally:
        if m.alive:
            m.kill()


@pytest.mark.timeout(90)
def test_without_the_c_extension_the_master_starts_and_the_page_says_why(tmp_path, monkeypatch):
    # The master process imports a sitecustomize that makes the extension
    # unimportable, as a Python upgrade under an installed wheel would.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['profiler_service._core'] = None\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    m = WwwMaster(tmp_path / "master")
    m.create()
    m.configure_www(free_port(), services="util.ProfilerService(gatherperiod=5)")
    m.start()
    try:
        m.wait_for(lambda: m.client().get("plugins/profiler/api/status").status == 200, 60, "the plugin's API")
        status = m.client().get("plugins/profiler/api/status").json()
        assert status["available"] is False
        assert "C extension cannot load" in status["problem"], status
        reply = m.client("admin").post("plugins/profiler/api/start", {})
        assert reply.status == 503 and "C extension cannot load" in reply.json()["error"]
        assert m.client().get("plugins/profiler/").status == 200
        assert "ProfilerService: cannot start the sampler" in m.log()
    finally:
        result = m.stop()
        if m.alive:
            m.kill()
    assert result.returncode == 0, result.stdout
