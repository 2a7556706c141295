"""`analyze`: every applicable analyzer on one checkpoint or model, in one result."""

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .._display import analysis_html, analysis_repr
from ..checkpoint import Checkpoint
from ..data import ModularDataset
from ..interop._adapter import FAMILY as LENS_FAMILY
from ..interop._adapter import adapt_model
from ..interop._files import TransformerLensRun, load_any
from ..models.families import family_of
from ..models.sites import HasNeuronSites, neuron_sites
from ._common import nan_to_none
from .accuracy import METRICS, AccuracyResult, accuracies
from .batchnorm import BatchNormResult, batchnorm_factors
from .dynamics import Dynamics, dynamics_dict, training_dynamics
from .example_dynamics import (
    ExampleDynamics,
    example_dynamics,
    example_dynamics_dict,
    example_dynamics_lines,
)
from .examples import ExampleAttribution, examples, examples_dict, examples_lines
from .fourier import FourierResult, fourier
from .frequencies import NeuronFrequencies, neuron_frequencies
from .ipr import IPRResult, ipr_scores
from .logits import CorruptedLogitsResult, corrupted_logits
from .neurons import NeuronClasses, classify_neurons
from .phase import PhaseResult, classify_phase
from .progress import ProgressCurves, ProgressMeasures, progress_curves, progress_measures
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
        accuracy, ipr, neurons, pruning, phase, logits: the analyzers' results; `ipr`,
            `neurons` and `pruning` are about the primary neuron site (the 2-layer MLP's hidden
            layer, the 3-layer MLP's last layer, the transformer's MLP neurons).
        fourier: the weights' Fourier decomposition, or None where no site has both operands'
            inputs and an output (the 3-layer MLP, the transformer).
        batchnorm: BatchNorm factors, or None for a model without BatchNorm.
        site_ipr: IPR of every neuron site with weights seen from the residues, by site name
            (the transformer's "embed" is the paper's IPR, one per embedding dimension; the
            3-layer MLP's "layers.0" and "layers.1" are its input and output layers).
        frequencies: the primary site's neurons' key frequencies from their activations.
        notes: one sentence for each analysis that does not apply to this model.
        dynamics: when the run memorized, grokked, unlearned and forgot, and its primary
            neurons across the weight snapshots (`training_dynamics`); None for a model with
            neither history nor snapshots.
        progress: Nanda et al.'s progress measures of the final model (transformers only;
            None with a note otherwise), in the loss the run was trained with.
        progress_curves: the same at every snapshot, with Nanda et al.'s phases; None without
            snapshots.
        examples: every training example's margin and status and each primary neuron's
            share of it (`examples`); None where the primary site has no output weights.
        example_dynamics: when each training example was memorized, unlearned or inverted,
            and its data map (`example_dynamics`); None unless the run tracked its examples.
    """

    model: nn.Module
    dataset: ModularDataset
    config: dict[str, Any]
    name: str
    history: dict[str, list[float]]
    snapshots: dict[str, Tensor]
    accuracy: AccuracyResult
    fourier: FourierResult | None
    ipr: IPRResult
    neurons: NeuronClasses
    pruning: PruningResult
    batchnorm: BatchNormResult | None
    phase: PhaseResult
    logits: CorruptedLogitsResult
    site_ipr: dict[str, IPRResult]
    frequencies: NeuronFrequencies
    notes: tuple[str, ...] = ()
    dynamics: Dynamics | None = None
    progress: ProgressMeasures | None = None
    progress_curves: ProgressCurves | None = None
    examples: ExampleAttribution | None = None
    example_dynamics: ExampleDynamics | None = None

    @property
    def family(self) -> str:
        return _family_name(self.model)

    def __repr__(self) -> str:
        return analysis_repr(self)

    def _repr_html_(self) -> str:
        """Jupyter's display: a small table of the headline facts (escaped, no scripts)."""
        return analysis_html(self)

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
    source: str | os.PathLike | Checkpoint | TransformerLensRun | nn.Module,
    dataset: ModularDataset | None = None,
    *,
    seed: int = 0,
    threshold: float | None = None,
) -> Analysis:
    """Run every applicable analyzer on a checkpoint file, a `Checkpoint` or a model.

    Args:
        source: a checkpoint path (or a TransformerLens model file, docs/transformer-lens.md),
            a loaded `Checkpoint` or `TransformerLensRun`, or a model built in Python (any of
            mechmem's families, a TransformerLens `HookedTransformer`, or any model with
            `neuron_sites()`).
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
        source = load_any(source)
    if isinstance(source, TransformerLensRun):
        if dataset is None and source.dataset is None:
            raise ValueError(f"{source.path or 'The file'}: holds no dataset or train_indices, "
                             "so the split is unknown: pass the model's dataset, "
                             "analyze(run, dataset).")
        if dataset is not None and source.dataset is not None:
            raise ValueError("This file carries its dataset: do not pass `dataset` with it.")
        dataset = dataset if dataset is not None else source.dataset
        name, history, run_snapshots = source.name, dict(source.history), dict(source.snapshots)
        source = source.model
    else:
        name, history, run_snapshots = "", {}, {}
    source = adapt_model(source)  # a TransformerLens model: seen through its neuron sites
    if isinstance(source, Checkpoint):
        if dataset is not None:
            raise ValueError("A checkpoint carries its dataset: do not pass `dataset` with it.")
        model, dataset = source.model, source.dataset
        train_config = source.train_config
        name, history, snapshots = source.name, dict(source.history), dict(source.snapshots)
    elif isinstance(source, HasNeuronSites) and isinstance(source, nn.Module):
        if dataset is None:
            raise ValueError("analyze(model) needs the model's dataset: analyze(model, dataset).")
        model, train_config, snapshots = source, None, run_snapshots
    else:
        raise TypeError(
            "analyze() takes a checkpoint path, a Checkpoint or a model with neuron sites "
            "(HookedMLP, HookedMLP3, HookedTransformer, TransformerLens's HookedTransformer), "
            f"got {type(source).__name__}."
        )
    if not isinstance(dataset, ModularDataset):
        raise TypeError(f"`dataset` must be a ModularDataset, got {type(dataset).__name__}.")
    if model.cfg.p != dataset.p:
        raise ValueError(f"Model p={model.cfg.p} does not match dataset p={dataset.p}.")
    tokens = getattr(model, "tokens", "operands")
    if dataset.spec.tokens != tokens:
        raise ValueError(f"The model reads the {tokens!r} token format but the dataset's "
                         f"tokens are {dataset.spec.tokens!r}: make the dataset with "
                         f"tokens={tokens!r}.")
    op = dataset.spec.op
    config = (
        dict(train_config)
        if train_config is not None
        else {"model": model.cfg.to_dict(), "model_family": _family_name(model),
              "dataset": dataset.spec.to_dict()}
    )
    acc = accuracies(model, dataset)
    sites = neuron_sites(model)
    site_ipr = {s.name: ipr_scores(model, op, site=s) for s in sites if s.parts}
    primary = sites[-1]
    ipr = site_ipr[primary.name]
    neurons = classify_neurons(ipr, threshold=threshold)
    notes = []
    if primary.norm is not None:
        bn = batchnorm_factors(model, ipr, classes=neurons)
    else:
        bn = None
        notes.append("BatchNorm factors: this model has no BatchNorm on its "
                     f"{primary.name} neurons.")
    if len(primary.inputs) == 2 and primary.output is not None:
        four = fourier(model, op)
    else:
        four = None
        notes.append(f"Weight Fourier phases: no weights map both operands' residues to the "
                     f"{primary.name} neurons and on to the logits in this {_family(model)}, "
                     "so their key frequencies are read from their activations instead.")
    progress, curves = _progress(model, dataset, snapshots, config, notes)
    if primary.output is not None:
        per_example = examples(model, dataset, classes=neurons)
    else:
        per_example = None
        notes.append(f"Per-example attribution: the {primary.name} neurons have no output "
                     "weights to the logits.")
    return Analysis(
        model=model,
        dataset=dataset,
        config=config,
        name=name,
        history={k: list(v) for k, v in history.items()},
        snapshots=snapshots,
        accuracy=acc,
        fourier=four,
        ipr=ipr,
        neurons=neurons,
        pruning=pruning_curves(model, dataset, ipr, seed=seed),
        batchnorm=bn,
        phase=classify_phase(acc, dataset.spec.corrupt_frac, history),
        logits=corrupted_logits(model, dataset),
        site_ipr=site_ipr,
        frequencies=neuron_frequencies(model, dataset, site=primary),
        notes=tuple(notes),
        dynamics=(training_dynamics(history, snapshots, corrupt_frac=dataset.spec.corrupt_frac,
                                    p=dataset.p, model=model, op=op,
                                    threshold=neurons.threshold, site=primary.name)
                  if history or snapshots else None),
        progress=progress,
        progress_curves=curves,
        examples=per_example,
        example_dynamics=(example_dynamics(history, dataset) if "example_margin" in history
                          else None),
    )


def _progress(
    model: nn.Module, dataset: ModularDataset, snapshots: Mapping[str, Tensor],
    config: Mapping[str, Any], notes: list[str],
) -> tuple[ProgressMeasures | None, ProgressCurves | None]:
    """Nanda et al.'s progress measures, for transformers (mechmem's and TransformerLens's),
    in the run's loss (cross-entropy for a TransformerLens model, as its grokking demo trains)."""
    family = _family_name(model)
    if family not in ("transformer", LENS_FAMILY):
        notes.append(f"Progress measures: they read key frequencies from a token embedding, "
                     f"which this {_family(model)} does not have.")
        return None, None
    loss = str(config.get("loss", "ce" if family == LENS_FAMILY else "mse"))
    progress = progress_measures(model, dataset, loss=loss)
    if "step" not in snapshots or len(snapshots["step"]) == 0:
        return progress, None
    return progress, progress_curves(model, dataset, snapshots, loss=loss,
                                     key_freqs=progress.key_freqs)


