"""Every figure of the single-run report as a plotly `go.Figure`, one public function each.

Each figure is built once, by its panel builder in `_training`, `_neurons` or `_effects` (a
`Panel`: the figure's spec with its title and caption, or the sentence saying why it cannot be
drawn). The functions here turn a builder's spec into a validated `go.Figure`, and the report
page draws exactly what they return (`panel_figure`), so a figure restyled from Python and the
one on the page come from the same code.
"""

from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go

from ._effects import logits_panel, pruning_panel
from ._examples import data_map_panel, margin_panel, memorized_neurons_panel
from ._neurons import (
    batchnorm_panel,
    extreme_weights_panel,
    frequency_panel,
    neuron_weights_panel,
    site_ipr_panel,
    spectra_panel,
)
from ._plot import Panel
from ._progress import progress_panel
from ._training import curve_panel, ipr_histogram_panel, periodic_panel


def panel_figure(panel: Panel) -> go.Figure:
    """The figure of a panel, validated by plotly; a ValueError with the panel's note (one
    sentence saying why) when it has none."""
    if panel.figure is None:
        raise ValueError(f"No {panel.title.lower()} figure: {panel.note}")
    return go.Figure(panel.figure)


def accuracy_figure(analysis: Any) -> go.Figure:
    """The five accuracies over training steps, with the stages of `analysis.dynamics`
    marked (memorization, grokking, unlearning, forgetting).

    Args:
        analysis: the `Analysis` returned by `mechmem.analyze`.

    Returns:
        The figure, one line per accuracy.

    Raises:
        ValueError: the analysis has no training history (a model built in Python).

    Example:
        >>> fig = accuracy_figure(analyze("runs/default.pt"))
        >>> fig.update_layout(height=300).write_html("accuracy.html")
    """
    return panel_figure(curve_panel(analysis, "accuracy"))


def loss_figure(analysis: Any) -> go.Figure:
    """Train and test loss over training steps (log scale), stages marked."""
    return panel_figure(curve_panel(analysis, "loss"))


def norms_figure(analysis: Any) -> go.Figure:
    """The Frobenius norm of each weight matrix over training steps, stages marked."""
    return panel_figure(curve_panel(analysis, "norms"))


def ipr_curve_figure(analysis: Any) -> go.Figure:
    """The mean IPR of the primary neurons (and of every other site) over training steps."""
    return panel_figure(curve_panel(analysis, "ipr"))


def periodic_fraction_figure(analysis: Any) -> go.Figure:
    """The share of periodic primary neurons at each weight snapshot
    (`analysis.dynamics.neurons.periodic_fraction`), stages marked.

    Raises:
        ValueError: no per-neuron record (no history or no snapshots); the message says which.
    """
    return panel_figure(periodic_panel(analysis))


def progress_figure(analysis: Any) -> go.Figure:
    """Nanda et al.'s progress measures over the weight snapshots (restricted, excluded, train
    and test loss, log scale), their three phases shaded and mechmem's stages marked.

    Raises:
        ValueError: not a transformer, or a run without snapshots; the message says which.
    """
    return panel_figure(progress_panel(analysis))


def ipr_histogram_figure(analysis: Any) -> go.Figure:
    """Histogram of per-neuron IPR at the end, and at the first weight snapshot when there is
    one, with the neuron-class threshold."""
    return panel_figure(ipr_histogram_panel(analysis))


def spectra_figure(analysis: Any) -> go.Figure:
    """Each neuron's share of power per frequency for U rows, V rows and W columns, as
    heatmaps with neurons sorted by IPR (the 2-layer MLP only)."""
    return panel_figure(spectra_panel(analysis))


def most_periodic_figure(analysis: Any) -> go.Figure:
    """The weights of the 3 most periodic live neurons along each neuron's own period."""
    return panel_figure(extreme_weights_panel(analysis, "most"))


