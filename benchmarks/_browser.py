"""PNG images of plotly figures and HTML pages, drawn by Debian's chromium through Playwright.

The images under docs/img come from here (docs/img/screenshot.py, bench_sweep_science.py --image,
reproduce_paper.py): the browser set-up of tests/test_report_browser.py, headless, with every
request other than file:// cut off, so a page draws exactly what it holds.
"""

import tempfile
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking"]


def screenshot_pages(shots: list[tuple[Path, Path]], *, width: int, height: int = 900,
                     full_page: bool = True, wait_ms: int = 0) -> None:
    """Screenshot each (page, png) pair in one browser: the page at `width` x `height`, after
    plotly has drawn its figures (and `wait_ms` more)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            for page_path, png in shots:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://")
                           else r.abort())
                page.goto(Path(page_path).resolve().as_uri())
                page.wait_for_selector(".main-svg")
                page.wait_for_timeout(wait_ms)
                page.screenshot(path=str(png), full_page=full_page)
                page.close()
        finally:
            browser.close()


def figure_pngs(figures: dict[Path, Any], *, width: int = 1000) -> None:
    """Write each figure (a plotly Figure or its plain dict) to its PNG path, `width` pixels
    wide and as tall as its layout's height."""
    import plotly.io as pio

    with tempfile.TemporaryDirectory() as tmp:
        shots = []
        for i, (png, fig) in enumerate(figures.items()):
            page = Path(tmp) / f"figure-{i}.html"
            page.write_text(pio.to_html(fig, include_plotlyjs=True, full_html=True,
                                        config={"displayModeBar": False}))
            shots.append((page, Path(png)))
        screenshot_pages(shots, width=width, height=400)
