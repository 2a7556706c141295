"""Report figures over training time: accuracy, loss, weight-norm and IPR curves with the stages
that `mechmem.analysis.training_dynamics` found marked, the share of periodic neurons at each
snapshot, and the IPR histogram at the start and the end."""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..analysis.dynamics import Dynamics
from ._plot import (
    CLASS_COLORS,
    PART_COLORS,
    Panel,
    accuracies_of,
    base_layout,
    class_names,
    numbers,
    vline,
)

# history key of each accuracy (see the trainer's history record)
_HISTORY_ACC = {
    "train": "train_acc",
    "test": "test_acc",
    "clean_train": "clean_train_acc",
    "corrupted_memorized": "corrupted_memorized_acc",
    "corrupted_true": "corrupted_true_acc",
}
NO_HISTORY = ("This model carries no training history (it was built in Python or trained "
               "outside mechmem's trainer), so there are no training curves to show.")


def _series(history: Mapping[str, Sequence[float]], key: str) -> np.ndarray | None:
    values = history.get(key)
    if values is None or len(values) == 0:
        return None
    return np.asarray([float(v) for v in values], dtype=np.float64)


def _clean(dynamics: Dynamics) -> bool:
    """A run without corrupted labels: `training_dynamics` had no inversion level."""
    return dynamics.inversion_level is None


def _stage_marks(dynamics: Dynamics | None) -> tuple[list[dict], list[dict]]:
    """Lines at memorization (train 90% in a run without corrupted labels), grokking and
    forgetting and a band from the train-accuracy peak to the unlearning step, each labelled
    above the plot on its own row."""
    shapes: list[dict] = []
    notes: list[dict] = []
    if dynamics is None:
        return shapes, notes
    fit = "train 90%" if _clean(dynamics) else "memorization"
    for event, label, color, row in ((dynamics.memorization, fit, "#1f77b4", 0),
                                     (dynamics.grokking, "grokking", "#d62728", 1),
                                     (dynamics.forgetting, "forgetting", "#7f7f7f", 3)):
        if event.step is not None:
            s, n = vline(event.step, label, color, row=row)
            shapes.append(s)
            notes.append(n)
    a, b = dynamics.train_peak.step, dynamics.unlearning.step
    if a is not None and b is not None:
        shapes.append({"type": "rect", "x0": a, "x1": b, "y0": 0, "y1": 1, "xref": "x",
                       "yref": "paper", "fillcolor": "#9467bd", "opacity": 0.12,
                       "line": {"width": 0}, "layer": "below"})
        notes.append({"text": "unlearning", "x": (a + b) / 2, "y": 1.0, "xref": "x",
                      "yref": "paper", "showarrow": False, "yanchor": "bottom", "yshift": 28,
                      "font": {"size": 11, "color": "#9467bd"}})
    return shapes, notes


def _curves(
    steps: list, history: Mapping[str, Sequence[float]], lines: Sequence[tuple[str, str, str]]
) -> list[dict]:
    traces = []
    for key, label, color in lines:
        values = _series(history, key)
        if values is None or len(values) != len(steps):
            continue
        traces.append({"type": "scatter", "mode": "lines", "name": label, "x": steps,
                       "y": numbers(values), "line": {"color": color, "width": 2}})
    return traces


def stage_sentence(dynamics: Dynamics | None) -> str:
    """The stages `training_dynamics` found, as a short clause for captions."""
    if dynamics is None:
        return "no stage can be found without a training history"
    parts = []
    if dynamics.memorization.step is not None:
        parts.append(f"train accuracy first reaches 90% at step {dynamics.memorization.step}"
                     + ("" if _clean(dynamics) else " (memorization)"))
    if dynamics.grokking.step is not None:
        parts.append(f"test accuracy first reaches 90% at step {dynamics.grokking.step}"
                     " (grokking)")
    if dynamics.unlearning.step is not None and dynamics.train_peak.step is not None:
        parts.append(f"train accuracy falls from its peak at step {dynamics.train_peak.step} to "
                     "within one point of 1 - xi + xi/p at step "
                     f"{dynamics.unlearning.step} (unlearning of the corrupted labels)")
    if dynamics.forgetting.step is not None:
        parts.append(f"the weights collapse at step {dynamics.forgetting.step} and test "
                     "accuracy is lost (forgetting)")
    by_reason: dict[str, list[str]] = {}  # the events the record cannot tell, by why not
    for name, e in (("memorization", dynamics.memorization), ("grokking", dynamics.grokking),
                    ("forgetting", dynamics.forgetting)):
        if e.unknown:
            by_reason.setdefault(str(e.reason).rstrip("."), []).append(name)
    parts += [f"{' and '.join(names)} unknown: {reason}" for reason, names in by_reason.items()]
    return "; ".join(parts) if parts else "no memorization or grokking stage shows in this run"