def _family_name(model: nn.Module) -> str:
    try:
        return family_of(model)
    except TypeError:
        family = getattr(type(model), "family", None)
        return family if family == LENS_FAMILY else type(model).__name__


def _family(model: nn.Module) -> str:
    return {"mlp": "2-layer MLP", "mlp3": "3-layer MLP", "transformer": "transformer",
            LENS_FAMILY: "TransformerLens model"}.get(_family_name(model), type(model).__name__)


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
        "fourier": None if a.fourier is None else {"freq_counts": a.fourier.freq_counts},
        "family": _family_name(a.model),
        "sites": {
            name: {"ipr_mean": r.mean, "parts": list(r.parts), "neurons": int(r.combined.numel()),
                   "dead_neurons": r.dead}
            for name, r in a.site_ipr.items()
        },
        "frequencies": {
            "site": a.frequencies.site,
            "freq_counts": a.frequencies.freq_counts,
            "mean_frac_explained": float(a.frequencies.frac_explained.nanmean()),
            "periodic_neurons": int(a.frequencies.periodic().sum()),
        },
        "notes": list(a.notes),
        "dynamics": None if a.dynamics is None else dynamics_dict(a.dynamics),
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
        "progress": _progress_json(a),
        "examples": None if a.examples is None else examples_dict(a.examples) | {
            "dynamics": None if a.example_dynamics is None
            else example_dynamics_dict(a.example_dynamics)},
    }
    return _plain(out)


