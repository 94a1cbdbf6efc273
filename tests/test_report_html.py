"""``dgsim report``: the page, opened in a real headless browser.

A tiny simulation of video-analytics-64 (both variants, 2 s, 2
replications) is reported; Debian's ``chromium`` opens report.html from a
file:// URL, runs it and dumps the DOM (the page records on ``<body>`` how
many pictures decoded and any script error), then takes a screenshot. The
test asserts the expected sections, figures and verdicts are there, every
picture decoded, nothing was logged to the console (a Content-Security-
Policy violation, i.e. any attempt to reach the network, would be) and the
screenshot is not blank. A measured run (``dgsim hil run``, real models)
is reported too, where onnxruntime and shared memory are available.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import app

pytestmark = pytest.mark.slow  # simulates a results folder first; the browser test too

REPO = Path(__file__).resolve().parents[1]
TINY = ["--duration", "2 s", "--set", "run.replications=2", "-j", "1"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
BROWSER = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=15000"]


def dgsim(*args):
    return CliRunner().invoke(app, [*map(str, args)])


class _Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    done = dgsim("run", "video-analytics-64", *TINY, "--out", out)
    assert done.exit_code == 0, done.output
    done = dgsim("report", out)
    assert done.exit_code == 0, done.output
    assert (out / "report.html").exists()
    return out


def test_page_is_self_contained(simulated):
    html = (simulated / "report.html").read_text()
    assert not re.findall(r"""(?:src|href)\s*=\s*['"](?!data:|#)""", html)  # nothing to fetch
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    page = elements(html)
    pictures = page.find("img")
    assert pictures and all(p["src"].startswith("data:image/png;base64,") for p in pictures)


def test_page_has_every_variants_sections(simulated):
    page = elements((simulated / "report.html").read_text())
    for variant in ("cpu-path", "dpu-offload"):
        assert page.find("section", id=f"variant-{variant}")
    assert page.find("section", id="overview")
    for kind in ("cdf-all", "shares"):
        assert len(page.find("figure", **{"data-plot": kind})) == 1
    for kind in ("cdf", "breakdown", "occupancy", "batches"):
        assert len(page.find("figure", **{"data-plot": kind})) == 2, kind
    assert len(page.find("table", **{"class": "verdicts"})) == 2
    assert len(page.find("details")) == 2  # the scenario as run


def test_page_states_verdicts_and_the_scenario_as_run(simulated):
    html = (simulated / "report.html").read_text()
    assert re.search(r"class='(PASS|FAIL|INCONCLUSIVE)'>(PASS|FAIL|INCONCLUSIVE)<", html)
    assert "latency p99" in html and "&lt;= 100" in html  # the scenario's p99 budget
    assert "name: video-analytics-64" in html  # resolved YAML
    timeseries = (simulated / "timeseries").is_dir()
    assert ("Sampled during the run" in html) == timeseries
    assert ("has no time series" in html) == (not timeseries)


@pytest.fixture(scope="module")
def rendered(simulated, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    url = (simulated / "report.html").resolve().as_uri()
    dom = subprocess.run([CHROMIUM, *BROWSER, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path_factory.mktemp("shot") / "report.png"
    picture = subprocess.run([CHROMIUM, *BROWSER, "--window-size=1280,2400", f"--screenshot={shot}", url],
                             capture_output=True, text=True, timeout=180)
    assert picture.returncode == 0, picture.stderr[-2000:]
    return dom, picture, shot


@needs_chromium
@pytest.mark.slow
def test_browser_renders_every_picture_without_errors(rendered, simulated):
    dom, picture, _ = rendered
    page = elements(dom.stdout)
    body = page.find("body")[0]
    assert body.get("data-rendered") == "yes"  # the load event ran
    assert "data-errors" not in body, body["data-errors"]
    expected = len(elements((simulated / "report.html").read_text()).find("img"))
    assert int(body["data-images"]) == expected >= 10
    assert int(body["data-images-decoded"]) == expected  # every PNG decoded
    for stderr in (dom.stderr, picture.stderr):
        console = [line for line in stderr.splitlines() if ":CONSOLE" in line]
        assert not console, console  # no script error, no blocked request


@needs_chromium
@pytest.mark.slow
def test_screenshot_shows_a_page(rendered):
    import matplotlib.image

    _, _, shot = rendered
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels[..., :3].std() > 0.05  # text and plots, not a blank page
    # the top of the page is the title on white, further down the plots add colour
    colourful = (abs(pixels[..., 0] - pixels[..., 2]) > 0.2).mean()
    assert colourful > 0.002


def test_recorded_time_series_agree_with_the_runs_own_accounting(tmp_path):
    """The sampler, attached as system.py attaches it, against the devices' exact busy-time integrals."""
    from sim.model import timeseries
    from sim.model.device import Window
    from sim.model.engine import Engine
    from sim.model.system import _State
    from sim.plan import compile_plan
    from sim.scenario.builtin import scenario_path
    from sim.scenario.load import load_scenario_file
    from sim.workload import generate_arrivals

    scenario_file = load_scenario_file(scenario_path("video-analytics-64"), ["run.duration=2 s"])
    scenario = scenario_file.resolve("cpu-path")
    plan = compile_plan(scenario, base_dir=scenario_file.path.parent)
    run = scenario.run
    env = Engine()
    window = Window(run.warmup, run.duration)
    state = _State(plan, generate_arrivals(scenario.workload, run.duration, run.seed, 0, plan.base_dir), env, window,
                   run.seed, 0)
    state.schedule_next_arrival()
    horizon = run.duration + run.drain
    sampler = timeseries.attach(env, state.devices, state.channels_by_link, window, 0.001, until=horizon)
    env.run(until=horizon)
    table = sampler.table(replication=0)
    assert len(sampler.times) == round(horizon / 0.001) + 1
    inside = table[(table["time"] >= window.start) & (table["time"] < window.end)]
    for pool in ("cpu", "gpu"):
        rows = inside[inside["resource"] == pool]
        devices = [d for d in state.devices if d.pool == pool]
        exact = sum(d.busy_time for d in devices) / (sum(d.servers for d in devices) * (window.end - window.start))
        sampled = rows["busy"].sum() / rows["capacity"].sum()
        assert exact > 0.2 and abs(sampled - exact) < 0.03, (pool, sampled, exact)
    pcie = inside[inside["resource"] == "pcie"]
    assert pcie["in_flight"].max() >= 1 and pcie["bytes"].sum() > 0
    assert set(table["kind"].astype(str)) == {"pool", "link"}
    path = timeseries.write_timeseries(tmp_path, "cpu-path", table)
    assert path == tmp_path / "timeseries" / "cpu-path.parquet"
    back = timeseries.read_timeseries(tmp_path, "cpu-path")
    assert back.equals(table)
    assert path.stat().st_size < 200_000  # 2,000 samples x 7 resources stay small


def test_a_run_kept_without_request_tables_is_still_reported(tmp_path):
    out = tmp_path / "none"
    done = dgsim("run", "video-analytics-64", *TINY, "--variant", "cpu-path", "--records", "none", "--out", out)
    assert done.exit_code == 0, done.output
    done = dgsim("report", out)
    assert done.exit_code == 0, done.output
    html = (out / "report.html").read_text()
    assert "No per-request table" in html and "class='verdicts'" in html and "name: video-analytics-64" in html
    done = dgsim("trace", out, "--variant", "cpu-path", "--window", "1s:2s")
    assert done.exit_code == 2 and "--records" in done.output


def test_report_of_a_missing_folder_exits_2(tmp_path):
    done = dgsim("report", tmp_path / "nothing")
    assert done.exit_code == 2 and "no such results folder" in done.output


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime", reason="the harness needs onnxruntime (pip install -e '.[hil]')")
    from hil.transports import available_channel_kinds

    if "shm" not in available_channel_kinds():
        pytest.skip("no POSIX shared memory here")
    import typer

    from hil.cli import register

    harness = typer.Typer()
    harness.callback()(lambda: None)
    register(harness)
    out = tmp_path_factory.mktemp("measured") / "run"
    done = CliRunner().invoke(harness, [str(a) for a in ("hil", "run", REPO / "scenarios" / "video-analytics-64.yaml", "--variant", "dpu-offload",
                 "--scale", "0.02", "--warmup", "0.5 s", "--min-requests", "20", "--set",
                 f"hil.cache={REPO / '.dgsim-cache'}", "--set", "hil.frames.count=16", "--transport", "shm",
                 "--duration", "3 s", "--out", out)])
    if done.exit_code != 0 and not (out / "summary.json").exists():
        raise AssertionError(done.output)
    return out


@pytest.mark.slow
def test_measured_results_are_reported_and_traced(measured):
    done = dgsim("report", measured)
    assert done.exit_code == 0, done.output
    html = (measured / "report.html").read_text()
    assert "Measured results" in html and "harness records no time series" in html
    page = elements(html)
    assert page.find("section", id="variant-dpu-offload")
    assert page.find("figure", **{"data-plot": "occupancy"})  # rebuilt from the request table
    done = dgsim("trace", measured, "--window", "0s:3s", "--out", measured / "t.json")
    assert done.exit_code == 0, done.output
    assert "slices" in done.output
