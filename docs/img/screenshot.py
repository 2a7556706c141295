"""Take docs/img/report.png: a full-page screenshot of a report in headless Chromium.

Uses the same browser set-up as tests/test_report_browser.py (Debian's /usr/bin/chromium driven
by Playwright, network cut off). The README's picture is the report of its main job's run:

    .venv/bin/mechmem train --preset partial-inversion
    .venv/bin/python docs/img/screenshot.py --checkpoint runs/partial-inversion.pt

Without --checkpoint it trains that same run first (the `partial-inversion` preset, about a
minute on a 2-core CPU).

    .venv/bin/python docs/img/screenshot.py [--checkpoint runs/x.pt] [--out docs/img/report.png]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import mechmem
from mechmem import analyze

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _browser import screenshot_pages  # noqa: E402  (benchmarks/_browser.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("report.png"))
    parser.add_argument("--width", type=int, default=1100, help="viewport width in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint is None:
            config = mechmem.train.preset("partial-inversion", device="cpu")
            source = mechmem.train(config, progress=True)
        else:
            source = args.checkpoint
        page_path = analyze(source).to_html(Path(tmp) / "report.html")
        # 3 s more: let plotly draw every figure, not only the first
        screenshot_pages([(page_path, args.out)], width=args.width, wait_ms=3000)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
