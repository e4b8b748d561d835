"""The viewer page in a real browser: headless Debian Chromium driven by
Playwright (never a downloaded browser), against the real bbprofiler server.
Screenshots go to test-artifacts/ (look at them), timings of a busy 30-minute
profile to test-artifacts/viewer-perf.json."""

from __future__ import annotations

import collections
import gzip
import json
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import jsonschema
import pytest


sys.path.insert(0, str(Path(__file__).parent))
import viewer_profiles  # noqa: E402
from test_www_server import LEGACY_BIG, MountedServer, Server  # noqa: E402

playwright_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
from chromium import launched_chromium, needs_chromium, needs_viewer_build  # noqa: E402
from profile_helpers import LEGACY_REAL, SPEEDSCOPE_SCHEMA  # noqa: E402

pytestmark = [needs_viewer_build, needs_chromium]


def legacy_leaf_counts(doc: dict) -> collections.Counter:
    """Leaf samples per (function, file) of a 1.x document, counted here
    independently of the viewer (frames are [file tail, line, function])."""
    counts: collections.Counter = collections.Counter()
    for sample in doc["samples"]:
        for frames in sample["threads"].values():
            if frames:
                file, _, func = doc["frames"][frames[0]]
                counts[(func, file)] += 1
    return counts


def hot_function_of_legacy(path: Path) -> str:
    """The 1.x file's function with the most leaf samples."""
    counts = legacy_leaf_counts(json.loads(path.read_text()))
    return counts.most_common(1)[0][0][0]


def real_sampler_profile(path: Path) -> None:
    """A profile written by the real sampler while viewer_hot_function burns CPU."""
    from profiler_service import Profiler

    def viewer_hot_function(seconds):
        end = time.process_time() + seconds
        total = 0
        while time.process_time() < end:
            total += sum(i * i for i in range(500))
        return total

    with Profiler(frequency=250, mode="prof") as profiler:
        viewer_hot_function(1.0)
    profiler.period.write(str(path), builds=[], meta={"buildbot": "sampler-test-4.3.0"})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    viewer_profiles.write_gz(root / "prof_known.json.gz", viewer_profiles.known_answer_profile())
    busy = viewer_profiles.busy_profile()
    busy["meta"]["end_ms"] += 60_000  # a minute without samples at the end
    viewer_profiles.write_gz(root / "prof_busy.json.gz", busy)
    shutil.copy(LEGACY_BIG, root / "prof_legacy.json")
    legacy = json.loads(LEGACY_BIG.read_text())  # 1.x with builds (Buildbot data API, epoch seconds)
    t0 = legacy["samples"][0]["time"]
    legacy["builds"] = [{"buildid": 9, "builderid": 3, "builder": "old-builder", "number": 41, "results": 2,
                         "started_at": t0 + 100, "complete_at": t0 + 160, "state_string": "failed"}]
    (root / "prof_legacy_builds.json").write_text(json.dumps(legacy))
    good = gzip.compress(json.dumps(viewer_profiles.known_answer_profile()).encode())
    (root / "corrupt.json.gz").write_bytes(good[:100] + b"\x00" * 50 + good[150:])
    (root / "notaprofile.json").write_text('{"hello": "world"}')
    real_sampler_profile(root / "prof_sampler.json.gz")
    server = Server(root)
    ARTIFACTS.mkdir(exist_ok=True)
    yield {"url": f"http://127.0.0.1:{server.port}/", "root": root}
    server.stop()


@pytest.fixture(scope="module")
def mounted_site(site):
    server = MountedServer(site["root"])
    yield {"url": f"http://127.0.0.1:{server.port}/plugins/profiler/", "root": site["root"]}
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors


def open_profile(page, site, name=None, state="ready"):
    page.goto(site["url"] + (f"?profile={name}" if name else ""))
    page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=30000)
    assert page.evaluate("document.body.dataset.state") == state, page.inner_text("#error")


