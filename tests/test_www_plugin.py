"""The www plugin without a master: its settings, its import cost and safety,
and what it says when the C extension cannot load (a subprocess where
``profiler_service._core`` is made unimportable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

import profiler_service
from profiler_service.www import plugin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_entry_point_names_the_application():
    (ep,) = [e for e in entry_points(group="buildbot.www") if e.name == "profiler"]
    from buildbot.www.plugin import Application

    app = ep.load()
    assert isinstance(app, Application) and app.ui is True
    assert app.version == profiler_service.__version__
    with open(os.path.join(REPO, "profiler_service", "www", "VERSION")) as f:
        assert f.read().strip() == profiler_service.__version__


@pytest.mark.parametrize("config, message", [
    ("yes", "must be True or a dict"),
    ({"frequncy": 5}, "unknown setting(s) ['frequncy']"),
    ({"directory": ""}, "directory must be a non-empty str"),
    ({"maxDuration": -1}, "maxDuration must be a number > 0, got -1"),
    ({"frequency": float("nan")}, "frequency must be a number > 0"),
    ({"maxFrequency": 20000}, "maxFrequency must be <= 10000"),
    ({"keepFiles": 0}, "keepFiles must be an int >= 1, got 0"),
    ({"keepFiles": True}, "keepFiles must be an int >= 1"),
])
def test_bad_settings_are_named(config, message):
    with pytest.raises(ValueError) as info:
        plugin.plugin_options(config)
    assert message in str(info.value)


def test_settings_true_or_dict():
    assert plugin.plugin_options(True) == plugin.DEFAULTS
    options = plugin.plugin_options({"maxDuration": 600, "directory": "/var/prof"})
    assert options["maxDuration"] == 600 and options["directory"] == "/var/prof"
    assert options["keepFiles"] == plugin.DEFAULTS["keepFiles"]


def test_start_values_are_validated_and_clamped():
    control = plugin.RecordingControl()
    control.options = plugin.plugin_options({"maxFrequency": 500, "maxDuration": 100})
    assert control.parse_start({}) == (100.0, 60.0, None, [])
    assert control.parse_start({"frequency": 0.5, "duration": 1000, "mode": "real"}) == (
        1.0, 100.0, "real", ["frequency 0.5 Hz clamped to 1 Hz", "duration 1000 s clamped to 100 s"])
    for body, text in [({"frequency": float("inf")}, "frequency must be a finite number"),
                       ({"duration": -1}, "duration must be > 0 s, got -1"),
                       ({"duration": "60"}, "duration must be a finite number (s), got '60'"),
                       ({"mode": "fast"}, "mode must be one of virtual, prof, real, got 'fast'"),
                       ({"x": 1}, "unknown field(s) ['x']")]:
        with pytest.raises(plugin.BadRequest) as info:
            control.parse_start(body)
        assert text in str(info.value) and info.value.code == 400


PROBE = r"""
import json, sys, time
sys.modules["profiler_service._core"] = None   # as if the extension could not load
began = time.perf_counter()
from profiler_service.www.plugin import ep
import_s = time.perf_counter() - began
from twisted.web.test.requesthelper import DummyRequest
from profiler_service.www import plugin

class Master:  # what the plugin reads of a master here: no www (no authz), no services
    basedir = sys.argv[1]
    from twisted.internet import reactor
    www = None

ep.setMaster(Master())
ep.setConfiguration(True)

def call(path, method=b"GET", body=b""):
    request = DummyRequest(path.split(b"/"))
    request.method = method
    if body:
        request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
        import io
        request.content = io.BytesIO(body)
    resource = ep.resource
    while not getattr(resource, "isLeaf", False) and request.postpath:
        resource = resource.getChildWithDefault(request.postpath.pop(0), request)
    out = resource.render(request)
    if isinstance(out, bytes):
        request.write(out)
    return request.responseCode or 200, json.loads(b"".join(request.written))

print(json.dumps({"import_s": import_s, "status": call(b"api/status"),
                  "start": call(b"api/start", b"POST", b'{"frequency": 100}')}))
"""


@pytest.mark.timeout(60)
def test_without_the_c_extension_the_plugin_loads_and_says_why(tmp_path):
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    code, status = out["status"]
    assert code == 200 and status["available"] is False
    assert "C extension cannot load" in status["problem"] and "ModuleNotFoundError" in status["problem"]
    code, start = out["start"]
    assert code == 503 and "C extension cannot load" in start["error"]


def test_importing_the_plugin_never_loads_the_c_extension():
    code = "import sys; import profiler_service.www.plugin; print('profiler_service._core' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
