"""Seeding schemes: mechmem's own random streams, or those of the paper's published code.

Every random choice of a run (split, corrupted labels, initial weights, minibatch order) comes
from `seed` through one of two schemes:

- "mechmem" (the default): seeded `torch.Generator`s, independent streams per purpose.
- "paper": the random calls of the authors' notebook (github d-doshi/Grokking), replayed with
  private generators. With seed 0 a run gets their split, their corrupted labels, their initial
  weights and (on a CPU) their minibatch order; seed s shifts each of their seeds by s.
    - pairs: the row-major list of (a, b) pairs shuffled by Python's `random.Random(420 + s)`;
      the first floor(alpha * n) are the training set, kept in that order.
    - corruption: the first floor(xi * n_train) training examples, their labels drawn by
      `torch.randint(0, p)` from torch seeded with 0 + s.
    - init: the same torch stream, continued after the label draw (the authors' notebook, which
      produced the paper's named runs, builds the model right after the dataset): the default
      inits of `nn.Linear(2p, N)` and `nn.Linear(N, p)` are drawn and, for the paper's init,
      overwritten by N(0, std^2) drawn for the first layer [U | V], then for W. (Their
      phase-diagram scripts seed torch with 1 before the model instead.)
    - minibatches: each epoch walks `torch.randperm(n_train)` drawn from the same stream,
      continued after the init (their notebook's BatchNorm run).

- "scripts": the random calls of the authors' phase-diagram scripts
  (Training_scripts/phase_diagrams_*.py), which seed every cell alike: the pairs and labels as
  under "paper", then torch seeded with 1 + s before the model is built (the same draws as
  above from that fresh stream), and each epoch's `torch.randperm(n_train)` drawn after seeding
  torch with the 1-based number of the epoch's first step (+ s).

Dropout masks come from mechmem's own stream under every scheme. The authors ran their notebook
on a CPU; on a GPU their permutations would come from the GPU's generator instead.
"""

import random

import torch
from jaxtyping import Float, Int
from torch import Tensor

SEEDINGS = ("mechmem", "paper", "scripts")
# Schemes that build the data as the authors' code does.
PAPER_DATA = ("paper", "scripts")

PAPER_PAIR_SEED = 420
PAPER_LABEL_SEED = 0
SCRIPTS_INIT_SEED = 1


def check_seeding(seeding: object) -> None:
    """Raise a ValueError naming the choices unless `seeding` is one of `SEEDINGS`."""
    if seeding not in SEEDINGS:
        raise ValueError(f"`seeding` must be one of {', '.join(SEEDINGS)}, got {seeding!r}.")


def paper_pair_order(n_pairs: int, seed: int) -> Int[Tensor, " pairs"]:
    """The authors' shuffle of the pair list: position i of the result is a pair index."""
    order = list(range(n_pairs))
    random.Random(PAPER_PAIR_SEED + seed).shuffle(order)
    return torch.tensor(order, dtype=torch.int64)


def paper_label_generator(seed: int) -> torch.Generator:
    """The generator the authors' corrupted labels are drawn from."""
    return torch.Generator().manual_seed(PAPER_LABEL_SEED + seed)


def paper_init(
    width: int, p: int, stream: torch.Generator, *, std: float | None, scale: float = 1.0
) -> tuple[Float[Tensor, "width p"], Float[Tensor, "width p"], Float[Tensor, "p width"]]:
    """The authors' initial U, V, W, drawn from `stream` as their code draws them.

    Args:
        width: hidden neurons N.
        p: the modulus.
        stream: the authors' torch stream as it stands before the model is built (see
            `mechmem.data.paper_init_stream`); it is advanced.
        std: the normal init's standard deviation, or None for `nn.Linear`'s default init.
        scale: multiplies the initial weights (`MLPConfig.init_scale`).

    Returns:
        U and V (each (N, p), the halves of the first layer) and W (p, N).
    """
    first = torch.empty(width, 2 * p)
    second = torch.empty(p, width)
    # nn.Linear's default init: kaiming_uniform_(a=sqrt(5)) = uniform(+-1/sqrt(fan_in)).
    first.uniform_(-(2 * p) ** -0.5, (2 * p) ** -0.5, generator=stream)
    second.uniform_(-width ** -0.5, width ** -0.5, generator=stream)
    if std is not None:
        first.normal_(0.0, std * scale, generator=stream)
        second.normal_(0.0, std * scale, generator=stream)
    elif scale != 1.0:
        first.mul_(scale)
        second.mul_(scale)
    return first[:, :p].clone(), first[:, p:].clone(), second
