"""`mechmem analyze CKPT`: run every analyzer on a checkpoint and print the summary or JSON."""

import argparse
import json
from typing import Any

from ..analysis import analyze
from ..analysis.progress import DEFINITIONS
from ._flags import add_threads_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyse a checkpoint: phase, IPR, neuron classes, pruning curves",
        description="Run every analyzer on a checkpoint and print a summary (or --json).",
    )
    p.add_argument("checkpoint", help="path to a .pt file written by mechmem, or a "
                   "TransformerLens model file (docs/transformer-lens.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--threshold", type=float, default=None,
                   help="IPR threshold between memorizing and generalizing neurons "
                        "(default: found from the IPR distribution)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random pruning order")
    add_progress_flag(p)
    add_trust_flag(p)
    add_threads_flag(p)
    p.set_defaults(handler=run)


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress-definition", choices=DEFINITIONS, default="logits",
                   help="the progress measures' definition: logits (mechmem's: logits "
                        "restricted, on the training set) or mlp (TransformerLens's grokking "
                        "demo's: MLP activations restricted, restricted loss on the test set); "
                        "docs/analyzers.md")


def add_trust_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-pickled-code", action="store_true",
                   help="also open a TransformerLens file that pickles its config object "
                        "(as TransformerLens's grokking demo saves it); the file may pickle "
                        "nothing else (see docs/transformer-lens.md), so only for files you "
                        "trust")


def load_source(path: str, trust_pickled_code: bool) -> Any:
    """The checkpoint or TransformerLens run at `path`."""
    from ..interop._files import load_any  # a TransformerLens file needs transformer-lens

    return load_any(path, trust_pickled_code=trust_pickled_code)


def run(args: argparse.Namespace) -> int:
    source = load_source(args.checkpoint, args.trust_pickled_code)
    result = analyze(source, seed=args.seed, threshold=args.threshold,
                     progress_definition=args.progress_definition)
    if args.json:
        print(json.dumps(result.to_json_dict(), allow_nan=False))
    else:
        print(result.summary())
    return 0
