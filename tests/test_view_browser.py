"""`repo-agent view` in a real headless browser: Debian's chromium driven by playwright (no browser download).

One browser launch for the whole module. Every page of every test records the requests it makes (anything
not file:// or the local `--serve` server fails the test), every dialog (an `alert` from run content would
be one), and every script error or console error (a CSP violation would be one).

Skipped only where chromium cannot be installed (scripts/setup.sh installs Debian's package when it runs as
root with apt-get, and otherwise writes down why not); the skip reason says which.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser import Recorder, chromium
from view_fixtures import ALERT, LONG_TAIL, TASKS, build_runs, render

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return build_runs(tmp_path_factory.getbasetemp() / "view_runs")


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory) -> Path:
    return render(runs, tmp_path_factory.mktemp("browser_site") / "site")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def page(browser, recorder):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    recorder.attach(opened)
    yield opened
    context.close()
    assert recorder.dialogs == [], f"a dialog opened: {recorder.dialogs}"
    assert recorder.foreign == [], f"requests off the machine: {recorder.foreign}"
    assert recorder.errors == [], recorder.errors


def url(path: Path) -> str:
    return path.resolve().as_uri()


def visible_tasks(page) -> list[str]:
    return page.locator("#task-table tbody tr.task-row:visible th.task").all_inner_texts()


def test_task_table_has_one_row_per_task_in_pages(page, site, recorder):
    page.goto(url(site / "run-scripted" / "index.html"))
    assert page.locator("#task-table tbody tr.task-row").count() == len(TASKS)
    assert visible_tasks(page) == list(TASKS[:2])
    assert page.locator("#page-label").inner_text() == "page 1 of 2"
    page.click("#page-next")
    assert visible_tasks(page) == list(TASKS[2:])
    assert page.locator("#page-next").is_disabled()
    assert any(u.endswith("/assets/view.js") for u in recorder.requests)  # requests are being recorded


def test_filters_pick_outcomes_parse_errors_loops_and_stop_reasons(page, site):
    page.goto(url(site / "run-fixture" / "index.html"))
    page.select_option("#f-outcome", "unfinished")
    assert visible_tasks(page) == ["bundled/is_prime"]
    assert page.locator("#table-status").inner_text() == "1 of 4 tasks match"
    page.select_option("#f-outcome", "")
    page.select_option("#f-stop", "final")
    assert page.locator("#table-status").inner_text() == "3 of 4 tasks match"  # is_prime has no finished rollout
    page.goto(url(site / "run-oracle" / "index.html"))
    page.check("#f-parse")
    assert page.locator("#table-status").inner_text() == "0 of 3 tasks match"
    page.goto(url(site / "run-scripted" / "index.html"))
    page.check("#f-parse")
    page.check("#f-loops")
    assert page.locator("#table-status").inner_text() == "3 of 3 tasks match"
    assert page.locator("#task-table .cell.dim").count() == 0


def test_clicking_a_rollout_shows_its_steps_and_parse_error_kind(page, site, runs):
    page.goto(url(site / "run-scripted" / "index.html"))
    page.locator('#task-table tr[data-task="bundled/gcd"] a.cell').first.click()
    page.wait_for_url(re.compile(r".*/rollouts/bundled__gcd__r0\.html$"))
    trace = json.loads((runs["scripted"] / "traces" / "bundled__gcd__r0.json").read_text())
    assert page.locator("section.step").count() == len(trace["steps"]) == 4
    kind = trace["steps"][0]["parse_error"]["kind"]
    assert page.locator("#step-0 .parse-error .kind").inner_text() == kind == "invalid_json"
    assert page.locator("#step-2 .flag.loop").inner_text() == "loop: repeat"
    assert page.locator("#outcome").inner_text() == "failed"


def test_script_in_model_output_is_shown_and_runs_nothing(page, site, recorder):
    page.goto(url(site / "run-scripted" / "rollouts" / "bundled__gcd__r0.html"))
    assert page.locator("#step-0 pre.raw-output").inner_text() == ALERT
    assert "onerror=alert(2)" in page.locator("#step-3").inner_text()
    assert page.evaluate("document.scripts.length") == 2 and page.locator("img").count() == 0
    assert recorder.dialogs == []


def test_show_all_reveals_capped_text_including_a_closing_script_tag(page, site, recorder):
    page.goto(url(site / "run-fixture" / "rollouts" / "bundled__gcd__r0.html"))
    output = page.locator("#step-2 pre.tool-output")
    assert len(output.inner_text()) == 5000
    page.locator("#step-2 button.show-all").click()
    assert output.inner_text().endswith(LONG_TAIL)
    assert page.evaluate("document.scripts.length") == 2
    assert recorder.dialogs == []


def test_two_runs_side_by_side(page, site):
    page.goto(url(site / "compare-compare" / "index.html"))
    assert page.locator("#side-table tbody tr").count() == len(TASKS)
    page.locator('#side-table tr[data-task="bundled/gcd"] a', has_text="steps side by side").click()
    baseline, candidate = page.locator("#side-baseline"), page.locator("#side-candidate")
    assert baseline.locator("section.rollout-brief").count() == 2 == candidate.locator("section.rollout-brief").count()
    assert baseline.locator("li.perr").count() == 2 and candidate.locator("li.perr").count() == 0
    candidate.locator("a", has_text="write_file").first.click()
    page.wait_for_url(re.compile(r".*/run-oracle/rollouts/bundled__gcd__r\d\.html#step-\d$"))


def test_served_on_loopback(page, runs, recorder, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "repo_agent.cli", "view", str(runs["oracle"]), "--out", str(tmp_path / "served"),
         "--serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = ""
        while "serving" not in line:
            line = process.stdout.readline()
            assert line, process.stderr.read()
        origin = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        recorder.allowed.append(origin + "/")
        page.goto(f"{origin}/run-oracle/index.html")
        assert page.locator("#task-table tbody tr.task-row").count() == len(TASKS)
        page.locator("#task-table a.cell").first.click()
        page.wait_for_url(re.compile(r".*/rollouts/.*\.html$"))
        assert page.locator("section.step").count() >= 1
        page.wait_for_load_state("networkidle")  # nothing still loading when the server stops below
        assert all(u.startswith(origin) for u in recorder.requests)
        page.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_screenshot_of_a_rollout_page(page, site, tmp_path):
    """The picture in docs/: REPO_AGENT_VIEW_SCREENSHOT=docs/view_rollout.png pytest tests/test_view_browser.py"""
    page.set_viewport_size({"width": 1280, "height": 1500})
    page.goto(url(site / "run-scripted" / "rollouts" / "bundled__gcd__r0.html"))
    shot = tmp_path / "rollout.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    target = os.environ.get("REPO_AGENT_VIEW_SCREENSHOT")
    if target:
        shutil.copyfile(shot, REPO / target)
