"""The sweep report in a real browser: headless Chromium opens it from file:// with the network
cut off (the set-up of tests/test_report_browser.py, whose `Visit` this module reuses).

Needs Debian's chromium at /usr/bin/chromium; without it these tests fail with a message saying
so, never skip.
"""

import os
import shutil

import pytest
from test_report_browser import CHROMIUM, LAUNCH_ARGS, Visit

from mechmem import TrainConfig
from mechmem.analysis.phase import PHASES
from mechmem.report import PHASE_COLOURS, write_sweep_report
from mechmem.sweep import SweepConfig, load_sweep, sweep

pytestmark = pytest.mark.usefixtures("one_thread")

HOSTILE_NAME = "<script>window.__pwned = 1; alert('name')</script>"
LABELS = ["Generalization (xi = 0)", "Coexistence", "Partial inversion", "Full inversion",
          "Memorization", "Forgetting", "Confusion"]


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
def pages(tmp_path_factory, one_thread):
    """Reports of a tiny real sweep with a hostile name, finished and with 4 cells missing."""
    folder = tmp_path_factory.mktemp("sweep-browser")
    config = SweepConfig(TrainConfig(p=17, width=32, steps=60, eval_every=20,
                                     snapshot_every=None, device="cpu"),
                         axes=(("weight_decay", (0.0, 1.0)), ("corrupt_frac", (0.0, 0.3)),
                               ("train_frac", (0.4, 0.8))), name=HOSTILE_NAME)
    done = sweep(config, out=folder / "grid")
    finished = write_sweep_report(done, folder / "finished.html")
    shutil.copytree(folder / "grid", folder / "part")
    lines = (folder / "part" / "cells.jsonl").read_text().splitlines(keepends=True)
    (folder / "part" / "cells.jsonl").write_text("".join(lines[:-4]))
    part = write_sweep_report(load_sweep(folder / "part"), folder / "part.html")
    return finished, part, done


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_sweep_report_draws_every_figure_offline(browser, pages):
    visit = Visit(browser, pages[0])
    page = visit.page
    assert visit.n_figures == 4
    # One heatmap per panel, drawn as an image, in each figure.
    drawn = page.evaluate("""() => Array.from(document.querySelectorAll("div.plot")).map(
        d => d.querySelectorAll("g.hm image").length)""")
    assert drawn == [2, 2, 2, 2], drawn
    page.wait_for_timeout(300)  # let any late console message or request arrive
    assert visit.problems() == []
    page.close()


def test_phase_legend_shows_every_phase_in_its_colour(browser, pages):
    visit = Visit(browser, pages[0])
    legend = visit.page.evaluate("""() => Array.from(
        document.querySelectorAll("#fig-phase-diagram g.legend g.traces")).map(g => [
            g.querySelector("text.legendtext").textContent,
            g.querySelector("path.scatterpts").style.fill])""")
    assert legend == [[label, _rgb(PHASE_COLOURS[p])] for label, p in zip(LABELS, PHASES,
                                                                          strict=True)]
    titles = visit.page.evaluate("""() => Array.from(
        document.querySelectorAll("#fig-phase-diagram g.annotation")).map(g => g.textContent)""")
    assert titles == ["weight_decay = 0.0", "weight_decay = 1.0"]
    visit.page.close()


def test_hovering_a_cell_shows_its_settings_phase_and_numbers(browser, pages):
    visit = Visit(browser, pages[0])
    page = visit.page
    page.locator("#fig-phase-diagram").scroll_into_view_if_needed()
    # The second panel's plot area; its bottom-left cell is alpha 0.4, xi 0 (y points up).
    box = page.locator("#fig-phase-diagram .nsewdrag").nth(1).bounding_box()
    page.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + 0.75 * box["height"])
    page.wait_for_timeout(300)
    lines = page.evaluate("""() => Array.from(document.querySelectorAll(
        "#fig-phase-diagram g.hovertext tspan.line")).map(t => t.textContent)""")
    cell = pages[2].cell(weight_decay=1.0, corrupt_frac=0.0, train_frac=0.4)
    acc = cell["accuracy"]
    assert lines == ["weight_decay 1.0", "alpha 0.4", "xi 0.0",
                     f"phase {LABELS[PHASES.index(cell['phase'])]}",
                     f"train {100 * acc['train']:.1f}%, test {100 * acc['test']:.1f}%",
                     f"mean IPR {cell['ipr']['mean']:.3f}"]
    assert visit.problems() == []
    page.close()


def test_hostile_sweep_name_shows_as_text_and_runs_nothing(browser, pages):
    visit = Visit(browser, pages[0])
    page = visit.page
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator(".run-name").inner_text() == HOSTILE_NAME
    assert page.title() == f"mechmem sweep report: {HOSTILE_NAME}"
    assert page.locator("script").count() == 4  # only the page's own scripts
    page.wait_for_timeout(300)
    assert visit.problems() == []
    page.close()


def test_unfinished_sweep_renders_and_says_so(browser, pages):
    visit = Visit(browser, pages[1])
    page = visit.page
    assert visit.n_figures == 4
    assert page.locator("#missing-cells").inner_text().startswith(
        "4 of 8 cells are not finished yet")
    assert visit.problems() == []
    page.close()
