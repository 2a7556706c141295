"""`mechmem train`: parse flags into a `TrainConfig` (over an optional preset) and run it."""

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint
from ..data import OPERATIONS
from ..seeding import SEEDINGS
from ..train.config import DEVICES, LOSSES, OPTIMIZERS, TrainConfig
from ..train.loop import TrainingInterrupted, resume, train
from ..train.presets import PRESETS, preset

# flag dest -> TrainConfig field, for every flag that sets a config field.
_FIELDS = (
    "op", "p", "train_frac", "corrupt_frac", "corruption", "width", "act", "bias", "dropout",
    "dropout_site", "norm", "loss", "optimizer", "lr", "weight_decay", "batch_size", "steps",
    "seed", "seeding", "eval_every", "snapshot_every", "name", "device",
)


def _batch_size(text: str) -> int | str:
    if text == "full":
        return "full"
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be 'full' or a positive integer, got {text!r}")
    return int(text)


def _snapshot_every(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (0 for none), got {text!r}")
    return int(text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the paper's MLP on corrupted modular arithmetic",
        description="Train a network and write its checkpoint. Defaults are the paper's "
        "(p 97, addition, width 500, x^2, full-batch AdamW lr 0.01, MSE, 2000 steps); a "
        "--preset sets one of the paper's named runs and explicit flags override it.",
    )
    p.add_argument("--preset", choices=list(PRESETS), help="start from a named run of the paper")
    task = p.add_argument_group("task")
    task.add_argument("--op", choices=list(OPERATIONS))
    task.add_argument("--p", type=int, metavar="P", help="modulus (default 97)")
    task.add_argument("--train-frac", type=float, metavar="ALPHA",
                      help="fraction of all pairs used for training (default 0.5)")
    task.add_argument("--corrupt-frac", type=float, metavar="XI",
                      help="fraction of training labels replaced at random (default 0)")
    task.add_argument("--corruption", choices=["uniform", "exclude_true"])
    model = p.add_argument_group("model")
    model.add_argument("--width", type=int, help="hidden neurons N (default 500)")
    model.add_argument("--act", choices=["quad", "relu", "gelu"])
    model.add_argument("--bias", action="store_true", default=None, help="biases on both layers")
    model.add_argument("--dropout", type=float, help="dropout probability (default 0)")
    model.add_argument("--dropout-site", choices=["pre", "post"])
    model.add_argument("--norm", choices=["none", "batchnorm", "layernorm"])
    opt = p.add_argument_group("optimization")
    opt.add_argument("--loss", choices=list(LOSSES))
    opt.add_argument("--optimizer", choices=list(OPTIMIZERS))
    opt.add_argument("--lr", type=float, help="learning rate (default 0.01)")
    opt.add_argument("--weight-decay", type=float, help="weight decay (default 0)")
    opt.add_argument("--batch-size", type=_batch_size, metavar="full|N")
    opt.add_argument("--paper-minibatch-rule", action="store_true",
                     help="scale steps by 256/bs and lr by sqrt(bs/256), as the paper does")
    opt.add_argument("--steps", type=int, help="optimizer steps (default 2000)")
    opt.add_argument("--seed", type=int, help="seeds data, init, batches, dropout (default 0)")
    opt.add_argument("--seeding", choices=list(SEEDINGS),
                     help="mechmem's own random streams (default) or the paper code's: with "
                     "--seed 0, the authors' exact split, labels, init and batch order")
    run = p.add_argument_group("recording and output")
    run.add_argument("--eval-every", type=int, help="history interval in steps (default 20)")
    run.add_argument("--snapshot-every", type=_snapshot_every, metavar="K",
                     help="store U, V, W every K steps, 0 for none (default 200)")
    run.add_argument("--name", help="free-text run name stored in the checkpoint")
    run.add_argument("--device", choices=list(DEVICES))
    run.add_argument("-o", "--out", help="checkpoint path (default runs/<name>.pt)")
    run.add_argument("--force", action="store_true", help="overwrite an existing --out")
    run.add_argument("--checkpoint-every", type=int, metavar="K",
                     help="also write the checkpoint every K steps (atomically)")
    run.add_argument("--resume", metavar="CKPT",
                     help="continue an interrupted run in CKPT (only --steps may change)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(handler=run_command)


def _config(args: argparse.Namespace) -> TrainConfig:
    given: dict[str, Any] = {f: getattr(args, f) for f in _FIELDS if getattr(args, f) is not None}
    if args.snapshot_every == 0:  # the flag's "none"; the config says None
        given["snapshot_every"] = None
    config = preset(args.preset, **given) if args.preset else TrainConfig(**given)
    if args.paper_minibatch_rule:
        if config.batch_size == "full":
            raise ValueError("--paper-minibatch-rule needs an integer --batch-size.")
        config = config.with_paper_minibatch_rule(config.batch_size)
    return config


def _default_out(config: TrainConfig, preset_name: str | None) -> Path:
    stem = config.name or preset_name or "default"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "run"
    folder = Path("runs")
    folder.mkdir(exist_ok=True)
    return folder / f"{stem}.pt"


def run_command(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        if args.resume:
            changed = [f for f in _FIELDS if f != "steps" and getattr(args, f) is not None]
            if changed or args.preset or args.paper_minibatch_rule:
                names = ", ".join("--" + f.replace("_", "-") for f in changed) or "--preset"
                raise ValueError(f"--resume continues a run as configured; {names} cannot "
                                 "change (only --steps can, to extend it).")
            ckpt = resume(args.resume, steps=args.steps, out=args.out, overwrite=args.force,
                          checkpoint_every=args.checkpoint_every, progress=not args.quiet)
        else:
            config = _config(args)
            out = Path(args.out) if args.out else _default_out(config, args.preset)
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
