"""A faithful re-creation of the paper's training loop, as the comparison for benchmarks.

nn.Linear on the concatenated one-hot input (built once), torch.pow, MSE against F.one_hot built
every step, torch's AdamW; started from the same dataset and initial weights as mechmem's run of
the same `TrainConfig` (full batch, no normalization, no dropout).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mechmem import TrainConfig, make_dataset
from mechmem.train import initial_model


def paper_loop(config: TrainConfig) -> tuple[Callable[[], None], Callable[[], tuple[float, float]]]:
    """(step, accuracies): one training step, and (train, test) accuracy of the current weights."""
    p = config.p
    ds = make_dataset(config.dataset_spec())
    init = initial_model(config)

    def one_hot(pairs: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.one_hot(pairs[:, 0], p), F.one_hot(pairs[:, 1], p)], dim=1).float()

    x, y = one_hot(ds.train_pairs), ds.train_labels  # (B, 2p), built once
    x_test, y_test = one_hot(ds.test_pairs), ds.test_labels
    fc1 = nn.Linear(2 * p, config.width, bias=False)
    fc2 = nn.Linear(config.width, p, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.cat([init.U, init.V], dim=1))
        fc2.weight.copy_(init.W)
    opt = torch.optim.AdamW([fc1.weight, fc2.weight], lr=config.lr, betas=config.betas,
                            eps=config.eps, weight_decay=config.weight_decay)

    def step() -> None:
        opt.zero_grad()
        out = fc2(torch.pow(fc1(x), 2))
        loss = F.mse_loss(out, F.one_hot(y, p).float())
        loss.backward()
        opt.step()

    @torch.no_grad()
    def accuracies() -> tuple[float, float]:
        def acc(inp: torch.Tensor, labels: torch.Tensor) -> float:
            return (fc2(torch.pow(fc1(inp), 2)).argmax(-1) == labels).float().mean().item()

        return acc(x, y), acc(x_test, y_test)

    return step, accuracies