def least_periodic_figure(analysis: Any) -> go.Figure:
    """The weights of the 3 least periodic live neurons along each neuron's own period."""
    return panel_figure(extreme_weights_panel(analysis, "least"))


def neuron_weights_figure(analysis: Any, neurons: Sequence[int]) -> go.Figure:
    """The weights of the chosen neurons, drawn as `most_periodic_figure` draws its three.

    Args:
        analysis: the `Analysis`.
        neurons: neuron indices at the primary site.

    Raises:
        ValueError: an index out of range, or a model without such weights.
    """
    return panel_figure(neuron_weights_panel(analysis, neurons))


def frequency_figure(analysis: Any) -> go.Figure:
    """Neurons per dominant (or, without weight spectra, key) frequency, stacked by class."""
    return panel_figure(frequency_panel(analysis))


def site_ipr_figure(analysis: Any) -> go.Figure:
    """IPR histograms of every neuron site other than the primary one (the transformer's
    embedding dimensions, the 3-layer MLP's input layer)."""
    return panel_figure(site_ipr_panel(analysis))


def pruning_figure(analysis: Any) -> go.Figure:
    """The five accuracies as neurons are removed in each of the three pruning orders."""
    return panel_figure(pruning_panel(analysis))


def batchnorm_figure(analysis: Any) -> go.Figure:
    """BatchNorm |gamma| and effective gain of each neuron against its IPR, by class."""
    return panel_figure(batchnorm_panel(analysis))


def logits_figure(analysis: Any) -> go.Figure:
    """The corrupted training examples' logits at their corrupted and true labels."""
    return panel_figure(logits_panel(analysis))


def margin_distribution_figure(analysis: Any) -> go.Figure:
    """Histograms of every training example's trained-label margin, one per status."""
    return panel_figure(margin_panel(analysis))


def data_map_figure(analysis: Any) -> go.Figure:
    """The data map: each example's mean margin over training against its variability
    (needs a run trained with `track_examples=True`)."""
    return panel_figure(data_map_panel(analysis))


def memorized_neurons_figure(analysis: Any) -> go.Figure:
    """Memorized examples x neurons: each neuron's share of each example's margin."""
    return panel_figure(memorized_neurons_panel(analysis))


# Every figure of the report by its key on the page (element id "fig-" + key), in page order.
PANELS: dict[str, Callable[[Any], Panel]] = {
    "training-accuracy": lambda a: curve_panel(a, "accuracy"),
    "training-loss": lambda a: curve_panel(a, "loss"),
    "training-norms": lambda a: curve_panel(a, "norms"),
    "training-ipr": lambda a: curve_panel(a, "ipr"),
    "periodic-neurons": periodic_panel,
    "progress": progress_panel,
    "ipr-histogram": ipr_histogram_panel,
    "spectra": spectra_panel,
    "weights-most": lambda a: extreme_weights_panel(a, "most"),
    "weights-least": lambda a: extreme_weights_panel(a, "least"),
    "frequencies": frequency_panel,
    "site-ipr": site_ipr_panel,
    "pruning": pruning_panel,
    "batchnorm": batchnorm_panel,
    "logits": logits_panel,
    "example-margins": margin_panel,
    "data-map": data_map_panel,
    "memorized-neurons": memorized_neurons_panel,
}


def figures(analysis: Any) -> dict[str, go.Figure]:
    """Every figure of the report that applies to this model, by its key on the page.

    Args:
        analysis: the `Analysis` returned by `mechmem.analyze`.

    Returns:
        key -> figure, in page order, for the keys of `PANELS` that can be drawn
        ("training-accuracy", ..., "logits"); a figure that does not apply (no history, no
        BatchNorm, ...) is left out.

    Example:
        >>> figs = figures(analyze("runs/default.pt"))
        >>> figs["pruning"].show()
    """
    out = {}
    for key, build in PANELS.items():
        panel = build(analysis)
        if panel.figure is not None:
            out[key] = panel_figure(panel)
    return out
