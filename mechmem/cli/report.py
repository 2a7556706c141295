"""`mechmem report PATH`: write the self-contained HTML report of a checkpoint or a sweep folder."""

import argparse
from pathlib import Path

from .._files import check_destination
from ._flags import add_threads_flag
from .analyze import add_progress_flag, add_trust_flag, load_source

SWEEP_REPORT = "report.html"  # a sweep folder's report, inside the folder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the HTML report of a checkpoint or a sweep folder",
                       description="Write one self-contained HTML page (plotly.js inlined; it "
                                   "loads nothing from the network): for a checkpoint, the "
                                   "analysis of its network; for a sweep folder (finished or "
                                   "not), its phase diagram and accuracy and IPR heatmaps.")
    p.add_argument("path", metavar="PATH",
                   help="a .pt checkpoint written by mechmem (or a TransformerLens model "
                        "file), or a sweep folder (holding sweep.json) written by mechmem sweep")
    p.add_argument("-o", "--out", metavar="OUT.html",
                   help="where to write the report (default: next to the checkpoint, .html; "
                        f"for a sweep folder, {SWEEP_REPORT} inside it)")
    p.add_argument("--force", action="store_true", help="replace an existing report file")
    add_progress_flag(p)
    add_trust_flag(p)
    add_threads_flag(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    source = Path(args.path)
    if source.is_dir():
        return _sweep_report(source, args)
    out = Path(args.out) if args.out else source.with_suffix(".html")
    if out.resolve() == source.resolve():
        raise ValueError(
            f"The report would replace the checkpoint {source}; choose another -o."
        )
    # Fail before the (slower) analysis when the answer is already known.
    check_destination(out, overwrite=args.force, what="report")
    from .. import analyze
    from ..report import write_report

    analysis = analyze(load_source(str(source), args.trust_pickled_code),
                       progress_definition=args.progress_definition)
    path = write_report(analysis, out, overwrite=args.force)
    print(path)
    return 0


def _sweep_report(folder: Path, args: argparse.Namespace) -> int:
    from ..report import write_sweep_report
    from ..sweep import load_sweep
    from ..sweep.folder import CELLS_FILE, SWEEP_FILE, WEIGHTS_DIR

    result = load_sweep(folder)  # a folder without (or with a damaged) sweep.json stops here
    out = Path(args.out) if args.out else folder / SWEEP_REPORT
    target = out.resolve()
    own = [folder / SWEEP_FILE, folder / CELLS_FILE, folder / WEIGHTS_DIR]
    if any(target == f.resolve() or f.resolve() in target.parents for f in own):
        raise ValueError(f"The report would replace a file of the sweep {folder}; "
                         "choose another -o.")
    path = write_sweep_report(result, out, overwrite=args.force)
    print(path)
    return 0
