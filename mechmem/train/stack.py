"""The data of a stack of runs on one device: per-model examples, labels and minibatch orders.

Models of a stack may have training sets of different sizes (another alpha) and different labels
(another xi, seed or operation). Their examples are laid out on a leading model axis and padded
to the largest set; padding rows are masked out of the loss, the gradient and every metric.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor

from ..data import ModularDataset, paper_init_stream
from ..seeding import paper_init
from .config import TrainConfig
from .engine import Batch


def derived_seed(seed: int, stream: int, index: int) -> int:
    """A seed for stream `stream` (1: minibatch orders, 2: dropout masks) at `index` (epoch or
    step), decorrelated across seeds."""
    return (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9 + index) % (2**63)


def paper_initial_weights(config: TrainConfig) -> tuple[tuple[Tensor, ...], torch.Generator]:
    """The authors' initial U, V, W for `config` (seeding "paper" or "scripts"), and their torch
    stream after drawing them (where their notebook's minibatch permutations come from)."""
    cfg = config.model_config()
    stream = paper_init_stream(config.dataset_spec())
    std = cfg.paper_init_std if cfg.init == "paper" else None
    return paper_init(cfg.width, cfg.p, stream, std=std, scale=cfg.init_scale), stream


def batch_size_of(config: TrainConfig, n_train: int) -> int:
    """Examples per step: the whole training set, or `batch_size` capped at it."""
    return n_train if config.batch_size == "full" else min(config.batch_size, n_train)


class BatchOrder:
    """Which training examples one run's step s trains on: all of them (full batch), or
    minibatches: each epoch walks a fresh permutation of the training set in batches of the same
    size, the remainder dropped (as the paper's code does).

    The permutation of epoch e is drawn from a generator seeded by (seed, e) under the "mechmem"
    seeding; under "paper" the permutations continue the authors' torch stream after the init,
    one per epoch; under "scripts" torch is seeded with the epoch's first step (1-based) + seed.
    """

    def __init__(self, config: TrainConfig, n_train: int) -> None:
        self.config, self.n = config, n_train
        self.size = batch_size_of(config, n_train)
        self.per_epoch = n_train // self.size
        self.is_full = self.size == n_train
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.int64)
        self._stream: torch.Generator | None = None

    def _permutation(self, epoch: int) -> Tensor:
        seeding, seed = self.config.seeding, self.config.seed
        if seeding == "mechmem":
            gen = torch.Generator().manual_seed(derived_seed(seed, 1, epoch))
            return torch.randperm(self.n, generator=gen)
        if seeding == "scripts":
            first_step = epoch * self.per_epoch + 1
            gen = torch.Generator().manual_seed(first_step + seed)
            return torch.randperm(self.n, generator=gen)
        if self._stream is None or epoch <= self._epoch:
            # Replay from the start: the stream after the init, then epochs 0..epoch.
            self._stream, self._epoch = paper_initial_weights(self.config)[1], -1
        for _ in range(epoch - self._epoch):
            perm = torch.randperm(self.n, generator=self._stream)
        return perm

    def indices(self, step: int) -> Int[Tensor, " batch"]:
        """Positions in the training set of step `step`'s examples (CPU)."""
        if self.is_full:
            return torch.arange(self.n)
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._perm = self._permutation(epoch)
            self._epoch = epoch
        return self._perm[k * self.size:(k + 1) * self.size]


def _pad(rows: Sequence[Tensor], length: int, fill: int | bool = 0) -> Tensor:
    out = torch.full((len(rows), length), fill, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out


class GroupData:
    """Every model's training and test examples, on a leading model axis, on one device.

    Attributes:
        models: M.
        train_m, train_n, train_labels, train_true, corrupted: (M, n_max), each model's
            training set in its dataset's order (padded).
        train_target: (M, n_max, p) one-hot of the labels trained on (zero on padding).
        train_valid: (M, n_max) real rows, or None when every set has n_max examples.
        n_train: (M,) float, examples per training set.
        test_m, test_n, test_labels, test_target, test_valid: the same for the test sets.
    """

    def __init__(self, datasets: Sequence[ModularDataset], device: torch.device,
                 dtype: torch.dtype | None = None) -> None:
        dtype = torch.get_default_dtype() if dtype is None else dtype
        p = datasets[0].p
        if any(ds.p != p for ds in datasets):
            raise ValueError("Every dataset of a stack must have the same modulus p.")
        self.models = len(datasets)
        n = [ds.n_train for ds in datasets]
        t = [int(ds.test_idx.numel()) for ds in datasets]

        def stack(rows: Sequence[Tensor], length: int, fill: int | bool = 0) -> Tensor:
            return _pad(rows, length, fill).to(device)

        tr = [ds.train_pairs for ds in datasets]
        te = [ds.test_pairs for ds in datasets]
        self.train_m = stack([x[:, 0] for x in tr], max(n))
        self.train_n = stack([x[:, 1] for x in tr], max(n))
        self.train_labels = stack([ds.train_labels for ds in datasets], max(n))
        self.train_true = stack([ds.train_true_labels for ds in datasets], max(n))
        self.corrupted = stack([ds.corrupted for ds in datasets], max(n), False)
        self.test_m = stack([x[:, 0] for x in te], max(t))
        self.test_n = stack([x[:, 1] for x in te], max(t))
        self.test_labels = stack([ds.test_labels for ds in datasets], max(t))
        self.train_valid = self._valid(n, device)
        self.test_valid = self._valid(t, device)
        self.n_train = torch.tensor(n, dtype=dtype, device=device)
        self.train_target = self._one_hot(self.train_labels, self.train_valid, p, dtype)
        self.test_target = self._one_hot(self.test_labels, self.test_valid, p, dtype)

    @staticmethod
    def _valid(sizes: Sequence[int], device: torch.device) -> Bool[Tensor, "models rows"] | None:
        if len(set(sizes)) == 1:
            return None
        return (torch.arange(max(sizes))[None, :] < torch.tensor(sizes)[:, None]).to(device)

    @staticmethod
    def _one_hot(labels: Tensor, valid: Tensor | None, p: int, dtype: torch.dtype) -> Tensor:
        target = F.one_hot(labels, p).to(dtype)
        return target if valid is None else target * valid[..., None]

    def full_batch(self) -> Batch:
        """The whole training set of every model (padded)."""
        count = None if self.train_valid is None else self.n_train
        return Batch(self.train_m, self.train_n, self.train_labels, self.train_target,
                     self.train_valid, count)

    def batch(self, idx: Int[Tensor, "models batch"]) -> Batch:
        """The examples at positions `idx` of each model's training set."""
        p = self.train_target.shape[-1]
        return Batch(self.train_m.gather(1, idx), self.train_n.gather(1, idx),
                     self.train_labels.gather(1, idx),
                     self.train_target.gather(1, idx[..., None].expand(-1, -1, p)))
