"""`mechmem report CKPT`: analyse a checkpoint and write its self-contained HTML report."""

import argparse
from pathlib import Path

from .._files import check_destination


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a checkpoint's HTML report",
                       description="Analyse a checkpoint and write one self-contained HTML page "
                                   "(plotly.js inlined; it loads nothing from the network).")
    p.add_argument("checkpoint", help="path to a .pt file written by mechmem")
    p.add_argument("-o", "--out", metavar="OUT.html",
                   help="where to write the report (default: next to the checkpoint, .html)")
    p.add_argument("--force", action="store_true", help="replace an existing report file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else checkpoint.with_suffix(".html")
    if out.resolve() == checkpoint.resolve():
        raise ValueError(
            f"The report would replace the checkpoint {checkpoint}; choose another -o."
        )
    # Fail before the (slower) analysis when the answer is already known.
    check_destination(out, overwrite=args.force, what="report")
    from .. import analyze
    from ..report import write_report

    path = write_report(analyze(checkpoint), out, overwrite=args.force)
    print(path)
    return 0
