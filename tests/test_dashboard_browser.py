"""The dashboard in a real headless Chromium against a real `recsys serve --ui` process on loopback: a user's list
appears with titles, a fold-in changes it, the A/B chart renders, insights, the item map and the leaderboard show,
the API key typed into the page is sent; no console errors. Screenshots land in the test's temp dir.

Chromium: Debian's package (installed with apt-get when missing and we are root), driven by Playwright's Python
client with executable_path (no browser download). Skips, saying why, only where neither can be had.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import recsys, wait_for

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SVD, IALS = "svd-synth-user", "ials-synth-user"
KEY = "browser-key-5"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get where missing (as root); skip with the reason otherwise."""
    path = find_chromium()
    if path is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("chromium is not installed and cannot be (needs root and apt-get): apt-get install chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600, check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=900,
                           check=True)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"chromium is not installed and apt-get could not install it: {exc}")
        path = find_chromium()
        if path is None:
            pytest.skip("apt-get install chromium succeeded but no chromium executable is on PATH")
    return path


@pytest.fixture(scope="session")
def browser(chromium, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'recsys-cli[ui-test]' (playwright)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        # a persistent context is the only way to give Chromium a user-data dir of our own: a fresh one per session
        context = p.chromium.launch_persistent_context(str(profile), executable_path=chromium, args=FLAGS,
                                                       headless=True, viewport=VIEWPORT)
        yield context
        context.close()






@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`recsys serve SVD IALS --ui` with an API key, on a free loopback port, over tiny synthetic runs."""
    root = tmp_path_factory.mktemp("dashboard-e2e")
    env = {**os.environ, "RECSYS_DATA_DIR": str(root / "data"), "RECSYS_ARTIFACTS_DIR": str(root / "arts"),
           "RECSYS_NO_PROGRESS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    recsys("generate", "synth", "--users", "150", "--items", "90", "--ratings", "5000", env=env)
    recsys("preprocess", "synth", "--format", "json", env=env)
    recsys("train", "svd", "--dataset", "synth", "--split", "user", "-p", "factors=8", "-p", "epochs=10",
           "--format", "json", env=env)
    recsys("train", "ials", "--dataset", "synth", "--split", "user", "-p", "factors=8", "-p", "iterations=5",
           "--format", "json", env=env)
    recsys("evaluate", SVD, "--format", "json", env=env)
    log = root / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "recsys_cli", "serve", SVD, IALS, "--ui", "--port", "0"],
                                env={**env, "RECSYS_API_KEY": KEY}, stdout=subprocess.DEVNULL, stderr=err)
    try:
        match = wait_for(lambda: re.search(r"on http://127\.0\.0\.1:(\d+)", log.read_text()), 120, "the server")
        base = f"http://127.0.0.1:{match.group(1)}"
        api = httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": KEY})
        wait_for(lambda: api.get("/ready").status_code == 200, 60, "/ready")
        yield {"base": base, "api": api, "log": log}
        api.close()
    finally:
        proc.terminate()
        proc.wait(30)


class Page:
    """A tab with the key in sessionStorage (as if typed in) and every console error and page error recorded."""

    def __init__(self, browser, base: str, key: str | None = KEY) -> None:
        self.page = browser.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.base = base
        if key:  # before the page's own script runs, on every navigation
            self.page.add_init_script(f"sessionStorage.setItem('recsys-api-key', {json.dumps(key)})")

    def open(self, tab: str):
        self.page.goto(f"{self.base}/ui/#{tab}")
        self.page.reload()  # the hash alone does not reload; start from a fresh page for each tab
        return self.page

    def shot(self, tmp_path: Path, name: str, full: bool = False) -> Path:
        path = tmp_path / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full)
        assert path.stat().st_size > 10_000  # a rendered page, not a blank one
        return path

    def close(self) -> None:
        self.page.close()


def rows_of(page, selector: str) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all(f"{selector} tr[data-item]", "rs => rs.map(r => r.dataset.item)")]


def test_user_list_appears_with_titles_and_genres(browser, server, tmp_path):
    tab = Page(browser, server["base"])
    held = []  # the run list is held back until the form has been sent: the request must wait for it
    def hold(route):
        held.append(route)

    tab.page.route("**/runs", hold)
    page = tab.open("recommend")
    page.fill("#rec-user", "7")
    page.click("#rec-form button")
    page.wait_for_function("() => true")  # let the page's handlers run with /runs still pending
    assert held and page.locator("#rec-list table.recs").count() == 0
    page.unroute("**/runs", hold)
    for route in held:  # the first belongs to the page the reload replaced
        try:
            route.continue_()
        except Exception:  # noqa: BLE001 - that page is gone
            pass
    page.wait_for_selector("#rec-list table.recs")
    page.wait_for_function("document.querySelector('#rec-note').textContent.includes('user 7')")
    expected = server["api"].get("/recommend", params={"run": SVD, "user": 7, "n": 10}).json()
    assert rows_of(page, "#rec-list") == [r["item_id"] for r in expected]
    titles = page.eval_on_selector_all("#rec-list .title", "ts => ts.map(t => t.firstChild.textContent)")
    assert titles == [r["title"] for r in expected]
    first = server["api"].get(f"/items/{expected[0]['item_id']}", params={"run": SVD}).json()
    shown = page.eval_on_selector_all("#rec-list tbody tr:first-child .genre", "gs => gs.map(g => g.textContent)")
    assert shown == first["genres"] and shown
    tab.shot(tmp_path, "recommend")
    assert tab.errors == []
    tab.close()


def test_fold_in_changes_the_list(browser, server, tmp_path):
    tab = Page(browser, server["base"])
    page = tab.open("coldstart")
    page.wait_for_selector("#cs-list table.recs")
    page.wait_for_selector("#cs-results .pick")
    before = rows_of(page, "#cs-list")
    popular = server["api"].get("/recommend", params={"run": SVD, "user": -1, "n": 10}).json()
    assert before == [r["item_id"] for r in popular]  # no ratings yet: the popularity ranking
    picks = page.eval_on_selector_all("#cs-results .pick .star[data-value='1']", "s => s.map(b => b.dataset.item)")
    ratings = {picks[0]: 5, picks[1]: 5, picks[2]: 1}
    for item, stars in ratings.items():
        page.click(f"#cs-results .star[data-item='{item}'][data-value='{stars}']")
    assert page.locator("#cs-rated .chip").count() == 3
    page.click("#cs-go")
    page.wait_for_function("document.querySelector('#cs-title').textContent.startsWith('For you')")
    page.wait_for_selector("#cs-list .fallback")
    after = rows_of(page, "#cs-list")
    folded = server["api"].post("/recommend", json={"run": SVD, "ratings": ratings, "n": 10}).json()
    assert after == [r["item_id"] for r in folded] and after != before
    assert not set(int(i) for i in ratings) & set(after)  # rated movies are not recommended back
    tab.shot(tmp_path, "coldstart")
    assert tab.errors == []
    tab.close()


def test_compare_and_ab_chart_render_without_console_errors(browser, server, tmp_path):
    tab = Page(browser, server["base"])
    page = tab.open("compare")
    page.wait_for_selector("#cmp-b-list table.recs")
    assert page.input_value("#cmp-a") == SVD and page.input_value("#cmp-b") == IALS
    a = server["api"].get("/recommend", params={"run": SVD, "user": 1}).json()
    b = server["api"].get("/recommend", params={"run": IALS, "user": 1}).json()
    assert rows_of(page, "#cmp-a-list") == [r["item_id"] for r in a]
    assert rows_of(page, "#cmp-b-list") == [r["item_id"] for r in b]
    shared = {r["item_id"] for r in a} & {r["item_id"] for r in b}
    assert page.locator("#cmp-a-list tr.shared").count() == len(shared)
    page.fill("#ab-boot", "500")
    page.click("#ab-form button")
    page.wait_for_selector("#ab-chart", timeout=120_000)
    result = server["api"].get("/abtest", params={"run_a": SVD, "run_b": IALS, "bootstrap": 500, "k": 10}).json()
    assert page.text_content(".verdict") == result["winner"]["message"]
    bars = page.eval_on_selector_all("#ab-chart rect.arm-bar", "rs => rs.map(r => r.getBBox().height)")
    assert len(bars) == 2 and all(h > 0 for h in bars)
    # taller bar = higher CTR, as in the JSON
    ctr = [arm["user_ctr_mean"] for arm in result["arms"]]
    assert (bars[0] > bars[1]) == (ctr[0] > ctr[1])
    assert page.locator("#ab-chart rect.hist").count() == len(result["chart"]["lift"])
    assert page.locator("#ab-chart line.ci-line").count() == 2
    tab.shot(tmp_path, "compare", full=True)
    assert tab.errors == []
    tab.close()


def test_insights_map_and_leaderboard(browser, server, tmp_path):
    pytest.importorskip("matplotlib")
    tab = Page(browser, server["base"])
    page = tab.open("insights")
    figures = server["api"].get("/insights/synth").json()["figures"]
    page.wait_for_function(f"document.querySelectorAll('#ins-body figure img').length === {len(figures)}",
                           timeout=120_000)
    page.wait_for_function("[...document.querySelectorAll('#ins-body figure img')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#ins-body .error").count() == 0
    tab.shot(tmp_path, "insights", full=True)

    page = tab.open("map")
    page.wait_for_selector("#map-chart")
    points = server["api"].get("/map", params={"run": SVD}).json()["points"]
    assert page.locator("#map-chart circle.dot").count() == len(points) == 90
    page.fill("#map-find", points[0]["title"])
    page.click("#map-form button")
    page.wait_for_selector("#map-chart circle.hit")
    assert page.get_attribute("#map-chart circle.hit", "data-item") == str(points[0]["item_id"])
    assert "principal components" in page.text_content("#map-note") and "PC 1" in page.text_content("#map-chart")
    tab.shot(tmp_path, "map")
    if importlib.util.find_spec("sklearn") is not None:  # the maps extra: the same tab draws the t-SNE map
        page.select_option("#map-projection", "tsne")
        page.click("#map-form button")
        page.wait_for_function("document.querySelector('#map-note').textContent.includes('on a t-SNE map')", timeout=120_000)
        body = server["api"].get("/map", params={"run": SVD, "projection": "tsne"}).json()
        assert page.locator("#map-chart circle.dot").count() == body["shown"] == 90
        assert "t-SNE 1" in page.text_content("#map-chart") and "Genre silhouette on this map" in page.text_content("#map-note")
        tab.shot(tmp_path, "map-tsne")

    page = tab.open("leaderboard")
    page.wait_for_selector("#lb-body table")
    board = server["api"].get("/leaderboard").json()
    assert page.locator("#lb-body tbody tr").count() == len(board["rows"]) >= 1
    assert page.text_content("#lb-body tbody tr:first-child td:nth-child(2)") == board["rows"][0]["run"]
    tab.shot(tmp_path, "leaderboard")
    assert tab.errors == []
    tab.close()


def test_the_page_asks_for_the_key_and_sends_it(browser, server, tmp_path):
    tab = Page(browser, server["base"], key=None)
    page = tab.open("recommend")
    page.evaluate("sessionStorage.clear()")
    page.reload()
    page.wait_for_selector("#banner:not([hidden])")
    assert "API key" in page.text_content("#banner")
    assert tab.errors and all("401" in e for e in tab.errors)  # the refused /runs, and nothing else
    page.fill("#api-key", KEY)
    page.click("#key-form button")
    page.wait_for_selector("#rec-list table.recs")
    assert page.evaluate("sessionStorage.getItem('recsys-api-key')") == KEY
    assert page.is_hidden("#banner")
    tab.shot(tmp_path, "key")
    tab.close()


def test_reasons_show_when_rows_carry_them(browser, server, tmp_path):
    # The page asks for explanations (`explain=true`): the server's reasons show in a "because" column.
    tab = Page(browser, server["base"])
    page = tab.open("recommend")
    page.wait_for_selector("#rec-list table.recs")
    assert page.locator("#rec-list th", has_text="because").count() == 1
    assert page.locator("#rec-list td.reasons li").count() > 0  # svd: the user's rated items, from the server
    rows = server["api"].get("/recommend", params={"run": SVD, "user": 1, "n": 2}).json()
    rows[0]["reasons"] = [{"kind": "rated", "item_id": 5, "title": "Some Movie", "contribution": 0.41},
                          {"kind": "genre", "item_id": None, "title": "Drama", "contribution": -0.125},
                          {"kind": "baseline", "item_id": None, "title": "global mean + biases", "contribution": 3.5}]
    rows[1]["reasons"] = []
    texts = page.evaluate("""async ([run, rows]) => {
        const box = document.getElementById('rec-list');
        await renderList(box, run, rows);
        return [...box.querySelectorAll('td.reasons')].map(td => [...td.querySelectorAll('li')].map(li => li.textContent));
    }""", [SVD, rows])
    assert texts == [["you rated Some Movie +0.410", "genre Drama −0.125", "global mean + biases +3.500"], []]
    assert page.locator("#rec-list th", has_text="because").count() == 1
    tab.shot(tmp_path, "reasons")
    assert tab.errors == []
    tab.close()


def test_an_older_answer_does_not_overwrite_a_newer_one(browser, server, tmp_path):
    # Switch the run while the first run's list is on its way: the page shows the run picked last, not whichever
    # answer arrived last.
    tab = Page(browser, server["base"])
    page = tab.open("recommend")
    page.wait_for_selector("#rec-list table.recs")
    held = []

    def hold_ials(route):
        if f"run={IALS}" in route.request.url:
            held.append(route)
        else:
            route.continue_()

    page.route("**/recommend?*", hold_ials)
    page.select_option("#rec-run", IALS)  # a change of run asks at once
    page.wait_for_function("() => true")
    assert len(held) == 1
    page.select_option("#rec-run", SVD)
    page.wait_for_function(f"document.querySelector('#rec-note').textContent.includes('{SVD}')")
    held[0].continue_()  # the older IALS answer arrives last
    page.wait_for_function(f"performance.getEntriesByType('resource').some(e => e.name.includes('run={IALS}'))")
    page.wait_for_timeout(300)  # room for a stray render (no threshold: the assertion holds at any speed)
    page.unroute("**/recommend?*", hold_ials)
    svd = server["api"].get("/recommend", params={"run": SVD, "user": 1, "n": 10}).json()
    assert rows_of(page, "#rec-list") == [r["item_id"] for r in svd]
    assert page.text_content("#rec-note") == f"Top 10 for user 1 from {SVD}."
    assert tab.errors == []
    tab.close()


def test_a_run_switch_refreshes_cold_start_and_compare(browser, server, tmp_path):
    tab = Page(browser, server["base"])
    page = tab.open("coldstart")
    page.wait_for_selector("#cs-list table.recs")
    page.select_option("#cs-run", IALS)
    page.wait_for_function(f"document.querySelector('#cs-title').textContent.includes('{IALS}')")
    popular = server["api"].get("/recommend", params={"run": IALS, "user": -1, "n": 10}).json()
    page.wait_for_function(f"document.querySelector('#cs-list tr[data-item]')?.dataset.item === '{popular[0]['item_id']}'")
    assert rows_of(page, "#cs-list") == [r["item_id"] for r in popular]
    page = tab.open("compare")
    page.wait_for_selector("#cmp-b-list table.recs")
    page.select_option("#cmp-b", SVD)
    page.wait_for_function(f"document.querySelector('#cmp-b-title').textContent === 'B: {SVD}'")
    page.wait_for_function("document.querySelector('#cmp-note').textContent.includes('10 of 10')")
    assert rows_of(page, "#cmp-b-list") == rows_of(page, "#cmp-a-list")
    assert tab.errors == []
    tab.close()


def test_ids_typed_with_a_sign_or_an_exponent_are_the_integer(browser, server, tmp_path):
    # Chromium's number field accepts "+3" and "1e1"; the API wants digits: the page sends 3 and 10.
    tab = Page(browser, server["base"])
    page = tab.open("recommend")
    page.wait_for_selector("#rec-list table.recs")
    for typed, user in [("+3", 3), ("1e1", 10)]:
        page.fill("#rec-user", "")
        page.type("#rec-user", typed)
        page.click("#rec-form button")
        page.wait_for_function(f"document.querySelector('#rec-note').textContent.includes('for user {user} ')")
        expected = server["api"].get("/recommend", params={"run": SVD, "user": user, "n": 10}).json()
        assert rows_of(page, "#rec-list") == [r["item_id"] for r in expected]
    page.fill("#rec-user", "")
    page.click("#rec-form button")  # an empty id: the browser asks for one, nothing is sent
    assert page.evaluate("document.getElementById('rec-user').validity.valueMissing")
    assert tab.errors == []
    tab.close()


def test_a_failed_request_says_why_and_leaves_no_stale_note(browser, server, tmp_path):
    tab = Page(browser, server["base"])
    page = tab.open("recommend")
    page.wait_for_function("document.querySelector('#rec-note').textContent.includes('user 1')")
    page.route("**/recommend?*", lambda route: route.abort("connectionrefused"))  # as if the server had stopped
    page.fill("#rec-user", "5")
    page.click("#rec-form button")
    page.wait_for_selector("#rec-list .error")
    assert "Cannot reach the server" in page.text_content("#rec-list .error")
    assert page.text_content("#rec-note") == ""  # not "Top 10 for user 1" over an error about user 5
    page.unroute("**/recommend?*")

    page = tab.open("map")
    page.wait_for_function("document.querySelector('#map-note').textContent.includes(' movies of ')")
    page.route("**/map?*", lambda route: route.fulfill(status=422, content_type="application/json",
                                                       body=json.dumps({"error": "no item vectors", "code": "invalid"})))
    page.click("#map-form button")
    page.wait_for_selector("#map-body .error")
    assert page.text_content("#map-body .error") == "no item vectors"
    assert " movies of " not in page.text_content("#map-note")  # the last map's description went with it
    tab.close()


def test_a_refused_key_is_told_apart_from_a_missing_one(browser, server, tmp_path):
    tab = Page(browser, server["base"], key="not-the-key")
    page = tab.open("recommend")
    page.wait_for_selector("#banner:not([hidden])")
    assert "refused this API key" in page.text_content("#banner")
    page.fill("#api-key", KEY)
    page.click("#key-form button")
    page.wait_for_selector("#rec-list table.recs")
    assert page.is_hidden("#banner")
    tab.close()


def test_a_phone_sized_window_does_not_scroll_sideways(browser, server, tmp_path):
    tab = Page(browser, server["base"])
    tab.page.set_viewport_size({"width": 375, "height": 740})
    try:
        for view, ready in [("recommend", "#rec-list table.recs"), ("compare", "#cmp-b-list table.recs"),
                            ("leaderboard", "#lb-body table")]:
            page = tab.open(view)
            page.wait_for_selector(ready)
            width, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert width <= client, view
            assert page.is_visible("#api-key")  # the key field is reachable
            tab_box = page.locator("#tabs a.active").bounding_box()
            assert 0 <= tab_box["x"] and tab_box["x"] + tab_box["width"] <= client, view  # the current tab is in sight
        tab.shot(tmp_path, "phone-leaderboard")
    finally:
        tab.page.set_viewport_size(VIEWPORT)
    assert tab.errors == []
    tab.close()


def test_an_empty_leaderboard_filter_keeps_the_metric(browser, server, tmp_path):
    # No tune entries in this ledger: the page says so (not "run recsys evaluate"), and the metric picked stays.
    tab = Page(browser, server["base"])
    page = tab.open("leaderboard")
    page.wait_for_selector("#lb-body table")
    page.select_option("#lb-metric", "rmse")
    page.wait_for_function("document.querySelector('#lb-body th.best, #lb-body th')?.parentNode.textContent.includes('rmse ↓')")
    page.select_option("#lb-kind", "tune")
    page.wait_for_function("document.querySelector('#lb-body').textContent.includes('No tune entry')")
    assert page.input_value("#lb-metric") == "rmse"
    page.select_option("#lb-kind", "")
    page.wait_for_selector("#lb-body table")
    board = server["api"].get("/leaderboard", params={"metric": "rmse"}).json()
    assert page.input_value("#lb-metric") == "rmse" == board["metric"]
    assert page.text_content("#lb-body tbody tr:first-child td.best") == f"{board['rows'][0]['metrics']['rmse']:.4f}"
    assert tab.errors == []
    tab.close()


def test_ab_whiskers_stop_at_the_axis(browser, server, tmp_path):
    # Five users per arm: arm A's t interval reaches below 0 % CTR. Its whisker used to run on through the axis
    # into the run names under the bars; it stops at the axis now (the tooltip keeps the computed interval).
    tab = Page(browser, server["base"])
    page = tab.open("compare")
    page.wait_for_selector("#cmp-b-list table.recs")
    result = server["api"].get("/abtest", params={"run_a": SVD, "run_b": IALS, "bootstrap": 0}).json()
    chart = result["chart"]
    chart["arms"][0].update(user_ctr_mean=0.02, ci_low=-0.0355, ci_high=0.0755)
    chart["arms"][1].update(user_ctr_mean=0.16, ci_low=0.02, ci_high=0.30)
    lines = page.evaluate("""(chart) => {
        const root = abChart(chart, 0.05);
        document.body.append(root);
        const axis = Math.max(...[...root.querySelectorAll('rect.arm-bar')].map(r => r.y.baseVal.value + r.height.baseVal.value));
        const ys = [...root.querySelectorAll('g.arms line.whisker')].map(l => [l.y1.baseVal.value, l.y2.baseVal.value]);
        root.remove();
        return { axis, ys };
    }""", chart)
    assert len(lines["ys"]) == 2 + 3  # arm A: stem and top cap only; arm B: stem and two caps
    assert all(y <= lines["axis"] + 0.5 for pair in lines["ys"] for y in pair), lines  # SVG lengths are float32
    assert tab.errors == []
    tab.close()


def test_a_new_run_pair_clears_the_last_ab_result(browser, server, tmp_path):
    # The verdict "B beats A" belongs to the pair it was computed for: picking another run B removes it.
    tab = Page(browser, server["base"])
    page = tab.open("compare")
    page.wait_for_selector("#cmp-b-list table.recs")
    page.fill("#ab-boot", "0")
    page.click("#ab-form button")
    page.wait_for_selector("#ab-chart", timeout=120_000)
    page.select_option("#cmp-b", SVD)
    page.wait_for_function("document.querySelector('#ab-result').textContent.includes('run the A/B test again')")
    assert page.locator("#ab-result .verdict").count() == 0 and page.locator("#ab-chart").count() == 0
    page.click("#ab-form button")
    assert page.text_content("#ab-result .error") == "pick two different runs"
    assert tab.errors == []
    tab.close()


def test_genres_come_back_after_a_failed_item_lookup(browser, server, tmp_path):
    # The item lookups of one list fail (server briefly gone): the list shows without genres; the next list asks
    # again instead of keeping "no genres" for the rest of the session.
    tab = Page(browser, server["base"])
    tab.page.route("**/items/*", lambda route: route.abort("connectionrefused"))
    page = tab.open("recommend")
    page.wait_for_function("document.querySelector('#rec-note').textContent.includes('user 1')")
    assert page.locator("#rec-list tr[data-item]").count() == 10 and page.locator("#rec-list .genre").count() == 0
    page.fill("#rec-user", "11")
    page.unroute("**/items/*")
    page.click("#rec-form button")
    first = server["api"].get("/recommend", params={"run": SVD, "user": 11, "n": 1}).json()[0]["item_id"]
    genres = server["api"].get(f"/items/{first}", params={"run": SVD}).json()["genres"]
    page.wait_for_function(f"document.querySelectorAll('#rec-list tbody tr:first-child .genre').length === {len(genres)}")
    tab.close()


def test_compare_says_when_the_user_is_unknown(browser, server, tmp_path):
    # An unknown user gets the popularity ranking from both runs: "10 of 10 in both lists" alone reads as if
    # the two models agreed; the note says why.
    tab = Page(browser, server["base"])
    page = tab.open("compare")
    page.wait_for_selector("#cmp-b-list table.recs")
    page.fill("#cmp-user", "99999")
    page.click("#cmp-form button")
    page.wait_for_function("document.querySelector('#cmp-note').textContent.startsWith('User 99999')")
    page.wait_for_selector("#cmp-a-list .fallback")
    note = page.text_content("#cmp-note")
    assert note.endswith(f"User 99999 is not in the training data of {SVD} and {IALS}: both lists are the popularity ranking.")
    a = server["api"].get("/recommend", params={"run": SVD, "user": 99999}).json()
    assert rows_of(page, "#cmp-a-list") == [r["item_id"] for r in a] and a[0]["fallback"] == "popularity"
    assert tab.errors == []
    tab.close()


def test_run_b_defaults_to_a_run_on_run_as_split(browser, server, tmp_path):
    # The A/B test needs two runs on one split: with A = the default run, B starts as a run trained on A's dataset
    # and split when one is served (make serve's runs: svd random, ials random, ials user, item-knn without split),
    # and a B the user picked stays picked when the run menus refresh.
    tab = Page(browser, server["base"])
    real = server["api"].get("/runs").json()
    svd = next(r for r in real if r["run"] == SVD)
    ials = next(r for r in real if r["run"] == IALS)
    listed = [{**svd, "default": True}, {**ials, "run": "knn-synth", "model": "item-knn", "split": None},
              {**ials, "run": "ials-synth-random", "split": "random"}, ials]
    tab.page.route("**/runs", lambda route: route.fulfill(status=200, content_type="application/json",
                                                          body=json.dumps(listed)))
    page = tab.open("compare")
    page.wait_for_function("document.querySelector('#cmp-b').options.length === 4")
    assert page.input_value("#cmp-a") == SVD and page.input_value("#cmp-b") == IALS
    page.select_option("#cmp-b", "knn-synth")
    page.evaluate("loadRuns()")  # the menus refresh (as after a reload of the server's runs)
    assert page.input_value("#cmp-b") == "knn-synth"
    tab.close()
