"""`mechmem memorization`: counterfactual memorization of every training example of a run."""

import argparse
import csv
from pathlib import Path

from ..memorization import memorization
from ..train.config import TrainConfig
from ..train.presets import PRESETS, preset
from ._flags import add_config_flags, default_path, given


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "memorization", help="counterfactual memorization of each training example",
        description="Train K models of one run, each on a random half of its training set "
        "(many at a time), and score every training example: P(predicted | in the half) - "
        "P(predicted | held out). The run's flags are those of `mechmem train`.")
    p.add_argument("--preset", choices=list(PRESETS), help="start from a named run of the paper")
    add_config_flags(p, lists=False)
    p.add_argument("--models", type=int, default=64, metavar="K",
                   help="models, each on its own random half (default 64)")
    p.add_argument("--subset", type=float, default=0.5, metavar="F",
                   help="fraction of the training set each model trains on (default 0.5)")
    p.add_argument("--chunk", type=int, metavar="M", help="models trained together (default: "
                   "as many as fit)")
    p.add_argument("-o", "--out", help="folder keeping finished chunks (default "
                   "runs/<name>-memorization)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--force", action="store_true", help="replace a run in --out")
    p.add_argument("--csv", metavar="PATH", help="also write each example's scores as CSV")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    fields = given(args)
    config = preset(args.preset, **fields) if args.preset else TrainConfig(**fields)
    out = Path(args.out) if args.out else default_path(
        "runs", (config.name or args.preset or "default") + "-memorization")
    res = memorization(config, models=args.models, subset=args.subset, out=out, resume=args.resume,
                       overwrite=args.force, chunk=args.chunk, progress=not args.quiet)
    if args.csv:
        ds = res.dataset
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["example", "a", "b", "label", "true_label", "memorization", "stderr",
                        "p_in", "p_out", "n_in", "n_out"])
            for i in range(ds.n_train):
                a, b = ds.train_pairs[i].tolist()
                w.writerow([i, a, b, int(ds.train_labels[i]), int(ds.train_true_labels[i]),
                            *(f"{float(x[i]):.6g}" for x in (res.score, res.stderr, res.p_in,
                                                             res.p_out)),
                            int(res.n_in[i]), int(res.n_out[i])])
    if not args.quiet:
        print(f"{res.path}: {res.summary()}")
    return 0
