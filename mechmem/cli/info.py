"""`mechmem info CKPT`: what a checkpoint holds, its final accuracies and phase, without the
slower analyses."""

import argparse

from ..analysis.accuracy import accuracies
from ..analysis.phase import classify_phase
from ..checkpoint import load_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show what a checkpoint holds",
                       description="Show a checkpoint's model, dataset and training record, "
                       "its final accuracies and its phase.")
    p.add_argument("checkpoint", help="path to a .pt file written by mechmem")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
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
    acc = accuracies(ckpt.model, ds)
    parts = [("train", acc.train), ("test", acc.test)]
    if ds.n_corrupted:
        parts += [("corrupted memorized", acc.corrupted_memorized),
                  ("corrupted true", acc.corrupted_true)]
    print("accuracy    " + "  ".join(f"{k} {v:.1%}" for k, v in parts))
    phase = classify_phase(acc, ds.spec.corrupt_frac, ckpt.history)
    print(f"phase       {phase.phase} ({phase.reason})")
    return 0