def hot_rows(page):
    return page.eval_on_selector_all("#hot tbody tr[data-func] td:first-child", "tds => tds.map(td => td.firstChild.textContent)")


def flame_names(page):
    return page.eval_on_selector_all("#flame g.frame", "gs => gs.map(g => g.getAttribute('name'))")


def renders(page):
    return page.evaluate("window.bbprofiler.renders")


def brush(page, start_fraction, end_fraction):
    before = renders(page)
    box = page.locator("#timeline rect.overlay").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start_fraction, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (start_fraction + end_fraction) / 2, y, steps=3)
    page.mouse.move(box["x"] + box["width"] * end_fraction, y, steps=3)
    page.mouse.up()
    page.wait_for_function(f"window.bbprofiler.renders > {before}", timeout=10000)


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"viewer-{name}.png"), full_page=True)


@pytest.mark.timeout(90)
def test_known_profile_renders(page, site):
    open_profile(page, site, "prof_known.json.gz")
    rows = hot_rows(page)
    assert rows[0] == "Work.first_half_hot"
    names = flame_names(page)  # all threads merged by default
    assert "Work.first_half_hot" in names and "Main.run" in names and "Pool.worker" in names
    assert "MainThread" not in names
    width = page.get_attribute('#flame g.frame[name="Work.first_half_hot"] rect', "width")
    assert float(width) > 100
    info = page.inner_text("#info")
    for text in ("ci-master-1", "4.3.0", "3.11.2", "virtual", "100 Hz", "15,000", "12,345", "10 min"):
        assert text in info, (text, info)
    assert page.locator("#timeline path.line.cpu").count() == 1
    assert page.locator("#timeline rect.build").count() == 2
    shot(page, "known")


@pytest.mark.timeout(90)
def test_page_works_under_the_plugin_prefix(page, mounted_site):
    open_profile(page, mounted_site, "prof_known.json.gz")
    assert hot_rows(page)[0] == "Work.first_half_hot"
    assert page.evaluate("[...document.querySelectorAll('#picker option')].length") == 7
    # the hooks an embedding page uses after a recording
    viewer_profiles.write_gz(mounted_site["root"] / "prof_new.json.gz", viewer_profiles.known_answer_profile())
    try:
        page.evaluate("window.bbprofiler.open('prof_new.json.gz')")
        assert page.evaluate("document.body.dataset.state") == "ready"
        assert page.input_value("#picker") == "prof_new.json.gz"
        assert page.url.endswith("/plugins/profiler/?profile=prof_new.json.gz")
    finally:
        (mounted_site["root"] / "prof_new.json.gz").unlink()


@pytest.mark.timeout(90)
def test_newest_profile_by_default_and_picker(page, site):
    open_profile(page, site)
    assert page.input_value("#picker") == "prof_sampler.json.gz"  # recorded just now: the newest
    options = page.eval_on_selector_all("#picker option", "os => os.map(o => o.textContent)")
    assert any(o.startswith("corrupt.json.gz — ⚠") for o in options), options
    page.select_option("#picker", "prof_known.json.gz")
    page.wait_for_function("document.title.startsWith('prof_known.json.gz') && document.body.dataset.state === 'ready'")
    assert hot_rows(page)[0] == "Work.first_half_hot"
    assert "profile=prof_known.json.gz" in page.url


@pytest.mark.timeout(90)
def test_brush_restricts_flame_graph_table_and_callers(page, site):
    open_profile(page, site, "prof_known.json.gz")
    page.click('#hot tr[data-func] >> text="Reactor.runUntilCurrent"')
    callees = page.inner_text("#callers")
    assert "Work.first_half_hot" in callees and "Work.second_half_hot" in callees
    brush(page, 0.55, 0.97)  # 330 s .. 582 s: after the first half
    rows = hot_rows(page)
    assert rows[0] == "Work.second_half_hot"
    assert "Work.first_half_hot" not in rows
    assert "Work.first_half_hot" not in flame_names(page)
    assert "Work.second_half_hot" in flame_names(page)
    callees = page.inner_text("#callers")  # still runUntilCurrent, for the brushed range only
    assert "Work.second_half_hot" in callees and "Work.first_half_hot" not in callees
    assert "Whole period" not in page.inner_text("#selection")
    shot(page, "brushed")
    page.click("#reset-range")
    page.wait_for_function("document.querySelector('#selection').textContent.startsWith('Whole period')")
    assert hot_rows(page)[0] == "Work.first_half_hot"


