"""`bbprofiler export` output opens in the real speedscope (npm, pinned in
tests/speedscope/package-lock.json, installed by scripts/setup), run in
headless Chromium: both formats import, and speedscope's sandwich table
shows the known hot function with its time in real units."""

from __future__ import annotations

import collections
import functools
import http.server
import json
import re
import threading
from pathlib import Path

import pytest

from profiler_service import cli
from profile_helpers import LEGACY_BIG, LEGACY_REAL

playwright_api = pytest.importorskip("playwright.sync_api")

from chromium import launched_chromium, needs_chromium  # noqa: E402
SPEEDSCOPE = Path(__file__).resolve().parent / "speedscope" / "node_modules" / "speedscope" / "dist" / "release"

pytestmark = [
    needs_chromium,
    pytest.mark.skipif(not (SPEEDSCOPE / "index.html").is_file(),
                       reason="speedscope not installed (scripts/setup runs npm ci in tests/speedscope)"),
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A loopback HTTP server for speedscope's files and our exports."""
    root = tmp_path_factory.mktemp("speedscope-site")
    (root / "speedscope").symlink_to(SPEEDSCOPE, target_is_directory=True)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as b:
        yield b


def _open_in_speedscope(browser, site, name: str) -> tuple[str, list[str], list[str], list[str]]:
    """(page title, import log lines, page errors, sandwich table cells)."""
    _, base = site
    page = browser.new_page()
    logs: list[str] = []
    errors: list[str] = []
    page.on("console", lambda message: logs.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(20_000)
    page.goto(f"{base}/speedscope/index.html#profileURL=/{name}")
    page.get_by_text("Sandwich").click()
    page.get_by_text("Symbol Name").wait_for()
    # The header is drawn before the rows: wait for a first "... (p%)" cell.
    page.wait_for_function(
        "() => /Symbol Name[\\s\\S]*\\(\\d+%\\)/.test(document.body.innerText)"
    )
    cells = [c.strip() for c in re.split(r"[\t\n]", page.inner_text("body")) if c.strip()]
    title = page.title()
    page.close()
    return title, [line for line in logs if line.startswith("Importing as")], errors, cells


@pytest.mark.timeout(120)
def test_speedscope_export_opens_in_speedscope(browser, site):
    root, _ = site
    assert cli.main(["export", str(LEGACY_BIG), "-f", "speedscope", "-o", str(root / "big.json")]) == 0
    title, imports, errors, cells = _open_in_speedscope(browser, site, "big.json")
    assert errors == []
    assert imports == ["Importing as speedscope json file"]
    assert title == "big.json - speedscope"
    assert "All threads (1/4)" in cells             # our first profile of four
    header = cells.index("Symbol Name")
    # Total, self and name of the hottest symbol: 713 samples of 1 ms.
    assert cells[header + 1:header + 4] == ["713.00ms (21%)", "713.00ms (21%)", "do_execute"]


@pytest.mark.timeout(120)
def test_collapsed_export_opens_in_speedscope(browser, site):
    root, _ = site
    assert cli.main(["export", str(LEGACY_BIG), "-f", "collapsed", "-o", str(root / "big.folded")]) == 0
    title, imports, errors, cells = _open_in_speedscope(browser, site, "big.folded")
    assert errors == []
    assert imports == ["Importing as collapsed stack format"]
    header = cells.index("Symbol Name")
    assert cells[header + 1:header + 4] == [
        "713 (21%)", "713 (21%)", "do_execute (my/engine/default.py:462)"]


def _duration_ms(cell: str) -> float:
    """speedscope's '713.00ms (21%)' or '2.30s (40%)' -> ms."""
    value = cell.split(" (")[0]
    for unit, scale in (("ms", 1.0), ("µs", 1e-3), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * scale
    raise AssertionError(f"no duration in {cell!r}")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", LEGACY_REAL, ids=[p.name for p in LEGACY_REAL])
def test_real_legacy_exports_open_in_speedscope(browser, site, path):
    """Both exports of each real 1.3.1 file (null lines, times out of order)
    import; the sandwich's first row has the most self time: the samples of
    the commonest leaf frame, counted here from the raw JSON."""
    root, _ = site
    doc = json.loads(path.read_text())
    leaves = collections.Counter(stack[0] for s in doc["samples"] for stack in s["threads"].values() if stack)
    hottest = max(leaves.values())
    assert cli.main(["export", str(path), "-f", "speedscope", "-o", str(root / f"{path.stem}.json")]) == 0
    title, imports, errors, cells = _open_in_speedscope(browser, site, f"{path.stem}.json")
    assert (errors, imports) == ([], ["Importing as speedscope json file"])
    assert title == f"{path.stem}.json - speedscope"
    header = cells.index("Symbol Name")
    assert _duration_ms(cells[header + 2]) == pytest.approx(hottest * 1000 / doc["frequency"], rel=0.005)
    assert cli.main(["export", str(path), "-f", "collapsed", "-o", str(root / f"{path.stem}.folded")]) == 0
    title, imports, errors, cells = _open_in_speedscope(browser, site, f"{path.stem}.folded")
    assert (errors, imports) == ([], ["Importing as collapsed stack format"])
    header = cells.index("Symbol Name")
    assert cells[header + 2].startswith(f"{hottest} (")
