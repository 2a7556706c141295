"""The report in a real browser: headless Chromium opens it from file:// with the network cut off.

Needs Debian's chromium at /usr/bin/chromium (CI installs it); without it these tests fail with
a message saying so, never skip. Playwright drives that binary; it never downloads a browser.
"""

import math
import os
import time
from pathlib import Path

import pytest
import torch

from mechmem import DatasetSpec, HookedMLP, MLPConfig, TrainConfig, analyze, make_dataset, train

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking"]
HOSTILE_NAME = "<script>window.__pwned = 1; alert('name')</script>"
HOSTILE_CONFIG = "<img src=x onerror=\"window.__pwned = 2; alert('img')\">"


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is missing at {CHROMIUM}: the browser tests need Debian's "
                    "package (`apt-get install -y chromium`; .ci/test installs it).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two real reports: a tiny trained run with hostile strings, and a model built in Python."""
    folder = tmp_path_factory.mktemp("browser")
    config = TrainConfig(p=23, width=64, train_frac=0.6, corrupt_frac=0.3, weight_decay=5.0,
                         steps=200, eval_every=10, snapshot_every=100, name=HOSTILE_NAME,
                         device="cpu")
    ckpt = train(config)
    from mechmem.checkpoint import replace

    ckpt = replace(ckpt, train_config={**ckpt.train_config, "hostile": HOSTILE_CONFIG})
    trained = analyze(ckpt).to_html(folder / "trained.html")
    ds = make_dataset(DatasetSpec(p=23, train_frac=0.6, corrupt_frac=0.2, seed=1))
    model = HookedMLP(MLPConfig(p=23, width=32, norm="batchnorm"), seed=1)
    built = analyze(model, ds).to_html(folder / "built.html")
    dead = HookedMLP(MLPConfig(p=23, width=16), seed=1)
    with torch.no_grad():
        dead.U.zero_()
        dead.W[:, 5] = math.inf
    dead_path = analyze(dead, ds).to_html(folder / "dead.html")
    tf = train(TrainConfig(model="transformer", p=23, d_model=32, n_heads=4, width=64,
                           corrupt_frac=0.2, steps=40, eval_every=10, snapshot_every=20,
                           device="cpu"))
    transformer = analyze(tf).to_html(folder / "transformer.html")
    return trained, built, dead_path, transformer


class Visit:
    """Open `path` from file://, aborting and recording every other request."""

    def __init__(self, browser, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.console: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.blocked: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.route("**/*", self._route)
        self.page.goto(path.resolve().as_uri())
        self.n_figures = self._wait_for_plots()

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _route(self, route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def _wait_for_plots(self, timeout: float = 30.0) -> int:
        # Polled from Python: the page's Content-Security-Policy forbids the string evaluation
        # that Playwright's wait_for_function would use.
        count = """() => {
            const divs = Array.from(document.querySelectorAll("div.plot"));
            const drawn = divs.filter(d => d.classList.contains("js-plotly-plot")
                                           && d.querySelector("svg.main-svg") !== null);
            return [divs.length, drawn.length];
        }"""
        deadline = time.monotonic() + timeout
        while True:
            total, drawn = self.page.evaluate(count)
            if total == drawn or time.monotonic() > deadline:
                assert total == drawn, f"plotly drew {drawn} of {total} figures"
                return total
            time.sleep(0.1)

    def problems(self) -> list[str]:
        bad = [c for c in self.console if c.startswith(("error", "warning"))]
        return bad + self.errors + [f"dialog: {d}" for d in self.dialogs] + [
            f"network: {u}" for u in self.blocked]


def test_trained_report_renders_every_figure_offline(browser, reports):
    visit = Visit(browser, reports[0])
    assert visit.n_figures == 14  # with the per-example margins and memorized examples x neurons
    page = visit.page
    # Each figure has a real plot area with drawn traces, not just an empty frame.
    drawn = page.evaluate("""() => Array.from(document.querySelectorAll("div.plot")).map(
        d => d.querySelectorAll("g.trace, g.hm, image").length)""")
    assert all(n > 0 for n in drawn), drawn
    visit.page.wait_for_timeout(300)  # let any late console message or request arrive
    assert visit.problems() == []
    page.close()


def test_hostile_strings_show_as_text_and_run_nothing(browser, reports):
    visit = Visit(browser, reports[0])
    page = visit.page
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator(".run-name").inner_text() == HOSTILE_NAME
    assert page.title() == f"mechmem report: {HOSTILE_NAME}"
    assert page.get_by_text(HOSTILE_CONFIG, exact=True).count() == 1
    assert page.locator("img").count() == 0  # the injected <img> was never built
    assert page.locator("script").count() == 4  # only the page's own scripts
    visit.page.wait_for_timeout(300)
    assert visit.problems() == []
    page.close()


def test_model_without_history_renders_and_says_so(browser, reports):
    visit = Visit(browser, reports[1])
    page = visit.page
    # no training curves; BatchNorm figure present; per-example margins and examples x neurons
    assert visit.n_figures == 10
    assert "no training history" in page.locator("#missing-training").inner_text()
    assert page.locator("#fig-batchnorm svg.main-svg").count() > 0
    assert visit.problems() == []
    page.close()


def test_model_with_dead_neurons_renders_without_errors(browser, reports):
    visit = Visit(browser, reports[2])
    assert visit.n_figures == 4  # IPR histogram, spectra, pruning, logits; the rest say why not
    # training, progress measures (an MLP has none), most periodic, frequencies, BatchNorm,
    # per-example margins (none finite)
    assert visit.page.locator("p.missing").count() == 6
    assert visit.problems() == []
    visit.page.close()


def test_transformer_report_draws_what_applies_and_says_what_does_not(browser, reports):
    visit = Visit(browser, reports[3])
    page = visit.page
    # training (4), periodic neurons, progress measures, IPR histogram, key frequencies,
    # embedding IPR, pruning, logits, per-example margins, memorized examples x neurons
    assert visit.n_figures == 13
    assert page.locator("#fig-progress svg.main-svg").count() > 0
    assert page.locator("#fig-site-ipr svg.main-svg").count() > 0
    assert page.locator("#fig-frequencies svg.main-svg").count() > 0
    missing = page.locator("p.missing").all_inner_texts()
    assert len(missing) == 3 and all("no weights that read both" in m or "BatchNorm" in m
                                     for m in missing)
    assert visit.problems() == []
    page.close()


def test_full_page_screenshot(browser, reports, tmp_path):
    visit = Visit(browser, reports[0])
    shot = tmp_path / "report.png"
    visit.page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height = int.from_bytes(data[20:24], "big")  # IHDR: the page is laid out, figures included
    assert height > 3000, height
    visit.page.close()
