"""The Profiler page inside Buildbot 4's React UI (buildbot-www from PyPI) in
headless Debian Chromium driven by Playwright: log in, open the menu entry,
record while a forced build runs, stop, and see the flame graph of the
recording in the embedded viewer. Screenshots land in test-artifacts/."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

from chromium import launched_chromium, needs_chromium, needs_viewer_build  # noqa: E402
from e2e_master import unexpected_tracebacks
from www_master import USERS, WwwMaster, free_port, read_profile

playwright_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

pytestmark = [needs_viewer_build, needs_chromium]


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    m = WwwMaster(tmp_path_factory.mktemp("wwwbrowser") / "master")
    m.create()
    m.configure_www(free_port(), plugin=True, services="util.ProfilerService(gatherperiod=30)")
    m.start()
    try:
        m.wait_for(lambda: m.client().get("plugins/profiler/api/status").status == 200, 60, "the plugin's API")
        yield m
    finally:
        m.stop()
        if m.alive:
            m.kill()
        assert not unexpected_tracebacks(m.log()), m.log()[-4000:]


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as b:
        yield b


def new_page(browser, user=None):
    credentials = {"username": user, "password": USERS[user]} if user else None
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, http_credentials=credentials)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page, errors


def log_in_and_open_profiler(page, master, user):
    # Buildbot's login for UserPasswordAuth: /auth/login answers a basic-auth
    # challenge, sets the session cookie and redirects to the UI.
    page.goto(master.url + "auth/login")
    page.goto(master.url)
    page.get_by_text(user, exact=False).first.wait_for(timeout=30000)
    page.get_by_role("link", name="Profiler", exact=True).click()
    page.wait_for_selector("[data-bbprof=state]", timeout=30000)
    page.wait_for_function("document.querySelector('[data-bbprof=state]').dataset.recording !== undefined",
                           timeout=30000)


@pytest.mark.timeout(120)
def test_record_from_the_profiler_page_and_see_the_flame_graph(browser, master):
    ARTIFACTS.mkdir(exist_ok=True)
    context, page, errors = new_page(browser, "admin")
    try:
        log_in_and_open_profiler(page, master, "admin")
        assert "/profiler" in page.url
        assert "ProfilerService" in page.inner_text(".bbprof-service")
        page.fill("#bbprof-frequency", "100")
        page.fill("#bbprof-duration", "120")
        page.click("#bbprof-start")
        page.wait_for_selector("[data-bbprof=state][data-recording=yes]", timeout=10000)
        # force a build through the ForceScheduler, in this logged-in session
        forced = page.evaluate("""async () => {
            const r = await fetch('api/v2/forceschedulers/force', {method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({jsonrpc: '2.0', method: 'force', id: 1, params: {builderid: 1}})});
            return r.status; }""")
        assert forced == 200
        # the build has run and the status line counts its samples
        deadline = time.monotonic() + 60
        while not page.evaluate("""async () => {
                const builds = (await (await fetch('api/v2/builds')).json()).builds;
                const t = document.querySelector('[data-bbprof=state]').textContent;
                const m = t.match(/(\\d+) samples so far/);
                return builds.length > 0 && builds[builds.length - 1].complete && !!m && Number(m[1]) >= 5; }"""):
            assert time.monotonic() < deadline, page.inner_text("[data-bbprof=state]")
            time.sleep(0.3)
        text = page.inner_text("[data-bbprof=state]")
        assert "Recording" in text and "left" in text and "100 Hz" in text
        page.screenshot(path=str(ARTIFACTS / "www-plugin-recording.png"))
        began = time.monotonic()
        page.click("#bbprof-stop")
        page.wait_for_selector("[data-bbprof=state][data-recording=no]", timeout=10000)
        print(f"stop to idle status: {time.monotonic() - began:.2f} s")
        message = page.inner_text("#bbprof-message")
        assert message.startswith("Stopped: web_"), message
        name = message.split()[1]
        viewer = page.frame_locator("#bbprof-viewer")
        frame = page.frame(url=lambda u: "/plugins/profiler/" in u)
        frame.wait_for_function(
            f"document.body.dataset.state === 'ready' && document.getElementById('picker').value === {name!r}",
            timeout=30000)
        frame.wait_for_function("document.querySelectorAll('#flame g.frame').length > 3", timeout=30000)
        names = set(frame.eval_on_selector_all("#flame g.frame", "gs => gs.map(g => g.getAttribute('name'))"))
        # the graph draws the recorded file: its hottest leaf function is there
        doc = read_profile(master.basedir / "profiler-www" / name)
        leaf_weight = collections.Counter()
        for stack, weight in zip(doc["samples"]["stack"], doc["samples"]["weight"]):
            leaf_weight[doc["frames"][doc["stacks"]["frame"][stack]][0]] += weight
        hottest = leaf_weight.most_common(1)[0][0]
        assert any(n.startswith(hottest) for n in names), (hottest, sorted(names))
        assert viewer.locator("#builds").inner_text().count("work") >= 1
        page.locator("summary").click()
        assert page.locator(f"tr[data-file='{name}']").count() == 1
        page.locator("#bbprof-viewer").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "www-plugin-flamegraph.png"), full_page=True)
        viewer.locator(".flame-panel").screenshot(path=str(ARTIFACTS / "www-plugin-flamegraph-panel.png"))

        # a recording that ends at its duration is opened too
        page.fill("#bbprof-duration", "1")
        page.click("#bbprof-start")
        page.wait_for_selector("[data-bbprof=state][data-recording=yes]", timeout=10000)
        page.evaluate("""() => fetch('api/v2/forceschedulers/force', {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({jsonrpc: '2.0', method: 'force', id: 2, params: {builderid: 1}})})""")
        page.wait_for_selector("[data-bbprof=state][data-recording=no]", timeout=20000)
        state = page.inner_text("[data-bbprof=state]")
        assert "duration reached" in state, state
        if "Last recording: web_" in state:  # a master idle for that second records no sample, so no file
            second = state.split("Last recording: ")[1].split()[0]
            print("auto-ended recording opened:", second)
            assert second != name
            frame.wait_for_function(f"document.getElementById('picker').value === {second!r}", timeout=30000)
    finally:
        context.close()
        master.client("admin").post("plugins/profiler/api/stop")  # if the test failed while recording
    assert not errors, errors


@pytest.mark.timeout(90)
def test_non_admin_sees_the_refusal(browser, master):
    context, page, errors = new_page(browser, "dev")
    try:
        log_in_and_open_profiler(page, master, "dev")
        page.click("#bbprof-start")
        page.wait_for_selector("#bbprof-message.bbprof-problem", timeout=10000)
        message = page.inner_text("#bbprof-message")
        assert "Start: forbidden" in message and "admins" in message, message
        assert page.locator("[data-bbprof=state][data-recording=no]").count() == 1
        # opening a profile is a download: the viewer says it is refused
        if master.client("admin").get("plugins/profiler/api/profiles").json()["profiles"]:
            frame = page.frame(url=lambda u: "/plugins/profiler/" in u)
            frame.wait_for_function("document.body.dataset.state === 'error'", timeout=30000)
            assert "forbidden: you need to have role 'admins'" in frame.inner_text("#error")
        page.screenshot(path=str(ARTIFACTS / "www-plugin-forbidden.png"))
    finally:
        context.close()
    assert not errors, errors