def _lines(analysis: Any, which: str) -> list[tuple[str, str, str]]:
    """(history key, label, colour) of each line of one training figure."""
    history = analysis.history
    palette = ("#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
    if which == "accuracy":
        return [(_HISTORY_ACC[k], label, color) for k, label, color in accuracies_of(analysis)]
    if which == "loss":
        return [("train_loss", "train loss", "#1f77b4"), ("test_loss", "test loss", "#d62728")]
    if which == "norms":
        keys = [k for k in history if k.startswith("norm_")] or ["norm_U", "norm_V", "norm_W"]
        return [(k, f"||{k[5:]}||", PART_COLORS.get(k[5:], palette[i % len(palette)]))
                for i, k in enumerate(keys)]
    site_keys = [k for k in history if k.startswith("ipr_") and k != "ipr_mean"]
    return [("ipr_mean", "mean IPR", "#1b9e77")] + [
        (k, f"mean IPR at {k[4:]}", palette[i % len(palette)]) for i, k in enumerate(site_keys)]


def _over_steps(traces: list[dict], dynamics: Dynamics | None, ytitle: str,
                **yaxis: Any) -> dict:
    """A figure over training steps with the stages marked."""
    shapes, notes = _stage_marks(dynamics)
    layout = base_layout(380, shapes=shapes, annotations=notes,
                         xaxis={"title": {"text": "step"}},
                         yaxis={"title": {"text": ytitle}, **yaxis})
    layout["margin"]["t"] = 74  # room for four rows of stage labels
    return {"data": traces, "layout": layout}


_CURVES = {
    "accuracy": ("training-accuracy", "Accuracies", "accuracy", {"range": [-0.02, 1.05]}),
    "loss": ("training-loss", "Losses", "loss", {"type": "log"}),
    "norms": ("training-norms", "Weight norms", "Frobenius norm", {}),
    "ipr": ("training-ipr", "Mean IPR", "mean IPR", {"rangemode": "tozero"}),
}


def _curve_caption(analysis: Any, which: str) -> str:
    if which == "accuracy":
        return ("Each line is one accuracy over training steps (fractions; train is measured "
                "against the labels trained on); marked stages: "
                f"{stage_sentence(analysis.dynamics)}.")
    if which == "loss":
        stages = f" Marked stages: {stage_sentence(analysis.dynamics)}."
        if not getattr(analysis, "has_corrupted", True):
            return ("Train and test loss on a log scale: test loss falls when the network "
                    "generalizes (this training set has no corrupted labels)." + stages)
        return ("Train loss (against the labels trained on, corrupted ones included) and test "
                "loss on a log scale: test loss falls when the network generalizes, and train "
                "loss stays up while it does not fit the corrupted labels." + stages)
    if which == "norms":
        wd = analysis.config.get("weight_decay")
        held = ("weight decay holds them in check" if isinstance(wd, int | float) and wd > 0
                else "this run has no weight decay to hold them in check" if wd == 0
                else "weight decay, where there is any, holds them in check")
        return (f"Frobenius norms of the weight matrices over training: {held}, and a collapse "
                "towards zero is what forgetting looks like.")
    return ("The network's mean inverse participation ratio (of its primary neurons, and of "
            "its other neuron sites where it has them): it rises as neurons become periodic "
            "and stays low while they are not.")


def curve_panel(analysis: Any, which: str) -> Panel:
    """One figure of the training curves: "accuracy", "loss", "norms" or "ipr" over steps."""
    key, title, ytitle, yaxis = _CURVES[which]
    caption = _curve_caption(analysis, which)
    steps_arr = _series(analysis.history, "step")
    if steps_arr is None:
        return Panel(key, title, caption, note=NO_HISTORY)
    steps = numbers(steps_arr, digits=12)
    lines = _lines(analysis, which)
    traces = []
    for hkey, label, color in lines:
        values = _series(analysis.history, hkey)
        if values is None or len(values) != len(steps):
            continue
        traces.append({"type": "scatter", "mode": "lines", "name": label, "x": steps,
                       "y": numbers(values), "line": {"color": color, "width": 2}})
    if not traces:
        names = ", ".join(name for name, _, _ in lines)
        return Panel(key, title, caption, note=f"The training history does not record {names}.")
    return Panel(key, title, caption, _over_steps(traces, analysis.dynamics, ytitle, **yaxis))


def periodic_panel(analysis: Any) -> Panel:
    """The share of periodic neurons at each weight snapshot (`Dynamics.neurons`)."""
    title = "Periodic neurons over training"
    d = analysis.dynamics
    n = None if d is None else d.neurons
    caption = "The share of periodic neurons at each weight snapshot."
    if n is None:
        why = NO_HISTORY if d is None else d.neurons_reason
        return Panel("periodic-neurons", title, caption,
                     note=f"No per-neuron record over training: {why}")
    traces = [{"type": "scatter", "mode": "lines+markers", "name": "periodic neurons",
               "x": list(n.steps), "y": numbers(n.periodic_fraction),
               "line": {"color": CLASS_COLORS["generalizing"], "width": 2},
               "hovertemplate": "step %{x}: %{y:.1%} periodic<extra></extra>"}]
    fate = n.fate
    low = class_names(analysis)[1]
    if fate is None:
        story = f"The fate of the {low} neurons is not followed: {n.fate_reason}"
    else:
        c = fate.counts()
        wd = analysis.config.get("weight_decay")
        faded = ("were pruned away by weight decay" if isinstance(wd, int | float) and wd > 0
                 else "faded out")
        story = (f"Of the {c['cohort']} {low} neurons at step {fate.step} (IPR below the "
                 f"threshold at the first snapshot once train accuracy reached 90%), by step "
                 f"{fate.final_step} {c['pruned']} {faded} (weight norm under "
                 f"{fate.prune_level:.3g}, 10% of the median), {c['memorizing']} are still "
                 f"{low} and {c['periodic']} became periodic.")
    caption = (f"The share of the {n.site} neurons whose IPR is at or above the threshold "
               f"{n.threshold:.3g} at each weight snapshot: it rises as the network builds "
               f"a periodic circuit. {story}")
    figure = _over_steps(traces, d, "share of neurons periodic",
                         range=[-0.02, 1.05], tickformat=".0%")
    return Panel("periodic-neurons", title, caption, figure)


def _first_snapshot(analysis: Any) -> tuple[torch.Tensor, float] | None:
    """The per-neuron IPR at the first weight snapshot and its step, when it shows more than
    the end does."""
    d = analysis.dynamics
    n = None if d is None else d.neurons
    if n is None or n.site != analysis.ipr.site:
        return None
    final = analysis.history.get("step", [])
    if len(n.steps) == 1 and final and n.steps[0] >= float(final[-1]):
        return None  # a single snapshot at the end shows nothing the end histogram does not
    return n.ipr[0], float(n.steps[0])


def ipr_histogram_panel(analysis: Any) -> Panel:
    """Histogram of per-neuron IPR at the end, and at the first snapshot when there is one."""
    ipr = analysis.ipr
    end = ipr.combined.detach()
    end = end[torch.isfinite(end)]
    bins = {"start": 0.0, "end": 1.0 + 1e-9, "size": 0.02}
    traces = []
    start = _first_snapshot(analysis)
    if start is not None:
        values, step = start
        values = values[torch.isfinite(values)]
        label = "at init (step 0)" if step == 0 else f"first snapshot (step {step:g})"
        traces.append({"type": "histogram", "name": label, "x": numbers(values),
                       "xbins": bins, "marker": {"color": "#bbbbbb"}, "opacity": 0.75})
    final_steps = analysis.history.get("step", [])
    end_label = f"end (step {float(final_steps[-1]):g})" if final_steps else "end"
    traces.append({"type": "histogram", "name": end_label, "x": numbers(end), "xbins": bins,
                   "marker": {"color": CLASS_COLORS["generalizing"]}, "opacity": 0.75})
    threshold = float(analysis.neurons.threshold)
    shapes, notes = [], []
    if math.isfinite(threshold):
        s, n = vline(threshold, f"threshold {threshold:.3g} ({analysis.neurons.method})")
        shapes, notes = [s], [n]
    layout = base_layout(
        380, barmode="overlay", shapes=shapes, annotations=notes,
        xaxis={"title": {"text": f"neuron IPR ({ipr.convention}, r = {ipr.r:g})"},
               "range": [0, 1.02]},
        yaxis={"title": {"text": "neurons"}},
    )
    when = ("at the first snapshot (grey) and at the end (green)" if start is not None
            else "at the end of training (no earlier weight snapshots are stored)")
    high, low = class_names(analysis)
    caption = (f"How many neurons have each IPR {when}: periodic neurons sit near 1 and "
               "neurons spread over many frequencies near 0; the dashed line is the threshold "
               f"between the two classes ({high} at or above it, {low} below).")
    return Panel("ipr-histogram", "IPR histogram", caption,
                 {"data": traces, "layout": layout})
