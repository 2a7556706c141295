"""Train one chunk of a sweep and describe each of its runs as a cell record (plain JSON data).

`train_chunk` is the unit a backend runs: a local sweep calls it for each chunk in turn, a
distributed one may call it anywhere. It reads nothing but its configs (and a state to continue
from) and writes nothing: its state goes to the caller's `save` (see `mechmem.sweep.partial`).
"""

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..analysis.accuracy import AccuracyResult
from ..analysis.phase import classify_phase
from ..metrics import METRICS
from ..models.families import build_model
from ..models.sites import neuron_sites
from ..spectral import network_ipr, site_ipr
from ..train.autograd import make_group
from ..train.config import TrainConfig
from ..train.group import ModelGroup


class ChunkInterrupted(KeyboardInterrupt):
    """A chunk was stopped between two steps (its state went to `save`, when one was given)."""


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


def _models(configs: Sequence[TrainConfig], state: dict[str, Tensor]) -> list[torch.nn.Module]:
    """Each run's network from a stacked state_dict."""
    out = []
    for i, config in enumerate(configs):
        model = build_model(config.model_config())
        model.load_state_dict({k: v[i] for k, v in state.items()})
        out.append(model)
    return out


def chunk_state(group: Any, step: int, histories: Sequence[dict[str, list[float]]]
                ) -> dict[str, Any]:
    """What continues a chunk at state `step` (before its update): plain tensors and lists."""
    if isinstance(group, ModelGroup):
        # One copy of the stacked moments, each run's a view of it (`optimizer_state(i)` would
        # copy all of them once per run).
        stacked = group.optimizer.state_dict()
        optimizer = [{**stacked, **{k: [t[i] for t in stacked[k]]
                                    for k in ("exp_avg", "exp_avg_sq")}}
                     for i in range(group.models)]
    else:
        optimizer = [group.optimizer_state(i) for i in range(group.models)]
    return {"step": step, "state": group.state(), "optimizer": optimizer,
            "history": [{k: list(v) for k, v in h.items()} for h in histories]}


def train_chunk(
    configs: Sequence[TrainConfig],
    *,
    device: torch.device | None = None,
    chunk_elements: int | None = None,
    on_step: Callable[..., Any] | None = None,
    should_stop: Callable[..., Any] | None = None,
    keep_weights: bool = False,
    start: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], Any] | None = None,
    save_every: float | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Tensor] | None]:
    """Train the runs of one chunk together and return their cell records.

    Args:
        configs: runs that can share a step (see `mechmem.train.ModelGroup`).
        device: where to train (default: the first config's device).
        chunk_elements: activations per engine chunk (default: by device).
        on_step: called after every step with the number of runs stepped (progress); when
            continuing from `start`, first with the model-steps already done.
        should_stop: polled between steps; True stops the chunk (`ChunkInterrupted`), after
            handing its state to `save`.
        keep_weights: also return the final state of every run, stacked: the model's
            state_dict names, each with a leading model axis, on the CPU.
        start: a state `save` was given earlier, to continue from (the cells come out
            bit-identical on a CPU to those of an uninterrupted chunk).
        save: called with the chunk's state (`chunk_state`) every `save_every` seconds of
            training and when `should_stop` stops it.
        save_every: seconds between saves (None: only when stopped).

    Returns:
        (one cell record per config, in order; the stacked weights or None).
    """
    models = None if start is None else _models(configs, start["state"])
    group = make_group(configs, device=device, chunk_elements=chunk_elements, models=models)
    c0, keys = group.configs[0], group.history_keys
    if start is None:
        first = 0
        histories: list[dict[str, list[float]]] = [{k: [] for k in keys} for _ in configs]
    else:
        first = int(start["step"])
        group.load_optimizer_state(start["optimizer"])
        histories = [{k: list(h[k]) for k in keys} for h in start["history"]]
        if on_step is not None:
            on_step(first * group.models)
    saved = time.monotonic()
    for s in range(first, c0.steps + 1):
        # State `first` of a continued chunk was recorded before it was saved.
        if (s > first or first == 0) and (s % c0.eval_every == 0 or s == c0.steps):
            for h, entry in zip(histories, group.record(s), strict=True):
                for k in keys:
                    h[k].append(entry[k])
        if s == c0.steps:
            break
        if should_stop is not None and should_stop():
            if save is not None and s > first:
                save(chunk_state(group, s, histories))
            raise ChunkInterrupted(f"chunk stopped at step {s}")
        if (save is not None and save_every is not None and s > first
                and time.monotonic() - saved >= save_every):
            save(chunk_state(group, s, histories))
            saved = time.monotonic()
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
