"""`mechmem train`: parse flags into a `TrainConfig` (over an optional preset) and run it."""

import argparse
import sys
import time
from pathlib import Path

from ..checkpoint import Checkpoint
from ..train.config import TrainConfig
from ..train.loop import TrainingInterrupted, resume, train
from ..train.presets import PRESETS, preset
from ._flags import add_config_flags, add_threads_flag, default_path, given


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train one of the paper's networks on corrupted modular arithmetic",
        description="Train a network and write its checkpoint. Defaults are the paper's "
        "(p 97, addition, the 2-layer MLP: width 500, x^2, full-batch AdamW lr 0.01, MSE, 2000 "
        "steps; --model transformer: d_model 128, 4 heads, MLP 512, ReLU, lr 0.001, 3000 "
        "steps); a --preset sets one of the paper's named runs and explicit flags override it.",
    )
    p.add_argument("--preset", choices=list(PRESETS), help="start from a named run of the paper")
    groups = add_config_flags(p, lists=False)
    groups["optimization"].add_argument(
        "--paper-minibatch-rule", action="store_true",
        help="scale steps by 256/bs and lr by sqrt(bs/256), as the paper does")
    run = groups["recording and output"]
    run.add_argument("--name", help="free-text run name stored in the checkpoint")
    run.add_argument("-o", "--out", help="checkpoint path (default runs/<name>.pt)")
    run.add_argument("--force", action="store_true", help="overwrite an existing --out")
    run.add_argument("--checkpoint-every", type=int, metavar="K",
                     help="also write the checkpoint every K steps (atomically)")
    run.add_argument("--resume", metavar="CKPT",
                     help="continue an interrupted run in CKPT (only --steps may change)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_threads_flag(run)
    p.set_defaults(handler=run_command)


def _config(args: argparse.Namespace) -> TrainConfig:
    fields = given(args)
    config = preset(args.preset, **fields) if args.preset else TrainConfig(**fields)
    if args.paper_minibatch_rule:
        if config.batch_size == "full":
            raise ValueError("--paper-minibatch-rule needs an integer --batch-size.")
        config = config.with_paper_minibatch_rule(config.batch_size)
    return config


def run_command(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        if args.resume:
            changed = [f for f in given(args) if f != "steps"]
            if changed or args.preset or args.paper_minibatch_rule:
                names = ", ".join("--" + f.replace("_", "-") for f in changed) or "--preset"
                raise ValueError(f"--resume continues a run as configured; {names} cannot "
                                 "change (only --steps can, to extend it).")
            ckpt = resume(args.resume, steps=args.steps, out=args.out, overwrite=args.force,
                          checkpoint_every=args.checkpoint_every, progress=not args.quiet)
        else:
            config = _config(args)
            out = Path(args.out) if args.out else default_path(
                "runs", config.name or args.preset or "default", ".pt")
            ckpt = train(config, out=out, overwrite=args.force,
                         checkpoint_every=args.checkpoint_every, progress=not args.quiet)
    except TrainingInterrupted as e:
        where = e.checkpoint.path
        sys.stderr.write(f"mechmem train: interrupted at step {e.checkpoint.step}; saved to "
                         f"{where}; continue with: mechmem train --resume {where}\n")
        return 130
    if not args.quiet:
        _summary(ckpt, time.perf_counter() - start)
    return 0


def _summary(ckpt: Checkpoint, seconds: float) -> None:
    h = ckpt.history
    last = {k: v[-1] for k, v in h.items() if v}
    accs = "  ".join(f"{k} {last[k]:.3f}" for k in ("train_acc", "test_acc") if k in last)
    print(f"wrote {ckpt.path}: step {ckpt.step}  {accs}  ({seconds:.1f} s)")
