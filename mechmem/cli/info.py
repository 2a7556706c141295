"""`mechmem info CKPT`: what a checkpoint holds, its final accuracies and phase, without the
slower analyses."""

import argparse
from typing import Any

from torch import nn

from ..analysis.accuracy import accuracies
from ..analysis.phase import classify_phase
from ..checkpoint import Checkpoint
from ..data import ModularDataset
from ..interop import adapt_model
from .analyze import add_trust_flag, load_source


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show what a checkpoint holds",
                       description="Show a checkpoint's model, dataset and training record, "
                       "its final accuracies and its phase.")
    p.add_argument("checkpoint", help="path to a .pt file written by mechmem, or a "
                   "TransformerLens model file (docs/transformer-lens.md)")
    add_trust_flag(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    ckpt = load_source(args.checkpoint, args.trust_pickled_code)
    if not isinstance(ckpt, Checkpoint):
        return _lens_info(ckpt)
    ds, cfg = ckpt.dataset, ckpt.model.cfg
    print(f"checkpoint  {ckpt.path}")
    if ckpt.name:
        print(f"name        {ckpt.name}")
    extra = (f" d_model={cfg.d_model} heads={cfg.n_heads} layers={cfg.n_layers} init={cfg.init}"
             if ckpt.family == "transformer" else "")
    print(f"model       {ckpt.family} width={cfg.width}{extra} act={cfg.act} norm={cfg.norm}"
          f" dropout={cfg.dropout} bias={cfg.bias}")
    print(f"dataset     op={ds.spec.op} p={ds.p} alpha={ds.spec.train_frac}"
          f" xi={ds.spec.corrupt_frac} seed={ds.spec.seed} seeding={ds.spec.seeding}"
          f" train={ds.n_train} corrupted={ds.n_corrupted}")
    print(f"step        {ckpt.step}")
    if ckpt.history:
        print(f"history     {len(ckpt.history.get('step', []))} evaluations:"
              f" {', '.join(ckpt.history)}")
    if ckpt.snapshots:
        print(f"snapshots   {len(ckpt.snapshots.get('step', []))}")
    _outcome(ckpt.model, ds, ckpt.history)
    return 0


def _outcome(model: nn.Module, ds: ModularDataset, history: Any) -> None:
    """The final accuracies and the phase they make (a non-finite output counts as wrong, so
    both are always defined)."""
    acc = accuracies(model, ds)
    parts = [("train", acc.train), ("test", acc.test)]
    if ds.n_corrupted:
        parts += [("corrupted memorized", acc.corrupted_memorized),
                  ("corrupted true", acc.corrupted_true)]
    print("accuracy    " + "  ".join(f"{k} {v:.1%}" for k, v in parts))
    phase = classify_phase(acc, ds.spec.corrupt_frac, history)
    print(f"phase       {phase.phase} ({phase.reason})")


def _lens_info(run: Any) -> int:
    """What a TransformerLens model file holds (`mechmem.interop.TransformerLensRun`)."""
    cfg, ds = run.model.cfg, run.dataset
    print(f"file        {run.path}")
    print(f"model       TransformerLens {type(run.model).__name__} d_model={cfg.d_model}"
          f" heads={cfg.n_heads} d_mlp={cfg.d_mlp} layers={cfg.n_layers} act={cfg.act_fn}")
    print("dataset     " + ("none recorded (pass the split to analyze(run, dataset))" if ds is None
                            else f"op={ds.spec.op} p={ds.p} alpha={ds.spec.train_frac}"
                                 f" xi={ds.spec.corrupt_frac} train={ds.n_train}"
                                 f" corrupted={ds.n_corrupted}"))
    steps = run.history.get("step", [])
    print(f"history     {len(steps)} evaluations: {', '.join(run.history)}" if steps else
          "history     none recorded")
    if run.snapshots:
        print(f"snapshots   {len(run.snapshots.get('step', []))}")
    if ds is not None:
        _outcome(adapt_model(run.model, ds.spec.tokens), ds, run.history)
    return 0