@pytest.mark.timeout(90)
def test_clicking_a_function_shows_callers_and_callees(page, site):
    open_profile(page, site, "prof_known.json.gz")
    page.click('#hot tr[data-func] >> text="Work.first_half_hot"')
    text = page.inner_text("#callers")
    assert "Work.first_half_hot" in text
    called_by = text.split("Called by")[1].split("Calls")[0]
    assert "Reactor.runUntilCurrent" in called_by and "100.0%" in called_by
    assert page.locator("#hot tr.selected").count() == 1
    # a click in the flame graph selects too
    page.click('#flame g.frame[name="Reactor.mainLoop"]')
    text = page.inner_text("#callers")
    called_by, calls = text.split("Called by")[1].split("Calls")
    assert "Main.run" in called_by and "Reactor.runUntilCurrent" in calls
    shot(page, "callers")


@pytest.mark.timeout(90)
def test_thread_and_build_restrict_the_view(page, site):
    open_profile(page, site, "prof_known.json.gz")
    before = renders(page)
    page.select_option("#thread", label="DbThread — 20.0% of samples")
    page.wait_for_function(f"window.bbprofiler.renders > {before}")
    assert hot_rows(page)[0] == "sqlite_step"
    names = flame_names(page)
    assert "DbThread" in names and "MainThread" not in names and "Work.first_half_hot" not in names
    shot(page, "thread")
    before = renders(page)
    page.select_option("#thread", "-2")  # one root per thread
    page.wait_for_function(f"window.bbprofiler.renders > {before}")
    assert {"MainThread", "DbThread", "all threads"} <= set(flame_names(page))
    assert hot_rows(page)[0] == "Work.first_half_hot"
    before = renders(page)
    page.select_option("#thread", "-1")
    page.wait_for_function(f"window.bbprofiler.renders > {before}")
    before = renders(page)
    page.click('#timeline rect.build[data-buildid="2"]')
    page.wait_for_function(f"window.bbprofiler.renders > {before}")
    assert hot_rows(page)[0] == "Steps.build_step_hot"
    assert "Work.first_half_hot" not in flame_names(page)
    assert "build runtests #7" in page.inner_text("#selection")
    assert page.locator('#builds button.active[data-buildid="2"]').count() == 1
    shot(page, "build")
    before = renders(page)
    page.click('#builds button[data-buildid="1"]')  # the list works as well: lint #4, 100-200 s
    page.wait_for_function(f"window.bbprofiler.renders > {before}")
    assert hot_rows(page)[0] == "Work.first_half_hot"
    assert "build lint #4" in page.inner_text("#selection")


@pytest.mark.timeout(90)
def test_legacy_big_fixture(page, site):
    expected = hot_function_of_legacy(LEGACY_BIG)
    open_profile(page, site, "prof_legacy.json")
    assert hot_rows(page)[0] == expected
    assert expected in flame_names(page)
    assert "not recorded (1.x)" in page.inner_text("#info")
    shot(page, "legacy")
    open_profile(page, site, "prof_legacy_builds.json")
    before = renders(page)
    page.click('#timeline rect.build[data-buildid="9"]')
    page.wait_for_function(f"window.bbprofiler.renders > {before}")
    assert "build old-builder #41" in page.inner_text("#selection")
    assert "(60 s)" in page.inner_text("#selection")


