"""`analyze`: every applicable analyzer on one checkpoint or model, in one result."""

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
from ..models.sites import HasNeuronSites, neuron_sites
from ._text import analysis_json, analysis_summary, family, family_name
from .accuracy import AccuracyResult, accuracies
from .batchnorm import BatchNormResult, batchnorm_factors
from .dynamics import Dynamics, training_dynamics
from .example_dynamics import ExampleDynamics, example_dynamics
from .examples import ExampleAttribution, examples
from .fourier import FourierResult, fourier
from .frequencies import NeuronFrequencies, neuron_frequencies
from .ipr import IPRResult, ipr_scores
from .logits import CorruptedLogitsResult, corrupted_logits
from .neurons import IPR_NAMES, ClassEvidence, NeuronClasses, class_evidence, classify_neurons
from .phase import PhaseResult, classify_phase
from .progress import ProgressCurves, ProgressMeasures, progress_curves, progress_measures
from .pruning import PruningResult, pruning_curves


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
        evidence: what the two IPR classes of `neurons` may be called ("generalizing" and
            "memorizing" only on causal evidence, "periodic" and "non-periodic" otherwise) and
            why (`class_evidence`); None for an `Analysis` built without it (then the IPR
            names).
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
    evidence: ClassEvidence | None = None
    examples: ExampleAttribution | None = None
    example_dynamics: ExampleDynamics | None = None

    @property
    def family(self) -> str:
        return family_name(self.model)

    @property
    def class_names(self) -> tuple[str, str]:
        """(name of the high-IPR class, name of the low-IPR class): ("generalizing",
        "memorizing") on causal evidence, ("periodic", "non-periodic") otherwise."""
        e = self.evidence
        return IPR_NAMES if e is None else (e.high, e.low)

    @property
    def has_corrupted(self) -> bool:
        """Whether the training set has corrupted examples (xi > 0 and at least one)."""
        return self.dataset.spec.corrupt_frac > 0 and self.dataset.n_corrupted > 0

    def __repr__(self) -> str:
        return analysis_repr(self)

    def _repr_html_(self) -> str:
        """Jupyter's display: a small table of the headline facts (escaped, no scripts)."""
        return analysis_html(self)

    def summary(self) -> str:
        """A readable text table of the headline numbers."""
        return analysis_summary(self)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object of `mechmem analyze --json`: plain types, null for NaN."""
        return analysis_json(self)

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
    progress_definition: str = "logits",
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
        progress_definition: the progress measures' definition: "logits" (mechmem's) or
            "mlp" (TransformerLens's grokking demo's); see `progress_measures`.

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
        else {"model": model.cfg.to_dict(), "model_family": family_name(model),
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
                     f"{primary.name} neurons and on to the logits in this {family(model)}, "
                     "so their key frequencies are read from their activations instead.")
    progress, curves = _progress(model, dataset, snapshots, config, notes, progress_definition)
    if primary.output is not None:
        per_example = examples(model, dataset, classes=neurons)
    else:
        per_example = None
        notes.append(f"Per-example attribution: the {primary.name} neurons have no output "
                     "weights to the logits.")
    # A split without a corrupted example has nothing to unlearn, whatever xi says.
    xi = dataset.spec.corrupt_frac if dataset.n_corrupted else 0.0
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
        dynamics=(training_dynamics(history, snapshots, corrupt_frac=xi,
                                    p=dataset.p, model=model, op=op,
                                    threshold=neurons.threshold, site=primary.name)
                  if history or snapshots else None),
        progress=progress,
        progress_curves=curves,
        evidence=class_evidence(model, dataset, neurons, site=primary),
        examples=per_example,
        example_dynamics=(example_dynamics(history, dataset) if "example_margin" in history
                          else None),
    )


def _progress(
    model: nn.Module, dataset: ModularDataset, snapshots: Mapping[str, Tensor],
    config: Mapping[str, Any], notes: list[str], definition: str = "logits",
) -> tuple[ProgressMeasures | None, ProgressCurves | None]:
    """Nanda et al.'s progress measures, for transformers (mechmem's and TransformerLens's),
    in the run's loss (cross-entropy for a TransformerLens model, as its grokking demo trains)."""
    kind = family_name(model)
    if kind not in ("transformer", LENS_FAMILY):
        notes.append(f"Progress measures: they read key frequencies from a token embedding, "
                     f"which this {family(model)} does not have.")
        return None, None
    loss = str(config.get("loss", "ce" if kind == LENS_FAMILY else "mse"))
    progress = progress_measures(model, dataset, loss=loss, definition=definition)
    if "step" not in snapshots or len(snapshots["step"]) == 0:
        return progress, None
    return progress, progress_curves(model, dataset, snapshots, loss=loss,
                                     key_freqs=progress.key_freqs, definition=definition)
