"""Modular-arithmetic tasks, train/test splits and label corruption."""

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from ._check import check_fields
from .seeding import (
    PAPER_DATA,
    SCRIPTS_INIT_SEED,
    check_seeding,
    paper_label_generator,
    paper_pair_order,
)
from .tokens import check_tokens, model_inputs

OPERATIONS: dict[str, str] = {
    "add": "(a + b) mod p",
    "sub": "(a - b) mod p",
    "mul": "(a * b) mod p",
    "div": "(a * b^-1) mod p, pairs with b = 0 excluded",
    "sq_sum": "(a^2 + b^2) mod p",
}
_NEEDS_PRIME = ("mul", "div")


# Seeds are bounded so that every stream derived from one (seed + offset, seed + step) stays in
# the range torch and Python's generators accept.
MAX_SEED = 2**32 - 1

_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)


def is_prime(n: int) -> bool:
    """Whether `n` is a prime number (in time that grows with its digits, not its size).

    Miller-Rabin with the first 13 primes as bases: exact below 3.3e24, and for larger `n` a
    composite passes with probability below 4^-13.
    """
    if n < 2:
        return False
    for q in _SMALL_PRIMES:
        if n % q == 0:
            return n == q
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in _SMALL_PRIMES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _label_fn(op: str, p: int) -> Callable[[Tensor, Tensor], Tensor]:
    if op == "add":
        return lambda a, b: (a + b) % p
    if op == "sub":
        return lambda a, b: (a - b) % p
    if op == "mul":
        return lambda a, b: (a * b) % p
    if op == "div":
        inverse = torch.tensor([pow(b, -1, p) if b else 0 for b in range(p)])
        return lambda a, b: (a * inverse[b]) % p
    if op == "sq_sum":
        return lambda a, b: (a * a + b * b) % p
    raise AssertionError(op)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that determines a dataset; `make_dataset(spec)` is a pure function of it.

    Attributes:
        op: one of `OPERATIONS`.
        p: the modulus; `mul` and `div` need it prime.
        train_frac: alpha, the fraction of all pairs used for training, in (0, 1).
        corrupt_frac: xi, the fraction of training examples given a random label, in [0, 1).
        seed: seeds the split and the corruption.
        seeding: "mechmem" (seeded torch generators), "paper" or "scripts" (the random calls
            of the authors' notebook or phase-diagram scripts, which build the data alike:
            with seed 0, their exact split and corrupted labels); see `mechmem.seeding`.
        corruption: "uniform" draws corrupted labels from all p classes, so about 1/p of them
            keep the true label by chance (the paper's convention); "exclude_true" forces a
            label different from the true one.
        tokens: how a model reads each pair, one of `mechmem.tokens.TOKEN_FORMATS`:
            "operands" (mechmem's networks, inputs (batch, 2)) or "equals" (operands then an
            `=` token of id p, as TransformerLens's grokking demo; inputs (batch, 3)). It changes
            the model inputs only, never the pairs, split or labels.
    """

    # Choice fields are typed `str` and checked in __post_init__, so that a wrong value is a
    # ValueError naming the choices, also under runtime type checking.
    op: str = "add"
    p: int = 97
    train_frac: float = 0.5
    corrupt_frac: float = 0.0
    seed: int = 0
    corruption: str = "uniform"
    seeding: str = "mechmem"
    tokens: str = "operands"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.op not in OPERATIONS:
            raise ValueError(
                f"Unknown operation {self.op!r}; choose one of {', '.join(OPERATIONS)}."
            )
        if self.p < 2:
            raise ValueError(f"`p` must be an integer >= 2, got {self.p!r}.")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"`seed` must be an integer in [0, {MAX_SEED}], got {self.seed!r}.")
        if self.op in _NEEDS_PRIME and not is_prime(self.p):
            raise ValueError(f"`p` must be prime for {self.op}, got {self.p}.")
        if not 0.0 < self.train_frac < 1.0:
            raise ValueError(f"`train_frac` (alpha) must lie in (0, 1), got {self.train_frac}.")
        if not 0.0 <= self.corrupt_frac < 1.0:
            raise ValueError(
                f"`corrupt_frac` (xi) must lie in [0, 1), got {self.corrupt_frac}."
            )
        if self.corruption not in ("uniform", "exclude_true"):
            raise ValueError(
                f"`corruption` must be 'uniform' or 'exclude_true', got {self.corruption!r}."
            )
        check_seeding(self.seeding)
        check_tokens(self.tokens)
        total = n_pairs(self.op, self.p)
        if not 1 <= train_size(self) < total:
            raise ValueError(
                f"`train_frac`={self.train_frac} leaves an empty train or test set "
                f"for {total} pairs; choose a fraction that keeps both non-empty."
            )

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        # The default format is left out, so that checkpoints and configs read as before it.
        if d["tokens"] == "operands":
            del d["tokens"]
        return d


@dataclass(frozen=True, eq=False)
class ModularDataset:
    """All pairs of a modular task, their split and the labels trained on.

    Attributes:
        spec: the `DatasetSpec` this was built from.
        pairs: every (a, b) pair of the task, shape (pairs, 2).
        labels: the true label of every pair.
        train_idx: indices into `pairs` of the training set.
        test_idx: indices into `pairs` of the test set (always true labels).
        train_labels: the labels trained on, aligned with `train_idx`.
        corrupted: which training examples had their label replaced, aligned with `train_idx`.
    """

    spec: DatasetSpec
    pairs: Int[Tensor, "pairs 2"]
    labels: Int[Tensor, " pairs"]
    train_idx: Int[Tensor, " train"]
    test_idx: Int[Tensor, " test"]
    train_labels: Int[Tensor, " train"]
    corrupted: Bool[Tensor, " train"]

    @property
    def p(self) -> int:
        return self.spec.p

    @property
    def n_train(self) -> int:
        return int(self.train_idx.numel())

    @property
    def n_corrupted(self) -> int:
        return int(self.corrupted.sum())

    @property
    def train_pairs(self) -> Int[Tensor, "train 2"]:
        return self.pairs[self.train_idx]

    @property
    def test_pairs(self) -> Int[Tensor, "test 2"]:
        return self.pairs[self.test_idx]

    @property
    def test_labels(self) -> Int[Tensor, " test"]:
        return self.labels[self.test_idx]

    @property
    def train_true_labels(self) -> Int[Tensor, " train"]:
        return self.labels[self.train_idx]

    @property
    def mislabelled(self) -> Bool[Tensor, " train"]:
        """Training examples whose label differs from the true one (corrupted ones whose random
        label did not land on the truth by chance), aligned with `train_idx`."""
        return self.train_labels != self.train_true_labels

    def model_inputs(
        self, pairs: Int[Tensor, "batch 2"] | None = None
    ) -> Int[Tensor, "batch pos"]:
        """`pairs` (default: every pair of the task) as the model reads them, in the format
        `spec.tokens` (see `mechmem.tokens.model_inputs`)."""
        return model_inputs(self.pairs if pairs is None else pairs, self.spec.tokens, p=self.p)

    def to_dict(self) -> dict[str, object]:
        """Plain containers and tensors only, as stored in checkpoints."""
        return {
            "spec": self.spec.to_dict(),
            "train_idx": self.train_idx.clone(),
            "train_labels": self.train_labels.clone(),
            "corrupted": self.corrupted.clone(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "ModularDataset":
        """Rebuild a dataset stored by `to_dict`, checking it against its spec."""
        if not isinstance(d, dict) or not isinstance(d.get("spec"), dict):
            raise ValueError("dataset field 'spec' is not a mapping of DatasetSpec fields.")
        spec = DatasetSpec(**d["spec"])  # type: ignore[arg-type]
        train_idx = d["train_idx"]
        train_labels = d["train_labels"]
        corrupted = d["corrupted"]
        for name, t, dtype in (
            ("train_idx", train_idx, torch.int64),
            ("train_labels", train_labels, torch.int64),
            ("corrupted", corrupted, torch.bool),
        ):
            if not isinstance(t, Tensor) or t.dtype != dtype or t.ndim != 1:
                raise ValueError(f"dataset field {name!r} is not a 1-d {dtype} tensor.")
        # Counted before the pairs are built: a spec naming a huge p is refused at once.
        if train_idx.numel() != train_size(spec):
            raise ValueError(f"dataset holds {train_idx.numel()} training indices, but its spec "
                             f"(op {spec.op}, p={spec.p}, train_frac={spec.train_frac}) makes "
                             f"{train_size(spec)}.")
        pairs, labels = all_pairs(spec.op, spec.p)
        n = pairs.shape[0]
        if not (train_idx.numel() == train_labels.numel() == corrupted.numel()):
            raise ValueError("dataset fields train_idx, train_labels, corrupted differ in length.")
        if train_idx.numel() and (train_idx.min() < 0 or train_idx.max() >= n):
            raise ValueError(f"dataset train_idx holds indices outside [0, {n}).")
        if train_labels.numel() and (train_labels.min() < 0 or train_labels.max() >= spec.p):
            raise ValueError(f"dataset train_labels hold labels outside [0, {spec.p}).")
        is_train = torch.zeros(n, dtype=torch.bool)
        is_train[train_idx] = True
        if int(is_train.sum()) != train_idx.numel():
            raise ValueError("dataset train_idx holds repeated indices.")
        test_idx = torch.nonzero(~is_train).squeeze(1)
        return cls(spec, pairs, labels, train_idx.clone(), test_idx, train_labels.clone(),
                   corrupted.clone())


def n_pairs(op: str, p: int) -> int:
    """How many input pairs the task has (division leaves out b = 0)."""
    return p * (p - 1) if op == "div" else p * p


def train_size(spec: DatasetSpec) -> int:
    """How many training examples `make_dataset(spec)` has (without building it)."""
    return _n_train(spec, n_pairs(spec.op, spec.p))


def _n_train(spec: DatasetSpec, n_pairs: int) -> int:
    # The authors' code truncates alpha * n; mechmem rounds it.
    if spec.seeding in PAPER_DATA:
        return math.floor(spec.train_frac * n_pairs)
    return round(spec.train_frac * n_pairs)


def all_pairs(op: str, p: int) -> tuple[Int[Tensor, "pairs 2"], Int[Tensor, " pairs"]]:
    """Every input pair of the task in row-major order, and its true label."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    pairs = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)
    if op == "div":
        pairs = pairs[pairs[:, 1] != 0]
    labels = _label_fn(op, p)(pairs[:, 0], pairs[:, 1])
    return pairs, labels


def make_dataset(spec: DatasetSpec | None = None, **kwargs: object) -> ModularDataset:
    """Build the split and the corrupted labels of a modular-arithmetic task.

    Exactly floor(corrupt_frac * n_train) training examples are corrupted, chosen at random.
    With `seeding="paper"` (or "scripts") the training set is the first floor(alpha * n) pairs
    of the authors' shuffle, in that order, and its first floor(xi * n_train) examples are the
    corrupted ones.

    Args:
        spec: the dataset to build; or pass `DatasetSpec` fields as keyword arguments.

    Returns:
        The `ModularDataset`; the same spec always gives the same dataset.

    Example:
        >>> ds = make_dataset(op="add", p=97, train_frac=0.5, corrupt_frac=0.35, seed=0)
        >>> ds.n_train, ds.n_corrupted
        (4704, 1646)
    """
    if spec is None:
        spec = DatasetSpec(**kwargs)  # type: ignore[arg-type]
    elif kwargs:
        raise TypeError("Pass either a DatasetSpec or its fields as keywords, not both.")
    pairs, labels = all_pairs(spec.op, spec.p)
    n = pairs.shape[0]
    n_train = _n_train(spec, n)
    n_corrupt = math.floor(spec.corrupt_frac * n_train)
    if spec.seeding in PAPER_DATA:
        # The training set stays in the authors' shuffled order (their minibatches index it);
        # their corrupted examples are its first n_corrupt.
        order = paper_pair_order(n, spec.seed)
        train_idx = order[:n_train].clone()
        test_idx = order[n_train:].sort().values
        corrupt_pos = torch.arange(n_corrupt)
        gen = paper_label_generator(spec.seed)
    else:
        gen = torch.Generator().manual_seed(spec.seed)
        perm = torch.randperm(n, generator=gen)
        train_idx = perm[:n_train].sort().values
        test_idx = perm[n_train:].sort().values
        corrupt_pos = torch.randperm(n_train, generator=gen)[:n_corrupt]
    corrupted = torch.zeros(n_train, dtype=torch.bool)
    corrupted[corrupt_pos] = True
    train_labels = labels[train_idx].clone()
    train_labels[corrupt_pos] = _corrupt(spec, train_labels[corrupt_pos], gen)
    return ModularDataset(spec, pairs, labels, train_idx, test_idx, train_labels, corrupted)


def _corrupt(spec: DatasetSpec, true: Int[Tensor, " k"], gen: torch.Generator) -> Tensor:
    if spec.corruption == "uniform":
        return torch.randint(0, spec.p, true.shape, generator=gen)
    # A shift in 1..p-1 lands on any label but the true one, uniformly.
    shift = torch.randint(1, spec.p, true.shape, generator=gen)
    return (true + shift) % spec.p


def paper_init_stream(spec: DatasetSpec) -> torch.Generator:
    """The authors' torch stream that their initial weights are drawn from: under "paper" the
    stream after their label draw (their notebook), under "scripts" torch seeded with 1 + seed.

    Args:
        spec: a dataset with `seeding="paper"` or `"scripts"`.

    Returns:
        A fresh generator; `mechmem.seeding.paper_init` draws the initial weights from it.
    """
    if spec.seeding not in PAPER_DATA:
        raise ValueError(
            f"paper_init_stream needs seeding 'paper' or 'scripts', got {spec.seeding!r}.")
    if spec.seeding == "scripts":
        return torch.Generator().manual_seed(SCRIPTS_INIT_SEED + spec.seed)
    n = all_pairs(spec.op, spec.p)[0].shape[0]
    n_corrupt = math.floor(spec.corrupt_frac * _n_train(spec, n))
    gen = paper_label_generator(spec.seed)
    _corrupt(spec, torch.zeros(n_corrupt, dtype=torch.int64), gen)
    return gen


def primitive_root(p: int) -> int:
    """The smallest generator of the multiplicative group of Z_p (p prime)."""
    if not is_prime(p):
        raise ValueError(f"`p` must be prime to have a primitive root, got {p}.")
    if p == 2:
        return 1
    factors = {d for d in range(2, p) if (p - 1) % d == 0 and is_prime(d)}
    for g in range(2, p):
        if all(pow(g, (p - 1) // q, p) != 1 for q in factors):
            return g
    raise AssertionError(p)


@dataclass(frozen=True, eq=False)
class Coordinates:
    """Where a task's generalizing circuit is periodic.

    A generalizing neuron of a task looks like cos(2 pi s c(x) / period + phase) in each of its
    three weight vectors, with c = `a`, `b` or `out`. For addition c is the residue itself; for
    multiplication and division it is the discrete logarithm (residue 0 has none: -1 there).

    Attributes:
        a, b, out: integer coordinate of each residue for the first operand, the second operand
            and the output, shape (p,), -1 where the residue has no coordinate.
        period: the length of the cycle the coordinates live on (p, or p - 1 for discrete logs).
    """

    a: Int[Tensor, " p"]
    b: Int[Tensor, " p"]
    out: Int[Tensor, " p"]
    period: int


def task_coordinates(op: str, p: int) -> Coordinates:
    """The coordinates in which the generalizing solution of `op` mod `p` is periodic."""
    r = torch.arange(p)
    if op == "add":
        return Coordinates(r, r, r, p)
    if op == "sub":
        return Coordinates(r, (-r) % p, r, p)
    if op == "sq_sum":
        return Coordinates(r * r % p, r * r % p, r, p)
    if op in ("mul", "div"):
        g = primitive_root(p)
        log = torch.full((p,), -1, dtype=torch.int64)
        for k in range(p - 1):
            log[pow(g, k, p)] = k
        neg = torch.where(log >= 0, (-log) % (p - 1), log)
        return Coordinates(log, neg if op == "div" else log, log, p - 1)
    raise ValueError(f"Unknown operation {op!r}; choose one of {', '.join(OPERATIONS)}.")