def legacy_backwards_step(doc: dict) -> Optional[int]:
    """The first tick i of a 1.x file whose next tick is earlier, or None."""
    times = [s["time"] for s in doc["samples"]]
    return next((i for i in range(len(times) - 1) if times[i + 1] < times[i]), None)


def legacy_build_samples(doc: dict, build: dict) -> int:
    """Samples of a 1.x file in a build's time, as the viewer selects them
    (the build's range clipped to the period), counted here from the raw
    JSON in the viewer's arithmetic (ms since the earliest sample)."""
    times = [s["time"] * 1000 for s in doc["samples"]]
    start, end = min(times), max(max(times), min(times) + 1)
    t0 = max(0, round(build["started_at"] * 1000) - start)
    complete = end if build["complete_at"] is None else round(build["complete_at"] * 1000)
    t1 = max(min(end - start + 1, complete - start), t0 + 1)
    return sum(1 for s in doc["samples"] for stack in s["threads"].values()
               if stack and t0 <= s["time"] * 1000 - start < t1)


@pytest.fixture(scope="module")
def real_legacy_site(tmp_path_factory):
    """The real 1.3.1 files, and one with a build that starts between two
    ticks the file has out of order."""
    root = tmp_path_factory.mktemp("viewer-legacy")
    for path in LEGACY_REAL:
        shutil.copy(path, root / path.name)
    backwards = next(p for p in LEGACY_REAL if legacy_backwards_step(json.loads(p.read_text())) is not None)
    doc = json.loads(backwards.read_text())
    i = legacy_backwards_step(doc)
    later, earlier = doc["samples"][i]["time"], doc["samples"][i + 1]["time"]
    doc["builds"] = [{"buildid": 77, "builderid": 1, "number": 5, "results": 0, "state_string": "built",
                      "started_at": (later + earlier) / 2, "complete_at": later + 3}]
    (root / "backwards_build.json").write_text(json.dumps(doc))
    server = Server(root)
    ARTIFACTS.mkdir(exist_ok=True)
    yield {"url": f"http://127.0.0.1:{server.port}/", "root": root}
    server.stop()


def selected_samples(page) -> int:
    return int(page.inner_text("#selection").rsplit(" · ", 1)[1].split()[0].replace(",", ""))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", LEGACY_REAL, ids=[p.name for p in LEGACY_REAL])
def test_real_legacy_file(page, real_legacy_site, path):
    """A real 1.3.1 file (null lines, times out of order): the hottest
    function, every sample in time order, and each build's samples."""
    doc = json.loads(path.read_text())
    open_profile(page, real_legacy_site, path.name)
    counts = legacy_leaf_counts(doc)
    top = max(counts.values())
    assert hot_rows(page)[0] in {func for (func, _), n in counts.items() if n == top}
    times = page.evaluate("Array.from(window.bbprofiler.state.profile.t)")
    assert len(times) == sum(counts.values())
    assert times == sorted(times)
    assert selected_samples(page) == len(times)
    shot(page, f"legacy-{path.stem}")
    for build in doc["builds"]:
        before = renders(page)
        page.click(f'#builds button[data-buildid="{build["buildid"]}"]')
        page.wait_for_function(f"window.bbprofiler.renders > {before}")
        assert f"build builder 1 #{build['number']}" in page.inner_text("#selection")
        assert selected_samples(page) == legacy_build_samples(doc, build), build


@pytest.mark.timeout(90)
def test_real_legacy_build_across_backwards_times(page, real_legacy_site):
    doc = json.loads((real_legacy_site["root"] / "backwards_build.json").read_text())
    expected = legacy_build_samples(doc, doc["builds"][0])
    open_profile(page, real_legacy_site, "backwards_build.json")
    before = renders(page)
    page.click('#timeline rect.build[data-buildid="77"]')
    page.wait_for_function(f"window.bbprofiler.renders > {before}")
    assert "build builder 1 #5" in page.inner_text("#selection")
    assert selected_samples(page) == expected


