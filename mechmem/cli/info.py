"""`mechmem info CKPT`: what a checkpoint holds, without analysing it."""

import argparse

from ..checkpoint import load_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show what a checkpoint holds",
                       description="Show a checkpoint's model, dataset and training record.")
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
    return 0