def _progress_json(a: Analysis) -> dict[str, Any] | None:
    m, c = a.progress, a.progress_curves
    if m is None:
        return None
    out: dict[str, Any] = {
        "key_freqs": list(m.key_freqs), "loss": m.loss, "train_loss": m.train_loss,
        "test_loss": m.test_loss, "restricted_loss": m.restricted_loss,
        "excluded_loss": m.excluded_loss, "curves": None, "phases": None}
    if c is not None:
        out["curves"] = {"steps": c.steps, "train_loss": c.train_loss,
                         "test_loss": c.test_loss, "restricted_loss": c.restricted_loss,
                         "excluded_loss": c.excluded_loss,
                         "unsnapshotted": list(c.unsnapshotted)}
        ph = c.phases
        out["phases"] = {"memorization": ph.memorization,
                         "circuit_formation": ph.circuit_formation, "cleanup": ph.cleanup,
                         "excluded_change": ph.excluded_change,
                         "restricted_change": ph.restricted_change, "notes": list(ph.notes)}
    return out


def _pct(x: float) -> str:
    return "   n/a" if not math.isfinite(x) else f"{100 * x:5.1f}%"


def _summary(a: Analysis) -> str:
    ds, acc = a.dataset, a.accuracy
    lines = [
        f"run        {a.name or '(unnamed)'}",
        f"task       {ds.spec.op} mod {ds.p}, alpha={ds.spec.train_frac}, xi={ds.spec.corrupt_frac}"
        f" ({ds.n_train} train, {ds.n_corrupted} corrupted)",
        f"model      {_describe(a.model)}",
        f"phase      {a.phase.phase}: {a.phase.reason}",
        "",
        "accuracy   train   test    clean   memorized  inverted",
        f"           {_pct(acc.train)}  {_pct(acc.test)}  {_pct(acc.clean_train)}"
        f"  {_pct(acc.corrupted_memorized)}     {_pct(acc.corrupted_true)}",
        "",
        f"IPR        mean {a.ipr.mean:.3f} at {a.ipr.site} (r={a.ipr.r:g}, {a.ipr.convention};"
        f" random level {a.ipr.reference_random:.3f}, periodic level"
        f" {a.ipr.reference_periodic:.3f})",
        *(f"           mean {r.mean:.3f} at {name}" for name, r in a.site_ipr.items()
          if name != a.ipr.site),
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
    fr = a.frequencies
    lines += ["", f"frequency  {int(fr.periodic().sum())} of {fr.key_freq.numel()} {fr.site} "
              "neurons have a key frequency explaining >= 50% of their activation variance"
              f" (mean {float(fr.frac_explained.nanmean()):.2f})"]
    lg = a.logits
    if lg.index.numel():
        lines += [
            "",
            f"logits     corrupted label beats true label on {_pct(lg.frac_corrupted_wins).strip()}"
            f" of {lg.index.numel()} corrupted examples",
        ]
    if a.examples is not None:
        lines += ["", *examples_lines(a.examples)]
        if a.example_dynamics is not None:
            lines += example_dynamics_lines(a.example_dynamics)
    if a.dynamics is not None:
        lines += ["", *_dynamics_lines(a.dynamics)]
    lines += _progress_lines(a)
    lines += [f"note       {n}" for n in a.notes]
    return "\n".join(lines)


def _dynamics_lines(d: Dynamics) -> list[str]:
    def at(e: Any) -> str:
        return "never" if e.step is None else f"step {e.step}"

    delay = "" if d.delay is None else f" ({d.delay:+d} steps)"
    peak = "" if d.test_peak.value is None else f"; test peak {_pct(d.test_peak.value).strip()}"
    lines = [f"dynamics   memorized {at(d.memorization)}, grokked {at(d.grokking)}{delay},"
             f" unlearned {at(d.unlearning)}, forgot {at(d.forgetting)}{peak}"
             + ("" if d.test_peak.step is None else f" at step {d.test_peak.step}")]
    n = d.neurons
    if n is not None:
        lines.append(f"           periodic {n.site} neurons: "
                     f"{_pct(n.periodic_fraction[0]).strip()} at step {n.steps[0]} -> "
                     f"{_pct(n.periodic_fraction[-1]).strip()} at step {n.steps[-1]}")
        if n.fate is not None:
            c = n.fate.counts()
            lines.append(f"           of {c['cohort']} memorizing at step {n.fate.step}:"
                         f" {c['pruned']} pruned, {c['memorizing']} still memorizing,"
                         f" {c['periodic']} periodic at step {n.fate.final_step}")
    return lines


def _progress_lines(a: Analysis) -> list[str]:
    m = a.progress
    if m is None:
        return []
    freqs = ", ".join(map(str, m.key_freqs)) or "none"
    lines = ["", f"progress   key frequencies {freqs}; train-set {m.loss} loss {m.train_loss:.3g},"
             f" restricted {m.restricted_loss:.3g}, excluded {m.excluded_loss:.3g}; test"
             f" {m.test_loss:.3g}"]
    if a.progress_curves is not None:
        ph = a.progress_curves.phases
        spans = [f"{name} {'n/a' if v is None else f'{v[0]:g}-{v[1]:g}'}" for name, v in
                 (("memorization", ph.memorization), ("circuit formation",
                  ph.circuit_formation), ("cleanup", ph.cleanup))]
        lines.append("           Nanda's phases (steps): " + ", ".join(spans))
    return lines


def _describe(model: nn.Module) -> str:
    cfg = model.cfg
    family = _family_name(model)
    if family == "transformer":
        return (f"transformer d_model={cfg.d_model} heads={cfg.n_heads} d_mlp={cfg.d_mlp}"
                f" layers={cfg.n_layers} act={cfg.act} norm={cfg.norm}")
    if family == LENS_FAMILY:
        return (f"TransformerLens HookedTransformer d_model={cfg.d_model} heads={cfg.n_heads}"
                f" d_mlp={cfg.d_mlp} layers={cfg.n_layers} act={cfg.act} norm={cfg.norm}"
                f" {cfg.attention_dir} tokens={cfg.tokens}")
    return f"{family} width={cfg.width} act={cfg.act} norm={cfg.norm}"
