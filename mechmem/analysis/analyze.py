"""`analyze`: every applicable analyzer on one checkpoint or model, in one result."""

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..checkpoint import Checkpoint, load_checkpoint
from ..data import ModularDataset
from ..models.mlp import HookedMLP
from ._common import nan_to_none
from .accuracy import METRICS, AccuracyResult, accuracies
from .batchnorm import BatchNormResult, batchnorm_factors
from .fourier import FourierResult, fourier
from .ipr import IPRResult, ipr_scores
from .logits import CorruptedLogitsResult, corrupted_logits
from .neurons import NeuronClasses, classify_neurons
from .phase import PhaseResult, classify_phase
from .pruning import ORDERS, PruningResult, pruning_curves


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything mechmem can say about one trained network.

    Attributes:
        model, dataset: what was analysed.
        config: the run's settings (the trainer's config if there is one, else the model and
            dataset configs).
        name: the run's name ("" if none).
        history, snapshots: the training record from the checkpoint (empty for a bare model).
        accuracy, fourier, ipr, neurons, pruning, phase, logits: the analyzers' results.
        batchnorm: BatchNorm factors, or None for a model without BatchNorm.
    """

    model: HookedMLP
    dataset: ModularDataset
    config: dict[str, Any]
    name: str
    history: dict[str, list[float]]
    snapshots: dict[str, Tensor]
    accuracy: AccuracyResult
    fourier: FourierResult
    ipr: IPRResult
    neurons: NeuronClasses
    pruning: PruningResult
    batchnorm: BatchNormResult | None
    phase: PhaseResult
    logits: CorruptedLogitsResult

    def summary(self) -> str:
        """A readable text table of the headline numbers."""
        return _summary(self)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object of `mechmem analyze --json`: plain types, null for NaN."""
        return _to_json(self)

    def to_html(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the interactive HTML report (needs plotly, imported only here)."""
        from .. import report  # lazy: plotly stays out of `import mechmem`

        return report.write_report(self, path, overwrite=overwrite)


def analyze(
    source: str | os.PathLike | Checkpoint | HookedMLP,
    dataset: ModularDataset | None = None,
    *,
    seed: int = 0,
    threshold: float | None = None,
) -> Analysis:
    """Run every applicable analyzer on a checkpoint file, a `Checkpoint` or a model.

    Args:
        source: a checkpoint path, a loaded `Checkpoint`, or a `HookedMLP` built in Python.
        dataset: the model's dataset; required for a bare model, not allowed otherwise.
        seed: seed of the random pruning order.
        threshold: a fixed IPR threshold for neuron classes (default: found from the data).

    Returns:
        An `Analysis`.

    Example:
        >>> a = analyze("runs/coexistence.pt")
        >>> print(a.summary())
    """
    if isinstance(source, str | os.PathLike):
        source = load_checkpoint(source)
    if isinstance(source, Checkpoint):
        if dataset is not None:
            raise ValueError("A checkpoint carries its dataset: do not pass `dataset` with it.")
        model, dataset = source.model, source.dataset
        train_config = source.train_config
        name, history, snapshots = source.name, dict(source.history), dict(source.snapshots)
    elif isinstance(source, HookedMLP):
        if dataset is None:
            raise ValueError("analyze(model) needs the model's dataset: analyze(model, dataset).")
        model, train_config, name, history, snapshots = source, None, "", {}, {}
    else:
        raise TypeError(
            "analyze() takes a checkpoint path, a Checkpoint or a HookedMLP, "
            f"got {type(source).__name__}."
        )
    if not isinstance(dataset, ModularDataset):
        raise TypeError(f"`dataset` must be a ModularDataset, got {type(dataset).__name__}.")
    if model.cfg.p != dataset.p:
        raise ValueError(f"Model p={model.cfg.p} does not match dataset p={dataset.p}.")
    op = dataset.spec.op
    config = (
        dict(train_config)
        if train_config is not None
        else {"model": model.cfg.to_dict(), "dataset": dataset.spec.to_dict()}
    )
    acc = accuracies(model, dataset)
    ipr = ipr_scores(model, op)
    neurons = classify_neurons(ipr, threshold=threshold)
    bn = (
        batchnorm_factors(model, ipr, classes=neurons) if model.cfg.norm == "batchnorm" else None
    )
    return Analysis(
        model=model,
        dataset=dataset,
        config=config,
        name=name,
        history={k: list(v) for k, v in history.items()},
        snapshots=snapshots,
        accuracy=acc,
        fourier=fourier(model, op),
        ipr=ipr,
        neurons=neurons,
        pruning=pruning_curves(model, dataset, ipr, seed=seed),
        batchnorm=bn,
        phase=classify_phase(acc, dataset.spec.corrupt_frac, history),
        logits=corrupted_logits(model, dataset),
    )


def _plain(x: Any) -> Any:
    """JSON-safe copy: tuples to lists, tensors to lists, NaN/inf to None."""
    if isinstance(x, float):
        return nan_to_none(x)
    if isinstance(x, bool | int | str) or x is None:
        return x
    if isinstance(x, Tensor):
        return _plain(x.tolist())
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return str(x)


def _to_json(a: Analysis) -> dict[str, Any]:
    pruning = {
        order: {"fraction": c.fraction} | {m: getattr(c, m) for m in METRICS}
        for order, c in a.pruning.curves.items()
    }
    out = {
        "name": a.name,
        "config": a.config,
        "phase": a.phase.phase,
        "phase_reason": a.phase.reason,
        "accuracy": {m: getattr(a.accuracy, m) for m in METRICS},
        "ipr": {
            "mean": a.ipr.mean,
            "convention": a.ipr.convention,
            "r": a.ipr.r,
            "dead_neurons": a.ipr.dead,
            "nonfinite_neurons": a.ipr.nonfinite,
        },
        "neurons": {
            "generalizing": a.neurons.generalizing,
            "memorizing": a.neurons.memorizing,
            "dead": a.neurons.dead,
            "threshold": a.neurons.threshold,
            "method": a.neurons.method,
        },
        "fourier": {"freq_counts": a.fourier.freq_counts},
        "pruning": pruning,
        "pruning_method": a.pruning.method,
        "batchnorm": None
        if a.batchnorm is None
        else {
            "pearson": a.batchnorm.pearson,
            "spearman": a.batchnorm.spearman,
            "pearson_gain": a.batchnorm.pearson_gain,
            "spearman_gain": a.batchnorm.spearman_gain,
            "gamma_abs_generalizing": a.batchnorm.gamma_abs_generalizing,
            "gamma_abs_memorizing": a.batchnorm.gamma_abs_memorizing,
        },
        "corrupted_logits": {
            "count": int(a.logits.index.numel()),
            "frac_corrupted_wins": a.logits.frac_corrupted_wins,
        },
    }
    return _plain(out)


def _pct(x: float) -> str:
    return "   n/a" if not math.isfinite(x) else f"{100 * x:5.1f}%"


def _summary(a: Analysis) -> str:
    ds, cfg, acc = a.dataset, a.model.cfg, a.accuracy
    lines = [
        f"run        {a.name or '(unnamed)'}",
        f"task       {ds.spec.op} mod {ds.p}, alpha={ds.spec.train_frac}, xi={ds.spec.corrupt_frac}"
        f" ({ds.n_train} train, {ds.n_corrupted} corrupted)",
        f"model      width={cfg.width} act={cfg.act} norm={cfg.norm}",
        f"phase      {a.phase.phase}: {a.phase.reason}",
        "",
        "accuracy   train   test    clean   memorized  inverted",
        f"           {_pct(acc.train)}  {_pct(acc.test)}  {_pct(acc.clean_train)}"
        f"  {_pct(acc.corrupted_memorized)}     {_pct(acc.corrupted_true)}",
        "",
        f"IPR        mean {a.ipr.mean:.3f} (r={a.ipr.r:g}, {a.ipr.convention}; random level"
        f" {a.ipr.reference_random:.3f}, periodic level {a.ipr.reference_periodic:.3f})",
        f"neurons    {a.neurons.generalizing} generalizing, {a.neurons.memorizing} memorizing,"
        f" {a.neurons.dead} dead (threshold {a.neurons.threshold:.3f}, {a.neurons.method})",
        "",
        f"pruning    ({a.pruning.method}; memorized / test accuracy after removing a fraction)",
        "           order            " + "".join(f"{f:>13.0%}" for f in (0.1, 0.3, 0.6, 0.9)),
    ]
    for order in ORDERS:
        c = a.pruning.curves[order]
        cells = []
        for f in (0.1, 0.3, 0.6, 0.9):
            v = c.at(f)
            cells.append(f"{_pct(v['corrupted_memorized'])}/{_pct(v['test']).strip():>6}")
        lines.append(f"           {order:<16} " + "".join(f"{s:>13}" for s in cells))
    if a.batchnorm is not None:
        b = a.batchnorm
        lines += [
            "",
            f"batchnorm  corr(|gamma|, IPR): Pearson {b.pearson:.3f}, Spearman {b.spearman:.3f};"
            f" mean |gamma| generalizing {b.gamma_abs_generalizing:.4f},"
            f" memorizing {b.gamma_abs_memorizing:.4f}",
        ]
    lg = a.logits
    if lg.index.numel():
        lines += [
            "",
            f"logits     corrupted label beats true label on {_pct(lg.frac_corrupted_wins).strip()}"
            f" of {lg.index.numel()} corrupted examples",
        ]
    return "\n".join(lines)
