"""Train one chunk of a sweep and describe each of its runs as a cell record (plain JSON data).

`train_chunk` is the unit a backend runs: a local sweep calls it for each chunk in turn, a
distributed one may call it anywhere. It reads nothing but its configs and writes nothing.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..analysis.accuracy import AccuracyResult
from ..analysis.phase import classify_phase
from ..metrics import METRICS
from ..models.sites import neuron_sites
from ..spectral import network_ipr, site_ipr
from ..train.autograd import make_group
from ..train.config import TrainConfig
from ..train.group import ModelGroup


class ChunkInterrupted(KeyboardInterrupt):
    """A chunk was stopped between two steps; nothing of it is kept."""


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def cell_record(config: TrainConfig, history: dict[str, list[float]], ipr: Tensor,
                dataset_sizes: tuple[int, int, int]) -> dict[str, Any]:
    """The JSON object of one finished cell (without its sweep bookkeeping: id, index, chunk).

    Args:
        config: the cell's run.
        history: its record at every evaluation (the last entry is the final state).
        ipr: its primary neurons' IPRs (rfft, r = 2) at the end.
        dataset_sizes: (n_train, n_test, n_corrupted).
    """
    last = {k: v[-1] for k, v in history.items()}
    acc = {m: float(last[f"{m}_acc"]) for m in METRICS}
    n_train, n_test, n_corrupted = dataset_sizes
    phase = classify_phase(AccuracyResult(**acc, n_train=n_train, n_test=n_test,
                                          n_corrupted=n_corrupted),
                           config.corrupt_frac, history)
    tests = history["test_acc"]
    peak = max(range(len(tests)), key=lambda k: (tests[k], -k))
    live = ipr[~torch.isnan(ipr)]
    return {
        "config": config.to_dict(),
        "phase": phase.phase,
        "phase_reason": phase.reason,
        "accuracy": {m: _num(v) for m, v in acc.items()},
        "loss": {"train": _num(last["train_loss"]), "test": _num(last["test_loss"])},
        "test_acc_peak": _num(tests[peak]),
        "test_acc_peak_step": int(history["step"][peak]),
        "ipr": {"mean": _num(float(live.mean())) if live.numel() else None,
                "neurons": [_num(x) for x in ipr.tolist()],
                # the other neuron sites' mean IPR (the transformer's "embed", ...)
                **({"sites": {k[4:]: _num(last[k]) for k in last
                              if k.startswith("ipr_") and k != "ipr_mean"}}
                   if any(k.startswith("ipr_") and k != "ipr_mean" for k in last) else {})},
        "weight_norms": {k[5:]: _num(v) for k, v in last.items() if k.startswith("norm_")},
        "history": {k: ([int(x) for x in v] if k == "step" else [_num(x) for x in v])
                    for k, v in history.items()},
    }


def train_chunk(
    configs: Sequence[TrainConfig],
    *,
    device: torch.device | None = None,
    chunk_elements: int | None = None,
    on_step: Callable[..., Any] | None = None,
    should_stop: Callable[..., Any] | None = None,
    keep_weights: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Tensor] | None]:
    """Train the runs of one chunk together and return their cell records.

    Args:
        configs: runs that can share a step (see `mechmem.train.ModelGroup`).
        device: where to train (default: the first config's device).
        chunk_elements: activations per engine chunk (default: by device).
        on_step: called after every step with the number of runs stepped (progress).
        should_stop: polled between steps; True stops the chunk (`ChunkInterrupted`).
        keep_weights: also return the final state of every run, stacked: the model's
            state_dict names, each with a leading model axis, on the CPU.

    Returns:
        (one cell record per config, in order; the stacked weights or None).
    """
    group = make_group(configs, device=device, chunk_elements=chunk_elements)
    c0, keys = group.configs[0], group.history_keys
    histories: list[dict[str, list[float]]] = [{k: [] for k in keys} for _ in configs]
    for s in range(c0.steps + 1):
        if s % c0.eval_every == 0 or s == c0.steps:
            for h, entry in zip(histories, group.record(s), strict=True):
                for k in keys:
                    h[k].append(entry[k])
        if s == c0.steps:
            break
        if should_stop is not None and should_stop():
            raise ChunkInterrupted(f"chunk stopped at step {s}")
        group.advance(s)
        if on_step is not None:
            on_step(group.models)
    fused = isinstance(group, ModelGroup)
    if fused:
        u, v, w = (group.weights(k) for k in ("U", "V", "W"))
    records = []
    for i, (config, ds) in enumerate(zip(group.configs, group.datasets, strict=True)):
        if fused:
            ipr = network_ipr(u[i], v[i], w[i].T, config.op)[1]  # W's columns are its neurons
        else:
            site = neuron_sites(group.model(i))[-1]
            ipr = site_ipr(site.inputs, None if site.output is None else site.output.T,
                           config.op)[1]
        sizes = (ds.n_train, int(ds.test_idx.numel()), ds.n_corrupted)
        records.append(cell_record(config, histories[i], ipr, sizes))
    return records, group.state() if keep_weights else None
