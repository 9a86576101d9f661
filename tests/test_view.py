"""`repo-agent view` without a browser: what the written pages hold, what they must never hold, and what the
command refuses. The browser test (test_view_browser.py) clicks through the same site."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import tree_digest
from view_fixtures import ALERT, EVIL_TASK, FINAL_CLAIM, LONG_TAIL, TASKS, UNKNOWN_STEP_VALUE, build_runs, render

TEMPLATES = Path(__file__).resolve().parent.parent / "repo_agent" / "view" / "templates"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return build_runs(tmp_path_factory.getbasetemp() / "view_runs")


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory) -> Path:
    return render(runs, tmp_path_factory.mktemp("site") / "site")


class _Scan(HTMLParser):
    """Script elements, event-handler attributes and elements with a URL, as the browser would parse them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[tuple[str, str]] = []
        self.urls: list[str] = []
        self.ids: list[str] = []
        self._in_json = False
        self.json_text = ""

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_json = attributes.get("type") == "application/json"
        self.handlers += [(tag, name) for name, _ in attrs if name.startswith("on")]
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        if attributes.get("id"):
            self.ids.append(attributes["id"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_json = False

    def handle_data(self, data):
        if self._in_json:
            self.json_text += data


def scan(path: Path) -> _Scan:
    parser = _Scan()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def text_of(path: Path) -> str:
    """The page's visible text, entities decoded (what a reader sees)."""
    class Text(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.parts, self.skip = [], False

        def handle_starttag(self, tag, attrs):
            self.skip = tag == "script"

        def handle_endtag(self, tag):
            self.skip = False

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return " ".join(" ".join(parser.parts).split())


def rollout_page(site: Path, run: str, key: str) -> Path:
    return site / f"run-{run}" / "rollouts" / f"{key}.html"


def test_every_page_runs_only_the_site_script_and_loads_nothing_remote(site):
    all_pages = pages(site)
    assert len(all_pages) > 25
    for page in all_pages:
        parsed = scan(page)
        assert [s.get("type") for s in parsed.scripts] == ["application/json", None], page
        assert parsed.scripts[1]["src"].endswith("assets/view.js")
        assert parsed.handlers == [], f"{page}: event-handler attributes {parsed.handlers}"
        for url in parsed.urls:
            assert not re.match(r"^[a-z][a-z0-9+.-]*:|^//", url, re.I) or url.startswith("#"), f"{page}: absolute URL {url}"
            if not url.startswith("#"):
                assert (page.parent / url.split("#")[0]).resolve().is_file(), f"{page}: broken link {url}"
        html = page.read_text(encoding="utf-8")
        assert html.count("</script>") == 2, page  # nothing from a run closed (or opened) a script element


def test_model_output_with_markup_is_shown_as_text(site):
    page = rollout_page(site, "scripted", "bundled__gcd__r0")
    html = page.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and ALERT not in html
    visible = text_of(page)
    assert ALERT in visible and "invalid_json" in visible
    assert "onerror=alert(2)" in visible and "<img" not in html


def test_the_model_claiming_tests_pass_does_not_colour_its_cell(site):
    """The cheapest hack: a `final` summary saying the tests pass. Cells follow the driver's verdict."""
    page = site / "run-scripted" / "index.html"
    assert text_of(rollout_page(site, "scripted", "bundled__gcd__r0")).count("[TESTS PASS]") >= 1
    html = page.read_text(encoding="utf-8")
    cells = re.findall(r'<a class="cell o-(\w+)" href="rollouts/([^"]+)\.html"', html)
    assert len(cells) == 6 and {state for state, _ in cells} == {"failed"}
    assert FINAL_CLAIM.split(" <img")[0] not in text_of(page)


def test_task_table_has_one_row_per_task_and_every_rollout_a_cell(site):
    html = (site / "run-oracle" / "index.html").read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="task-row" data-task="([^"]+)">', html)
    assert rows == list(TASKS)
    assert len(re.findall(r'class="cell o-passed"', html)) == 6
    assert 'data-page-size="2"' in html


def test_clipped_text_travels_as_json_that_cannot_close_its_script(site):
    page = rollout_page(site, "fixture", "bundled__gcd__r0")
    parsed = scan(page)
    full_texts = json.loads(parsed.json_text)
    long_texts = [t for t in full_texts.values() if t.endswith(LONG_TAIL)]
    assert len(long_texts) == 1 and len(long_texts[0]) > 5000
    html = page.read_text(encoding="utf-8")
    assert "\\u003c/script\\u003e\\u003cscript\\u003ealert(3)" in html
    assert "alert(3)" not in text_of(page)  # beyond the cap: only behind "show all"
    assert re.search(r"showing 5000 of \d+ characters", text_of(page))


def test_fields_from_newer_traces_are_shown(site):
    page = rollout_page(site, "fixture", "bundled__gcd__r0")
    visible = text_of(page)
    html = page.read_text(encoding="utf-8")
    for expected in ("toolset edit", "outcome passed", "sealed yes", "expected tests 6", "Tests (6)",
                     "python_testcases/test_gcd.py::test_gcd[5] passed", "Refused writes (1)",
                     "protected: a test file", "write refused", "stopped early", "deliberate mistake",
                     "<i>odd reward name</i> 0.500",
                     "Final diff of the editable files", "refused_writes 1", "future_verdict_field kept",
                     UNKNOWN_STEP_VALUE, "future_top_level", "alert(5)"):
        assert expected in visible, expected
    assert '<span class="d-add">+    return gcd(b, a % b)' in html
    assert '<span class="d-del">-    return gcd(a % b, b)' in html
    assert "&lt;i&gt;odd reward name&lt;/i&gt;" in html
    decoding = re.search(r"<summary>decoding</summary>(.*?)</details>", html, re.S)
    assert decoding and "early_stop" in decoding.group(1) and "constrained" in decoding.group(1)


def test_an_old_trace_renders_with_what_it_has(site, runs):
    page = rollout_page(site, "fixture", "bundled__gcd__r1")
    visible = text_of(page)
    steps = len(json.loads((runs["fixture"] / "traces" / "bundled__gcd__r1.json").read_text())["steps"])
    assert f"Steps ({steps})" in visible and "6 passed, 0 failed" in visible
    for absent in ("Refused writes", "Rewards", "Final diff", "toolset", "sealed", "Other trace fields", "not recorded:"):
        assert absent not in visible, absent


def test_damaged_unfinished_and_missing_rollouts_say_what_is_missing(site, runs):
    run_page = text_of(site / "run-fixture" / "index.html")
    assert "damaged trace bundled__clamp__r1" in run_page and "not valid JSON" in run_page
    assert "1 unfinished rollout(s)" in run_page and "bundled__is_prime__r1" in run_page
    assert "1 rollout(s) the config promises have no trace file" in run_page
    html = (site / "run-fixture" / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<span class="cell o-missing"[^>]*>missing</span>', html)
    damaged = text_of(rollout_page(site, "fixture", "bundled__clamp__r1"))
    assert "This trace could not be read" in damaged and '"task_id": "bundled/cl' in damaged
    unfinished = text_of(rollout_page(site, "fixture", "bundled__is_prime__r1"))
    assert "unfinished (status 'running')" in unfinished and "2 step(s) recorded" in unfinished
    assert "Steps (2)" in unfinished and "No verdict recorded." in unfinished


def test_html_in_a_task_id_is_text_and_its_files_stay_inside_the_site(site):
    page = site / "run-fixture" / "index.html"
    assert EVIL_TASK in text_of(page)
    assert "<img src=x" not in page.read_text(encoding="utf-8")
    for path in site.rglob("*"):
        assert site.resolve() in path.resolve().parents
    assert not any("escape" in p.name for p in site.parent.iterdir())


def test_side_by_side_from_report_compare_and_from_two_runs_of_one_suite(site):
    index = text_of(site / "index.html")
    assert "Side by side" in index
    compare_dirs = sorted(p.name for p in site.glob("compare-*"))
    assert len(compare_dirs) == 2
    from_file = text_of(site / "compare-compare" / "index.html")
    assert "report compare output" in from_file and "too small to call a difference" in from_file
    assert (site / "compare-compare" / "plots" / "metrics.png").is_file()
    task_page = site / "compare-compare" / "tasks" / "bundled_gcd.html"
    both = task_page.read_text(encoding="utf-8")
    assert 'id="side-baseline"' in both and 'id="side-candidate"' in both
    assert both.count("parse error: invalid_json") == 2 and "write_file python_programs/gcd.py" in both
    computed = [d for d in compare_dirs if d != "compare-compare"][0]
    # the fixture run has a task with no finished rollout, so no statistics; the sides are still shown
    assert "no statistics" in text_of(site / computed / "index.html")


def test_run_page_shows_config_metrics_and_plots(site):
    page = site / "run-fixture" / "index.html"
    visible = text_of(page)
    assert "Source: report.json." in visible and "pass_rate 1.000" in visible
    assert "suite bundled-view" in visible and "rollouts per task 2" in visible
    assert (site / "run-fixture" / "plots" / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'src="plots/metrics.png"' in page.read_text(encoding="utf-8")


def test_view_reads_runs_without_changing_them(runs, cli, tmp_path):
    before = {name: tree_digest(runs[name]) for name in ("oracle", "fixture", "compare")}
    result = cli("view", runs["oracle"], runs["fixture"], runs["compare"], "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert {name: tree_digest(runs[name]) for name in before} == before


def test_default_out_is_inside_the_first_run_and_a_rerun_replaces_it(runs, cli, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["scripted"], run)
    assert cli("view", run).exit_code == 0
    first = (run / "view" / "run-run" / "index.html").read_text()
    (run / "view" / "run-run" / "stale.html").write_text("old")
    assert cli("view", run).exit_code == 0
    assert (run / "view" / "run-run" / "index.html").read_text() == first
    assert not (run / "view" / "run-run" / "stale.html").exists()
    # the site inside the run folder is not mistaken for traces by the reports
    assert cli("report", "show", run, "--out", tmp_path / "r.json").exit_code == 0
    assert json.loads((tmp_path / "r.json").read_text())["problems"] == []


def test_refuses_a_foreign_out_folder_and_a_folder_without_runs(runs, cli, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = cli("view", runs["oracle"], "--out", foreign)
    assert result.exit_code == 2 and "not written by `repo-agent view`" in result.output
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    result = cli("view", empty, "--out", tmp_path / "s2")
    assert result.exit_code == 2 and "holds no run" in result.output


def test_a_pipeline_folder_shows_each_stage(runs, cli, tmp_path):
    import shutil

    pipeline = tmp_path / "pipeline"
    for name in ("oracle", "scripted", "compare"):
        shutil.copytree(runs[name], pipeline / name)
    result = cli("view", pipeline, "--out", tmp_path / "site")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "site").iterdir() if p.is_dir())
    assert names == ["assets", "compare-compare", "run-oracle", "run-scripted"]


def test_templates_never_switch_escaping_off():
    from repo_agent.view.render import environment

    env = environment()
    for template in TEMPLATES.glob("*.html"):
        source = template.read_text()
        assert "|safe" not in source.replace(" ", "") and "autoescape false" not in source, template
        assert env.get_template(template.name).environment.autoescape is True
    assert str(env.from_string("{{ x }}").render(x="<b>")) == "&lt;b&gt;"


def test_serve_binds_loopback_only_and_serves_the_site(site):
    from repo_agent.view.serve import make_server

    server = make_server(site, 0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/run-oracle/index.html", timeout=10) as response:
            body = response.read().decode()
        assert "bundled/gcd" in body
    finally:
        server.shutdown()
        server.server_close()


HOSTILE = "</script><script>alert(9)</script>"


def _hostile_traces():
    from hypothesis import strategies as st

    from repo_agent.traces import TRACE_SCHEMA
    from repo_agent.view.rollout import STEP_KEYS, TRACE_KEYS, VERDICT_KEYS

    text = st.text(max_size=20) | st.just(HOSTILE)
    leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | text
    value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                         max_leaves=6)
    step = st.dictionaries(st.sampled_from(sorted(STEP_KEYS)) | text, value, max_size=8) | value
    verdict = st.dictionaries(st.sampled_from(sorted(VERDICT_KEYS)) | text, value, max_size=6) | value
    optional = {key: value for key in sorted(TRACE_KEYS - {"schema", "task_id", "steps", "verdict"})}
    optional["verdict"] = verdict
    return st.fixed_dictionaries({"schema": st.just(TRACE_SCHEMA), "task_id": text, "steps": st.lists(step, max_size=4)},
                                 optional=optional)


def test_any_shape_of_trace_renders_and_stays_inert():
    """Traces are data from disk: wrong types in any field (old, new, hand-edited or hostile) must render, and
    nothing in them may open or close a script element."""
    from hypothesis import given, settings

    from repo_agent.view.load import Rollout
    from repo_agent.view.render import Clipper, environment
    from repo_agent.view.rollout import cell_summary, rollout_view

    template = environment().get_template("rollout.html")

    @settings(max_examples=150, deadline=None)
    @given(_hostile_traces())
    def check(trace):
        rollout = Rollout(task_id=str(trace["task_id"]), index=0, key="k", path=Path("k.json"), trace=trace)
        cell_summary(rollout)
        html = template.render(root="", clip=Clipper(50), generated_by="test", r=rollout_view(rollout), run_name="run",
                               raw_href=None, raw_preview=None)
        assert html.count("</script>") == 2 and html.count("<script") == 2

    check()


def test_damaged_config_and_comparison_files_are_reported_not_fatal(runs, cli, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["scripted"], run)
    (run / "config.json").write_text('{"schema": "repo-agent/run", "suite": ')
    compare = tmp_path / "cmp"
    compare.mkdir()
    (compare / "comparison.json").write_text(json.dumps({"baseline": {"path": 5}, "candidate": "x", "warnings": "w",
                                                         "metrics": {"pass_rate": {"ci_low": "a"}}, "per_task": [1]}))
    out = tmp_path / "site"
    result = cli("view", run, compare, "--out", out)
    assert result.exit_code == 0, result.output
    assert "config.json is unreadable" in text_of(out / "run-run" / "index.html")
    assert len(re.findall(r'<tr class="task-row"', (out / "run-run" / "index.html").read_text())) == len(TASKS)
    side = text_of(out / "compare-cmp" / "index.html")
    assert "baseline run folder 5 was not found" in side and "candidate run folder None was not found" in side
