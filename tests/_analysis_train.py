"""A tiny full-batch trainer for the analyzer tests (AdamW, MSE against one-hot targets)."""

import torch
import torch.nn.functional as F

from mechmem import HookedMLP, MLPConfig, ModularDataset, make_dataset


def train_full_batch(
    *,
    op: str = "add",
    p: int = 31,
    width: int = 96,
    alpha: float = 0.6,
    xi: float = 0.0,
    wd: float = 1.0,
    steps: int = 400,
    norm: str = "none",
    seed: int = 0,
) -> tuple[HookedMLP, ModularDataset]:
    ds = make_dataset(op=op, p=p, train_frac=alpha, corrupt_frac=xi, seed=seed)
    model = HookedMLP(MLPConfig(p=p, width=width, norm=norm), seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.9, 0.98), weight_decay=wd)
    x, y = ds.train_pairs, F.one_hot(ds.train_labels, p).float()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
        opt.step()
    model.eval()
    return model, ds
