"""The viewer's line view (docs/FORMAT.md, "Lines (version 3)") in a real
browser (Debian Chromium through Playwright, the real bbprofiler server):
the "Lines" toggle of the flame graph, a function's hottest lines, files
without lines, and a merge of a version 2 and a version 3 file.

The hand-made version 3 files are opened as local files (the file
chooser), so the page's own reader is what is tested; the real master's
file (the last test) is served by bbprofiler. Known answers
by weight: MainThread spends 70 % of its time in `hot` at line 12 and 30 %
at line 15 (a third of which in `helper`, called from line 15), all called
from `main` at line 40. Line 12's samples weigh twice line 15's (35 records
against 30), so a view that counted records instead of weights would show
54 % and 46 %.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chromium import needs_chromium, needs_viewer_build  # noqa: E402
from profile_helpers import LEGACY_SMALL, START_MS, make_v1, make_v3, write_gz  # noqa: E402
from test_viewer_browser import (  # noqa: E402,F401  (browser, page: fixtures)
    ARTIFACTS, browser, flame_names, frame_width, hot_rows, open_profile, page, renders, shot)
from test_www_server import Server  # noqa: E402
from profiler_service.reading import SCHEMA_PATH  # noqa: E402

pytest.importorskip("playwright.sync_api")
pytestmark = [needs_viewer_build, needs_chromium]

MAIN = ("main", "/app/run.py", 1)
HOT = ("hot", "/app/work.py", 10)
HELPER = ("helper", "/app/util.py", 2)
LOOP = ("loop", "/app/pool.py", 4)
LINE_LABEL = re.compile(r" \([^()]+\)$")  # the line view's "func (file:line)"


def at(frame: tuple[str, str, int], line: int) -> tuple[str, str, int, int]:
    return (*frame, line)


# MainThread, 10 ms apart: line 12 first (t = 10..350 ms), then line 15 (360..650 ms).
LINE_12 = [("MainThread", [at(MAIN, 40), at(HOT, 12)], 10, 20000)] * 35
LINE_15 = ([("MainThread", [at(MAIN, 40), at(HOT, 15)], 10, 10000)] * 20
           + [("MainThread", [at(MAIN, 40), at(HOT, 15), at(HELPER, 3)], 10, 10000)] * 10)
# Another thread in hot at line 12 (the all-threads view differs), and one
# that recurses through line 15: each of its samples has hot:15 once or twice.
WORKER = [("Worker", [at(LOOP, 5), at(HOT, 12)], 10, 10000)] * 50
RECURSE = ([("Recurse", [at(MAIN, 40), at(HOT, 15), at(HOT, 12)], 10, 10000)] * 10
           + [("Recurse", [at(MAIN, 40), at(HOT, 15), at(HOT, 15), at(HOT, 12)], 10, 10000)] * 10)
# A build while MainThread is at line 15 only.
LINE_15_BUILD = {"buildid": 7, "builderid": 1, "builder": "lines", "number": 3,
                 "started_ms": START_MS + 355, "complete_ms": START_MS + 655, "results": 0,
                 "state_string": "build successful", "steps": []}


def lines_document() -> dict:
    return make_v3(LINE_12 + LINE_15 + WORKER + RECURSE, builds=[LINE_15_BUILD])


def v2_document() -> dict:
    """Version 2, no lines: MainThread in main -> hot 40 times, 10 ms each,
    the same functions and thread as the version 3 file, 20 s before it (the
    first of a merge)."""
    doc = make_v1([("MainThread", [MAIN, HOT], 10, 10000)] * 40)
    doc["version"] = 2
    doc["stalls"] = {"threshold_us": 0, "dropped": 0, "items": []}
    doc["meta"].update(start_ms=START_MS - 20_000, end_ms=START_MS - 18_000)
    return doc


def test_the_documents_are_valid():
    """The known answers are real files: version 3 (and 2) by the shipped schema."""
    schema = json.loads(SCHEMA_PATH.read_text())
    for doc in (lines_document(), v2_document()):
        jsonschema.validate(doc, schema)
    assert lines_document()["stacks"]["line"][:3] == [40, 12, 15]  # main:40, then hot at 12 and at 15


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("lines")
    write_gz(root / "prof_v2.json.gz", v2_document())
    (root / "prof_legacy.json").write_bytes(LEGACY_SMALL.read_bytes())
    local = tmp_path_factory.mktemp("lines-local")
    write_gz(local / "lines.json.gz", lines_document())
    write_gz(local / "v2.json.gz", v2_document())
    bad = lines_document()
    bad["stacks"]["line"].pop()
    write_gz(local / "short-lines.json.gz", bad)
    server = Server(root)
    ARTIFACTS.mkdir(exist_ok=True)
    yield {"url": f"http://127.0.0.1:{server.port}/", "root": root, "local": local}
    server.stop()


def open_local(page, site, *names):
    """Opens the served v2 file first (a page to start from), then the local
    files (several: merged)."""
    open_profile(page, site, "prof_v2.json.gz")
    page.set_input_files("#file-input", [str(site["local"] / n) for n in names])
    page.wait_for_function("(window.bbprofiler.state.local && document.body.dataset.state === 'ready') || document.body.dataset.state === 'error'")
    assert page.evaluate("document.body.dataset.state") == "ready", page.inner_text("#error")


def rerendered(page, action):
    before = renders(page)
    action()
    page.wait_for_function(f"window.bbprofiler.renders > {before}", timeout=10000)


def select_thread(page, name):
    value = page.evaluate(f"[...document.querySelectorAll('#thread option')].find(o => o.textContent.startsWith({name!r} + ' ')).value")
    rerendered(page, lambda: page.select_option("#thread", value))


def select_function(page, name):
    page.locator("#hot tbody tr[data-func]").nth(hot_rows(page).index(name)).click()


def toggle_lines(page, on):
    rerendered(page, lambda: page.set_checked("#lines", on))


def hottest_lines(page):
    """The hottest-lines table: (line, self, total) per row, in order."""
    return [tuple(row) for row in page.eval_on_selector_all(
        "#hot-lines tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")]


def hot_row(page, name):
    """(self, total) of a function in the hottest-functions table."""
    cells = page.eval_on_selector_all(
        "#hot tbody tr[data-func]", "trs => trs.map(tr => [tr.cells[0].firstChild.textContent, tr.cells[1].textContent, tr.cells[2].textContent])")
    return next((s, t) for n, s, t in cells if n == name)


@pytest.mark.timeout(90)
def test_hottest_lines_of_the_selected_thread(page, site):
    open_local(page, site, "lines.json.gz")
    select_thread(page, "MainThread")
    assert page.is_hidden("#hot-lines") and "Click a function" in page.inner_text("#lines-panel")
    select_function(page, "hot")
    assert page.inner_text("#lines-title") == "Hottest lines of hot"
    assert hottest_lines(page) == [("line 12", "70.0%", "70.0%"), ("line 15", "20.0%", "30.0%")]
    select_function(page, "main")
    assert hottest_lines(page) == [("line 40", "0%", "100.0%")]
    # All threads merged: the worker's 500 ms and the recursing thread's 200 ms count too.
    select_function(page, "hot")
    select_thread(page, "all threads, merged")
    # line 12: (700 + 500 + 200) / 1700 ms; line 15: self 200, total (300 + 200) / 1700 ms
    assert hottest_lines(page) == [("line 12", "82.4%", "82.4%"), ("line 15", "11.8%", "29.4%")]


@pytest.mark.timeout(90)
def test_a_recursive_line_counts_each_sample_once(page, site):
    open_local(page, site, "lines.json.gz")
    select_thread(page, "Recurse")
    select_function(page, "hot")
    # Half the samples hold hot at line 15 twice: still 100 %, not 150 %.
    assert hottest_lines(page) == [("line 12", "100.0%", "100.0%"), ("line 15", "0%", "100.0%")]


@pytest.mark.timeout(90)
def test_hottest_lines_follow_the_time_selection(page, site):
    open_local(page, site, "lines.json.gz")
    select_thread(page, "MainThread")
    select_function(page, "hot")
    rerendered(page, lambda: page.click("#builds button"))  # 355..655 ms: line 15 only
    assert hottest_lines(page) == [("line 15", "66.7%", "100.0%")]
    rerendered(page, lambda: page.click("#reset-range"))
    assert hottest_lines(page)[0] == ("line 12", "70.0%", "70.0%")


@pytest.mark.timeout(90)
def test_line_flame_graph(page, site):
    open_local(page, site, "lines.json.gz")
    select_thread(page, "MainThread")
    assert page.is_enabled("#lines") and not page.is_checked("#lines")  # off by default
    toggle_lines(page, True)
    names = flame_names(page)
    assert sorted(names) == ["MainThread", "helper (util.py:3)", "hot (work.py:12)", "hot (work.py:15)",
                             "main (run.py:40)"]
    main = frame_width(page, "main (run.py:40)")
    assert main > 300
    assert frame_width(page, "hot (work.py:12)") / main == pytest.approx(0.7, abs=0.01)
    assert frame_width(page, "hot (work.py:15)") / main == pytest.approx(0.3, abs=0.01)
    assert frame_width(page, "helper (util.py:3)") / main == pytest.approx(0.1, abs=0.01)
    page.hover('#flame g.frame[name="hot (work.py:12)"]')
    tip = page.locator(".d3-flame-graph-tip")
    tip.wait_for(state="visible")
    assert "at line 12" in tip.inner_text() and "70.0% of the selection" in tip.inner_text()
    # A click selects the function, whose lines the panel lists.
    page.click('#flame g.frame[name="hot (work.py:15)"]')
    assert page.inner_text("#lines-title") == "Hottest lines of hot"
    assert hottest_lines(page)[1] == ("line 15", "20.0%", "30.0%")
    page.click("#reset-zoom")
    page.mouse.move(0, 0)
    page.wait_for_timeout(300)  # the tooltip fades out
    shot(page, "lines")
    # The choice survives a re-render: another thread, the recursion's two nodes at line 15.
    select_thread(page, "Recurse")
    assert page.is_checked("#lines")
    assert flame_names(page).count("hot (work.py:15)") == 2
    select_thread(page, "all threads, merged")
    assert "loop (pool.py:5)" in flame_names(page)
    toggle_lines(page, False)
    assert "hot" in flame_names(page) and "hot (work.py:12)" not in flame_names(page)


@pytest.mark.timeout(90)
def test_function_view_is_unchanged(page, site):
    open_local(page, site, "lines.json.gz")
    select_thread(page, "MainThread")
    names = flame_names(page)
    assert sorted(names) == ["MainThread", "helper", "hot", "main"]  # one hot node for its two lines
    main = frame_width(page, "main")
    assert frame_width(page, "hot") == pytest.approx(main, abs=1)
    assert hot_rows(page)[0] == "hot"
    assert hot_row(page, "hot") == ("90.0%", "100.0%")
    assert hot_row(page, "helper") == ("10.0%", "10.0%")
    select_function(page, "hot")
    callers = page.inner_text("#callers")
    assert "main" in callers.split("Called by")[1].split("Calls")[0]


@pytest.mark.timeout(90)
def test_files_without_lines_disable_the_toggle(page, site):
    # The choice made on a file with lines stays, but a v2 file has none to show.
    open_local(page, site, "lines.json.gz")
    toggle_lines(page, True)
    for name in ("prof_v2.json.gz", "prof_legacy.json"):
        open_profile(page, site, name)
        assert page.is_disabled("#lines") and not page.is_checked("#lines")
        assert "records no lines" in page.get_attribute("#lines-label", "title")
        assert not [n for n in flame_names(page) if LINE_LABEL.search(n)], flame_names(page)
        select_function(page, hot_rows(page)[0])
        assert page.is_hidden("#hot-lines")
        assert "records no lines" in page.inner_text("#lines-hint")


@pytest.mark.timeout(90)
def test_merged_v2_and_v3_files(page, site):
    open_local(page, site, "v2.json.gz", "lines.json.gz")
    assert "2 files merged" in page.inner_text("#picker")
    select_thread(page, "MainThread")  # 1000 ms of the v3 file, 400 ms of the v2 file
    assert page.is_enabled("#lines")
    assert hot_row(page, "hot") == ("92.9%", "100.0%")  # one function across both files
    select_function(page, "hot")
    # line 12: 700 / 1400 ms; line unknown (the v2 file): 400; line 15: self 200, total 300
    assert hottest_lines(page) == [("line 12", "50.0%", "50.0%"), ("line unknown", "28.6%", "28.6%"),
                                   ("line 15", "14.3%", "21.4%")]
    toggle_lines(page, True)
    names = flame_names(page)
    assert {"hot (work.py:12)", "hot (work.py:15)", "hot (work.py)", "main (run.py)", "main (run.py:40)"} <= set(names)
    assert frame_width(page, "hot (work.py)") / frame_width(page, "MainThread") == pytest.approx(400 / 1400, abs=0.01)


@pytest.mark.timeout(90)
def test_a_line_array_of_the_wrong_length_is_refused(page, site):
    open_profile(page, site, "prof_v2.json.gz")
    page.set_input_files("#file-input", str(site["local"] / "short-lines.json.gz"))
    page.wait_for_function("document.body.dataset.state === 'error'")
    assert "stacks.line is not an array as long as stacks.parent" in page.inner_text("#error")


@pytest.fixture(scope="module")
def master_site(tmp_path_factory):
    """A file a real Buildbot master wrote while it ran builds, served."""
    from e2e_master import profile_with_builds

    found = profile_with_builds(tmp_path_factory.mktemp("lines-master") / "master")
    server = Server(found.parent)
    ARTIFACTS.mkdir(exist_ok=True)
    yield {"url": f"http://127.0.0.1:{server.port}/", "path": found}
    server.stop()


def line_shares(profile, function):
    """{line: (self %, total %)} of `function` by line, from the Python reader."""
    from profiler_service.exports import top_functions

    stats, _, weight = top_functions(profile.by_lines())
    return {s.frame.line: (100 * s.self_weight_us / weight, 100 * s.total_weight_us / weight)
            for s in stats if s.frame.name == function.name and s.frame.file == function.file}


@pytest.mark.timeout(240)
def test_line_view_of_a_real_master(page, master_site):
    import linecache

    from profiler_service.exports import top_functions
    from profiler_service.reading import load

    profile = load(master_site["path"])
    assert profile.has_lines
    # Every line a real master recorded is a line of its function's file, at
    # or after the function's first line.
    by_line = profile.by_lines()
    for frame, function in zip(by_line.frames, by_line.frame_functions):
        if frame.file.endswith(".py"):
            assert linecache.getline(frame.file, frame.line) and frame.line >= function.line, (frame, function)
    open_profile(page, master_site, master_site["path"].name)
    # A hot function with several lines, listed in the viewer's hottest
    # functions (as many rows as it shows): the most total time, short of
    # the threads' outer frames, among those with three lines or more (else two).
    listed = set(hot_rows(page))
    stats, _, weight = top_functions(profile, sort="total")
    candidates = [s.frame for s in stats if s.frame.file.endswith(".py") and s.total_weight_us < weight / 2
                  and s.frame.name in listed]
    chosen = next((f for f in candidates if len(line_shares(profile, f)) >= 3),
                  next(f for f in candidates if len(line_shares(profile, f)) >= 2))
    expected = line_shares(profile, chosen)
    assert all(line >= chosen.line for line in expected), (chosen, expected)
    select_function(page, chosen.name)
    toggle_lines(page, True)
    assert page.inner_text("#lines-title") == f"Hottest lines of {chosen.name}"
    rows = hottest_lines(page)
    assert rows, page.inner_text("#lines-panel")
    shown = {int(line.split()[1]): (float(s.rstrip("%")), float(t.rstrip("%"))) for line, s, t in rows}
    assert shown.keys() == expected.keys()
    for line, (self_pct, total_pct) in shown.items():
        assert self_pct == pytest.approx(expected[line][0], abs=0.051) and \
            total_pct == pytest.approx(expected[line][1], abs=0.051), (line, shown, expected)
    assert any(f"{chosen.name} (" in name for name in flame_names(page))
    shot(page, "lines-master")
