"""`mechmem analyze CKPT`: run every analyzer on a checkpoint and print the summary or JSON."""

import argparse
import json

from ..analysis import analyze


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyse a checkpoint: phase, IPR, neuron classes, pruning curves",
        description="Run every analyzer on a checkpoint and print a summary (or --json).",
    )
    p.add_argument("checkpoint", help="path to a .pt file written by mechmem")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--threshold", type=float, default=None,
                   help="IPR threshold between memorizing and generalizing neurons "
                        "(default: found from the IPR distribution)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random pruning order")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    result = analyze(args.checkpoint, seed=args.seed, threshold=args.threshold)
    if args.json:
        print(json.dumps(result.to_json_dict(), allow_nan=False))
    else:
        print(result.summary())
    return 0
