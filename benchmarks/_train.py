"""A minimal trainer for the benchmarks (AdamW, MSE against one-hot targets), writing checkpoints
with the history keys mechmem's trainer records."""

import time

import torch
import torch.nn.functional as F

from mechmem import Checkpoint, HookedMLP, MLPConfig, make_dataset
from mechmem.analysis import accuracies


def train(
    *,
    p: int = 97,
    width: int = 500,
    alpha: float = 0.5,
    xi: float = 0.35,
    wd: float = 0.0,
    steps: int = 1000,
    lr: float = 0.01,
    batch: int | None = None,
    norm: str = "none",
    op: str = "add",
    seed: int = 0,
    eval_every: int = 100,
    name: str = "",
) -> Checkpoint:
    """Train from the paper's init; full batch unless `batch` is given; returns a Checkpoint."""
    ds = make_dataset(op=op, p=p, train_frac=alpha, corrupt_frac=xi, seed=seed)
    model = HookedMLP(MLPConfig(p=p, width=width, norm=norm), seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=wd)
    x, y = ds.train_pairs, F.one_hot(ds.train_labels, p).float()
    gen = torch.Generator().manual_seed(seed)
    keys = ("step", "train_acc", "test_acc", "clean_train_acc", "corrupted_memorized_acc",
            "corrupted_true_acc")
    history: dict[str, list[float]] = {k: [] for k in keys}
    start = time.perf_counter()
    for step in range(1, steps + 1):
        model.train()
        if batch is None:
            xb, yb = x, y
        else:
            idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
            xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(xb), yb).backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            acc = accuracies(model, ds)
            history["step"].append(step)
            for k in keys[1:]:
                history[k].append(getattr(acc, k.removesuffix("_acc")))
    model.eval()
    meta = {"name": name, "train_seconds": time.perf_counter() - start}
    cfg = {"op": op, "p": p, "width": width, "alpha": alpha, "xi": xi, "weight_decay": wd,
           "lr": lr, "batch_size": batch, "steps": steps, "norm": norm, "seed": seed}
    return Checkpoint(model=model, dataset=ds, train_config=None, history=history, step=steps,
                      meta=meta | {"settings": cfg})
