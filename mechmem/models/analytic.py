"""The analytic generalizing solution of Gromov (2023), Eq. 2 of the paper, amplitude corrected."""

import math

import torch

from ..data import OPERATIONS, is_prime, task_coordinates
from .mlp import HookedMLP, MLPConfig


def analytic_solution(
    *, p: int = 97, width: int = 500, seed: int = 0, op: str = "add"
) -> HookedMLP:
    """A `HookedMLP` carrying the periodic weights that solve `op` mod `p` with no training.

    Neuron k gets a frequency s_k (cycling through 1..period//2) and random phases a_k, b_k:
        U_ki = A cos(2 pi s_k c_a(i) / P + a_k),  V_kj = A cos(2 pi s_k c_b(j) / P + b_k),
        W_qk = A cos(-2 pi s_k c_out(q) / P - a_k - b_k),  A = (2 / N)^(1/3),
    where c are the task's coordinates (`task_coordinates`: the residue itself for addition,
    the discrete log for multiplication and division) and P their period. For multiplication
    and division the residue 0 has no logarithm: its weights are 0, so pairs involving 0 are not
    solved. Accuracy reaches 100% as the width grows (p = 97 needs a few hundred neurons).

    Args:
        p: the modulus.
        width: N, the number of neurons.
        seed: seeds the phases.
        op: the task; one of `mechmem.data.OPERATIONS`.

    Example:
        >>> model = analytic_solution(p=97, width=500, seed=0)
    """
    if op not in OPERATIONS:
        raise ValueError(f"Unknown operation {op!r}; choose one of {', '.join(OPERATIONS)}.")
    if op in ("mul", "div") and not is_prime(p):
        raise ValueError(f"`p` must be prime for {op}, got {p}.")
    if p < 3:
        raise ValueError(f"`p` must be at least 3 for a periodic solution, got {p}.")
    model = HookedMLP(MLPConfig(p=p, width=width), seed=seed)
    coords = task_coordinates(op, p)
    period = coords.period
    gen = torch.Generator().manual_seed(seed)
    n_freq = max(period // 2, 1) if period % 2 else max(period // 2 - 1, 1)
    s = (torch.arange(width) % n_freq + 1).to(torch.float64)  # (N,)
    a = torch.rand(width, generator=gen, dtype=torch.float64) * 2 * math.pi
    b = torch.rand(width, generator=gen, dtype=torch.float64) * 2 * math.pi
    amp = (2 / width) ** (1 / 3)

    def wave(c: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        # (N, p): one row per neuron; residues without a coordinate get 0.
        angle = 2 * math.pi * s[:, None] * c[None, :].to(torch.float64) / period + phase[:, None]
        return torch.where(c[None, :] >= 0, amp * torch.cos(angle), 0.0)

    with torch.no_grad():
        model.U.copy_(wave(coords.a, a))
        model.V.copy_(wave(coords.b, b))
        # cos(-x) = cos(x): W_qk = A cos(2 pi s c(q) / P + a + b).
        model.W.copy_(wave(coords.out, a + b).T)
    return model