@pytest.mark.timeout(90)
def test_sampler_profile(page, site):
    """A file written by the real sampler and writer (Profiler + Period.write)."""
    open_profile(page, site, "prof_sampler.json.gz")
    names = flame_names(page)
    assert any("viewer_hot_function" in n for n in names), names
    assert any("viewer_hot_function" in r or "genexpr" in r for r in hot_rows(page)[:3])
    info = page.inner_text("#info")
    assert "sampler-test-4.3.0" in info and socket.gethostname() in info
    shot(page, "sampler")


@pytest.mark.timeout(90)
def test_corrupt_file_shows_a_clear_error(page, site):
    open_profile(page, site, "corrupt.json.gz", state="error")
    text = page.inner_text("#error")
    assert "Cannot open corrupt.json.gz" in text and "gzip" in text
    assert page.locator("#views").is_hidden()
    shot(page, "corrupt")
    open_profile(page, site, "notaprofile.json", state="error")
    assert "not a profile" in page.inner_text("#error")
    open_profile(page, site, "missing.json.gz", state="error")
    assert "no such profile" in page.inner_text("#error")


@pytest.mark.timeout(90)
def test_local_files_by_chooser(page, site, tmp_path):
    open_profile(page, site, "prof_known.json.gz")
    page.set_input_files("#file-input", str(site["root"] / "prof_busy.json.gz"))  # gzip, inflated by the page
    page.wait_for_function("document.title.startsWith('prof_busy.json.gz') && document.body.dataset.state === 'ready'")
    assert "(local file)" in page.inner_text("#picker")
    assert "200,000" in page.inner_text("#info")
    bad = tmp_path / "broken.json.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage that is not deflate")
    page.set_input_files("#file-input", str(bad))
    page.wait_for_function("document.body.dataset.state === 'error'")
    assert "cannot decompress" in page.inner_text("#error")
    page.set_input_files("#file-input", str(LEGACY_BIG))
    page.wait_for_function("document.body.dataset.state === 'ready'")
    assert hot_rows(page)[0] == hot_function_of_legacy(LEGACY_BIG)


@pytest.mark.timeout(90)
def test_drag_and_drop(page, site):
    open_profile(page, site, "prof_known.json.gz")
    page.evaluate("""async () => {
        const bytes = await (await fetch('api/profiles/prof_busy.json.gz?download=1')).arrayBuffer();
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'dropped.json.gz', { type: 'application/gzip' }));
        window.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt }));
        window.dispatchEvent(new DragEvent('drop', { dataTransfer: dt }));
    }""")
    page.wait_for_function("document.title.startsWith('dropped.json.gz') && document.body.dataset.state === 'ready'")
    assert "200,000" in page.inner_text("#info")
    assert page.locator("#drop").is_hidden()


@pytest.mark.timeout(90)
def test_exports(page, site, tmp_path):
    open_profile(page, site, "prof_known.json.gz")
    with page.expect_download() as info:
        page.click("#export-speedscope")
    path = tmp_path / "out.speedscope.json"
    info.value.save_as(path)
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, json.loads(SPEEDSCOPE_SCHEMA.read_text()))
    assert {p["name"] for p in doc["profiles"]} == {"MainThread", "DbThread"}
    assert sum(len(p["samples"]) for p in doc["profiles"]) == 15000
    hot = [f["name"] for f in doc["shared"]["frames"]].index("Work.first_half_hot")
    main = next(p for p in doc["profiles"] if p["name"] == "MainThread")
    assert sum(1 for s in main["samples"] if s[-1] == hot) == 6000
    with page.expect_download() as info:
        page.click("#export-collapsed")
    info.value.save_as(tmp_path / "out.txt")
    lines = (tmp_path / "out.txt").read_text().splitlines()
    counts = {line.rsplit(" ", 1)[0]: int(float(line.rsplit(" ", 1)[1])) for line in lines}
    assert counts["MainThread;Main.run;Reactor.mainLoop;Reactor.runUntilCurrent;Work.first_half_hot"] == 6000
    assert counts["DbThread;Pool.worker;Db.execute;sqlite_step"] == 3000
    assert sum(counts.values()) == 15000


