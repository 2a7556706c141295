"""How much memory a run or a stack of runs needs, checked before any training starts."""

import os
from collections.abc import Sequence

import torch

from ..data import n_pairs, train_size
from .config import TrainConfig
from .engine import default_chunk_elements
from .group import resolve_device


def bytes_per_run(config: TrainConfig) -> int:
    """Device bytes one run of a stack holds while training (an estimate from above).

    Counts the weights with their gradients, Adam moments and scratch copy; the examples and
    their one-hot targets; the step's logits and dropout mask; an evaluation's logits and
    temporaries. The fixed cost of the engine's chunk buffers is in `fixed_bytes`.
    """
    p, N = config.p, config.width
    rows = n_pairs(config.op, config.p)
    n_train = train_size(config.dataset_spec())
    batch = n_train if config.batch_size == "full" else min(config.batch_size, n_train)
    f = 4 if torch.get_default_dtype() == torch.float32 else 8
    data = 40 * rows + f * p * rows  # indices and labels; one-hot targets
    evaluation = 3 * f * p * rows  # logits of every example, the loss's temporaries
    if config.track_examples:  # two float32 margins per example per evaluation, kept
        data += 8 * n_train * (config.steps // config.eval_every + 2)
    if config.model == "mlp":
        weights = 5 * (3 * p * N + 3 * N + p) * f
        step = f * p * batch + (f * N * batch if config.dropout > 0 else 0)
        return weights + data + step + evaluation
    # Autograd families: the weights with gradients, moments and scratch; what the backward
    # pass keeps of each example's forward; an evaluation's activations, both positions.
    if config.model == "mlp3":
        n_params = 3 * p * N + N * N + 2 * N + p
        per_example = 10 * N + 3 * p
    else:
        d, L = config.d_model, 1
        n_params = 2 * p * d + 2 * d + L * (4 * d * d + 2 * d * N) + 6 * d + 2 * N
        per_example = 2 * (12 * d + 4 * N + 8 * config.n_heads) + 3 * p
    return 6 * n_params * f + data + f * per_example * (batch + rows) + evaluation


def fixed_bytes(config: TrainConfig, device: torch.device) -> int:
    """Bytes a stack needs whatever its size: the engine's chunk buffers and, on the host, the
    task's table of pairs."""
    chunk = 5 * 4 * default_chunk_elements(device)
    return chunk + (64 * n_pairs(config.op, config.p) if device.type == "cpu" else 0)


def available_bytes(device: torch.device) -> int:
    """Free memory on `device`: the GPU's free memory, or the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gb(x: float) -> str:
    gb = x / 1e9
    return f"{gb:.1f} GB" if gb < 1e6 else f"{gb:.2g} GB"  # 2.2e+47 GB, not 48 digits


def check_fits(configs: Sequence[TrainConfig], device: torch.device | None = None) -> None:
    """Raise a MemoryError with a sentence saying how much is needed when the runs of
    `configs`, trained together on `device`, cannot fit in its free memory."""
    device = resolve_device(configs[0].device) if device is None else device
    need = fixed_bytes(configs[0], device) + sum(bytes_per_run(c) for c in configs)
    free = available_bytes(device)
    if need > free:
        what = "this run needs" if len(configs) == 1 else f"these {len(configs)} runs need"
        raise MemoryError(
            f"{what} about {_gb(need)} of {device.type} memory but only {_gb(free)} is "
            f"free (p={configs[0].p}, width={configs[0].width}); choose a smaller p or width.")


def models_per_chunk(config: TrainConfig, device: torch.device, *, fraction: float = 0.6,
                     cap: int = 4096) -> int:
    """How many runs like `config` fit on `device` at once, using `fraction` of its free
    memory (at least one: a run that does not fit at all is refused by `check_fits`)."""
    free = available_bytes(device) * fraction - fixed_bytes(config, device)
    return int(max(1, min(cap, free // bytes_per_run(config))))

