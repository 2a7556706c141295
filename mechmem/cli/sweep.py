"""`mechmem sweep`: parse flags (each a value, a comma list or start:stop:count) into a
`SweepConfig`, over an optional preset, and run it into a sweep folder."""

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from ..sweep.config import SweepConfig
from ..sweep.partial import SAVE_EVERY
from ..sweep.presets import GRIDS, SWEEP_PRESETS, sweep_preset
from ..sweep.result import SweepResult
from ..sweep.run import SweepInterrupted, sweep
from ..train.config import TrainConfig
from ._flags import add_config_flags, add_threads_flag, default_path, given


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="train a grid of runs and record each cell's phase",
        description="Train every combination of the given values, many runs at a time, into "
        "a resumable sweep folder. Every `mechmem train` flag also takes a comma list "
        "(--weight-decay 0,5,15,20) or start:stop:count (--train-frac 0.1:0.9:17); a flag "
        "with several values is an axis of the grid. A --preset is one of the paper's phase "
        "diagrams; explicit flags override it (a flag naming a preset axis replaces its "
        "values). Then: mechmem report DIR.",
    )
    p.add_argument("--preset", choices=list(SWEEP_PRESETS),
                   help="one of the paper's phase diagrams: " + "; ".join(
                       f"{k}: {v[0]}" for k, v in SWEEP_PRESETS.items()))
    p.add_argument("--grid", choices=list(GRIDS), default="appendix",
                   help="a preset's alpha x xi grid: the paper's App. A (17 x 19, default) or "
                   "the authors' scripts (17 x 17, their seeding)")
    groups = add_config_flags(p, lists=True)
    groups["optimization"].add_argument(
        "--paper-minibatch-rule", action="store_true",
        help="cells with an integer batch size get steps x 256/bs and lr x sqrt(bs/256)")
    run = groups["recording and output"]
    run.add_argument("--name", help="free-text sweep name")
    run.add_argument("-o", "--out", metavar="DIR",
                     help="sweep folder (default sweeps/<preset or name>)")
    run.add_argument("--resume", metavar="DIR",
                     help="continue an interrupted sweep in DIR (trains only missing chunks)")
    run.add_argument("--force", action="store_true", help="replace an existing sweep in --out")
    run.add_argument("--save-weights", action="store_true",
                     help="keep every cell's final weights (one file per chunk)")
    run.add_argument("--chunk-size", type=int, metavar="M",
                     help="at most M runs train together (default: as many as fit in memory)")
    run.add_argument("--chunk-save-every", type=float, metavar="SECONDS",
                     help="a chunk in training saves its state into the folder this often "
                     "(default 120), so --resume of an interrupted sweep continues it there")
    run.add_argument("--backend", choices=["local", "ray"], default="local",
                     help="local: chunks one after another here (default); ray: each chunk a "
                     "Ray task (pip install \"mechmem[ray]\"; see docs/scaling.md)")
    run.add_argument("--address", metavar="ADDRESS",
                     help="with --backend ray: join this cluster (auto or host:port) and leave it "
                     "running; default: start a local Ray instance for the sweep")
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    run.add_argument("--plan", action="store_true",
                     help="print the plan (cells, chunks, model-steps) and its time estimated "
                     "from a short warm-up on this device, then stop; writes nothing")
    add_threads_flag(run)
    p.set_defaults(handler=run_command)


def _config(args: argparse.Namespace) -> SweepConfig:
    fields = given(args)
    name = fields.pop("name", None)
    bias = fields.pop("bias", None)
    if args.preset:
        pre = sweep_preset(args.preset, grid=args.grid)
        base = pre.base.to_dict()
        axes = dict(pre.axes)
        rule = pre.paper_minibatch_rule or args.paper_minibatch_rule
    else:
        base, axes, rule = TrainConfig(snapshot_every=None).to_dict(), {}, (
            args.paper_minibatch_rule)
    for field, values in fields.items():
        if len(values) == 1 and field not in axes:
            base[field] = values[0]
        else:
            axes[field] = values
    if bias is not None:
        base["bias"] = bias
    base["betas"] = tuple(base["betas"])
    chunk = args.chunk_size
    return SweepConfig(TrainConfig(**base), axes=tuple(axes.items()), paper_minibatch_rule=rule,
                       name=name or (pre.name if args.preset else ""), chunk_size=chunk)


def run_command(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ValueError(f"--chunk-size must be a positive integer, got {args.chunk_size}.")
    save_every = SAVE_EVERY if args.chunk_save_every is None else args.chunk_save_every
    try:
        if args.resume:
            changed = [f for f in given(args) if f != "device"]
            others = [name for name, on in (
                ("--preset", args.preset), ("--out", args.out), ("--force", args.force),
                ("--chunk-size", args.chunk_size), ("--grid", args.grid != "appendix"),
                ("--paper-minibatch-rule", args.paper_minibatch_rule))
                if on]
            if changed or others:
                names = ", ".join(["--" + f.replace("_", "-") for f in changed] + others)
                raise ValueError(f"--resume continues a sweep as configured; {names} cannot "
                                 "be given with it (only --device, --quiet, --save-weights, "
                                 "--chunk-save-every, --backend, --address).")
            config = None
            device: Any = given(args).get("device")
            out = Path(args.resume)
            if device is not None:
                from ..sweep.folder import read_header

                stored = SweepConfig.from_dict(read_header(out)["config"])
                config = dataclasses.replace(stored, base=stored.base.replace(device=device[0]))
            result = sweep(config, out=out, resume=True, save_weights=args.save_weights,
                           progress=not args.quiet, backend=args.backend, address=args.address,
                           save_every=save_every)
        elif args.plan:
            return _plan(_config(args))
        else:
            config = _config(args)
            out = Path(args.out) if args.out else default_path(
                "sweeps", args.name or args.preset or "sweep")
            result = sweep(config, out=out, overwrite=args.force,
                           save_weights=args.save_weights, progress=not args.quiet,
                           backend=args.backend, address=args.address, save_every=save_every)
    except SweepInterrupted as e:
        sys.stderr.write(f"mechmem sweep: interrupted with {e.done} of {e.total} cells done; "
                         f"finished chunks and the state of the chunk in training are in "
                         f"{e.path}; continue with: mechmem sweep "
                         f"--resume {e.path}\n")
        return 130
    if not args.quiet:
        _summary(result, time.perf_counter() - start)
    return 0


def _plan(config: SweepConfig) -> int:
    from ..sweep.estimate import estimate_plan
    from ..sweep.plan import plan_chunks
    from ..train.group import resolve_device

    cells = config.cells()
    device = resolve_device(config.base.device)
    chunks = plan_chunks(cells, device, config.chunk_size)
    print(estimate_plan(cells, chunks, chunks, device).describe())
    return 0


def _summary(result: SweepResult, seconds: float) -> None:
    phases = ", ".join(f"{k} {v}" for k, v in result.phase_counts().items())
    print(f"wrote {result.path}: {len(result.cells)} cells ({phases}) in {seconds:.1f} s; "
          f"mechmem report {result.path}")