@pytest.mark.timeout(180)
def test_busy_profile_timings(page, site):
    """Measures (does not assert) time to first render of a busy 30-minute
    profile and re-render after brushes; numbers in test-artifacts."""
    open_profile(page, site, "prof_busy.json.gz")
    first = page.evaluate("window.bbprofiler.timings")
    assert page.evaluate("window.bbprofiler.state.profile.t.length") == 200000
    assert page.evaluate("window.bbprofiler.state.profile.nodeParent.length") > 4000
    brushes = []
    for a, b in [(0.1, 0.6), (0.3, 0.35), (0.02, 0.98), (0.5, 0.9), (0.2, 0.8)]:
        before = renders(page)
        page.click("#reset-range")  # a new brush, not a move of the last one
        page.wait_for_function(f"window.bbprofiler.renders > {before}")
        brush(page, a, b)
        assert page.evaluate("window.bbprofiler.timings.last.reason") == "brush"
        assert not page.inner_text("#selection").startswith("Whole period")
        brushes.append(page.evaluate("window.bbprofiler.timings.last.ms"))
    assert len(flame_names(page)) > 10
    shot(page, "busy")
    result = {
        "first_render_ms_since_navigation": round(first["marks"]["firstRender"], 1),
        "fetch_to_first_render_ms": round(first["marks"]["firstRender"] - first["marks"]["fetchStart"], 1),
        "rerender_after_brush_ms": [round(x, 1) for x in brushes],
        "rerender_after_brush_median_ms": round(statistics.median(brushes), 1),
        "samples": 200000,
        "stack_nodes": page.evaluate("window.bbprofiler.state.profile.nodeParent.length"),
    }
    (ARTIFACTS / "viewer-perf.json").write_text(json.dumps(result, indent=2) + "\n")
    print("viewer timings:", json.dumps(result))


def frame_width(page, name):
    widths = page.eval_on_selector_all(
        f'#flame g.frame[name="{name}"] rect', "rs => rs.map(r => parseFloat(r.getAttribute('width')))")
    return max(widths, default=0.0)


@pytest.mark.timeout(90)
def test_flame_graph_search_tooltip_and_zoom(page, site):
    open_profile(page, site, "prof_known.json.gz")
    page.fill("#search", "sqlite")
    fills = page.eval_on_selector_all("#flame g.frame", "gs => gs.map(g => [g.getAttribute('name'), g.querySelector('rect').getAttribute('fill')])")
    highlighted = {name for name, fill in fills if fill.lower() == "#e600e6"}
    assert highlighted == {"sqlite_step"}, fills
    assert page.inner_text("#flame-details") == "search: 1 frames match, 20.00% of the selection"
    page.hover('#flame g.frame[name="Work.first_half_hot"]')
    tip = page.locator(".d3-flame-graph-tip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert "Work.first_half_hot" in text and "6,000 samples" in text and "40.0%" in text
    page.wait_for_timeout(300)  # the tooltip fades in
    shot(page, "search-tooltip")
    page.fill("#search", "")
    full = frame_width(page, "Work.first_half_hot")
    page.click('#flame g.frame[name="Reactor.runUntilCurrent"]')  # zoom in
    assert frame_width(page, "Work.first_half_hot") > full * 1.2
    assert frame_width(page, "DbThread") < 1
    page.click("#reset-zoom")
    assert abs(frame_width(page, "Work.first_half_hot") - full) < 1

    def root_y():
        return page.eval_on_selector('#flame g.frame[name="all threads"]', "g => g.getBoundingClientRect().top")

    def leaf_y():
        return page.eval_on_selector('#flame g.frame[name="Work.first_half_hot"]', "g => g.getBoundingClientRect().top")

    assert root_y() > leaf_y()  # a flame graph: roots at the bottom
    page.check("#icicle")
    assert root_y() < leaf_y()  # icicle: roots on top
    assert abs(frame_width(page, "Work.first_half_hot") - full) < 1


def js_pct(value, total):
    """The page's percent format."""
    if not total or not value:
        return "0%"
    x = 100 * value / total
    return (f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 0.1 else f"{x:.3f}") + "%"


@pytest.mark.timeout(120)
def test_table_agrees_with_the_python_reader(page, site):
    """The page's hottest functions for a brushed range and a thread equal
    profiler_service.exports.top_functions over the same selection."""
    from profiler_service.exports import top_functions
    from profiler_service.reading import load

    profile = load(site["root"] / "prof_busy.json.gz")
    open_profile(page, site, "prof_busy.json.gz")
    before = renders(page)
    page.select_option("#thread", label=next(
        o for o in page.eval_on_selector_all("#thread option", "os => os.map(o => o.textContent)")
        if o.startswith("Thread-3 ")))
    page.wait_for_function(f"window.bbprofiler.renders > {before}")
    brush(page, 0.3, 0.6)
    sel = page.evaluate("window.bbprofiler.state.sel")
    start = profile.start_ms + sel["t0"]
    stats, _, total_weight = top_functions(profile, start_ms=start, end_ms=profile.start_ms + sel["t1"],
                                           thread="Thread-3")
    expected = [[s.frame.name, js_pct(s.self_weight_us, total_weight), js_pct(s.total_weight_us, total_weight)]
                for s in stats[:40]]
    shown = page.eval_on_selector_all(
        "#hot tbody tr[data-func]",
        "trs => trs.map(tr => [tr.cells[0].firstChild.textContent, tr.cells[1].innerText.trim(), tr.cells[2].innerText.trim()])")
    assert shown[:40] == expected


@pytest.fixture(scope="module")
def napping_site(tmp_path_factory):
    """A file where a thread naps: 400 samples of 50 µs (4 intervals of CPU
    at 100 Hz) against 100 samples of 10 ms by the main thread."""
    from profile_helpers import make_v1

    stack = [("main", "/app/run.py", 1)]
    samples = []
    for i in range(100):
        samples.append(("MainThread", stack, 10, 10000))
        samples += [("napper", [("nap", "/app/nap.py", 3)], 0, 50)] * 4
    root = tmp_path_factory.mktemp("viewer-napping")
    viewer_profiles.write_gz(root / "prof_napping.json.gz", make_v1(samples, duration_ms=1000))
    server = Server(root)
    yield {"url": f"http://127.0.0.1:{server.port}/", "root": root}
    server.stop()


def test_counts_are_intervals_of_cpu(page, napping_site):
    # The napper has 80 % of the records but 2 ms of 1.02 s of CPU: 2 of 102 samples.
    open_profile(page, napping_site, "prof_napping.json.gz")
    labels = page.eval_on_selector_all("#thread option", "os => os.map(o => o.textContent)")
    assert "MainThread — 98.0% of samples" in labels and "napper — 1.96% of samples" in labels, labels
    info = page.inner_text("#info")
    assert "Samples kept" in info and "Sample records" in info, info
    assert info.split("Samples kept", 1)[1].split()[0] == "102", info
    assert info.split("Sample records", 1)[1].split()[0] == "500", info
    assert "· 102 samples ·" in page.inner_text("#selection")
    # Timeline samples/s: rates per bin of binMs, NaN where no file covers it.
    rates = page.evaluate("(({rates, binMs}) => Array.from(rates, (r) => (isNaN(r) ? 0 : r * binMs / 1000)))"
                          "(window.bbprofiler.sampleRates)")
    assert round(sum(rates)) == 102, rates
